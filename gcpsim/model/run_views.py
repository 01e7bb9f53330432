"""Cloud Run Admin v2 resources as the API returns them (proto3 JSON with enum numbers):
services, revisions and long-running operations, built from the stored state (gcpsim.model.run)."""

from __future__ import annotations

import uuid
from typing import Any

from gcpsim.model.run_spec import (
    BROKEN_MESSAGE,
    FAILED,
    RECONCILING,
    REVISION_FIELDS,
    SERVICE_TYPE,
    SUCCEEDED,
    condition,
    revision_name,
    service_name,
)
from gcpsim.sim import Sim
from gcpsim.store import rfc3339
from gcpsim.urls import service_uri


def service_view(sim: Sim, svc: dict[str, Any]) -> dict[str, Any]:
    p, loc, s = svc["project"], svc["location"], svc["service"]
    uri = service_uri(sim.settings, p, loc, s)
    out: dict[str, Any] = {
        "name": service_name(p, loc, s),
        "uid": svc["uid"],
        "generation": str(svc["generation"]),
    }
    out.update(svc["spec"])
    out["createTime"] = rfc3339(svc["createTime"])
    out["updateTime"] = rfc3339(svc["updateTime"])
    out["creator"] = svc["creator"]
    out["lastModifier"] = svc["lastModifier"]
    if svc["observedGeneration"]:
        out["observedGeneration"] = str(svc["observedGeneration"])
    if svc["pending"]:
        out["terminalCondition"] = condition("Ready", RECONCILING, svc["updateTime"])
        out["conditions"] = [
            condition("RoutesReady", RECONCILING, svc["updateTime"]),
            condition("ConfigurationsReady", RECONCILING, svc["updateTime"]),
        ]
        out["reconciling"] = True
    else:
        if svc.get("terminal"):
            out["terminalCondition"] = svc["terminal"]
        if svc.get("conditions"):
            out["conditions"] = svc["conditions"]
    if svc.get("latestReady"):
        out["latestReadyRevision"] = revision_name(p, loc, s, svc["latestReady"])
    if svc.get("latestCreated"):
        out["latestCreatedRevision"] = revision_name(p, loc, s, svc["latestCreated"])
    if svc.get("trafficStatuses"):
        out["trafficStatuses"] = svc["trafficStatuses"]
    out["uri"] = uri
    out["urls"] = [uri]
    out["etag"] = svc["etag"]
    return out


def revision_view(svc: dict[str, Any], name: str, rev: dict[str, Any]) -> dict[str, Any]:
    p, loc, s = svc["project"], svc["location"], svc["service"]
    out: dict[str, Any] = {
        "name": revision_name(p, loc, s, name),
        "uid": rev["uid"],
        "generation": "1",
    }
    out.update({k: v for k, v in rev["template"].items() if k in REVISION_FIELDS})
    out["createTime"] = rfc3339(rev["createTime"])
    out["updateTime"] = rfc3339(rev.get("readyTime") or rev["createTime"])
    out["launchStage"] = svc["spec"].get("launchStage", 4)
    out["service"] = s
    state = rev["state"]
    if state == "ready":
        t = rev["readyTime"]
        out["conditions"] = [
            condition("Ready", SUCCEEDED, t),
            condition("ContainerHealthy", SUCCEEDED, t),
            condition("ResourcesAvailable", SUCCEEDED, t),
        ]
    elif state == "failed":
        t = rev["readyTime"]
        msg = rev.get("message") or BROKEN_MESSAGE
        out["conditions"] = [
            condition("Ready", FAILED, t, msg, severity=1, reason=3),
            condition("ContainerHealthy", FAILED, t, msg, severity=1, revisionReason=6),
            condition("ResourcesAvailable", SUCCEEDED, t),
        ]
    else:
        t = rev["createTime"]
        out["conditions"] = [
            condition("Ready", RECONCILING, t),
            condition("ContainerHealthy", RECONCILING, t),
            condition("ResourcesAvailable", RECONCILING, t),
        ]
        out["reconciling"] = True
    out["observedGeneration"] = "1"
    out["logUri"] = (
        "https://console.cloud.google.com/logs/viewer?project="
        f"{p}&resource=cloud_run_revision/service_name/{s}/revision_name/{name}"
    )
    out["etag"] = rev["etag"]
    out["creator"] = svc["creator"]
    return out


def op_finished(op: dict[str, Any], t: float) -> bool:
    timed = ("delete", "deleteRevision", "runJob")  # runJob: gcpsim.model.jobs
    return bool(op["done"]) or (op["kind"] in timed and t >= op["doneAt"])


def op_view(sim: Sim, run: dict[str, Any], op: dict[str, Any], t: float) -> dict[str, Any]:
    rtype = op["rtype"]
    out: dict[str, Any] = {"name": op["name"]}
    snapshot = op.get("snapshot")
    if op.get("snapshotRunning") and not op_finished(op, t):
        snapshot = op["snapshotRunning"]  # a job execution still running (gcpsim.model.jobs)
    if not snapshot:
        svc = run.get("services", {}).get(op["service"]) if rtype == SERVICE_TYPE else None
        snapshot = service_view(sim, svc) if svc else {"name": op["target"]}
    out["metadata"] = {"@type": rtype, **snapshot}
    if op_finished(op, t):
        out["done"] = True
        if op.get("error"):
            out["error"] = op["error"]
        else:
            out["response"] = {"@type": rtype, **snapshot}
    return out


def done_operation(project: str, location: str, rtype: str, view: dict[str, Any]) -> dict[str, Any]:
    """A validateOnly answer: an operation that is already done and was never stored."""
    body = {"@type": rtype, **view}
    return {
        "name": f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}",
        "metadata": body,
        "done": True,
        "response": body,
    }
