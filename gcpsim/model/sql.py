"""Cloud SQL state: instances, backup runs and operations in `Store.data["sql"]`, and the
operation state machine (PENDING -> RUNNING -> DONE over `sql_op_seconds`, computed lazily
from stored times; `refresh` applies the effects of operations that became DONE).

No JSON views here (gcpsim.api.sql_common) and no data work (gcpsim.model.sql_runtime)."""

from __future__ import annotations

import copy
import logging
import re
import secrets
import uuid
from typing import Any

from gcpsim.errors import ApiError
from gcpsim.sim import Sim
from gcpsim.store import now

log = logging.getLogger("gcpsim.sql")

BASE = "https://sqladmin.googleapis.com/v1"
PENDING, RUNNING, DONE = "PENDING", "RUNNING", "DONE"
PENDING_FRACTION = 0.2
MAX_PAGE = 1000
DEFAULT_VERSION = "POSTGRES_15"
PRIMARY = "CLOUD_SQL_INSTANCE"
REPLICA = "READ_REPLICA_INSTANCE"  # see gcpsim.model.sql_replicas
SEED_BACKUPS = 3
SEED_ROWS_PER_PHASE = 24

MSG_PROTECTED = (
    "The instance is protected. Please disable deletion protection "
    "(settings.deletionProtectionEnabled) and try again."
)
MSG_BUSY = (
    "Operation failed because another operation was already in progress. "
    "Try your request after the current operation is complete."
)
MSG_NO_INSTANCE = "The Cloud SQL instance does not exist."
MSG_EXISTS = "The Cloud SQL instance already exists."
MSG_NO_BACKUP = "The backup run does not exist."
MSG_NO_OPERATION = "The Cloud SQL operation does not exist."
MSG_NOT_RUNNING = "Invalid request since instance is not running."

CLONE_CONTEXT_FIELDS = {
    "allocatedIpRange", "binLogCoordinates", "databaseNames", "destinationInstanceName",
    "destinationNetwork", "destinationProject", "kind", "pitrTimestampMs", "pointInTime",
    "preferredSecondaryZone", "preferredZone", "sourceInstanceDeletionTime",
}  # fmt: skip
RESTORE_CONTEXT_FIELDS = {"backupRunId", "instanceId", "kind", "project"}
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,96}[a-z0-9]$|^[a-z]$")


# ---------------------------------------------------------------------------- state helpers


def tbl(d: dict[str, Any], name: str) -> dict[str, Any]:
    sql: dict[str, Any] = d.setdefault("sql", {})
    table: dict[str, Any] = sql.setdefault(name, {})
    return table


def instance_key(project: str, instance: str) -> str:
    return f"{project}/{instance}"


def backup_key(project: str, instance: str, backup_id: str) -> str:
    return f"{project}/{instance}/{backup_id}"


def sql_error(status: int, message: str, reason: str) -> ApiError:
    return ApiError(status, message, style="sql", reason=reason)


def no_instance() -> ApiError:
    return sql_error(404, MSG_NO_INSTANCE, "instanceDoesNotExist")


def invalid(message: str) -> ApiError:
    return sql_error(400, message, "invalid")


def new_uid(d: dict[str, Any]) -> str:
    used = {i["uid"] for i in tbl(d, "instances").values()}
    while True:
        uid = secrets.token_hex(4)
        if uid not in used:
            return uid


def new_etag() -> str:
    return secrets.token_hex(16)


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def default_settings(region: str, tier: str, availability: str) -> dict[str, Any]:
    return {
        "kind": "sql#settings",
        "tier": tier,
        "availabilityType": availability,
        "activationPolicy": "ALWAYS",
        "pricingPlan": "PER_USE",
        "replicationType": "SYNCHRONOUS",
        "dataDiskType": "PD_SSD",
        "dataDiskSizeGb": "10",
        "storageAutoResize": True,
        "edition": "ENTERPRISE",
        "ipConfiguration": {"ipv4Enabled": True, "sslMode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED"},
        "locationPreference": {"kind": "sql#locationPreference", "zone": f"{region}-a"},
        "backupConfiguration": {
            "kind": "sql#backupConfiguration",
            "enabled": True,
            "startTime": "03:00",
            "location": "us",
            "pointInTimeRecoveryEnabled": True,
            "transactionLogRetentionDays": 7,
            "backupRetentionSettings": {"retentionUnit": "COUNT", "retainedBackups": 30},
        },
    }


