"""Cloud SQL Admin v1 `operations` (get, list) and gcpsim's own Cloud SQL controls:
`POST /_sim/sql/{project}/{instance}/writer` and `GET /_sim/sql` (a summary with row counts)."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter, Body, Query

from gcpsim.api.deps import SimDep
from gcpsim.api.sql_common import backup_json, list_page, op_json, read, sql_fault
from gcpsim.errors import ApiError
from gcpsim.model.sql import (
    MSG_NO_OPERATION,
    PRIMARY,
    get_instance,
    instance_key,
    no_instance,
    sql_error,
    tbl,
)
from gcpsim.model.sql_runtime import get_runtime
from gcpsim.pg import sql as pgsql
from gcpsim.store import rfc3339

router = APIRouter()


@router.get("/v1/projects/{project}/operations/{operation}")
def operations_get(sim: SimDep, project: str, operation: str) -> dict[str, Any]:
    sql_fault(sim, "operations.get")

    def fn(d: dict[str, Any]) -> dict[str, Any]:
        op = tbl(d, "operations").get(operation)
        if op is None or op["project"] != project:
            raise sql_error(404, MSG_NO_OPERATION, "operationDoesNotExist")
        return op_json(op)

    return dict(read(sim, fn))


@router.get("/v1/projects/{project}/operations")
def operations_list(
    sim: SimDep,
    project: str,
    instance: str | None = None,
    max_results: int | None = Query(None, alias="maxResults"),
    page_token: str | None = Query(None, alias="pageToken"),
) -> dict[str, Any]:
    sql_fault(sim, "operations.list")

    def fn(d: dict[str, Any]) -> dict[str, Any]:
        if instance:
            get_instance(d, project, instance)
        items = sorted(
            (
                o
                for o in tbl(d, "operations").values()
                if o["project"] == project and (not instance or o["targetId"] == instance)
            ),
            key=lambda o: o["insertTime"],
            reverse=True,
        )
        return list_page("sql#operationsList", items, op_json, max_results, page_token)

    return dict(read(sim, fn))


# ------------------------------------------------------------------ gcpsim controls


@router.post("/_sim/sql/{project}/{instance}/writer")
def sim_writer(
    sim: SimDep, project: str, instance: str, body: dict[str, Any] = Body(...)
) -> dict[str, Any]:
    """Connect (or disconnect) the simulated application's row writer to an instance.
    Seeded and inserted instances have it; clones start without (nothing uses them yet)."""
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise ApiError(400, "enabled must be true or false", style="sql")
    with sim.store.mutate() as d:
        inst = tbl(d, "instances").get(instance_key(project, instance))
        if inst is None:
            raise no_instance()
        inst["appWriter"] = enabled
    return {"instance": instance, "writer": enabled}


# ------------------------------------------------------------------ gcpsim summary


@router.get("/_sim/sql")
def sim_summary(sim: SimDep) -> dict[str, Any]:
    def fn(d: dict[str, Any]) -> dict[str, Any]:
        return {
            "instances": [copy.deepcopy(i) for i in tbl(d, "instances").values()],
            "backups": [backup_json(b) for b in tbl(d, "backups").values()],
            "operations": [op_json(o) for o in tbl(d, "operations").values()],
        }

    snap = read(sim, fn)
    rt = get_runtime(sim)
    running = rt.cluster.running
    instances = []
    for inst in snap["instances"]:
        entry = {
            "project": inst["project"],
            "name": inst["name"],
            "state": inst["state"],
            "uid": inst["uid"],
            "databases": inst.get("databases") or {},
            "instanceType": inst.get("instanceType") or PRIMARY,
        }
        if inst.get("masterInstanceName"):
            entry["masterInstanceName"] = inst["masterInstanceName"]
        if inst.get("replicatedUpTo") is not None:
            entry["replicatedUpTo"] = rfc3339(float(inst["replicatedUpTo"]))
        if running and inst["state"] == "RUNNABLE":
            entry["rows"] = rt.cluster.row_stats(inst["uid"])
            entry["pitrSnapshots"] = len(rt.cluster.snapshots(inst["uid"]))
        instances.append(entry)
    writer = rt.cluster.writer
    return {
        "postgres": {
            "running": running,
            "host": pgsql.HOST,
            "port": rt.cluster.port,
            "user": pgsql.SUPERUSER,
            "dataDir": str(rt.cluster.data),
            "startupSeconds": round(rt.cluster.startup_seconds, 3),
        },
        "writer": {
            "rowsPerSecond": pgsql.rows_per_second(),
            "rowsWritten": writer.rows_written if writer else 0,
        },
        "snapshotSeconds": pgsql.snapshot_seconds(),
        "instances": instances,
        "backups": snap["backups"],
        "operations": snap["operations"],
    }
