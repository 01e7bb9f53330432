"""Cloud SQL Admin v1 `backupRuns`: insert, list, get, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query

from gcpsim.api.deps import SimDep
from gcpsim.api.sql_common import backup_json, list_page, read, sql_fault, start_op
from gcpsim.model import sql_replicas
from gcpsim.model.sql import (
    DONE,
    MSG_BUSY,
    MSG_NO_BACKUP,
    backup_key,
    busy,
    check_mutable,
    get_instance,
    instance_key,
    new_op,
    sql_error,
    start_backup,
    tbl,
)

router = APIRouter()


@router.post("/v1/projects/{project}/instances/{instance}/backupRuns")
def backup_runs_insert(
    sim: SimDep, project: str, instance: str, body: dict[str, Any] | None = Body(None)
) -> dict[str, Any]:
    op_error = sql_fault(sim, "backupRuns.insert")
    body = body or {}
    description = str(body["description"]) if body.get("description") else None

    def record(d: dict[str, Any]) -> dict[str, Any]:
        inst = get_instance(d, project, instance)
        check_mutable(d, inst)
        sql_replicas.check_not_replica(inst, "backupRuns.insert")
        return start_backup(sim, d, inst, "ON_DEMAND", description, None, op_error)

    return start_op(sim, record)


@router.get("/v1/projects/{project}/instances/{instance}/backupRuns")
def backup_runs_list(
    sim: SimDep,
    project: str,
    instance: str,
    max_results: int | None = Query(None, alias="maxResults"),
    page_token: str | None = Query(None, alias="pageToken"),
) -> dict[str, Any]:
    sql_fault(sim, "backupRuns.list")

    def fn(d: dict[str, Any]) -> dict[str, Any]:
        if instance != "-":
            get_instance(d, project, instance)
        items = sorted(
            (
                b
                for b in tbl(d, "backups").values()
                if b["project"] == project and instance in ("-", b["instance"])
            ),
            key=lambda b: (b["enqueuedTime"], int(b["id"])),
            reverse=True,
        )
        return list_page("sql#backupRunsList", items, backup_json, max_results, page_token)

    return dict(read(sim, fn))


@router.get("/v1/projects/{project}/instances/{instance}/backupRuns/{backup_id}")
def backup_runs_get(sim: SimDep, project: str, instance: str, backup_id: str) -> dict[str, Any]:
    sql_fault(sim, "backupRuns.get")

    def fn(d: dict[str, Any]) -> dict[str, Any]:
        get_instance(d, project, instance)
        b = tbl(d, "backups").get(backup_key(project, instance, backup_id))
        if b is None:
            raise sql_error(404, MSG_NO_BACKUP, "backupRunDoesNotExist")
        return backup_json(b)

    return dict(read(sim, fn))


@router.delete("/v1/projects/{project}/instances/{instance}/backupRuns/{backup_id}")
def backup_runs_delete(sim: SimDep, project: str, instance: str, backup_id: str) -> dict[str, Any]:
    op_error = sql_fault(sim, "backupRuns.delete")

    def record(d: dict[str, Any]) -> dict[str, Any]:
        inst = get_instance(d, project, instance)
        key = instance_key(project, instance)
        bkey = backup_key(project, instance, backup_id)
        b = tbl(d, "backups").get(bkey)
        if b is None:
            raise sql_error(404, MSG_NO_BACKUP, "backupRunDoesNotExist")
        in_use = any(
            o["status"] != DONE and o.get("backupKey") == bkey
            for o in tbl(d, "operations").values()
        )
        if busy(d, key) or in_use:
            raise sql_error(409, MSG_BUSY, "operationInProgress")
        op = new_op(
            sim, d, project, "DELETE_VOLUME", instance, [key],
            {"kind": "delete_backup", "uid": inst["uid"], "dataKey": b["dataKey"],
             "what": "Deleting the backup"},
            op_error, backupId=b["id"], backupKey=bkey,
        )  # fmt: skip
        if not op_error:
            b["statusBeforeDelete"] = b["status"]
            b["status"] = "DELETION_PENDING"
        return op

    return start_op(sim, record)