def new_instance(
    d: dict[str, Any],
    project: str,
    name: str,
    region: str,
    settings: dict[str, Any],
    state: str,
    created: float,
    version: str = DEFAULT_VERSION,
) -> dict[str, Any]:
    inst = {
        "project": project,
        "name": name,
        "region": region,
        "uid": new_uid(d),
        "state": state,
        "databaseVersion": version,
        "createTime": created,
        "settings": settings,
        "settingsVersion": 1,
        "etag": new_etag(),
        "databases": {},
    }
    tbl(d, "instances")[instance_key(project, name)] = inst
    return inst


# ---------------------------------------------------------------------------- operations


def _status_at(op: dict[str, Any], t: float) -> str:
    ins, dur = float(op["insertTime"]), float(op["dur"])
    if t < ins + dur * PENDING_FRACTION:
        return PENDING
    finished = op["workState"] in ("done", "failed", "skipped", "none")
    if finished and t >= max(ins + dur, float(op.get("workDoneAt") or 0)):
        return DONE
    return RUNNING


def refresh(d: dict[str, Any], t: float | None = None) -> bool:
    """Advance every unfinished operation to its status at time `t`; apply DONE effects."""
    t = now() if t is None else t
    changed = False
    for op in list(tbl(d, "operations").values()):
        if op["status"] == DONE:
            continue
        st = _status_at(op, t)
        if st == op["status"]:
            continue
        changed = True
        if st != PENDING and op.get("startTime") is None:
            op["startTime"] = float(op["insertTime"]) + float(op["dur"]) * PENDING_FRACTION
            b = tbl(d, "backups").get(op.get("backupKey") or "")
            if b is not None and op["operationType"] == "BACKUP_VOLUME":
                b["status"] = "RUNNING"
                b["startTime"] = op["startTime"]
        if st == DONE:
            op["endTime"] = max(
                float(op["insertTime"]) + float(op["dur"]), float(op.get("workDoneAt") or 0)
            )
            message = op.get("faultError") or op.get("workError")
            if message:
                op["error"] = str(message)
        op["status"] = st
        if st == DONE:
            _on_done(d, op)
    return changed


def _on_done(d: dict[str, Any], op: dict[str, Any]) -> None:
    instances, backups = tbl(d, "instances"), tbl(d, "backups")
    failed = "error" in op
    kind = op["operationType"]
    inst = instances.get(op.get("instanceKey") or "")
    if kind == "BACKUP_VOLUME":
        b = backups.get(op.get("backupKey") or "")
        if b is not None:
            b["status"] = "FAILED" if failed else "SUCCESSFUL"
            b["endTime"] = op["endTime"]
            b.setdefault("startTime", op.get("startTime"))
            if failed:
                b["error"] = op["error"]
    elif kind in ("CLONE", "CREATE", "CREATE_REPLICA"):
        dest = instances.get(op.get("destKey") or "")
        if dest is not None and dest["uid"] == op.get("destUid"):
            if failed:
                del instances[op["destKey"]]
            else:
                dest["state"] = "RUNNABLE"
                dest["etag"] = new_etag()
    elif kind == "DELETE":
        if inst is not None:
            if failed:
                inst["state"] = "RUNNABLE"
            else:
                del instances[op["instanceKey"]]
                for k in [k for k, b in backups.items() if b["uid"] == inst["uid"]]:
                    del backups[k]
    elif kind == "DELETE_VOLUME":
        b = backups.get(op.get("backupKey") or "")
        if b is not None:
            if failed:  # as the real API: the run stays, terminally DELETION_FAILED
                b.pop("statusBeforeDelete", None)
                b["status"] = "DELETION_FAILED"
                b["error"] = op["error"]
            else:
                del backups[op["backupKey"]]
    elif kind == "PROMOTE_REPLICA" and inst is not None:
        inst.pop("promoting", None)
        if not failed:  # a standalone primary from now on (gcpsim.model.sql_replicas)
            inst["instanceType"] = PRIMARY
            inst["promotedFrom"] = inst.pop("masterInstanceName", None)
            inst.pop("replicaConfiguration", None)
            inst["promotedAt"] = op["endTime"]
            inst["etag"] = new_etag()
    elif kind == "UPDATE" and inst is not None and not failed:
        inst["settings"] = deep_merge(inst["settings"], op.get("patch") or {})
        inst["settingsVersion"] = int(inst["settingsVersion"]) + 1
        inst["etag"] = new_etag()


