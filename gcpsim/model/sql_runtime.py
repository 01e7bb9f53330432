"""Cloud SQL Admin API v1 behind the routes (gcpsim.api.sql_*): the data work, backed by real
PostgreSQL data (gcpsim.pg).

Served for `googleapiclient.discovery.build("sqladmin", "v1", ...)`:
instances get/list/insert/patch/delete/clone/restoreBackup/promoteReplica, backupRuns
insert/list/get/delete, operations get/list, plus `GET /_sim/sql` (a summary with row counts).
Response shapes follow the contract (kind fields, int64 as strings, RFC 3339 times);
`instances.get` adds the gcpsim-only `gcpsimConnection` {host, port, user, password,
databases: {name: pg database}}.

Operations go PENDING -> RUNNING -> DONE over `sim.settings.sql_op_seconds` (the first fifth
PENDING), computed lazily from stored times on every read (gcpsim.model.sql). The data work of a
mutating call (backup copy, restore, clone, create, delete) runs in a background thread here;
the operation only becomes DONE once that work finished, and ends `DONE` + `error`
(INTERNAL_ERROR) when it failed or when an `op_error` fault hit the call (then the work is
skipped). Work still pending when gcpsim stopped is started again by `start()`.

One operation at a time per instance: a mutating call on an instance with a PENDING/RUNNING
operation gets the real 409 `operationInProgress` body. A clone locks its source and its new
instance, which stays PENDING_CREATE until the clone is DONE (removed again if it failed).
A deleted instance takes its backups with it (as on GCP without a final backup).

`start(sim)` also runs a maintenance thread: it finalizes operations, takes the PITR snapshots
(gcpsim.pg.pitr), and takes the AUTOMATED daily backup at `backupConfiguration.startTime`
(UTC), keeping `retainedBackups` of them.
"""

from __future__ import annotations

import atexit
import copy
import logging
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from gcpsim.model import outage, run_queries
from gcpsim.model.sql import (
    DONE,
    REPLICA,
    SEED_BACKUPS,
    SEED_ROWS_PER_PHASE,
    backup_key,
    busy,
    default_settings,
    instance_key,
    new_instance,
    new_op,
    refresh,
    start_backup,
    tbl,
)
from gcpsim.model.sql_replicas import is_replica, replica_settings, replication_targets
from gcpsim.pg import sql as pgsql
from gcpsim.pg.cluster import PgCluster
from gcpsim.sim import Sim
from gcpsim.store import now

log = logging.getLogger("gcpsim.sql")

# ---------------------------------------------------------------------------- runtime


class Runtime:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.cluster = PgCluster(sim.store.dir / "pg")
        self.lock = threading.RLock()
        self.started = False
        self.stopping = False
        self.stop_event = threading.Event()
        self.maintenance: threading.Thread | None = None
        self.last_snapshot: dict[str, float] = {}
        self.replication = threading.Lock()  # a replication tick, or a promotion


