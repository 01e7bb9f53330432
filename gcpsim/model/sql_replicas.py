"""Cloud SQL cross-region read replicas, as the Admin API v1 models them.

What the product may rely on (and conformance tests check, tests/conformance/
test_gcpsim_replica.py):

- `instances.insert` with `masterInstanceName` (the primary's name, or `project:name`) and
  `replicaConfiguration` ({} or {"failoverTarget": false}); `instanceType` may be
  `READ_REPLICA_INSTANCE` (anything else with a master is 400). The region may differ from the
  primary's (a cross-region replica). The operation is `CREATE_REPLICA`; when DONE the replica is
  RUNNABLE with `instanceType: READ_REPLICA_INSTANCE`, `masterInstanceName`,
  `replicaConfiguration`, and the primary lists it in `replicaNames`. Tier and database version
  default to the primary's; backups and point-in-time recovery are off on a replica (as on GCP).
- Its data follows the primary: every `replica_lag_seconds` (serve flag
  `--replica-lag-seconds`, default 1 s) behind, the rows the primary's tables got are copied over
  (inserts, by `created_at`; see gcpsim.pg.replication). Replication stops while the primary's
  region is out (or the primary is not RUNNABLE), so the replica keeps what it had then.
- A primary with read replicas cannot be restored into (restoreBackup answers 400, as GCP
  requires the target's replicas to be deleted before a restore), nor deleted (below).
- Writes are refused: its databases are read-only (Postgres: "cannot execute INSERT in a
  read-only transaction"), the simulated application never writes to it, and backupRuns.insert,
  restoreBackup and clone on a replica answer 400. A primary with replicas cannot be deleted
  (400) until they are deleted or promoted.
- `instances.promoteReplica` (POST .../instances/{replica}/promoteReplica, empty body) returns a
  `PROMOTE_REPLICA` operation; replication stops at the call; when DONE the instance is a
  standalone primary (`instanceType: CLOUD_SQL_INSTANCE`, no `masterInstanceName`, no longer in
  the old primary's `replicaNames`), writable, holding the rows replicated up to the call. It
  works while the primary's region is out (the outage only blocks calls about instances in it).
- Replication lag: Cloud SQL exposes it only through Cloud Monitoring, so gcpsim serves
  `cloudsql.googleapis.com/database/replication/replica_lag` (GAUGE DOUBLE, unit "s", resource
  `cloudsql_database` with labels project_id, database_id = "project:instance", region) for
  every replica: now minus the newest `created_at` the replica is guaranteed to hold. The
  gcpsim-only `GET /_sim/sql` summary also lists `replicatedUpTo` (RFC 3339) per replica.
- gcpsim extra: `python -m gcpsim replica create INSTANCE --region R [--name N]` (default name
  `<instance>-replica-<region>`), and the seed config key
  `environments.<env>.database.replicas: [{region: R, instance: N}]`.
"""

from __future__ import annotations

import copy
from typing import Any

from gcpsim.model.sql import (
    DONE,
    MSG_EXISTS,
    REPLICA,
    check_mutable,
    get_instance,
    instance_key,
    invalid,
    new_instance,
    new_op,
    sql_error,
    tbl,
)
from gcpsim.sim import Sim
from gcpsim.store import now

REPLICA_CONFIG_FIELDS = {"kind", "failoverTarget", "cascadableReplica"}


def is_replica(inst: dict[str, Any]) -> bool:
    return inst.get("instanceType") == REPLICA


def parse_master(project: str, value: str) -> tuple[str, str]:
    """`name` or `project:name` -> (project, name)."""
    if ":" in value:
        p, _, n = value.partition(":")
        return p, n
    return project, value


def check_replica_request(body: dict[str, Any]) -> dict[str, Any]:
    """Validate the replica parts of an insert body; returns the replicaConfiguration."""
    itype = body.get("instanceType")
    if itype not in (None, REPLICA):
        raise invalid(
            f"Invalid request: instanceType {itype} cannot have a masterInstanceName; use "
            f"{REPLICA}."
        )
    cfg = body.get("replicaConfiguration") or {}
    if not isinstance(cfg, dict):
        raise invalid("Invalid request: replicaConfiguration must be an object.")
    for k in cfg:
        if k not in REPLICA_CONFIG_FIELDS:
            raise invalid(
                f'Invalid JSON payload received. Unknown name "{k}" at '
                "'body.replica_configuration': Cannot find field."
            )
    if cfg.get("failoverTarget"):
        raise invalid("Invalid request: gcpsim models read replicas, not failover targets.")
    return {"kind": "sql#replicaConfiguration", "failoverTarget": False}


def replica_settings(primary: dict[str, Any], region: str, user: dict[str, Any]) -> dict[str, Any]:
    """The primary's settings, the user's on top, without backups or point-in-time recovery."""
    settings = copy.deepcopy(primary["settings"])
    for k, v in user.items():
        if k not in ("settingsVersion", "kind", "backupConfiguration"):
            settings[k] = copy.deepcopy(v)
    settings["locationPreference"] = {"kind": "sql#locationPreference", "zone": f"{region}-a"}
    settings["availabilityType"] = str(user.get("availabilityType") or "ZONAL")
    settings["deletionProtectionEnabled"] = bool(user.get("deletionProtectionEnabled", False))
    backup = dict(settings.get("backupConfiguration") or {})
    backup.update(enabled=False, pointInTimeRecoveryEnabled=False)
    settings["backupConfiguration"] = backup
    return settings


