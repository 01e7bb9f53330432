"""Cloud SQL Admin v1 `instances`: list, get, getLatestRecoveryTime, insert, patch, delete,
clone, restoreBackup."""

from __future__ import annotations

import copy
import functools
from typing import Any

from fastapi import APIRouter, Body, Query

from gcpsim.api.deps import SimDep
from gcpsim.api.sql_common import (
    instance_json,
    list_page,
    op_json,
    read,
    sql_fault,
    start_op,
    unknown_fields,
)
from gcpsim.model import sql_replicas
from gcpsim.model.sql import (
    CLONE_CONTEXT_FIELDS,
    DEFAULT_VERSION,
    DONE,
    MSG_BUSY,
    MSG_EXISTS,
    MSG_NO_BACKUP,
    MSG_PROTECTED,
    NAME_RE,
    REPLICA,
    RESTORE_CONTEXT_FIELDS,
    backup_key,
    busy,
    check_mutable,
    deep_merge,
    default_settings,
    get_instance,
    instance_key,
    invalid,
    new_instance,
    new_op,
    recovery_window,
    refresh,
    retention_days,
    sql_error,
    tbl,
)
from gcpsim.store import now, parse_rfc3339, rfc3339

router = APIRouter()


@router.get("/v1/projects/{project}/instances")
def instances_list(
    sim: SimDep,
    project: str,
    max_results: int | None = Query(None, alias="maxResults"),
    page_token: str | None = Query(None, alias="pageToken"),
) -> dict[str, Any]:
    sql_fault(sim, "instances.list")

    def fn(d: dict[str, Any]) -> dict[str, Any]:
        items = sorted(
            (i for i in tbl(d, "instances").values() if i["project"] == project),
            key=lambda i: i["name"],
        )
        view = functools.partial(instance_json, sim)
        return list_page("sql#instancesList", items, view, max_results, page_token)

    return dict(read(sim, fn))


@router.get("/v1/projects/{project}/instances/{instance}")
def instances_get(sim: SimDep, project: str, instance: str) -> dict[str, Any]:
    sql_fault(sim, "instances.get")
    return dict(read(sim, lambda d: instance_json(sim, get_instance(d, project, instance))))


@router.get("/v1/projects/{project}/instances/{instance}/getLatestRecoveryTime")
def instances_latest_recovery_time(sim: SimDep, project: str, instance: str) -> dict[str, Any]:
    sql_fault(sim, "instances.getLatestRecoveryTime")

    def fn(d: dict[str, Any]) -> dict[str, Any]:
        inst = get_instance(d, project, instance)
        earliest, latest = recovery_window(inst, now())
        return {
            "kind": "sql#getLatestRecoveryTime",
            "latestRecoveryTime": rfc3339(latest),
            "earliestRecoveryTime": rfc3339(earliest),
        }

    return dict(read(sim, fn))


@router.post("/v1/projects/{project}/instances")
def instances_insert(
    sim: SimDep, project: str, body: dict[str, Any] | None = Body(None)
) -> dict[str, Any]:
    op_error = sql_fault(sim, "instances.insert")
    body = body or {}
    name = str(body.get("name") or "")
    if not name:
        raise invalid("Invalid request: instance name is required.")
    if not NAME_RE.match(name):
        raise invalid(
            f"Invalid request: instance name {name!r} must start with a lowercase letter "
            "and contain only lowercase letters, digits and hyphens."
        )
    region = str(body.get("region") or "us-central1")
    if body.get("masterInstanceName"):  # a read replica (gcpsim.model.sql_replicas)
        return start_op(
            sim,
            lambda d: sql_replicas.insert_replica(sim, d, project, name, region, body, op_error),
        )
    if body.get("instanceType") == REPLICA or body.get("replicaConfiguration"):
        raise invalid("Invalid request: a read replica needs masterInstanceName.")
    user_settings = body.get("settings") or {}
    if not isinstance(user_settings, dict):
        raise invalid("Invalid request: settings must be an object.")
    tier = str(user_settings.get("tier") or "db-f1-micro")
    availability = str(user_settings.get("availabilityType") or "ZONAL")
    settings = deep_merge(
        default_settings(region, tier, availability),
        {k: v for k, v in user_settings.items() if k not in ("settingsVersion", "kind")},
    )
    version = str(body.get("databaseVersion") or DEFAULT_VERSION)

    def record(d: dict[str, Any]) -> dict[str, Any]:
        key = instance_key(project, name)
        if key in tbl(d, "instances"):
            raise sql_error(409, MSG_EXISTS, "instanceAlreadyExists")
        inst = new_instance(d, project, name, region, settings, "PENDING_CREATE", now(), version)
        inst["appWriter"] = True  # stands for an application using the new instance
        return new_op(
            sim, d, project, "CREATE", name, [key],
            {"kind": "create", "uid": inst["uid"], "resultFor": key,
             "what": "Creating the instance"},
            op_error, destKey=key, destUid=inst["uid"],
        )  # fmt: skip

    return start_op(sim, record)


