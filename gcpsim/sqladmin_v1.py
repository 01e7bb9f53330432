"""Cloud SQL Admin API v1 over REST, backed by real PostgreSQL data (gcpsim.pgdata).

Served for `googleapiclient.discovery.build("sqladmin", "v1", ...)`:
instances get/list/insert/patch/delete/clone/restoreBackup, backupRuns insert/list/get/delete,
operations get/list, plus `GET /_sim/sql` (a summary with row counts). Response shapes follow
the contract (kind fields, int64 as strings, RFC 3339 times); `instances.get` adds the
gcpsim-only `gcpsimConnection` {host, port, user, password, databases: {name: pg database}}.

Operations go PENDING -> RUNNING -> DONE over `sim.settings.sql_op_seconds` (the first fifth
PENDING), computed lazily from stored times on every read. The data work of a mutating call
(backup copy, restore, clone, create, delete) runs in a background thread; the operation only
becomes DONE once that work finished, and ends `DONE` + `error` (INTERNAL_ERROR) when it failed
or when an `op_error` fault hit the call (then the work is skipped). Work still pending when
gcpsim stopped is started again by `start()`.

One operation at a time per instance: a mutating call on an instance with a PENDING/RUNNING
operation gets the real 409 `operationInProgress` body. A clone locks its source and its new
instance, which stays PENDING_CREATE until the clone is DONE (removed again if it failed).
A deleted instance takes its backups with it (as on GCP without a final backup).

`start(sim)` also runs a maintenance thread: it finalizes operations, takes the PITR snapshots
(pgdata), and takes the AUTOMATED daily backup at `backupConfiguration.startTime` (UTC),
keeping `retainedBackups` of them.
"""

from __future__ import annotations

import atexit
import base64
import copy
import logging
import random
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Body, Query

from gcpsim import outage, pgdata, run_v2
from gcpsim.errors import ApiError
from gcpsim.pgdata import PgCluster
from gcpsim.sim import Sim
from gcpsim.store import now, parse_rfc3339, rfc3339

log = logging.getLogger("gcpsim.sql")

BASE = "https://sqladmin.googleapis.com/v1"
PENDING, RUNNING, DONE = "PENDING", "RUNNING", "DONE"
PENDING_FRACTION = 0.2
MAX_PAGE = 1000
DEFAULT_VERSION = "POSTGRES_15"
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


# ---------------------------------------------------------------------------- runtime


class _Runtime:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.cluster = PgCluster(sim.store.dir / "pg")
        self.lock = threading.RLock()
        self.started = False
        self.stopping = False
        self.stop_event = threading.Event()
        self.maintenance: threading.Thread | None = None
        self.last_snapshot: dict[str, float] = {}