def busy(d: dict[str, Any], key: str) -> bool:
    return any(
        o["status"] != DONE and key in o.get("locks", []) for o in tbl(d, "operations").values()
    )


def new_op(
    sim: Sim,
    d: dict[str, Any],
    project: str,
    kind: str,
    target: str,
    locks: list[str],
    work: dict[str, Any] | None,
    fault_error: str | None,
    **extra: Any,
) -> dict[str, Any]:
    t = now()
    op: dict[str, Any] = {
        "name": str(uuid.uuid4()),
        "project": project,
        "operationType": kind,
        "targetId": target,
        "instanceKey": instance_key(project, target),
        "locks": locks,
        "insertTime": t,
        "dur": max(0.0, float(sim.settings.sql_op_seconds)),
        "status": PENDING,
        "user": f"gcpsim@{project}.iam.gserviceaccount.com",
        "work": work,
        "workState": "none" if work is None else "pending",
        **extra,
    }
    if fault_error:
        op["faultError"] = fault_error
        if work is not None:
            op["workState"] = "skipped"
            op["workDoneAt"] = t
    tbl(d, "operations")[op["name"]] = op
    return op


def start_backup(
    sim: Sim,
    d: dict[str, Any],
    inst: dict[str, Any],
    backup_type: str,
    description: str | None,
    window: float | None,
    fault_error: str | None,
) -> dict[str, Any]:
    t = now()
    project, name = inst["project"], inst["name"]
    backups = tbl(d, "backups")
    bid = int(t * 1000)
    while backup_key(project, name, str(bid)) in backups:
        bid += 1
    key = backup_key(project, name, str(bid))
    data_key = f"{inst['uid']}-{bid}"
    backups[key] = {
        "key": key,
        "project": project,
        "instance": name,
        "uid": inst["uid"],
        "id": str(bid),
        "dataKey": data_key,
        "status": "ENQUEUED",
        "type": backup_type,
        "description": description,
        "enqueuedTime": t,
        "windowStartTime": t if window is None else window,
        "databaseVersion": inst["databaseVersion"],
    }
    ikey = instance_key(project, name)
    return new_op(
        sim, d, project, "BACKUP_VOLUME", name, [ikey],
        {"kind": "backup", "uid": inst["uid"], "dataKey": data_key, "what": "Backup"},
        fault_error, backupId=str(bid), backupKey=key,
    )  # fmt: skip


def retention_days(inst: dict[str, Any]) -> int:
    cfg = inst["settings"].get("backupConfiguration") or {}
    return int(cfg.get("transactionLogRetentionDays") or 7)


def recovery_window(inst: dict[str, Any], t: float) -> tuple[float, float]:
    """(earliest, latest) recoverable time; 400 when point-in-time recovery is off (as
    `instances.getLatestRecoveryTime` and a point-in-time clone answer)."""
    cfg = inst["settings"].get("backupConfiguration") or {}
    if not cfg.get("pointInTimeRecoveryEnabled"):
        raise invalid(
            f"Invalid request: point-in-time recovery is not enabled on instance {inst['name']}."
        )
    # The logs are kept `transactionLogRetentionDays` (1-7; up to 35 on Enterprise Plus); the
    # newest recoverable time is now here (the simulator ships its log continuously).
    return max(float(inst["createTime"]), t - retention_days(inst) * 86400), t


def get_instance(d: dict[str, Any], project: str, instance: str) -> dict[str, Any]:
    inst = tbl(d, "instances").get(instance_key(project, instance))
    if inst is None:
        raise no_instance()
    return inst


def check_mutable(d: dict[str, Any], inst: dict[str, Any]) -> None:
    if busy(d, instance_key(inst["project"], inst["name"])):
        raise sql_error(409, MSG_BUSY, "operationInProgress")
    if inst["state"] != "RUNNABLE":
        raise sql_error(400, MSG_NOT_RUNNING, "invalid")