@router.patch("/v1/projects/{project}/instances/{instance}")
def instances_patch(
    sim: SimDep, project: str, instance: str, body: dict[str, Any] | None = Body(None)
) -> dict[str, Any]:
    op_error = sql_fault(sim, "instances.patch")
    body = body or {}
    patch = body.get("settings") or {}
    if not isinstance(patch, dict):
        raise invalid("Invalid request: settings must be an object.")
    patch = {k: v for k, v in patch.items() if k not in ("settingsVersion", "kind")}
    with sim.store.mutate() as d:
        refresh(d)
        inst = get_instance(d, project, instance)
        check_mutable(d, inst)
        op = new_op(
            sim, d, project, "UPDATE", instance, [instance_key(project, instance)], None,
            op_error, patch=patch,
        )  # fmt: skip
        out = op_json(op)
    return out


@router.delete("/v1/projects/{project}/instances/{instance}")
def instances_delete(sim: SimDep, project: str, instance: str) -> dict[str, Any]:
    op_error = sql_fault(sim, "instances.delete")

    def record(d: dict[str, Any]) -> dict[str, Any]:
        inst = get_instance(d, project, instance)
        key = instance_key(project, instance)
        mine = {k for k, b in tbl(d, "backups").items() if b["uid"] == inst["uid"]}
        in_use = any(  # e.g. a restore of one of its backups into another instance
            o["status"] != DONE and o.get("backupKey") in mine
            for o in tbl(d, "operations").values()
        )
        if busy(d, key) or in_use:
            raise sql_error(409, MSG_BUSY, "operationInProgress")
        if inst["settings"].get("deletionProtectionEnabled"):
            # Clones inherit the flag from their source (settings are copied on clone).
            raise sql_error(400, MSG_PROTECTED, "instanceProtected")
        sql_replicas.check_no_replicas(d, inst)
        data_keys = [b["dataKey"] for b in tbl(d, "backups").values() if b["uid"] == inst["uid"]]
        op = new_op(
            sim, d, project, "DELETE", instance, [key],
            {"kind": "delete_instance", "uid": inst["uid"], "dataKeys": data_keys,
             "what": "Deleting the instance"},
            op_error,
        )  # fmt: skip
        if not op_error:
            inst["state"] = "PENDING_DELETE"
        return op

    return start_op(sim, record)