_RUNTIMES: dict[int, _Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def _runtime(sim: Sim) -> _Runtime:
    with _RUNTIMES_LOCK:
        rt = _RUNTIMES.get(id(sim))
        if rt is None or rt.sim is not sim:
            rt = _RUNTIMES[id(sim)] = _Runtime(sim)
        return rt


def start(sim: Sim) -> None:
    """Start the embedded Postgres (or re-attach to it), drop data the state no longer knows,
    resume unfinished operation work, and start the row writer and the maintenance thread
    (operations, PITR snapshots, automated backups). Idempotent."""
    rt = _runtime(sim)
    with rt.lock:
        if rt.started:
            return
        rt.stopping = False
        rt.stop_event.clear()
        rt.cluster.start()
        with sim.store.lock:
            d = sim.store.data
            keep_uids = {i["uid"] for i in _tbl(d, "instances").values()}
            keep_backups = {b["dataKey"] for b in _tbl(d, "backups").values()}
            pending = [
                o["name"] for o in _tbl(d, "operations").values() if o.get("workState") == "pending"
            ]
        rt.cluster.gc(keep_uids, keep_backups)
        rt.cluster.start_writer(lambda: _writer_targets(sim))
        rt.maintenance = threading.Thread(
            target=_maintenance_loop, args=(sim, rt), name="gcpsim-sql-maint", daemon=True
        )
        rt.maintenance.start()
        rt.started = True
        atexit.register(stop, sim)
    for name in pending:
        _launch(sim, name)
    log.info(
        "Cloud SQL data: Postgres on %s:%s (ready in %.2fs)",
        pgdata.HOST,
        rt.cluster.port,
        rt.cluster.startup_seconds,
    )


def stop(sim: Sim) -> None:
    """Stop the threads and shut Postgres down cleanly. Idempotent."""
    rt = _runtime(sim)
    with rt.lock:
        rt.stopping = True
        rt.stop_event.set()
        if rt.maintenance is not None:
            rt.maintenance.join(timeout=30)
            rt.maintenance = None
        if rt.started or rt.cluster.running:
            rt.cluster.stop()
        rt.started = False


def _cluster(sim: Sim) -> PgCluster:
    rt = _runtime(sim)
    if not rt.started:
        start(sim)
    return rt.cluster


def configure(
    *, rows_per_second: float | None = None, snapshot_seconds: float | None = None
) -> None:
    """Row writer rate and PITR snapshot interval (see gcpsim.pgdata.configure)."""
    pgdata.configure(rows_per_second=rows_per_second, snapshot_seconds=snapshot_seconds)


# ---------------------------------------------------------------------------- state helpers


def _tbl(d: dict[str, Any], name: str) -> dict[str, Any]:
    sql: dict[str, Any] = d.setdefault("sql", {})
    table: dict[str, Any] = sql.setdefault(name, {})
    return table


def _ikey(project: str, instance: str) -> str:
    return f"{project}/{instance}"


def _bkey(project: str, instance: str, backup_id: str) -> str:
    return f"{project}/{instance}/{backup_id}"


def _sql_error(status: int, message: str, reason: str) -> ApiError:
    return ApiError(status, message, style="sql", reason=reason)


def _no_instance() -> ApiError:
    return _sql_error(404, MSG_NO_INSTANCE, "instanceDoesNotExist")


def _invalid(message: str) -> ApiError:
    return _sql_error(400, message, "invalid")


def _new_uid(d: dict[str, Any]) -> str:
    used = {i["uid"] for i in _tbl(d, "instances").values()}
    while True:
        uid = secrets.token_hex(4)
        if uid not in used:
            return uid


def _etag() -> str:
    return secrets.token_hex(16)


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _default_settings(region: str, tier: str, availability: str) -> dict[str, Any]:
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


def _new_instance(
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
        "uid": _new_uid(d),
        "state": state,
        "databaseVersion": version,
        "createTime": created,
        "settings": settings,
        "settingsVersion": 1,
        "etag": _etag(),
        "databases": {},
    }
    _tbl(d, "instances")[_ikey(project, name)] = inst
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


def _refresh(d: dict[str, Any], t: float | None = None) -> bool:
    """Advance every unfinished operation to its status at time `t`; apply DONE effects."""
    t = now() if t is None else t
    changed = False
    for op in list(_tbl(d, "operations").values()):
        if op["status"] == DONE:
            continue
        st = _status_at(op, t)
        if st == op["status"]:
            continue
        changed = True
        if st != PENDING and op.get("startTime") is None:
            op["startTime"] = float(op["insertTime"]) + float(op["dur"]) * PENDING_FRACTION
            b = _tbl(d, "backups").get(op.get("backupKey") or "")
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
    instances, backups = _tbl(d, "instances"), _tbl(d, "backups")
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
    elif kind in ("CLONE", "CREATE"):
        dest = instances.get(op.get("destKey") or "")
        if dest is not None and dest["uid"] == op.get("destUid"):
            if failed:
                del instances[op["destKey"]]
            else:
                dest["state"] = "RUNNABLE"
                dest["etag"] = _etag()
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
    elif kind == "UPDATE" and inst is not None and not failed:
        inst["settings"] = _deep_merge(inst["settings"], op.get("patch") or {})
        inst["settingsVersion"] = int(inst["settingsVersion"]) + 1
        inst["etag"] = _etag()


def _busy(d: dict[str, Any], key: str) -> bool:
    return any(
        o["status"] != DONE and key in o.get("locks", []) for o in _tbl(d, "operations").values()
    )


def _new_op(
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
        "instanceKey": _ikey(project, target),
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
    _tbl(d, "operations")[op["name"]] = op
    return op


def _op_json(op: dict[str, Any]) -> dict[str, Any]:
    p = op["project"]
    out: dict[str, Any] = {
        "kind": "sql#operation",
        "name": op["name"],
        "status": op["status"],
        "operationType": op["operationType"],
        "targetId": op["targetId"],
        "targetProject": p,
        "targetLink": f"{BASE}/projects/{p}/instances/{op['targetId']}",
        "selfLink": f"{BASE}/projects/{p}/operations/{op['name']}",
        "user": op["user"],
        "insertTime": rfc3339(op["insertTime"]),
    }
    if op.get("startTime") is not None:
        out["startTime"] = rfc3339(op["startTime"])
    if op.get("endTime") is not None:
        out["endTime"] = rfc3339(op["endTime"])
    if op.get("backupId"):
        out["backupContext"] = {"kind": "sql#backupContext", "backupId": op["backupId"]}
    if op["status"] == DONE and op.get("error"):
        out["error"] = {
            "kind": "sql#operationErrors",
            "errors": [
                {"kind": "sql#operationError", "code": "INTERNAL_ERROR", "message": op["error"]}
            ],
        }
    return out


# ---------------------------------------------------------------------------- work


def _launch(sim: Sim, op_name: str) -> None:
    threading.Thread(
        target=_do_work, args=(sim, op_name), name=f"gcpsim-sql-{op_name[:8]}", daemon=True
    ).start()


def _do_work(sim: Sim, op_name: str) -> None:
    rt = _runtime(sim)
    with sim.store.lock:
        op = _tbl(sim.store.data, "operations").get(op_name)
        if op is None or op.get("workState") != "pending":
            return
        work = copy.deepcopy(op["work"])
    databases: dict[str, str] | None = None
    error: str | None = None
    try:
        cl = _cluster(sim)
        kind = work["kind"]
        if kind == "create":
            databases = cl.create_instance(work["uid"], {"postgres": []})
        elif kind == "backup":
            cl.backup(work["uid"], work["dataKey"])
        elif kind == "restore":
            databases = cl.restore(work["uid"], work["dataKey"])
        elif kind == "clone":
            databases = cl.clone(work["srcUid"], work["uid"], work.get("pointInTime"))
        elif kind == "delete_instance":
            cl.drop_instance(work["uid"])
            for key in work.get("dataKeys", []):
                cl.delete_backup(key)
        elif kind == "delete_backup":
            cl.delete_backup(work["dataKey"])
        else:
            raise pgdata.PgError(f"unknown work {kind!r}")
    except Exception as e:
        if rt.stopping:
            return  # left pending: start() runs it again
        log.warning("Cloud SQL operation %s (%s) failed: %s", op_name, work.get("kind"), e)
        error = f"{work.get('what', 'The operation')} failed: {e}"
    with sim.store.mutate() as d:
        op = _tbl(d, "operations").get(op_name)
        if op is None:
            return
        op["workState"] = "failed" if error else "done"
        op["workDoneAt"] = now()
        if error:
            op["workError"] = error
        if databases is not None:
            inst = _tbl(d, "instances").get(work.get("resultFor") or "")
            if inst is not None and inst["uid"] == work["uid"]:
                inst["databases"] = databases


def _writer_targets(sim: Sim) -> list[str]:
    """Instances an application writes to.

    In a project where Cloud Run revisions receiving traffic are bound to Cloud SQL instances
    (a `cloudSqlInstance` volume, as Stagecoach's releases bind `uses_database` services), the
    application writes exactly to the bound instances: after a switch to a recovery instance the
    new rows land there and the old instance stops growing; drained services write nothing.
    Elsewhere: seeded and inserted instances (`appWriter`). A clone (drill scratch, recovery
    instance nobody was switched to) has no application connected, so the writer leaves it alone
    and its newest row says exactly how old its data is."""
    bound = run_v2.bound_connections(sim)
    with sim.store.lock:
        out = []
        for i in _tbl(sim.store.data, "instances").values():
            if i["state"] != "RUNNABLE" or outage.is_out(sim, i["region"]):
                continue  # (an application in a region that is out writes nothing)
            if i["project"] in bound:
                if f"{i['project']}:{i['region']}:{i['name']}" in bound[i["project"]]:
                    out.append(i["uid"])
            elif i.get("appWriter"):
                out.append(i["uid"])
        return out


def _last_slot(start_time: str, t: float) -> float:
    """The newest daily backup window start (HH:MM UTC) at or before t."""
    try:
        hh, mm = (int(x) for x in start_time.split(":", 1))
    except ValueError:
        hh, mm = 3, 0
    day = datetime.fromtimestamp(t, UTC).replace(hour=hh, minute=mm, second=0, microsecond=0)
    if day.timestamp() > t:
        day -= timedelta(days=1)
    return day.timestamp()


def _maintenance_loop(sim: Sim, rt: _Runtime) -> None:
    while not rt.stop_event.wait(0.5):
        try:
            _maintain_once(sim, rt)
        except Exception:
            if not rt.stop_event.is_set():
                log.exception("Cloud SQL maintenance")


def _maintain_once(sim: Sim, rt: _Runtime) -> None:
    t = now()
    launch: list[str] = []
    drop_backups: list[str] = []
    with sim.store.lock:
        d = sim.store.data
        changed = _refresh(d, t)
        instances = _tbl(d, "instances")
        backups = _tbl(d, "backups")
        runnable = [copy.deepcopy(i) for i in instances.values() if i["state"] == "RUNNABLE"]
        for inst in runnable:
            cfg = inst["settings"].get("backupConfiguration") or {}
            if not cfg.get("enabled"):
                continue
            slot = _last_slot(str(cfg.get("startTime") or "03:00"), t)
            key = _ikey(inst["project"], inst["name"])
            mine = [b for b in backups.values() if b["uid"] == inst["uid"]]
            automated = sorted(
                (b for b in mine if b["type"] == "AUTOMATED"), key=lambda b: -b["enqueuedTime"]
            )
            if (
                inst["createTime"] < slot
                and not any(b["windowStartTime"] >= slot for b in automated)
                and not _busy(d, key)
            ):
                op = _start_backup(sim, d, instances[key], "AUTOMATED", None, slot, None)
                launch.append(op["name"])
                changed = True
            retained = int((cfg.get("backupRetentionSettings") or {}).get("retainedBackups", 30))
            done = [b for b in automated if b["status"] in ("SUCCESSFUL", "FAILED")]
            for b in done[max(1, retained) :]:
                if not any(
                    o["status"] != DONE and o.get("backupKey") == b["key"]
                    for o in _tbl(d, "operations").values()
                ):
                    del backups[b["key"]]
                    drop_backups.append(b["dataKey"])
                    changed = True
        if changed:
            sim.store.save()
    for name in launch:
        _launch(sim, name)
    for key in drop_backups:
        rt.cluster.delete_backup(key)
    interval = pgdata.snapshot_seconds()
    for inst in runnable:
        uid = inst["uid"]
        if rt.stop_event.is_set():
            return
        if rt.cluster.paused(uid) or not inst.get("databases"):
            continue
        last = rt.last_snapshot.get(uid)
        if last is None:
            snaps = rt.cluster.snapshots(uid)
            last = snaps[-1].taken_at if snaps else 0.0
            rt.last_snapshot[uid] = last
        if t - last < interval:
            continue
        try:
            rt.cluster.snapshot(uid)
            rt.cluster.prune_snapshots(uid)
        except Exception as e:
            log.debug("snapshot of %s: %s", uid, e)
        rt.last_snapshot[uid] = t


# ---------------------------------------------------------------------------- resources


def _instance_json(sim: Sim, inst: dict[str, Any]) -> dict[str, Any]:
    p, n, r = inst["project"], inst["name"], inst["region"]
    settings = copy.deepcopy(inst["settings"])
    settings["settingsVersion"] = str(inst["settingsVersion"])
    out: dict[str, Any] = {
        "kind": "sql#instance",
        "name": n,
        "project": p,
        "state": inst["state"],
        "databaseVersion": inst["databaseVersion"],
        "region": r,
        "gceZone": f"{r}-a",
        "backendType": "SECOND_GEN",
        "instanceType": "CLOUD_SQL_INSTANCE",
        "connectionName": f"{p}:{r}:{n}",
        "createTime": rfc3339(inst["createTime"]),
        "ipAddresses": [{"type": "PRIMARY", "ipAddress": pgdata.HOST}],
        "settings": settings,
        "selfLink": f"{BASE}/projects/{p}/instances/{n}",
        "etag": inst["etag"],
    }
    if settings.get("availabilityType") == "REGIONAL":
        out["secondaryGceZone"] = f"{r}-b"
    rt = _runtime(sim)
    if rt.cluster.running:
        info = rt.cluster.connection_info()
        out["gcpsimConnection"] = {
            "host": info.host,
            "port": info.port,
            "user": info.user,
            "password": info.password,
            "databases": dict(inst.get("databases") or {}),
        }
    return out


def _backup_json(b: dict[str, Any]) -> dict[str, Any]:
    p, i = b["project"], b["instance"]
    out: dict[str, Any] = {
        "kind": "sql#backupRun",
        "id": b["id"],
        "instance": i,
        "status": b["status"],
        "type": b["type"],
        "enqueuedTime": rfc3339(b["enqueuedTime"]),
        "windowStartTime": rfc3339(b["windowStartTime"]),
        "location": "us",
        "backupKind": "SNAPSHOT",
        "databaseVersion": b.get("databaseVersion", DEFAULT_VERSION),
        "selfLink": f"{BASE}/projects/{p}/instances/{i}/backupRuns/{b['id']}",
    }
    if b.get("description"):
        out["description"] = b["description"]
    if b.get("startTime") is not None:
        out["startTime"] = rfc3339(b["startTime"])
    if b.get("endTime") is not None:
        out["endTime"] = rfc3339(b["endTime"])
    if b["status"] in ("FAILED", "DELETION_FAILED") and b.get("error"):
        out["error"] = {
            "kind": "sql#operationError",
            "code": "INTERNAL_ERROR",
            "message": b["error"],
        }
    return out


def _start_backup(
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
    backups = _tbl(d, "backups")
    bid = int(t * 1000)
    while _bkey(project, name, str(bid)) in backups:
        bid += 1
    key = _bkey(project, name, str(bid))
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
    ikey = _ikey(project, name)
    return _new_op(
        sim, d, project, "BACKUP_VOLUME", name, [ikey],
        {"kind": "backup", "uid": inst["uid"], "dataKey": data_key, "what": "Backup"},
        fault_error, backupId=str(bid), backupKey=key,
    )  # fmt: skip


def _page(items: list[Any], max_results: int | None, token: str | None) -> tuple[list[Any], str]:
    start = 0
    if token:
        try:
            raw = base64.urlsafe_b64decode(token.encode() + b"==").decode()
            if not raw.startswith("o:"):
                raise ValueError(raw)
            start = int(raw[2:])
        except ValueError:
            raise _invalid("Invalid request: the page token is not valid.") from None
    size = MAX_PAGE if not max_results or max_results <= 0 else min(max_results, MAX_PAGE)
    page = items[start : start + size]
    nxt = ""
    if start + size < len(items):
        nxt = base64.urlsafe_b64encode(f"o:{start + size}".encode()).decode().rstrip("=")
    return page, nxt


def _list_response(kind: str, items: list[Any], nxt: str) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind}
    if items:
        out["items"] = items
    if nxt:
        out["nextPageToken"] = nxt
    return out


def _retention_days(inst: dict[str, Any]) -> int:
    cfg = inst["settings"].get("backupConfiguration") or {}
    return int(cfg.get("transactionLogRetentionDays") or 7)


def _recovery_window(inst: dict[str, Any], t: float) -> tuple[float, float]:
    """(earliest, latest) recoverable time; 400 when point-in-time recovery is off (as
    `instances.getLatestRecoveryTime` and a point-in-time clone answer)."""
    cfg = inst["settings"].get("backupConfiguration") or {}
    if not cfg.get("pointInTimeRecoveryEnabled"):
        raise _invalid(
            f"Invalid request: point-in-time recovery is not enabled on instance {inst['name']}."
        )
    # The logs are kept `transactionLogRetentionDays` (1-7; up to 35 on Enterprise Plus); the
    # newest recoverable time is now here (the simulator ships its log continuously).
    return max(float(inst["createTime"]), t - _retention_days(inst) * 86400), t


def _get_instance(d: dict[str, Any], project: str, instance: str) -> dict[str, Any]:
    inst = _tbl(d, "instances").get(_ikey(project, instance))
    if inst is None:
        raise _no_instance()
    return inst


def _check_mutable(d: dict[str, Any], inst: dict[str, Any]) -> None:
    if _busy(d, _ikey(inst["project"], inst["name"])):
        raise _sql_error(409, MSG_BUSY, "operationInProgress")
    if inst["state"] != "RUNNABLE":
        raise _sql_error(400, MSG_NOT_RUNNING, "invalid")


def _unknown_fields(ctx: dict[str, Any], allowed: set[str], where: str) -> None:
    for k in ctx:
        if k not in allowed:
            raise _invalid(
                f"Invalid JSON payload received. Unknown name \"{k}\" at '{where}': "
                "Cannot find field."
            )


# ---------------------------------------------------------------------------- seeding


def seed_instance(
    sim: Sim,
    project: str,
    region: str,
    name: str,
    tier: str,
    availability: str,
    database: str,
    tables: list[str],
    deletion_protection: bool = False,
) -> None:
    """Create a RUNNABLE instance whose database `database` holds `tables` with rows spread
    over the last few days, and SEED_BACKUPS AUTOMATED SUCCESSFUL backups taken at the last
    daily backup windows (03:00 UTC), each a real copy holding the rows created before it.
    Does nothing if the instance exists."""
    cl = _cluster(sim)
    key = _ikey(project, name)
    t = now()
    slots = sorted(_last_slot("03:00", t) - 86400 * k for k in range(SEED_BACKUPS))
    first = slots[0] - 86400
    with sim.store.mutate() as d:
        if key in _tbl(d, "instances"):
            return
        settings = _default_settings(region, tier, availability or "ZONAL")
        settings["deletionProtectionEnabled"] = deletion_protection
        inst = _new_instance(d, project, name, region, settings, "PENDING_CREATE", first - 3600)
        inst["appWriter"] = True
        uid = inst["uid"]
    rng = random.Random(f"{sim.settings.seed}:{project}:{name}")
    try:
        cl.create_instance(uid, {"postgres": [], database: list(tables)})
        bounds = [first, *slots, t - 1]
        taken: list[tuple[float, str]] = []
        for k in range(len(bounds) - 1):
            lo, hi = bounds[k] + (300 if k else 0), bounds[k + 1]
            stamps = [rng.uniform(lo, hi) for _ in range(SEED_ROWS_PER_PHASE)]
            cl.insert_rows(uid, database, stamps)
            if k < len(slots):
                slot = slots[k]
                data_key = f"{uid}-{int(slot * 1000)}"
                cl.backup(uid, data_key, taken_at=slot)
                taken.append((slot, data_key))
        dbs = cl.databases(uid)
    except Exception:
        with sim.store.mutate() as d:
            _tbl(d, "instances").pop(key, None)
        cl.drop_instance(uid)
        raise
    with sim.store.mutate() as d:
        inst = _tbl(d, "instances")[key]
        inst["state"] = "RUNNABLE"
        inst["databases"] = dbs
        for slot, data_key in taken:
            bid = str(int(slot * 1000))
            bkey = _bkey(project, name, bid)
            _tbl(d, "backups")[bkey] = {
                "key": bkey, "project": project, "instance": name, "uid": uid, "id": bid,
                "dataKey": data_key, "status": "SUCCESSFUL", "type": "AUTOMATED",
                "description": None, "enqueuedTime": slot, "windowStartTime": slot,
                "startTime": slot + 1, "endTime": slot + 75,
                "databaseVersion": inst["databaseVersion"],
            }  # fmt: skip
            op = _new_op(
                sim, d, project, "BACKUP_VOLUME", name, [], None, None,
                backupId=bid, backupKey=bkey,
            )  # fmt: skip
            op.update(insertTime=slot, startTime=slot + 1, endTime=slot + 75, status=DONE)


# ---------------------------------------------------------------------------- router


def router(sim: Sim) -> APIRouter:
    r = APIRouter()
    store = sim.store

    def fault(method: str) -> str | None:
        return sim.faults.apply(f"sql.{method}", style="sql").op_error

    def read(fn: Callable[[dict[str, Any]], Any]) -> Any:
        with store.lock:
            d = store.data
            if _refresh(d):
                store.save()
            return fn(d)

    # ------------------------------------------------------------------ instances

    @r.get("/v1/projects/{project}/instances")
    def instances_list(
        project: str,
        max_results: int | None = Query(None, alias="maxResults"),
        page_token: str | None = Query(None, alias="pageToken"),
    ) -> dict[str, Any]:
        fault("instances.list")

        def fn(d: dict[str, Any]) -> dict[str, Any]:
            items = sorted(
                (i for i in _tbl(d, "instances").values() if i["project"] == project),
                key=lambda i: i["name"],
            )
            page, nxt = _page(items, max_results, page_token)
            return _list_response("sql#instancesList", [_instance_json(sim, i) for i in page], nxt)

        return dict(read(fn))

    @r.get("/v1/projects/{project}/instances/{instance}")
    def instances_get(project: str, instance: str) -> dict[str, Any]:
        fault("instances.get")
        return dict(read(lambda d: _instance_json(sim, _get_instance(d, project, instance))))

    @r.get("/v1/projects/{project}/instances/{instance}/getLatestRecoveryTime")
    def instances_latest_recovery_time(project: str, instance: str) -> dict[str, Any]:
        fault("instances.getLatestRecoveryTime")

        def fn(d: dict[str, Any]) -> dict[str, Any]:
            inst = _get_instance(d, project, instance)
            earliest, latest = _recovery_window(inst, now())
            return {
                "kind": "sql#getLatestRecoveryTime",
                "latestRecoveryTime": rfc3339(latest),
                "earliestRecoveryTime": rfc3339(earliest),
            }

        return dict(read(fn))

    @r.post("/v1/projects/{project}/instances")
    def instances_insert(project: str, body: dict[str, Any] | None = Body(None)) -> dict[str, Any]:
        op_error = fault("instances.insert")
        body = body or {}
        name = str(body.get("name") or "")
        if not name:
            raise _invalid("Invalid request: instance name is required.")
        if not NAME_RE.match(name):
            raise _invalid(
                f"Invalid request: instance name {name!r} must start with a lowercase letter "
                "and contain only lowercase letters, digits and hyphens."
            )
        region = str(body.get("region") or "us-central1")
        user_settings = body.get("settings") or {}
        if not isinstance(user_settings, dict):
            raise _invalid("Invalid request: settings must be an object.")
        tier = str(user_settings.get("tier") or "db-f1-micro")
        availability = str(user_settings.get("availabilityType") or "ZONAL")
        settings = _deep_merge(
            _default_settings(region, tier, availability),
            {k: v for k, v in user_settings.items() if k not in ("settingsVersion", "kind")},
        )
        with store.mutate() as d:
            _refresh(d)
            key = _ikey(project, name)
            if key in _tbl(d, "instances"):
                raise _sql_error(409, MSG_EXISTS, "instanceAlreadyExists")
            inst = _new_instance(
                d, project, name, region, settings, "PENDING_CREATE", now(),
                str(body.get("databaseVersion") or DEFAULT_VERSION),
            )  # fmt: skip
            inst["appWriter"] = True  # stands for an application using the new instance
            op = _new_op(
                sim, d, project, "CREATE", name, [key],
                {"kind": "create", "uid": inst["uid"], "resultFor": key,
                 "what": "Creating the instance"},
                op_error, destKey=key, destUid=inst["uid"],
            )  # fmt: skip
            out = _op_json(op)
        _launch(sim, op["name"])
        return out

    @r.patch("/v1/projects/{project}/instances/{instance}")
    def instances_patch(
        project: str, instance: str, body: dict[str, Any] | None = Body(None)
    ) -> dict[str, Any]:
        op_error = fault("instances.patch")
        body = body or {}
        patch = body.get("settings") or {}
        if not isinstance(patch, dict):
            raise _invalid("Invalid request: settings must be an object.")
        patch = {k: v for k, v in patch.items() if k not in ("settingsVersion", "kind")}
        with store.mutate() as d:
            _refresh(d)
            inst = _get_instance(d, project, instance)
            _check_mutable(d, inst)
            op = _new_op(
                sim, d, project, "UPDATE", instance, [_ikey(project, instance)], None,
                op_error, patch=patch,
            )  # fmt: skip
            out = _op_json(op)
        return out

    @r.delete("/v1/projects/{project}/instances/{instance}")
    def instances_delete(project: str, instance: str) -> dict[str, Any]:
        op_error = fault("instances.delete")
        with store.mutate() as d:
            _refresh(d)
            inst = _get_instance(d, project, instance)
            key = _ikey(project, instance)
            mine = {k for k, b in _tbl(d, "backups").items() if b["uid"] == inst["uid"]}
            in_use = any(  # e.g. a restore of one of its backups into another instance
                o["status"] != DONE and o.get("backupKey") in mine
                for o in _tbl(d, "operations").values()
            )
            if _busy(d, key) or in_use:
                raise _sql_error(409, MSG_BUSY, "operationInProgress")
            if inst["settings"].get("deletionProtectionEnabled"):
                # Clones inherit the flag from their source (settings are copied on clone).
                raise _sql_error(400, MSG_PROTECTED, "instanceProtected")
            data_keys = [
                b["dataKey"] for b in _tbl(d, "backups").values() if b["uid"] == inst["uid"]
            ]
            op = _new_op(
                sim, d, project, "DELETE", instance, [key],
                {"kind": "delete_instance", "uid": inst["uid"], "dataKeys": data_keys,
                 "what": "Deleting the instance"},
                op_error,
            )  # fmt: skip
            if not op_error:
                inst["state"] = "PENDING_DELETE"
            out = _op_json(op)
        _launch(sim, op["name"])
        return out

    @r.post("/v1/projects/{project}/instances/{instance}/clone")
    def instances_clone(
        project: str, instance: str, body: dict[str, Any] | None = Body(None)
    ) -> dict[str, Any]:
        op_error = fault("instances.clone")
        ctx = (body or {}).get("cloneContext")
        if not isinstance(ctx, dict):
            raise _invalid("Invalid request: cloneContext is required.")
        _unknown_fields(ctx, CLONE_CONTEXT_FIELDS, "body.clone_context")
        dest = str(ctx.get("destinationInstanceName") or "")
        if not dest:
            raise _invalid("Invalid request: cloneContext.destinationInstanceName is required.")
        if not NAME_RE.match(dest):
            raise _invalid(f"Invalid request: instance name {dest!r} is not valid.")
        dest_project = str(ctx.get("destinationProject") or project)
        pit: float | None = None
        if ctx.get("pointInTime"):
            try:
                pit = parse_rfc3339(str(ctx["pointInTime"]))
            except ValueError:
                raise _invalid(
                    f"Invalid value at 'body.clone_context.point_in_time' "
                    f"(type.googleapis.com/google.protobuf.Timestamp), {ctx['pointInTime']!r}"
                ) from None
        with store.mutate() as d:
            _refresh(d)
            src = _get_instance(d, project, instance)
            _check_mutable(d, src)
            dkey = _ikey(dest_project, dest)
            if dkey in _tbl(d, "instances"):
                raise _sql_error(409, MSG_EXISTS, "instanceAlreadyExists")
            t = now()
            if pit is not None:
                earliest, latest = _recovery_window(src, t)
                days = _retention_days(src)
                if pit > latest:
                    raise _invalid(
                        f"Invalid request: the point in time {rfc3339(pit)} is in the future."
                    )
                if pit < earliest:
                    raise _invalid(
                        f"Invalid request: the point in time {rfc3339(pit)} is outside the "
                        f"recoverable window; the earliest recoverable time is "
                        f"{rfc3339(earliest)} (transaction logs are kept {days} days)."
                    )
            new = _new_instance(
                d, dest_project, dest, src["region"], copy.deepcopy(src["settings"]),
                "PENDING_CREATE", t, src["databaseVersion"],
            )  # fmt: skip
            op = _new_op(
                sim, d, project, "CLONE", instance, [_ikey(project, instance), dkey],
                {"kind": "clone", "srcUid": src["uid"], "uid": new["uid"], "pointInTime": pit,
                 "resultFor": dkey, "what": "Cloning the instance"},
                op_error, destKey=dkey, destUid=new["uid"],
            )  # fmt: skip
            out = _op_json(op)
        _launch(sim, op["name"])
        return out

    @r.post("/v1/projects/{project}/instances/{instance}/restoreBackup")
    def instances_restore_backup(
        project: str, instance: str, body: dict[str, Any] | None = Body(None)
    ) -> dict[str, Any]:
        op_error = fault("instances.restoreBackup")
        body = body or {}
        given = [k for k in ("restoreBackupContext", "backup", "backupdrBackup") if body.get(k)]
        if len(given) > 1:
            raise _invalid(
                "Invalid request: only one of restoreBackupContext, backup or backupdrBackup "
                "may be set."
            )
        if given and given[0] != "restoreBackupContext":
            raise _invalid(
                f"Invalid request: gcpsim restores only from restoreBackupContext "
                f"(backup runs), not from {given[0]}."
            )
        ctx = body.get("restoreBackupContext")
        if not isinstance(ctx, dict) or not ctx.get("backupRunId"):
            raise _invalid("Invalid request: restoreBackupContext.backupRunId is required.")
        _unknown_fields(ctx, RESTORE_CONTEXT_FIELDS, "body.restore_backup_context")
        src_instance = str(ctx.get("instanceId") or instance)
        src_project = str(ctx.get("project") or project)
        with store.mutate() as d:
            _refresh(d)
            target = _get_instance(d, project, instance)
            _check_mutable(d, target)
            bkey = _bkey(src_project, src_instance, str(ctx["backupRunId"]))
            b = _tbl(d, "backups").get(bkey)
            if b is None:
                raise _sql_error(404, MSG_NO_BACKUP, "backupRunDoesNotExist")
            if b["status"] != "SUCCESSFUL":
                raise _invalid(
                    f"Invalid request: backup run {b['id']} cannot be restored because its "
                    f"status is {b['status']}; only SUCCESSFUL backups can be restored."
                )
            key = _ikey(project, instance)
            op = _new_op(
                sim, d, project, "RESTORE_VOLUME", instance, [key],
                {"kind": "restore", "uid": target["uid"], "dataKey": b["dataKey"],
                 "resultFor": key, "what": "Restoring the backup"},
                op_error, backupKey=bkey,
            )  # fmt: skip
            out = _op_json(op)
        _launch(sim, op["name"])
        return out

    # ------------------------------------------------------------------ backupRuns

    @r.post("/v1/projects/{project}/instances/{instance}/backupRuns")
    def backup_runs_insert(
        project: str, instance: str, body: dict[str, Any] | None = Body(None)
    ) -> dict[str, Any]:
        op_error = fault("backupRuns.insert")
        body = body or {}
        description = body.get("description")
        with store.mutate() as d:
            _refresh(d)
            inst = _get_instance(d, project, instance)
            _check_mutable(d, inst)
            op = _start_backup(
                sim, d, inst, "ON_DEMAND", str(description) if description else None, None,
                op_error,
            )  # fmt: skip
            out = _op_json(op)
        _launch(sim, op["name"])
        return out

    @r.get("/v1/projects/{project}/instances/{instance}/backupRuns")
    def backup_runs_list(
        project: str,
        instance: str,
        max_results: int | None = Query(None, alias="maxResults"),
        page_token: str | None = Query(None, alias="pageToken"),
    ) -> dict[str, Any]:
        fault("backupRuns.list")

        def fn(d: dict[str, Any]) -> dict[str, Any]:
            if instance != "-":
                _get_instance(d, project, instance)
            items = sorted(
                (
                    b
                    for b in _tbl(d, "backups").values()
                    if b["project"] == project and instance in ("-", b["instance"])
                ),
                key=lambda b: (b["enqueuedTime"], int(b["id"])),
                reverse=True,
            )
            page, nxt = _page(items, max_results, page_token)
            return _list_response("sql#backupRunsList", [_backup_json(b) for b in page], nxt)

        return dict(read(fn))

    @r.get("/v1/projects/{project}/instances/{instance}/backupRuns/{backup_id}")
    def backup_runs_get(project: str, instance: str, backup_id: str) -> dict[str, Any]:
        fault("backupRuns.get")

        def fn(d: dict[str, Any]) -> dict[str, Any]:
            _get_instance(d, project, instance)
            b = _tbl(d, "backups").get(_bkey(project, instance, backup_id))
            if b is None:
                raise _sql_error(404, MSG_NO_BACKUP, "backupRunDoesNotExist")
            return _backup_json(b)

        return dict(read(fn))

    @r.delete("/v1/projects/{project}/instances/{instance}/backupRuns/{backup_id}")
    def backup_runs_delete(project: str, instance: str, backup_id: str) -> dict[str, Any]:
        op_error = fault("backupRuns.delete")
        with store.mutate() as d:
            _refresh(d)
            inst = _get_instance(d, project, instance)
            key = _ikey(project, instance)
            bkey = _bkey(project, instance, backup_id)
            b = _tbl(d, "backups").get(bkey)
            if b is None:
                raise _sql_error(404, MSG_NO_BACKUP, "backupRunDoesNotExist")
            in_use = any(
                o["status"] != DONE and o.get("backupKey") == bkey
                for o in _tbl(d, "operations").values()
            )
            if _busy(d, key) or in_use:
                raise _sql_error(409, MSG_BUSY, "operationInProgress")
            op = _new_op(
                sim, d, project, "DELETE_VOLUME", instance, [key],
                {"kind": "delete_backup", "uid": inst["uid"], "dataKey": b["dataKey"],
                 "what": "Deleting the backup"},
                op_error, backupId=b["id"], backupKey=bkey,
            )  # fmt: skip
            if not op_error:
                b["statusBeforeDelete"] = b["status"]
                b["status"] = "DELETION_PENDING"
            out = _op_json(op)
        _launch(sim, op["name"])
        return out

    # ------------------------------------------------------------------ operations

    @r.get("/v1/projects/{project}/operations/{operation}")
    def operations_get(project: str, operation: str) -> dict[str, Any]:
        fault("operations.get")

        def fn(d: dict[str, Any]) -> dict[str, Any]:
            op = _tbl(d, "operations").get(operation)
            if op is None or op["project"] != project:
                raise _sql_error(404, MSG_NO_OPERATION, "operationDoesNotExist")
            return _op_json(op)

        return dict(read(fn))

    @r.get("/v1/projects/{project}/operations")
    def operations_list(
        project: str,
        instance: str | None = None,
        max_results: int | None = Query(None, alias="maxResults"),
        page_token: str | None = Query(None, alias="pageToken"),
    ) -> dict[str, Any]:
        fault("operations.list")

        def fn(d: dict[str, Any]) -> dict[str, Any]:
            if instance:
                _get_instance(d, project, instance)
            items = sorted(
                (
                    o
                    for o in _tbl(d, "operations").values()
                    if o["project"] == project and (not instance or o["targetId"] == instance)
                ),
                key=lambda o: o["insertTime"],
                reverse=True,
            )
            page, nxt = _page(items, max_results, page_token)
            return _list_response("sql#operationsList", [_op_json(o) for o in page], nxt)

        return dict(read(fn))

    # ------------------------------------------------------------------ gcpsim controls

    @r.post("/_sim/sql/{project}/{instance}/writer")
    def sim_writer(project: str, instance: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """Connect (or disconnect) the simulated application's row writer to an instance.
        Seeded and inserted instances have it; clones start without (nothing uses them yet)."""
        enabled = body.get("enabled")
        if not isinstance(enabled, bool):
            raise ApiError(400, "enabled must be true or false", style="sql")
        with store.mutate() as d:
            inst = _tbl(d, "instances").get(_ikey(project, instance))
            if inst is None:
                raise _no_instance()
            inst["appWriter"] = enabled
        return {"instance": instance, "writer": enabled}

    # ------------------------------------------------------------------ gcpsim summary

    @r.get("/_sim/sql")
    def sim_summary() -> dict[str, Any]:
        def fn(d: dict[str, Any]) -> dict[str, Any]:
            return {
                "instances": [copy.deepcopy(i) for i in _tbl(d, "instances").values()],
                "backups": [_backup_json(b) for b in _tbl(d, "backups").values()],
                "operations": [_op_json(o) for o in _tbl(d, "operations").values()],
            }

        snap = read(fn)
        rt = _runtime(sim)
        running = rt.cluster.running
        instances = []
        for inst in snap["instances"]:
            entry = {
                "project": inst["project"],
                "name": inst["name"],
                "state": inst["state"],
                "uid": inst["uid"],
                "databases": inst.get("databases") or {},
            }
            if running and inst["state"] == "RUNNABLE":
                entry["rows"] = rt.cluster.row_stats(inst["uid"])
                entry["pitrSnapshots"] = len(rt.cluster.snapshots(inst["uid"]))
            instances.append(entry)
        writer = rt.cluster.writer
        return {
            "postgres": {
                "running": running,
                "host": pgdata.HOST,
                "port": rt.cluster.port,
                "user": pgdata.SUPERUSER,
                "dataDir": str(rt.cluster.data),
                "startupSeconds": round(rt.cluster.startup_seconds, 3),
            },
            "writer": {
                "rowsPerSecond": pgdata.rows_per_second(),
                "rowsWritten": writer.rows_written if writer else 0,
            },
            "snapshotSeconds": pgdata.snapshot_seconds(),
            "instances": instances,
            "backups": snap["backups"],
            "operations": snap["operations"],
        }

    return r