_RUNTIMES: dict[int, Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def get_runtime(sim: Sim) -> Runtime:
    with _RUNTIMES_LOCK:
        rt = _RUNTIMES.get(id(sim))
        if rt is None or rt.sim is not sim:
            rt = _RUNTIMES[id(sim)] = Runtime(sim)
        return rt


def start(sim: Sim) -> None:
    """Start the embedded Postgres (or re-attach to it), drop data the state no longer knows,
    resume unfinished operation work, and start the row writer and the maintenance thread
    (operations, PITR snapshots, automated backups). Idempotent."""
    rt = get_runtime(sim)
    with rt.lock:
        if rt.started:
            return
        rt.stopping = False
        rt.stop_event.clear()
        rt.cluster.start()
        with sim.store.lock:
            d = sim.store.data
            keep_uids = {i["uid"] for i in tbl(d, "instances").values()}
            keep_backups = {b["dataKey"] for b in tbl(d, "backups").values()}
            pending = [
                o["name"] for o in tbl(d, "operations").values() if o.get("workState") == "pending"
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
        launch(sim, name)
    log.info(
        "Cloud SQL data: Postgres on %s:%s (ready in %.2fs)",
        pgsql.HOST,
        rt.cluster.port,
        rt.cluster.startup_seconds,
    )


def stop(sim: Sim) -> None:
    """Stop the threads and shut Postgres down cleanly. Idempotent."""
    rt = get_runtime(sim)
    with rt.lock:
        rt.stopping = True
        rt.stop_event.set()
        if rt.maintenance is not None:
            rt.maintenance.join(timeout=30)
            rt.maintenance = None
        if rt.started or rt.cluster.running:
            rt.cluster.stop()
        rt.started = False


def get_cluster(sim: Sim) -> PgCluster:
    rt = get_runtime(sim)
    if not rt.started:
        start(sim)
    return rt.cluster


def configure(
    *, rows_per_second: float | None = None, snapshot_seconds: float | None = None
) -> None:
    """Row writer rate and PITR snapshot interval (see gcpsim.pgsql.configure)."""
    pgsql.configure(rows_per_second=rows_per_second, snapshot_seconds=snapshot_seconds)


# ---------------------------------------------------------------------------- work


def launch(sim: Sim, op_name: str) -> None:
    threading.Thread(
        target=_do_work, args=(sim, op_name), name=f"gcpsim-sql-{op_name[:8]}", daemon=True
    ).start()


def _do_work(sim: Sim, op_name: str) -> None:
    rt = get_runtime(sim)
    with sim.store.lock:
        op = tbl(sim.store.data, "operations").get(op_name)
        if op is None or op.get("workState") != "pending":
            return
        work = copy.deepcopy(op["work"])
    databases: dict[str, str] | None = None
    copied_at: float | None = None
    error: str | None = None
    try:
        cl = get_cluster(sim)
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
        elif kind == "create_replica":
            copied_at = now()  # rows created before this are in the copy (or replayed later)
            databases = cl.create_replica(work["srcUid"], work["uid"])
        elif kind == "promote":
            with rt.replication:  # no replication tick half-way through the promotion
                databases = cl.promote(work["uid"])
        else:
            raise pgsql.PgError(f"unknown work {kind!r}")
    except Exception as e:
        if rt.stopping:
            return  # left pending: start() runs it again
        log.warning("Cloud SQL operation %s (%s) failed: %s", op_name, work.get("kind"), e)
        error = f"{work.get('what', 'The operation')} failed: {e}"
    with sim.store.mutate() as d:
        op = tbl(d, "operations").get(op_name)
        if op is None:
            return
        op["workState"] = "failed" if error else "done"
        op["workDoneAt"] = now()
        if error:
            op["workError"] = error
        if databases is not None:
            inst = tbl(d, "instances").get(work.get("resultFor") or "")
            if inst is not None and inst["uid"] == work["uid"]:
                inst["databases"] = databases
                if copied_at is not None:
                    inst["replicatedUpTo"] = copied_at


def _writer_targets(sim: Sim) -> list[str]:
    """Instances an application writes to.

    In a project where Cloud Run revisions receiving traffic are bound to Cloud SQL instances
    (a `cloudSqlInstance` volume, as Stagecoach's releases bind `uses_database` services), the
    application writes exactly to the bound instances: after a switch to a recovery instance the
    new rows land there and the old instance stops growing; drained services write nothing.
    Elsewhere: seeded and inserted instances (`appWriter`). A clone (drill scratch, recovery
    instance nobody was switched to) has no application connected, so the writer leaves it alone
    and its newest row says exactly how old its data is."""
    bound = run_queries.bound_connections(sim)
    with sim.store.lock:
        out = []
        for i in tbl(sim.store.data, "instances").values():
            if i["state"] != "RUNNABLE" or outage.is_out(sim, i["region"]):
                continue  # (an application in a region that is out writes nothing)
            if i.get("instanceType") == REPLICA:
                continue  # read-only
            if i["project"] in bound:
                if f"{i['project']}:{i['region']}:{i['name']}" in bound[i["project"]]:
                    out.append(i["uid"])
            elif i.get("appWriter"):
                out.append(i["uid"])
        return out


def last_slot(start_time: str, t: float) -> float:
    """The newest daily backup window start (HH:MM UTC) at or before t."""
    try:
        hh, mm = (int(x) for x in start_time.split(":", 1))
    except ValueError:
        hh, mm = 3, 0
    day = datetime.fromtimestamp(t, UTC).replace(hour=hh, minute=mm, second=0, microsecond=0)
    if day.timestamp() > t:
        day -= timedelta(days=1)
    return day.timestamp()


def _maintenance_loop(sim: Sim, rt: Runtime) -> None:
    while not rt.stop_event.wait(0.5):
        try:
            _maintain_once(sim, rt)
        except Exception:
            if not rt.stop_event.is_set():
                log.exception("Cloud SQL maintenance")


def _maintain_once(sim: Sim, rt: Runtime) -> None:
    t = now()
    to_launch: list[str] = []
    drop_backups: list[str] = []
    with sim.store.lock:
        d = sim.store.data
        changed = refresh(d, t)
        instances = tbl(d, "instances")
        backups = tbl(d, "backups")
        runnable = [copy.deepcopy(i) for i in instances.values() if i["state"] == "RUNNABLE"]
        for inst in runnable:
            cfg = inst["settings"].get("backupConfiguration") or {}
            if not cfg.get("enabled"):
                continue
            slot = last_slot(str(cfg.get("startTime") or "03:00"), t)
            key = instance_key(inst["project"], inst["name"])
            mine = [b for b in backups.values() if b["uid"] == inst["uid"]]
            automated = sorted(
                (b for b in mine if b["type"] == "AUTOMATED"), key=lambda b: -b["enqueuedTime"]
            )
            if (
                inst["createTime"] < slot
                and not any(b["windowStartTime"] >= slot for b in automated)
                and not busy(d, key)
            ):
                op = start_backup(sim, d, instances[key], "AUTOMATED", None, slot, None)
                to_launch.append(op["name"])
                changed = True
            retained = int((cfg.get("backupRetentionSettings") or {}).get("retainedBackups", 30))
            done = [b for b in automated if b["status"] in ("SUCCESSFUL", "FAILED")]
            for b in done[max(1, retained) :]:
                if not any(
                    o["status"] != DONE and o.get("backupKey") == b["key"]
                    for o in tbl(d, "operations").values()
                ):
                    del backups[b["key"]]
                    drop_backups.append(b["dataKey"])
                    changed = True
        if changed:
            sim.store.save()
    for name in to_launch:
        launch(sim, name)
    for key in drop_backups:
        rt.cluster.delete_backup(key)
    replicate_once(sim, rt, t)
    interval = pgsql.snapshot_seconds()
    for inst in runnable:
        uid = inst["uid"]
        if rt.stop_event.is_set():
            return
        if (
            rt.cluster.paused(uid)
            or not inst.get("databases")
            or inst.get("instanceType") == REPLICA
        ):
            continue  # (a replica's data is its primary's: no snapshots of its own)
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


def replicate_once(sim: Sim, rt: Runtime, t: float) -> None:
    """Bring every replica up to `t - replica_lag_seconds` (gcpsim.model.sql_replicas):
    nothing moves while the primary's or the replica's region is out."""
    lag = max(0.0, float(sim.settings.replica_lag_seconds))
    with sim.store.lock:
        pairs = [
            (key, r["uid"], float(r["replicatedUpTo"]), m["uid"])
            for key, r, m in replication_targets(sim.store.data)
            if not outage.is_out(sim, m["region"]) and not outage.is_out(sim, r["region"])
        ]
    hi = t - lag
    done: list[tuple[str, str]] = []
    for key, uid, upto, primary_uid in pairs:
        if hi <= upto or rt.stop_event.is_set():
            continue
        with rt.replication:
            with sim.store.lock:  # a promotion may have started meanwhile
                r = tbl(sim.store.data, "instances").get(key)
                if r is None or r["uid"] != uid or r.get("promoting") or not is_replica(r):
                    continue
            try:
                rt.cluster.replicate(primary_uid, uid, upto - pgsql.REPLAY_MARGIN_SECONDS, hi)
            except Exception as e:
                log.debug("replication into %s: %s", uid, e)
                continue
            done.append((key, uid))
    if done:
        with sim.store.mutate() as d:
            for key, uid in done:
                r = tbl(d, "instances").get(key)
                if r is not None and r["uid"] == uid and is_replica(r):
                    r["replicatedUpTo"] = hi


# ---------------------------------------------------------------------------- seeding


@contextmanager
def _forgotten_on_failure(sim: Sim, cl: PgCluster, key: str, uid: str) -> Iterator[None]:
    """If the block raises, forget the half-seeded instance `key` and drop its data."""
    try:
        yield
    except Exception:
        with sim.store.mutate() as d:
            tbl(d, "instances").pop(key, None)
        cl.drop_instance(uid)
        raise


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
    cl = get_cluster(sim)
    key = instance_key(project, name)
    t = now()
    slots = sorted(last_slot("03:00", t) - 86400 * k for k in range(SEED_BACKUPS))
    first = slots[0] - 86400
    with sim.store.mutate() as d:
        if key in tbl(d, "instances"):
            return
        settings = default_settings(region, tier, availability or "ZONAL")
        settings["deletionProtectionEnabled"] = deletion_protection
        inst = new_instance(d, project, name, region, settings, "PENDING_CREATE", first - 3600)
        inst["appWriter"] = True
        uid = inst["uid"]
    rng = random.Random(f"{sim.settings.seed}:{project}:{name}")
    with _forgotten_on_failure(sim, cl, key, uid):
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
    with sim.store.mutate() as d:
        inst = tbl(d, "instances")[key]
        inst["state"] = "RUNNABLE"
        inst["databases"] = dbs
        for slot, data_key in taken:
            bid = str(int(slot * 1000))
            bkey = backup_key(project, name, bid)
            tbl(d, "backups")[bkey] = {
                "key": bkey, "project": project, "instance": name, "uid": uid, "id": bid,
                "dataKey": data_key, "status": "SUCCESSFUL", "type": "AUTOMATED",
                "description": None, "enqueuedTime": slot, "windowStartTime": slot,
                "startTime": slot + 1, "endTime": slot + 75,
                "databaseVersion": inst["databaseVersion"],
            }  # fmt: skip
            op = new_op(
                sim, d, project, "BACKUP_VOLUME", name, [], None, None,
                backupId=bid, backupKey=bkey,
            )  # fmt: skip
            op.update(insertTime=slot, startTime=slot + 1, endTime=slot + 75, status=DONE)


def seed_replica(sim: Sim, project: str, primary: str, name: str, region: str) -> None:
    """Create a RUNNABLE read replica `name` of `primary` in `region` (a live copy, then
    replicating; gcpsim.model.sql_replicas). Does nothing if `name` exists."""
    cl = get_cluster(sim)
    key = instance_key(project, name)
    with sim.store.mutate() as d:
        if key in tbl(d, "instances"):
            return
        src = tbl(d, "instances")[instance_key(project, primary)]
        settings = replica_settings(src, region, {})
        inst = new_instance(
            d, project, name, region, settings, "PENDING_CREATE", now(), src["databaseVersion"]
        )
        inst.update(
            instanceType=REPLICA,
            masterInstanceName=primary,
            replicaConfiguration={"kind": "sql#replicaConfiguration", "failoverTarget": False},
        )
        uid, src_uid = inst["uid"], src["uid"]
    copied_at = now()
    with _forgotten_on_failure(sim, cl, key, uid):
        dbs = cl.create_replica(src_uid, uid)
    with sim.store.mutate() as d:
        inst = tbl(d, "instances")[key]
        inst.update(state="RUNNABLE", databases=dbs, replicatedUpTo=copied_at)