@router.post("/v1/projects/{project}/instances/{instance}/clone")
def instances_clone(
    sim: SimDep, project: str, instance: str, body: dict[str, Any] | None = Body(None)
) -> dict[str, Any]:
    op_error = sql_fault(sim, "instances.clone")
    ctx = (body or {}).get("cloneContext")
    if not isinstance(ctx, dict):
        raise invalid("Invalid request: cloneContext is required.")
    unknown_fields(ctx, CLONE_CONTEXT_FIELDS, "body.clone_context")
    dest = str(ctx.get("destinationInstanceName") or "")
    if not dest:
        raise invalid("Invalid request: cloneContext.destinationInstanceName is required.")
    if not NAME_RE.match(dest):
        raise invalid(f"Invalid request: instance name {dest!r} is not valid.")
    dest_project = str(ctx.get("destinationProject") or project)
    pit: float | None = None
    if ctx.get("pointInTime"):
        try:
            pit = parse_rfc3339(str(ctx["pointInTime"]))
        except ValueError:
            raise invalid(
                f"Invalid value at 'body.clone_context.point_in_time' "
                f"(type.googleapis.com/google.protobuf.Timestamp), {ctx['pointInTime']!r}"
            ) from None

    def record(d: dict[str, Any]) -> dict[str, Any]:
        src = get_instance(d, project, instance)
        check_mutable(d, src)
        sql_replicas.check_not_replica(src, "clone")
        dkey = instance_key(dest_project, dest)
        if dkey in tbl(d, "instances"):
            raise sql_error(409, MSG_EXISTS, "instanceAlreadyExists")
        t = now()
        if pit is not None:
            earliest, latest = recovery_window(src, t)
            days = retention_days(src)
            if pit > latest:
                raise invalid(
                    f"Invalid request: the point in time {rfc3339(pit)} is in the future."
                )
            if pit < earliest:
                raise invalid(
                    f"Invalid request: the point in time {rfc3339(pit)} is outside the "
                    f"recoverable window; the earliest recoverable time is "
                    f"{rfc3339(earliest)} (transaction logs are kept {days} days)."
                )
        new = new_instance(
            d, dest_project, dest, src["region"], copy.deepcopy(src["settings"]),
            "PENDING_CREATE", t, src["databaseVersion"],
        )  # fmt: skip
        return new_op(
            sim, d, project, "CLONE", instance, [instance_key(project, instance), dkey],
            {"kind": "clone", "srcUid": src["uid"], "uid": new["uid"], "pointInTime": pit,
             "resultFor": dkey, "what": "Cloning the instance"},
            op_error, destKey=dkey, destUid=new["uid"],
        )  # fmt: skip

    return start_op(sim, record)


@router.post("/v1/projects/{project}/instances/{instance}/restoreBackup")
def instances_restore_backup(
    sim: SimDep, project: str, instance: str, body: dict[str, Any] | None = Body(None)
) -> dict[str, Any]:
    op_error = sql_fault(sim, "instances.restoreBackup")
    body = body or {}
    given = [k for k in ("restoreBackupContext", "backup", "backupdrBackup") if body.get(k)]
    if len(given) > 1:
        raise invalid(
            "Invalid request: only one of restoreBackupContext, backup or backupdrBackup "
            "may be set."
        )
    if given and given[0] != "restoreBackupContext":
        raise invalid(
            f"Invalid request: gcpsim restores only from restoreBackupContext "
            f"(backup runs), not from {given[0]}."
        )
    ctx = body.get("restoreBackupContext")
    if not isinstance(ctx, dict) or not ctx.get("backupRunId"):
        raise invalid("Invalid request: restoreBackupContext.backupRunId is required.")
    unknown_fields(ctx, RESTORE_CONTEXT_FIELDS, "body.restore_backup_context")
    src_instance = str(ctx.get("instanceId") or instance)
    src_project = str(ctx.get("project") or project)

    def record(d: dict[str, Any]) -> dict[str, Any]:
        target = get_instance(d, project, instance)
        check_mutable(d, target)
        sql_replicas.check_not_replica(target, "restoreBackup")
        sql_replicas.check_no_replicas(d, target)  # GCP: delete the target's replicas first
        bkey = backup_key(src_project, src_instance, str(ctx["backupRunId"]))
        b = tbl(d, "backups").get(bkey)
        if b is None:
            raise sql_error(404, MSG_NO_BACKUP, "backupRunDoesNotExist")
        if b["status"] != "SUCCESSFUL":
            raise invalid(
                f"Invalid request: backup run {b['id']} cannot be restored because its "
                f"status is {b['status']}; only SUCCESSFUL backups can be restored."
            )
        key = instance_key(project, instance)
        return new_op(
            sim, d, project, "RESTORE_VOLUME", instance, [key],
            {"kind": "restore", "uid": target["uid"], "dataKey": b["dataKey"],
             "resultFor": key, "what": "Restoring the backup"},
            op_error, backupKey=bkey,
        )  # fmt: skip

    return start_op(sim, record)


@router.post("/v1/projects/{project}/instances/{instance}/promoteReplica")
def instances_promote_replica(
    sim: SimDep, project: str, instance: str, failover: bool = Query(False)
) -> dict[str, Any]:
    op_error = sql_fault(sim, "instances.promoteReplica")
    if failover:
        raise invalid("Invalid request: gcpsim promotes read replicas; failover is not modelled.")
    return start_op(sim, lambda d: sql_replicas.promote(sim, d, project, instance, op_error))
