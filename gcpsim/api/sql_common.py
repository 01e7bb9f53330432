"""What the Cloud SQL Admin v1 routes share: the JSON views of instances, backup runs and
operations (kind fields, int64 as strings, RFC 3339 times), paging, faults, and locked reads."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

from gcpsim.model.sql import BASE, DEFAULT_VERSION, DONE, MAX_PAGE, PRIMARY, invalid, refresh
from gcpsim.model.sql_replicas import is_replica, replica_names
from gcpsim.model.sql_runtime import get_runtime, launch
from gcpsim.pg import sql as pgsql
from gcpsim.sim import Sim
from gcpsim.store import rfc3339

# ---------------------------------------------------------------------------- resources


def instance_json(sim: Sim, inst: dict[str, Any]) -> dict[str, Any]:
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
        "instanceType": inst.get("instanceType") or PRIMARY,
        "connectionName": f"{p}:{r}:{n}",
        "createTime": rfc3339(inst["createTime"]),
        "ipAddresses": [{"type": "PRIMARY", "ipAddress": pgsql.HOST}],
        "settings": settings,
        "selfLink": f"{BASE}/projects/{p}/instances/{n}",
        "etag": inst["etag"],
    }
    if settings.get("availabilityType") == "REGIONAL":
        out["secondaryGceZone"] = f"{r}-b"
    if is_replica(inst):
        out["masterInstanceName"] = inst["masterInstanceName"]
        out["replicaConfiguration"] = copy.deepcopy(inst["replicaConfiguration"])
    else:
        with sim.store.lock:
            names = replica_names(sim.store.data, inst)
        if names:
            out["replicaNames"] = names
    rt = get_runtime(sim)
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


def backup_json(b: dict[str, Any]) -> dict[str, Any]:
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


def op_json(op: dict[str, Any]) -> dict[str, Any]:
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


def paginate(items: list[Any], max_results: int | None, token: str | None) -> tuple[list[Any], str]:
    start = 0
    if token:
        try:
            raw = base64.urlsafe_b64decode(token.encode() + b"==").decode()
            if not raw.startswith("o:"):
                raise ValueError(raw)
            start = int(raw[2:])
        except ValueError:
            raise invalid("Invalid request: the page token is not valid.") from None
    size = MAX_PAGE if not max_results or max_results <= 0 else min(max_results, MAX_PAGE)
    page = items[start : start + size]
    nxt = ""
    if start + size < len(items):
        nxt = base64.urlsafe_b64encode(f"o:{start + size}".encode()).decode().rstrip("=")
    return page, nxt


def list_page(
    kind: str,
    items: list[Any],
    view: Callable[[Any], dict[str, Any]],
    max_results: int | None,
    token: str | None,
) -> dict[str, Any]:
    """A v1 list answer of `kind`: the page of `items` that `token` asks for, each shown by
    `view`, and the next page's token; each key left out when empty."""
    page, nxt = paginate(items, max_results, token)
    out: dict[str, Any] = {"kind": kind}
    if page:
        out["items"] = [view(x) for x in page]
    if nxt:
        out["nextPageToken"] = nxt
    return out


def unknown_fields(ctx: dict[str, Any], allowed: set[str], where: str) -> None:
    for k in ctx:
        if k not in allowed:
            raise invalid(
                f"Invalid JSON payload received. Unknown name \"{k}\" at '{where}': "
                "Cannot find field."
            )


def sql_fault(sim: Sim, method: str) -> str | None:
    """Apply an injected fault for `sql.<method>`; returns the op_error to record, if any."""
    return sim.faults.apply(f"sql.{method}", style="sql").op_error


def read(sim: Sim, fn: Callable[[dict[str, Any]], Any]) -> Any:
    """Run `fn` on the state under the lock, after advancing the operations."""
    with sim.store.lock:
        d = sim.store.data
        if refresh(d):
            sim.store.save()
        return fn(d)


def start_op(sim: Sim, record: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """Let `record` add an operation to the state (under the write lock, after advancing the
    operations), then start it running; returns the operation's JSON view."""
    with sim.store.mutate() as d:
        refresh(d)
        op = record(d)
        out = op_json(op)
    launch(sim, op["name"])
    return out