def replica_names(d: dict[str, Any], primary: dict[str, Any]) -> list[str]:
    """The replicas of `primary` (names, or project:name in another project)."""
    out = []
    for i in tbl(d, "instances").values():
        if not is_replica(i):
            continue
        if parse_master(i["project"], i["masterInstanceName"]) == (
            primary["project"],
            primary["name"],
        ):
            out.append(
                i["name"] if i["project"] == primary["project"] else f"{i['project']}:{i['name']}"
            )
    return sorted(out)


def master_of(d: dict[str, Any], replica: dict[str, Any]) -> dict[str, Any] | None:
    p, n = parse_master(replica["project"], replica["masterInstanceName"])
    found: dict[str, Any] | None = tbl(d, "instances").get(instance_key(p, n))
    return found


def replication_lag(replica: dict[str, Any], t: float) -> float | None:
    """Seconds of primary data the replica may be missing at `t` (None before its first copy)."""
    upto = replica.get("replicatedUpTo")
    return None if upto is None else max(0.0, t - float(upto))


def check_not_replica(inst: dict[str, Any], what: str) -> None:
    if is_replica(inst):
        raise invalid(
            f"Invalid request: {what} is not supported for read replica instance "
            f"{inst['name']}; promote it first."
        )


def check_no_replicas(d: dict[str, Any], inst: dict[str, Any]) -> None:
    names = replica_names(d, inst)
    if names:
        raise invalid(
            f"Invalid request: instance {inst['name']} has read replicas ({', '.join(names)}); "
            "delete or promote them first."
        )


def replication_targets(d: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(replica key, replica, primary) pairs that replicate now (both RUNNABLE, no promotion
    under way). Outages are the caller's concern."""
    out = []
    busy_keys = {
        lock
        for o in tbl(d, "operations").values()
        if o["status"] != DONE and o["operationType"] == "PROMOTE_REPLICA"
        for lock in o.get("locks", [])
    }
    for key, r in tbl(d, "instances").items():
        if not is_replica(r) or r["state"] != "RUNNABLE" or key in busy_keys:
            continue
        if r.get("promoting") or r.get("replicatedUpTo") is None:
            continue
        m = master_of(d, r)
        if m is not None and m["state"] == "RUNNABLE" and m.get("databases"):
            out.append((key, r, m))
    return out


def insert_replica(
    sim: Sim,
    d: dict[str, Any],
    project: str,
    name: str,
    region: str,
    body: dict[str, Any],
    op_error: str | None,
) -> dict[str, Any]:
    """`instances.insert` with a `masterInstanceName`: the replica record (PENDING_CREATE) and
    its CREATE_REPLICA operation, whose work copies the primary."""
    replica_cfg = check_replica_request(body)
    m_project, m_name = parse_master(project, str(body["masterInstanceName"]))
    primary = get_instance(d, m_project, m_name)
    if is_replica(primary):
        raise invalid(
            f"Invalid request: {m_name} is a read replica; gcpsim does not model cascading "
            "replicas."
        )
    check_mutable(d, primary)
    key = instance_key(project, name)
    if key in tbl(d, "instances"):
        raise sql_error(409, MSG_EXISTS, "instanceAlreadyExists")
    user = body.get("settings") or {}
    if not isinstance(user, dict):
        raise invalid("Invalid request: settings must be an object.")
    version = str(body.get("databaseVersion") or primary["databaseVersion"])
    if version != primary["databaseVersion"]:
        raise invalid(
            f"Invalid request: a read replica runs its primary's database version "
            f"({primary['databaseVersion']}), not {version}."
        )
    inst = new_instance(
        d, project, name, region, replica_settings(primary, region, user), "PENDING_CREATE",
        now(), version,
    )  # fmt: skip
    inst["instanceType"] = REPLICA
    inst["masterInstanceName"] = m_name if m_project == project else f"{m_project}:{m_name}"
    inst["replicaConfiguration"] = replica_cfg
    return new_op(
        sim, d, project, "CREATE_REPLICA", name, [key],
        {"kind": "create_replica", "srcUid": primary["uid"], "uid": inst["uid"],
         "resultFor": key, "what": "Creating the read replica"},
        op_error, destKey=key, destUid=inst["uid"],
    )  # fmt: skip


def promote(
    sim: Sim, d: dict[str, Any], project: str, instance: str, op_error: str | None
) -> dict[str, Any]:
    """`instances.promoteReplica`: replication stops now; the PROMOTE_REPLICA operation's work
    makes the data writable and, when DONE, the instance a standalone primary."""
    inst = get_instance(d, project, instance)
    if not is_replica(inst):
        raise invalid(f"Invalid request: instance {instance} is not a read replica.")
    check_mutable(d, inst)
    key = instance_key(project, instance)
    if not op_error:
        inst["promoting"] = True
    return new_op(
        sim, d, project, "PROMOTE_REPLICA", instance, [key],
        {"kind": "promote", "uid": inst["uid"], "resultFor": key,
         "what": "Promoting the read replica"},
        op_error,
    )  # fmt: skip
