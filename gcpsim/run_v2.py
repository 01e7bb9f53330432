"""Cloud Run Admin API v2 over REST: services, revisions and their long-running operations.

Served to the real `google.cloud.run_v2` clients (`transport="rest"`), so every body is proto3
JSON: camelCase, enums as ints (the client asks for `enum-encoding=int`), int64 as strings,
RFC 3339 timestamps, zero values omitted.

State lives in `sim.store.data["run"]`:
- `services[key]`: the spec (the normalized request, output-only fields dropped) and the status
  (what serves: `trafficStatuses`, `latestReady`, `observedGeneration`, ...);
- `revisions[key][name]`: one record per revision (normalized template, image, state);
- `operations[name]`: LROs. An operation is `done` once `doneAt` has passed; its effect on the
  service is applied lazily by whichever read comes first (no background threads). Operations on
  one service complete in order: a new one starts when the previous one would end.
`key` is `gcpsim.traffic.service_key(project, location, service)`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from google.cloud.run_v2.types import revision as revision_types
from google.cloud.run_v2.types import service as service_types
from google.protobuf import json_format
from starlette.concurrency import run_in_threadpool

from gcpsim.behavior import behavior_for
from gcpsim.errors import ApiError
from gcpsim.sim import Sim
from gcpsim.store import now, rfc3339
from gcpsim.traffic import record_split, service_key
from gcpsim.urls import service_uri, tag_uri

SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
REVISION_TYPE = "type.googleapis.com/google.cloud.run.v2.Revision"

# TrafficTargetAllocationType
LATEST = 1
REVISION = 2
# Condition.State
PENDING, RECONCILING, FAILED, SUCCEEDED = 1, 2, 3, 4
STATE_NAMES = {0: "UNSPECIFIED", 1: "PENDING", 2: "RECONCILING", 3: "FAILED", 4: "SUCCEEDED"}
# IngressTraffic, by the names deploy.yaml uses
INGRESS = {"all": 1, "internal": 2, "internal-and-cloud-load-balancing": 3, "none": 4}
SCALING_MANUAL = 2

OUTPUT_ONLY = frozenset(
    {
        "name", "uid", "generation", "createTime", "updateTime", "deleteTime", "expireTime",
        "creator", "lastModifier", "urls", "observedGeneration", "terminalCondition",
        "conditions", "latestReadyRevision", "latestCreatedRevision", "trafficStatuses", "uri",
        "satisfiesPzs", "reconciling", "etag",
    }
)  # fmt: skip
# RevisionTemplate fields a Revision carries too (camelCase).
REVISION_FIELDS = frozenset(
    {
        "labels", "annotations", "scaling", "vpcAccess", "maxInstanceRequestConcurrency",
        "timeout", "serviceAccount", "containers", "volumes", "executionEnvironment",
        "encryptionKey", "serviceMesh", "encryptionKeyRevocationAction",
        "encryptionKeyShutdownDuration", "sessionAffinity", "nodeSelector",
        "gpuZonalRedundancyDisabled",
    }
)  # fmt: skip

BROKEN_MESSAGE = (
    "The user-provided container failed to start and listen on the port defined provided by "
    "the PORT=8080 environment variable within the allocated timeout. This can happen when the "
    "container port is misconfigured or if the timeout is too short. Logs for this revision "
    "might contain more information."
)
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SERVICE_ID = re.compile(r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
MAX_OPERATIONS = 500  # operation records kept (oldest finished ones go first)
KEEP_SNAPSHOTS = 32  # finished operations that keep their full result; older ones answer
# with the service as it is now (keeps state.json, rewritten on every write, small)
MAX_WAIT_SECONDS = 300.0

_SERVICE_PB = service_types.Service.pb()
_REVISION_PB = revision_types.Revision.pb()
# Called before an operation is read: other resources sharing these operations (Cloud Run
# jobs, gcpsim.jobs_v2) apply what is due first.
READ_HOOKS: list[Callable[[Sim], None]] = []


# --------------------------------------------------------------------------- helpers


# Whether this request asked for enums as numbers (`$alt=json;enum-encoding=int`, as the run_v2
# client does); plain REST JSON (curl, the discovery client) gets enum names, as from the real API.
_ENUM_INTS: ContextVar[bool] = ContextVar("gcpsim_run_enum_ints", default=True)


async def _enum_mode(request: Request) -> None:
    # async: it runs in the request's own context, which the sync endpoint's thread inherits
    _ENUM_INTS.set("enum-encoding=int" in request.query_params.get("$alt", ""))


def _names(obj: Any, desc: Any) -> Any:
    """Enum numbers -> names in a JSON object of message type `desc` (unknown fields kept)."""
    if not isinstance(obj, dict):
        return obj
    fields = {f.json_name: f for f in desc.fields}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        f = fields.get(k)
        if f is None:
            out[k] = v
        elif f.enum_type is not None:

            def name(x: Any, f: Any = f) -> Any:
                value = f.enum_type.values_by_number.get(x) if isinstance(x, int) else None
                return value.name if value is not None else x

            out[k] = [name(x) for x in v] if isinstance(v, list) else name(v)
        elif f.message_type is not None and not f.message_type.GetOptions().map_entry:
            sub = f.message_type
            out[k] = [_names(x, sub) for x in v] if isinstance(v, list) else _names(v, sub)
        else:
            out[k] = v
    return out


def _enum_names(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    rtype = obj.get("@type")
    if rtype == SERVICE_TYPE or ("@type" not in obj and ("template" in obj or "traffic" in obj)):
        return _names(obj, _SERVICE_PB.DESCRIPTOR)
    if rtype == REVISION_TYPE or ("@type" not in obj and "containers" in obj):
        return _names(obj, _REVISION_PB.DESCRIPTOR)
    out = dict(obj)
    for k in ("metadata", "response"):
        if k in out:
            out[k] = _enum_names(out[k])
    for k in ("services", "revisions"):
        if isinstance(out.get(k), list):
            out[k] = [_enum_names(x) for x in out[k]]
    return out


def _json(obj: Any) -> Response:
    if not _ENUM_INTS.get():
        obj = _enum_names(obj)
    return Response(content=json.dumps(obj, separators=(",", ":")), media_type="application/json")


def _service_name(project: str, location: str, service: str) -> str:
    return f"projects/{project}/locations/{location}/services/{service}"


def _revision_name(project: str, location: str, service: str, revision: str) -> str:
    return f"{_service_name(project, location, service)}/revisions/{revision}"


def _not_found(kind: str, name: str, project: str, location: str) -> ApiError:
    return ApiError(
        404,
        f"Resource '{name}' of kind '{kind}' in region '{location}' in project '{project}' "
        "does not exist.",
    )


def _bad_request(message: str, field: str | None = None) -> ApiError:
    details = []
    if field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        )
    return ApiError(400, message, details=details)


def _failed_precondition(message: str) -> ApiError:
    return ApiError(400, message, rpc_status="FAILED_PRECONDITION")


def _new_etag() -> str:
    return '"' + base64.urlsafe_b64encode(os.urandom(12)).decode().rstrip("=") + '"'


def _etag_matches(given: str, current: str) -> bool:
    def norm(e: str) -> str:
        e = e.strip()
        return e[2:].strip('"') if e.startswith("W/") else e.strip('"')

    return norm(given) == norm(current)


def _check_etag(given: str | None, svc: dict[str, Any], name: str) -> None:
    if given and not _etag_matches(given, svc["etag"]):
        raise ApiError(
            409,
            f"The etag {given} provided in the request does not match the current etag of "
            f"'{name}' ({svc['etag']}): the resource was modified concurrently. Get it again "
            "and retry.",
            rpc_status="ABORTED",
            reason="ETAG_MISMATCH",
        )


def _cond(
    ctype: str,
    state: int,
    at: float | None,
    message: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    c: dict[str, Any] = {"type": ctype, "state": state}
    if message:
        c["message"] = message
    if at is not None:
        c["lastTransitionTime"] = rfc3339(at)
    c.update({k: v for k, v in extra.items() if v})
    return c


def _prune(obj: Any) -> Any:
    """Drop zero values (None, 0, "", False, [], {}) as proto3 JSON does."""
    if isinstance(obj, dict):
        out = {k: _prune(v) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v not in (None, 0, "", False, [], {})}
    if isinstance(obj, list):
        return [_prune(v) for v in obj]
    return obj


def _image_of(template: dict[str, Any]) -> str:
    containers = template.get("containers") or []
    for c in containers:
        if c.get("ports"):
            return str(c.get("image", ""))
    return str(containers[0].get("image", "")) if containers else ""


def _core(template: dict[str, Any]) -> dict[str, Any]:
    """The part of a template that decides whether a new revision is needed."""
    return {k: v for k, v in template.items() if k != "revision"}


def _is_drained(spec: dict[str, Any]) -> bool:
    scaling = spec.get("scaling") or {}
    return bool(
        scaling.get("scalingMode") == SCALING_MANUAL and not scaling.get("manualInstanceCount")
    )


def _graft_unknown(parsed: dict[str, Any], raw: Any, desc: Any) -> None:
    """Put back into `parsed` the fields of `raw` that the proto `desc` does not know.

    The real API stores every field it knows, including ones newer than the installed client:
    gcpsim keeps fields it does not model the same way (so a client that drops them on a
    read-modify-write is caught dropping them)."""
    if not isinstance(raw, dict):
        return
    fields = {f.json_name: f for f in desc.fields}
    fields.update({f.name: f for f in desc.fields})
    for k, v in raw.items():
        f = fields.get(k)
        if f is None:
            if desc is _SERVICE_PB.DESCRIPTOR and k in OUTPUT_ONLY:
                continue
            parsed[k] = copy.deepcopy(v)
            continue
        sub = f.message_type
        if sub is None or sub.GetOptions().map_entry or sub.full_name.startswith("google.protobuf"):
            continue
        jk = f.json_name
        if f.is_repeated:
            if isinstance(v, list) and isinstance(parsed.get(jk), list):
                for pv, rv in zip(parsed[jk], v, strict=False):
                    if isinstance(pv, dict):
                        _graft_unknown(pv, rv, sub)
        elif isinstance(v, dict):
            target = parsed.get(jk)
            if not isinstance(target, dict):
                target = {}
            _graft_unknown(target, v, sub)
            if target:
                parsed[jk] = target


def _parse_body(body: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """Request body -> (spec, etag): known fields canonical (enum ints), unknown ones kept,
    output-only ones dropped."""
    msg = _SERVICE_PB()
    try:
        json_format.ParseDict(body or {}, msg, ignore_unknown_fields=True)
    except json_format.ParseError as err:
        raise _bad_request(f"Invalid JSON payload received. {err}") from None
    parsed = json_format.MessageToDict(msg, use_integers_for_enums=True)
    _graft_unknown(parsed, body or {}, _SERVICE_PB.DESCRIPTOR)
    etag = str(parsed.get("etag", ""))
    spec = {k: v for k, v in parsed.items() if k not in OUTPUT_ONLY}
    return spec, etag


def _camel(path: str) -> str:
    return ".".join(re.sub(r"_([a-z])", lambda m: m.group(1).upper(), p) for p in path.split("."))


def _check_mask_path(path: str) -> None:
    desc = _SERVICE_PB.DESCRIPTOR
    for part in path.split("."):
        fields = {f.json_name: f for f in (desc.fields if desc is not None else [])}
        f = fields.get(part)
        if f is None or (desc is _SERVICE_PB.DESCRIPTOR and part in OUTPUT_ONLY):
            raise _bad_request(
                f"Invalid update mask: '{path}' is not a field of Service that can be updated.",
                "update_mask",
            )
        desc = f.message_type
        if desc is not None and f.is_repeated and part != path.split(".")[-1]:
            raise _bad_request(
                f"Invalid update mask: '{path}' reaches into a repeated field; name the whole "
                "field instead.",
                "update_mask",
            )


def _masked(current: dict[str, Any], given: dict[str, Any], mask: str) -> dict[str, Any]:
    """`current` with the fields named by `mask` taken from `given` (absent there: cleared)."""
    out = copy.deepcopy(current)
    for raw_path in (p.strip() for p in mask.split(",")):
        if not raw_path:
            continue
        if raw_path == "*":
            return copy.deepcopy(given)
        path = _camel(raw_path)
        _check_mask_path(path)
        parts = path.split(".")
        dst: dict[str, Any] = out
        src: Any = given
        for part in parts[:-1]:
            nxt = dst.get(part)
            if not isinstance(nxt, dict):
                nxt = dst[part] = {}
            dst = nxt
            src = src.get(part) if isinstance(src, dict) else None
        last = parts[-1]
        if isinstance(src, dict) and last in src:
            dst[last] = copy.deepcopy(src[last])
        else:
            dst.pop(last, None)
    return out


def _cpu(value: Any) -> float:
    text = str(value or "1").strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise _bad_request(
            f"service.template.containers.resources.limits.cpu: '{text}' is not a CPU value.",
            "service.template.containers.resources.limits.cpu",
        ) from None


def _normalize(spec: dict[str, Any], service: str) -> dict[str, Any]:
    """Defaults the API fills in and the checks it makes on a whole spec."""
    spec.setdefault("ingress", 1)
    spec.setdefault("launchStage", 4)
    template = spec.setdefault("template", {})
    containers = template.get("containers") or []
    if not containers or not all(c.get("image") for c in containers):
        raise _bad_request(
            "service.template.containers: every container needs an image "
            "(at least one container is required).",
            "service.template.containers",
        )
    template.setdefault("timeout", "300s")
    total_cpu = 0.0
    for c in containers:
        if len(containers) == 1 and not c.get("ports"):
            c["ports"] = [{"name": "http1", "containerPort": 8080}]
        resources = c.setdefault("resources", {})
        limits = resources.setdefault("limits", {})
        limits.setdefault("cpu", "1000m")
        limits.setdefault("memory", "512Mi")
        total_cpu += _cpu(limits["cpu"])
    # Cloud Run CPU limits: below 1 CPU, concurrency must be 1 (also its default there) and
    # CPU is allocated only during requests (cpuIdle true on every container).
    template.setdefault("maxInstanceRequestConcurrency", 1 if total_cpu < 1 else 80)
    if total_cpu < 1:
        if int(template["maxInstanceRequestConcurrency"]) > 1:
            raise _bad_request(
                f"service.template.max_instance_request_concurrency: Total cpu < 1 "
                f"({total_cpu:g}) is not supported with concurrency > 1 "
                f"({template['maxInstanceRequestConcurrency']}); set it to 1 or request at "
                "least 1 CPU.",
                "service.template.max_instance_request_concurrency",
            )
        if not all((c.get("resources") or {}).get("cpuIdle") for c in containers):
            raise _bad_request(
                f"service.template.containers.resources.cpu_idle: Total cpu < 1 ({total_cpu:g}) "
                "requires CPU to be allocated only during request processing (cpu_idle true); "
                "CPU always allocated needs at least 1 CPU.",
                "service.template.containers.resources.cpu_idle",
            )
    spec["traffic"] = [dict(t) for t in spec.get("traffic") or []] or [
        {"type": LATEST, "percent": 100}
    ]
    rev = template.get("revision")
    if rev is not None and (
        not rev.startswith(f"{service}-") or len(rev) > 63 or not DNS_LABEL.match(rev)
    ):
        raise _bad_request(
            f"service.template.revision: revision name '{rev}' must start with the service "
            f"name followed by a hyphen ('{service}-') and be a lowercase DNS label of at most "
            "63 characters.",
            "service.template.revision",
        )
    return spec


def _parse_service(body: dict[str, Any] | None, service: str) -> tuple[dict[str, Any], str]:
    """Request body -> (normalized spec, etag). Accepts enum ints and names, keeps unknowns."""
    spec, etag = _parse_body(body)
    return _normalize(spec, service), etag


def _validate_traffic(traffic: list[dict[str, Any]], known: set[str], service: str) -> None:
    total = 0
    tags: set[str] = set()
    for i, t in enumerate(traffic):
        field = f"service.traffic[{i}]"
        ttype = t.get("type", 0)
        rev = t.get("revision", "")
        pct = int(t.get("percent", 0))
        tag = t.get("tag", "")
        if ttype not in (LATEST, REVISION):
            raise _bad_request(
                f"Invalid value at '{field}.type': a traffic target needs the type "
                "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST or TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION.",
                f"{field}.type",
            )
        if ttype == LATEST and rev:
            raise _bad_request(
                f"{field}: a TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST target must not name a "
                f"revision (got '{rev}'); use TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION to pin one.",
                f"{field}.revision",
            )
        if ttype == REVISION and not rev:
            raise _bad_request(
                f"{field}: a TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION target needs a revision.",
                f"{field}.revision",
            )
        if ttype == REVISION and rev not in known:
            raise _bad_request(
                f"Revision '{rev}' does not exist or is deleted. Update all traffic to route to "
                "currently available revisions.",
                f"{field}.revision",
            )
        if not 0 <= pct <= 100:
            raise _bad_request(
                f"{field}.percent must be between 0 and 100, got {pct}.", f"{field}.percent"
            )
        if tag:
            if not DNS_LABEL.match(tag) or len(tag) > 46:
                raise _bad_request(
                    f"{field}.tag '{tag}' is not valid: a tag must be a lowercase DNS label "
                    "(letters, digits and '-', starting with a letter) of at most 46 characters.",
                    f"{field}.tag",
                )
            if len(tag) + len(service) > 46:
                raise _bad_request(
                    f"{field}.tag: Combined traffic tag and service name cannot exceed 46 "
                    f"characters ('{tag}' + '{service}' = {len(tag) + len(service)}).",
                    f"{field}.tag",
                )
            if tag in tags:
                raise _bad_request(
                    f"{field}.tag '{tag}' is used more than once; traffic tags must be unique.",
                    f"{field}.tag",
                )
            tags.add(tag)
        total += pct
    if total != 100:
        raise _bad_request(
            f"Traffic percentages must add up to 100, but the traffic targets add up to {total}.",
            "service.traffic",
        )


# --------------------------------------------------------------------------- views


def _service_view(sim: Sim, svc: dict[str, Any]) -> dict[str, Any]:
    p, loc, s = svc["project"], svc["location"], svc["service"]
    uri = service_uri(sim.settings, p, loc, s)
    out: dict[str, Any] = {
        "name": _service_name(p, loc, s),
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
        out["terminalCondition"] = _cond("Ready", RECONCILING, svc["updateTime"])
        out["conditions"] = [
            _cond("RoutesReady", RECONCILING, svc["updateTime"]),
            _cond("ConfigurationsReady", RECONCILING, svc["updateTime"]),
        ]
        out["reconciling"] = True
    else:
        if svc.get("terminal"):
            out["terminalCondition"] = svc["terminal"]
        if svc.get("conditions"):
            out["conditions"] = svc["conditions"]
    if svc.get("latestReady"):
        out["latestReadyRevision"] = _revision_name(p, loc, s, svc["latestReady"])
    if svc.get("latestCreated"):
        out["latestCreatedRevision"] = _revision_name(p, loc, s, svc["latestCreated"])
    if svc.get("trafficStatuses"):
        out["trafficStatuses"] = svc["trafficStatuses"]
    out["uri"] = uri
    out["urls"] = [uri]
    out["etag"] = svc["etag"]
    return out


def _revision_view(svc: dict[str, Any], name: str, rev: dict[str, Any]) -> dict[str, Any]:
    p, loc, s = svc["project"], svc["location"], svc["service"]
    out: dict[str, Any] = {
        "name": _revision_name(p, loc, s, name),
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
            _cond("Ready", SUCCEEDED, t),
            _cond("ContainerHealthy", SUCCEEDED, t),
            _cond("ResourcesAvailable", SUCCEEDED, t),
        ]
    elif state == "failed":
        t = rev["readyTime"]
        msg = rev.get("message") or BROKEN_MESSAGE
        out["conditions"] = [
            _cond("Ready", FAILED, t, msg, severity=1, reason=3),
            _cond("ContainerHealthy", FAILED, t, msg, severity=1, revisionReason=6),
            _cond("ResourcesAvailable", SUCCEEDED, t),
        ]
    else:
        t = rev["createTime"]
        out["conditions"] = [
            _cond("Ready", RECONCILING, t),
            _cond("ContainerHealthy", RECONCILING, t),
            _cond("ResourcesAvailable", RECONCILING, t),
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


def _op_finished(op: dict[str, Any], t: float) -> bool:
    timed = ("delete", "deleteRevision", "runJob")  # runJob: gcpsim.jobs_v2
    return bool(op["done"]) or (op["kind"] in timed and t >= op["doneAt"])


def _op_view(sim: Sim, run: dict[str, Any], op: dict[str, Any], t: float) -> dict[str, Any]:
    rtype = op["rtype"]
    out: dict[str, Any] = {"name": op["name"]}
    snapshot = op.get("snapshot")
    if op.get("snapshotRunning") and not _op_finished(op, t):
        snapshot = op["snapshotRunning"]  # a job execution still running (gcpsim.jobs_v2)
    if not snapshot:
        svc = run.get("services", {}).get(op["service"]) if rtype == SERVICE_TYPE else None
        snapshot = _service_view(sim, svc) if svc else {"name": op["target"]}
    out["metadata"] = {"@type": rtype, **snapshot}
    if _op_finished(op, t):
        out["done"] = True
        if op.get("error"):
            out["error"] = op["error"]
        else:
            out["response"] = {"@type": rtype, **snapshot}
    return out


# --------------------------------------------------------------------------- state machine


def _run(d: dict[str, Any]) -> dict[str, Any]:
    run = d.setdefault("run", {})
    run.setdefault("services", {})
    run.setdefault("revisions", {})
    run.setdefault("operations", {})
    return run


def _latest_ready(revs: dict[str, Any]) -> str | None:
    ready = [(r["seq"], n) for n, r in revs.items() if r["state"] == "ready"]
    return max(ready)[1] if ready else None


def _split_from_statuses(svc: dict[str, Any], revs: dict[str, Any]) -> list[tuple[str, int, str]]:
    if svc.get("drained"):
        return []
    out = []
    for st in svc.get("trafficStatuses") or []:
        pct = int(st.get("percent", 0))
        rev = st.get("revision", "")
        if pct > 0 and rev in revs:
            out.append((rev, pct, revs[rev]["image"]))
    return out


def _warm_revisions(svc: dict[str, Any], revs: dict[str, Any]) -> list[str]:
    """Revisions with instances running: those receiving traffic (none while drained) and,
    drained or not, revisions kept only by a traffic tag whose template asks for minimum
    instances (Cloud Run starts a tagged revision's revision-level minimum)."""
    out = [rev for rev, _, _ in _split_from_statuses(svc, revs)]
    for st in svc.get("trafficStatuses") or []:
        rev = st.get("revision", "")
        if not st.get("tag") or rev not in revs or rev in out:
            continue
        scaling = revs[rev]["template"].get("scaling") or {}
        if int(scaling.get("minInstanceCount") or 0) > 0:
            out.append(rev)
    return out


def _service_scaling(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Service-level scaling as Cloud Run applies it: MANUAL unsets the service's min/max;
    back to automatic without a minimum inherits the manual count."""
    sc = new.get("scaling")
    if not isinstance(sc, dict):
        return
    before = old.get("scaling") or {}
    if sc.get("scalingMode") == SCALING_MANUAL:
        sc.pop("minInstanceCount", None)
        sc.pop("maxInstanceCount", None)
        return
    inherit = before.get("scalingMode") == SCALING_MANUAL and "minInstanceCount" not in sc
    if inherit and before.get("manualInstanceCount"):
        sc["minInstanceCount"] = before["manualInstanceCount"]
    sc.pop("manualInstanceCount", None)
    if not sc:
        new.pop("scaling", None)


def _complete(sim: Sim, d: dict[str, Any], key: str, op: dict[str, Any], t: float) -> None:
    """Apply a finished create/update operation to its service, at time `t`."""
    run = _run(d)
    svc = run["services"][key]
    revs = run["revisions"].setdefault(key, {})
    failure: tuple[int, str] | None = None
    new = op.get("newRevision")
    if new and new in revs and revs[new]["state"] == "pending":
        rev = revs[new]
        if behavior_for(sim, svc["service"], rev["image"]).get("broken"):
            rev.update(state="failed", message=BROKEN_MESSAGE, readyTime=t)
            failure = (
                9,
                f"Revision '{new}' is not ready and cannot serve traffic. {BROKEN_MESSAGE}",
            )
        else:
            rev.update(state="ready", readyTime=t)
    if op.get("opError"):
        failure = (13, op["opError"])
    statuses: list[dict[str, Any]] = []
    latest_ready = _latest_ready(revs)
    if failure is None:
        for target in op["traffic"]:
            pct = int(target.get("percent", 0))
            tag = target.get("tag", "")
            name = latest_ready if target.get("type") == LATEST else target.get("revision")
            unusable = not name or name not in revs or revs[name]["state"] != "ready"
            if unusable and (pct > 0 or tag):
                failure = (
                    9,
                    f"Revision '{name or '(latest ready)'}' is not ready and cannot serve traffic.",
                )
                break
            if unusable:
                continue
            st: dict[str, Any] = {"type": target.get("type"), "revision": name, "percent": pct}
            if tag:
                st["tag"] = tag
                st["uri"] = tag_uri(
                    sim.settings, svc["project"], svc["location"], svc["service"], tag
                )
            statuses.append(_prune(st))
    if failure is None:
        svc["latestReady"] = latest_ready
        svc["trafficStatuses"] = statuses
        svc["observedGeneration"] = op["generation"]
        svc["servingTraffic"] = copy.deepcopy(op["traffic"])
        svc["drained"] = op["drained"]
        svc["terminal"] = _cond("Ready", SUCCEEDED, t)
        svc["conditions"] = [
            _cond("RoutesReady", SUCCEEDED, t),
            _cond("ConfigurationsReady", SUCCEEDED, t),
        ]
        record_split(sim, key, _split_from_statuses(svc, revs), at=t)
    else:
        code, message = failure
        svc["terminal"] = _cond("Ready", FAILED, t, message, severity=1)
        svc["conditions"] = [
            _cond("RoutesReady", FAILED, t, message, severity=1),
            _cond("ConfigurationsReady", FAILED if code == 9 else SUCCEEDED, t),
        ]
        if svc.get("specOp") == op["name"] and svc.get("servingTraffic") is not None:
            svc["spec"]["traffic"] = copy.deepcopy(svc["servingTraffic"])
        op["error"] = {"code": code, "message": message}
    svc["pending"] = [n for n in svc["pending"] if n != op["name"]]
    op["done"] = True
    op["snapshot"] = copy.deepcopy(_service_view(sim, svc))


def _settle_locked(sim: Sim, d: dict[str, Any], key: str, t: float) -> None:
    run = _run(d)
    svc = run["services"].get(key)
    while svc and svc["pending"]:
        op = run["operations"].get(svc["pending"][0])
        if op is None:
            svc["pending"].pop(0)
            continue
        if op["doneAt"] > t:
            break
        _complete(sim, d, key, op, op["doneAt"])


@contextmanager
def _settled_service(
    sim: Sim, project: str, location: str, service: str
) -> Iterator[tuple[str, float, dict[str, Any], dict[str, Any] | None]]:
    """Hold the store for a read-modify-write of one service, its due operations applied first.

    Yields the service's key, the time `now()` taken before the lock, the run section and the
    service (None: it does not exist)."""
    key = service_key(project, location, service)
    t = now()
    with sim.store.mutate() as d:
        run = _run(d)
        _settle_locked(sim, d, key, t)
        yield key, t, run, run["services"].get(key)


def _is_due(run: dict[str, Any], key: str, t: float) -> bool:
    svc = run.get("services", {}).get(key)
    if not svc or not svc["pending"]:
        return False
    op = run.get("operations", {}).get(svc["pending"][0])
    return op is None or op["doneAt"] <= t


def settle(sim: Sim, keys: list[str] | None = None) -> None:
    """Apply every operation whose time has come (for `keys`, or every service)."""
    t = now()
    with sim.store.lock:
        run = sim.store.section("run")
        if keys is None:
            keys = list(run.get("services", {}))
        due = [k for k in keys if _is_due(run, k, t)]
    if not due:
        return
    with sim.store.mutate() as d:
        for k in due:
            _settle_locked(sim, d, k, t)


def _prune_operations(run: dict[str, Any], t: float) -> None:
    ops = run["operations"]
    finished = [n for n, o in ops.items() if _op_finished(o, t)]
    for name in finished[:-KEEP_SNAPSHOTS]:
        ops[name]["snapshot"] = None
    for name in finished[: max(len(ops) - MAX_OPERATIONS, 0)]:
        del ops[name]


def _new_operation(
    sim: Sim,
    run: dict[str, Any],
    project: str,
    location: str,
    *,
    key: str,
    target: str,
    kind: str,
    rtype: str,
    snapshot: dict[str, Any] | None,
    done_at: float,
    **extra: Any,
) -> dict[str, Any]:
    name = f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}"
    op = {
        "name": name,
        "service": key,
        "target": target,
        "kind": kind,
        "rtype": rtype,
        "start": now(),
        "doneAt": done_at,
        "done": False,
        "error": None,
        "snapshot": snapshot,
        **extra,
    }
    run["operations"][name] = op
    _prune_operations(run, now())
    return op


def _revision_suffix(sim: Sim, key: str, n: int, attempt: int) -> str:
    rng = random.Random(f"{sim.settings.seed}:{key}:{n}:{attempt}")
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3))


def _decide_revision(
    sim: Sim,
    key: str,
    service: str,
    spec: dict[str, Any],
    svc: dict[str, Any] | None,
    revs: dict[str, Any],
) -> str | None:
    """The name of the revision this spec creates, or None when it creates none."""
    template = spec["template"]
    core = _core(template)
    wanted = template.get("revision")
    if wanted:
        if wanted in revs:
            if revs[wanted]["template"] != core:
                raise ApiError(
                    409,
                    f"Revision named '{wanted}' with different configuration already exists.",
                    rpc_status="ALREADY_EXISTS",
                )
            return None
        return str(wanted)
    if svc is not None and _core(svc["spec"]["template"]) == core:
        return None
    n = (svc["revCounter"] if svc else 0) + 1
    attempt = 0
    while True:
        name = f"{service}-{n:05d}-{_revision_suffix(sim, key, n, attempt)}"
        if name not in revs:
            return name
        attempt += 1


def _add_revision(
    sim: Sim,
    revs: dict[str, Any],
    svc: dict[str, Any],
    name: str,
    template: dict[str, Any],
    t: float,
    state: str = "pending",
) -> None:
    svc["revCounter"] += 1
    rng = random.Random(f"{sim.settings.seed}:{svc['key']}:{name}:uid")
    revs[name] = {
        "seq": svc["revCounter"],
        "uid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "template": copy.deepcopy(_core(template)),
        "image": _image_of(template),
        "createTime": t,
        "readyTime": t if state == "ready" else None,
        "state": state,
        "etag": _new_etag(),
    }
    svc["latestCreated"] = name


def _new_service_record(
    sim: Sim, project: str, location: str, service: str, spec: dict[str, Any], t: float
) -> dict[str, Any]:
    key = service_key(project, location, service)
    rng = random.Random(f"{sim.settings.seed}:{key}:{t}:uid")
    caller = f"gcpsim-deployer@{project}.iam.gserviceaccount.com"
    return {
        "key": key,
        "project": project,
        "location": location,
        "service": service,
        "uid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "generation": 1,
        "observedGeneration": 0,
        "createTime": t,
        "updateTime": t,
        "creator": caller,
        "lastModifier": caller,
        "etag": _new_etag(),
        "spec": spec,
        "latestReady": None,
        "latestCreated": None,
        "trafficStatuses": [],
        "servingTraffic": None,
        "drained": False,
        "terminal": None,
        "conditions": [],
        "pending": [],
        "specOp": None,
        "revCounter": 0,
    }


def _done_operation(
    project: str, location: str, rtype: str, view: dict[str, Any]
) -> dict[str, Any]:
    """A validateOnly answer: an operation that is already done and was never stored."""
    body = {"@type": rtype, **view}
    return {
        "name": f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}",
        "metadata": body,
        "done": True,
        "response": body,
    }


def _create(
    sim: Sim,
    project: str,
    location: str,
    service: str,
    body: dict[str, Any] | None,
    validate_only: bool,
    op_error: str | None,
) -> dict[str, Any]:
    spec, _ = _parse_service(body, service)
    key = service_key(project, location, service)
    t = now()
    with sim.store.mutate() as d:
        run = _run(d)
        if key in run["services"]:
            raise ApiError(
                409, f"Resource '{service}' already exists.", rpc_status="ALREADY_EXISTS"
            )
        revs: dict[str, Any] = {}
        new = _decide_revision(sim, key, service, spec, None, revs)
        _validate_traffic(spec["traffic"], {new} if new else set(), service)
        svc = _new_service_record(sim, project, location, service, spec, t)
        if validate_only:
            view = _service_view(sim, svc)
            d_ops = _done_operation(project, location, SERVICE_TYPE, view)
            raise _ValidateOnly(d_ops)
        run["services"][key] = svc
        run["revisions"][key] = revs
        if new:
            _add_revision(sim, revs, svc, new, spec["template"], t)
        op = _new_operation(
            sim, run, project, location, key=key, target=_service_name(project, location, service),
            kind="create", rtype=SERVICE_TYPE,
            snapshot=None, done_at=t + sim.settings.run_op_seconds, newRevision=new,
            traffic=copy.deepcopy(spec["traffic"]), generation=1, drained=_is_drained(spec),
            opError=op_error,
        )  # fmt: skip
        svc["pending"].append(op["name"])
        svc["specOp"] = op["name"]
        return copy.deepcopy(_op_view(sim, run, op, t))


class _ValidateOnly(Exception):  # control flow: carries the validateOnly answer
    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__("validateOnly")
        self.answer = answer


def _update(
    sim: Sim,
    project: str,
    location: str,
    service: str,
    body: dict[str, Any] | None,
    validate_only: bool,
    allow_missing: bool,
    op_error: str | None,
    update_mask: str = "",
) -> dict[str, Any]:
    given, etag = _parse_body(body)
    spec = {} if update_mask else _normalize(copy.deepcopy(given), service)
    key = service_key(project, location, service)
    t = now()
    with sim.store.lock:
        exists = key in sim.store.section("run").get("services", {})
    if not exists:
        if allow_missing:
            return _create(sim, project, location, service, body, validate_only, op_error)
        raise _not_found("SERVICE", service, project, location)
    with sim.store.mutate() as d:
        run = _run(d)
        _settle_locked(sim, d, key, t)
        svc = run["services"].get(key)
        if svc is None:
            raise _not_found("SERVICE", service, project, location)
        _check_etag(etag, svc, _service_name(project, location, service))
        if update_mask:
            spec = _normalize(_masked(svc["spec"], given, update_mask), service)
        _service_scaling(svc["spec"], spec)
        revs = run["revisions"].setdefault(key, {})
        new = _decide_revision(sim, key, service, spec, svc, revs)
        _validate_traffic(spec["traffic"], set(revs) | ({new} if new else set()), service)
        changed = spec != svc["spec"]
        generation = svc["generation"] + (1 if changed else 0)
        if validate_only:
            preview = copy.deepcopy(svc)
            preview.update(spec=spec, generation=generation)
            raise _ValidateOnly(
                _done_operation(project, location, SERVICE_TYPE, _service_view(sim, preview))
            )
        if changed:
            svc["spec"] = spec
            svc["generation"] = generation
            svc["updateTime"] = t
        svc["etag"] = _new_etag()
        if new:
            _add_revision(sim, revs, svc, new, spec["template"], t)
        last = run["operations"].get(svc["pending"][-1]) if svc["pending"] else None
        start = max(t, last["doneAt"]) if last else t
        op = _new_operation(
            sim, run, project, location, key=key, target=_service_name(project, location, service),
            kind="update", rtype=SERVICE_TYPE,
            snapshot=None, done_at=start + sim.settings.run_op_seconds, newRevision=new,
            traffic=copy.deepcopy(spec["traffic"]), generation=generation,
            drained=_is_drained(spec), opError=op_error,
        )  # fmt: skip
        svc["pending"].append(op["name"])
        svc["specOp"] = op["name"]
        return copy.deepcopy(_op_view(sim, run, op, t))


def _page(items: list[Any], page_size: int, page_token: str) -> tuple[list[Any], str]:
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        raise _bad_request(f"Invalid page token '{page_token}'.", "pageToken") from None
    if start < 0:
        raise _bad_request(f"Invalid page token '{page_token}'.", "pageToken")
    size = page_size if page_size > 0 else 1000
    chunk = items[start : start + size]
    nxt = str(start + size) if start + size < len(items) else ""
    return chunk, nxt


# --------------------------------------------------------------------------- public helpers


def serving(sim: Sim, project: str, location: str, service: str) -> list[tuple[str, int, str]]:
    """[(revision, percent, image), ...] a service serves now; [] if drained or missing."""
    key = service_key(project, location, service)
    settle(sim, [key])
    with sim.store.lock:
        run = sim.store.section("run")
        svc = run.get("services", {}).get(key)
        if svc is None:
            return []
        return _split_from_statuses(svc, run.get("revisions", {}).get(key, {}))


def bound_connections(sim: Sim) -> dict[str, set[str]]:
    """Per project whose services declare Cloud SQL connections (a `cloudSqlInstance` volume in
    a service template): the connection names (`project:region:instance`) that revisions
    receiving traffic are bound to, i.e. the databases an application uses now (none while
    drained). Read as stored (no settling): the row writer asks several times a second."""
    out: dict[str, set[str]] = {}

    def connections(template: dict[str, Any]) -> list[str]:
        found: list[str] = []
        for vol in template.get("volumes") or []:
            found += (vol.get("cloudSqlInstance") or {}).get("instances") or []
        return found

    with sim.store.lock:
        run = sim.store.section("run")
        for key, svc in run.get("services", {}).items():
            declared = connections(svc["spec"]["template"])
            revs = run.get("revisions", {}).get(key, {})
            used = [c for rev in _warm_revisions(svc, revs)
                    for c in connections(revs[rev]["template"])]  # fmt: skip
            for c in declared + used:
                out.setdefault(c.split(":", 1)[0], set())
            for c in used:
                out[c.split(":", 1)[0]].add(c)
    return out


def ingress_of(sim: Sim, project: str, location: str, service: str) -> int | None:
    """The service's ingress setting (IngressTraffic number); None if there is no service."""
    key = service_key(project, location, service)
    with sim.store.lock:
        svc = sim.store.section("run").get("services", {}).get(key)
        return None if svc is None else int(svc["spec"].get("ingress") or 1)


def lookup_tag(
    sim: Sim, project: str, location: str, service: str, tag: str
) -> tuple[str, str] | None:
    """(revision, image) the traffic tag points at now; None if unknown or drained."""
    key = service_key(project, location, service)
    settle(sim, [key])
    with sim.store.lock:
        run = sim.store.section("run")
        svc = run.get("services", {}).get(key)
        if svc is None or svc.get("drained"):
            return None
        revs = run.get("revisions", {}).get(key, {})
        for st in svc.get("trafficStatuses") or []:
            rev = st.get("revision", "")
            if st.get("tag") == tag and rev in revs:
                return rev, revs[rev]["image"]
    return None


def seed_service(
    sim: Sim,
    project: str,
    location: str,
    service: str,
    image: str,
    *,
    min_instances: int = 0,
    max_instances: int = 100,
    memory: str = "512Mi",
    cpu: str = "1",
    ingress: str | int = "all",
    env: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
    vpc_connector: str | None = None,
    cloud_sql_instances: list[str] | None = None,
    at: float | None = None,
) -> dict[str, Any]:
    """Create (or replace) a service with one ready revision serving 100%, as if deployed.

    `cloud_sql_instances` (connection names) become the `cloudsql` volume mounted at /cloudsql,
    as Cloud Run's Cloud SQL connection is configured."""
    t = now() if at is None else at
    container: dict[str, Any] = {
        "image": image,
        "resources": {"limits": {"cpu": cpu, "memory": memory}, "cpuIdle": True},
        "ports": [{"name": "http1", "containerPort": 8080}],
    }
    env_list: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in (env or {}).items()]
    env_list += [
        {"name": k, "valueSource": {"secretKeyRef": {"secret": v, "version": "latest"}}}
        for k, v in (secrets or {}).items()
    ]
    if env_list:
        container["env"] = env_list
    template: dict[str, Any] = {
        "scaling": {"minInstanceCount": min_instances, "maxInstanceCount": max_instances},
        "containers": [container],
        "serviceAccount": f"{service}@{project}.iam.gserviceaccount.com",
    }
    if cloud_sql_instances:
        container["volumeMounts"] = [{"name": "cloudsql", "mountPath": "/cloudsql"}]
        template["volumes"] = [
            {"name": "cloudsql", "cloudSqlInstance": {"instances": list(cloud_sql_instances)}}
        ]
    if vpc_connector:
        template["vpcAccess"] = {
            "connector": f"projects/{project}/locations/{location}/connectors/{vpc_connector}",
            "egress": 2,
        }
    ingress_value = INGRESS[ingress] if isinstance(ingress, str) else ingress
    spec, _ = _parse_service({"ingress": ingress_value, "template": template}, service)
    key = service_key(project, location, service)
    with sim.store.mutate() as d:
        run = _run(d)
        svc = _new_service_record(sim, project, location, service, spec, t)
        revs: dict[str, Any] = {}
        name = _decide_revision(sim, key, service, spec, None, revs)
        assert name is not None
        _add_revision(sim, revs, svc, name, spec["template"], t, state="ready")
        svc.update(
            latestReady=name,
            observedGeneration=1,
            servingTraffic=copy.deepcopy(spec["traffic"]),
            trafficStatuses=[{"type": LATEST, "revision": name, "percent": 100}],
            terminal=_cond("Ready", SUCCEEDED, t),
            conditions=[
                _cond("RoutesReady", SUCCEEDED, t),
                _cond("ConfigurationsReady", SUCCEEDED, t),
            ],
        )
        run["services"][key] = svc
        run["revisions"][key] = revs
        record_split(sim, key, [(name, 100, revs[name]["image"])], at=t)
        return _service_view(sim, svc)


def summary(sim: Sim) -> list[dict[str, Any]]:
    """Every service with its traffic, serving split and revisions (for /_sim/state)."""
    settle(sim)
    out: list[dict[str, Any]] = []
    with sim.store.lock:
        run = sim.store.section("run")
        for key, svc in sorted(run.get("services", {}).items()):
            revs = run.get("revisions", {}).get(key, {})
            view = _service_view(sim, svc)
            out.append(
                {
                    "name": view["name"],
                    "project": svc["project"],
                    "location": svc["location"],
                    "service": svc["service"],
                    "uri": view["uri"],
                    "generation": svc["generation"],
                    "observedGeneration": svc["observedGeneration"],
                    "reconciling": bool(svc["pending"]),
                    "ready": STATE_NAMES[(svc.get("terminal") or {}).get("state", 0)],
                    "message": (svc.get("terminal") or {}).get("message", ""),
                    "latestReadyRevision": svc.get("latestReady"),
                    "latestCreatedRevision": svc.get("latestCreated"),
                    "traffic": copy.deepcopy(svc["spec"]["traffic"]),
                    "trafficStatuses": copy.deepcopy(svc.get("trafficStatuses") or []),
                    "serving": [
                        {"revision": r, "percent": p, "image": i}
                        for r, p, i in _split_from_statuses(svc, revs)
                    ],
                    "scaling": copy.deepcopy(svc["spec"].get("scaling") or {}),
                    "drained": bool(svc.get("drained")),
                    "warm": _warm_revisions(svc, revs),
                    "revisions": [
                        {
                            "name": n,
                            "image": r["image"],
                            "state": r["state"],
                            "message": r.get("message") or "",
                            "createTime": rfc3339(r["createTime"]),
                            "behavior": behavior_for(sim, svc["service"], r["image"]),
                        }
                        for n, r in sorted(revs.items(), key=lambda kv: -kv[1]["seq"])
                    ],
                }
            )
    return out


# --------------------------------------------------------------------------- router


def router(sim: Sim) -> APIRouter:
    r = APIRouter(dependencies=[Depends(_enum_mode)])
    base = "/v2/projects/{project}/locations/{location}"

    @r.get(base + "/services/{service}")
    def get_service(project: str, location: str, service: str) -> Response:
        sim.faults.apply("run.services.get")
        key = service_key(project, location, service)
        settle(sim, [key])
        with sim.store.lock:
            svc = sim.store.section("run").get("services", {}).get(key)
            if svc is None:
                raise _not_found("SERVICE", service, project, location)
            return _json(_service_view(sim, svc))

    @r.get(base + "/services")
    def list_services(
        project: str,
        location: str,
        page_size: int = Query(0, alias="pageSize"),
        page_token: str = Query("", alias="pageToken"),
    ) -> Response:
        sim.faults.apply("run.services.list")
        prefix = f"{project}/" if location == "-" else f"{project}/{location}/"
        with sim.store.lock:
            keys = sorted(
                k for k in sim.store.section("run").get("services", {}) if k.startswith(prefix)
            )
        settle(sim, keys)
        chunk, nxt = _page(keys, page_size, page_token)
        with sim.store.lock:
            services = sim.store.section("run").get("services", {})
            views = [_service_view(sim, services[k]) for k in chunk if k in services]
            out: dict[str, Any] = {}
            if views:
                out["services"] = views
            if nxt:
                out["nextPageToken"] = nxt
            return _json(out)

    @r.post(base + "/services")
    def create_service(
        project: str,
        location: str,
        body: dict[str, Any] | None = Body(None),
        service_id: str = Query("", alias="serviceId"),
        validate_only: bool = Query(False, alias="validateOnly"),
    ) -> Response:
        outcome = sim.faults.apply("run.services.create")
        if not service_id:
            raise _bad_request("serviceId is required.", "service_id")
        if not SERVICE_ID.match(service_id):
            raise _bad_request(
                f"serviceId '{service_id}' is invalid: it must be a lowercase DNS label of at "
                "most 49 characters (letters, digits and '-', starting with a letter).",
                "service_id",
            )
        try:
            return _json(
                _create(sim, project, location, service_id, body, validate_only, outcome.op_error)
            )
        except _ValidateOnly as v:
            return _json(v.answer)

    @r.patch(base + "/services/{service}")
    def update_service(
        project: str,
        location: str,
        service: str,
        body: dict[str, Any] | None = Body(None),
        validate_only: bool = Query(False, alias="validateOnly"),
        allow_missing: bool = Query(False, alias="allowMissing"),
        update_mask: str = Query("", alias="updateMask"),
    ) -> Response:
        outcome = sim.faults.apply("run.services.patch")
        try:
            return _json(
                _update(
                    sim,
                    project,
                    location,
                    service,
                    body,
                    validate_only,
                    allow_missing,
                    outcome.op_error,
                    update_mask,
                )
            )
        except _ValidateOnly as v:
            return _json(v.answer)

    @r.delete(base + "/services/{service}")
    def delete_service(
        project: str,
        location: str,
        service: str,
        etag: str = Query(""),
        validate_only: bool = Query(False, alias="validateOnly"),
    ) -> Response:
        outcome = sim.faults.apply("run.services.delete")
        with _settled_service(sim, project, location, service) as (key, t, run, svc):
            if svc is None:
                raise _not_found("SERVICE", service, project, location)
            _check_etag(etag, svc, _service_name(project, location, service))
            view = _service_view(sim, svc)
            if validate_only:
                return _json(_done_operation(project, location, SERVICE_TYPE, view))
            if outcome.op_error:  # the deletion fails: the service stays
                op = _new_operation(
                    sim, run, project, location, key=key, target=view["name"], kind="delete",
                    rtype=SERVICE_TYPE, snapshot=copy.deepcopy(view),
                    done_at=t + sim.settings.run_op_seconds,
                    error={"code": 13, "message": outcome.op_error},
                )  # fmt: skip
                return _json(_op_view(sim, run, op, t))
            for name in svc["pending"]:
                pending = run["operations"].get(name)
                if pending:
                    pending.update(
                        done=True,
                        error={
                            "code": 10,
                            "message": f"Service '{service}' was deleted before this operation "
                            "completed.",
                        },
                    )
            del run["services"][key]
            run["revisions"].pop(key, None)
            op = _new_operation(
                sim, run, project, location, key=key, target=view["name"], kind="delete",
                rtype=SERVICE_TYPE,
                snapshot=copy.deepcopy(view), done_at=t + sim.settings.run_op_seconds,
            )  # fmt: skip
            record_split(sim, key, [], at=t)
            return _json(_op_view(sim, run, op, t))

    @r.get(base + "/services/{service}/revisions/{revision}")
    def get_revision(project: str, location: str, service: str, revision: str) -> Response:
        sim.faults.apply("run.revisions.get")
        key = service_key(project, location, service)
        settle(sim, [key])
        with sim.store.lock:
            run = sim.store.section("run")
            svc = run.get("services", {}).get(key)
            rev = run.get("revisions", {}).get(key, {}).get(revision)
            if svc is None or rev is None:
                raise _not_found("REVISION", revision, project, location)
            return _json(_revision_view(svc, revision, rev))

    @r.get(base + "/services/{service}/revisions")
    def list_revisions(
        project: str,
        location: str,
        service: str,
        page_size: int = Query(0, alias="pageSize"),
        page_token: str = Query("", alias="pageToken"),
    ) -> Response:
        sim.faults.apply("run.revisions.list")
        key = service_key(project, location, service)
        settle(sim, [key])
        with sim.store.lock:
            run = sim.store.section("run")
            svc = run.get("services", {}).get(key)
            if svc is None:
                raise _not_found("SERVICE", service, project, location)
            revs = run.get("revisions", {}).get(key, {})
            names = sorted(revs, key=lambda n: -revs[n]["seq"])
            chunk, nxt = _page(names, page_size, page_token)
            out: dict[str, Any] = {}
            if chunk:
                out["revisions"] = [_revision_view(svc, n, revs[n]) for n in chunk]
            if nxt:
                out["nextPageToken"] = nxt
            return _json(out)

    @r.delete(base + "/services/{service}/revisions/{revision}")
    def delete_revision(
        project: str,
        location: str,
        service: str,
        revision: str,
        etag: str = Query(""),
        validate_only: bool = Query(False, alias="validateOnly"),
    ) -> Response:
        outcome = sim.faults.apply("run.revisions.delete")
        with _settled_service(sim, project, location, service) as (key, t, run, svc):
            revs = run["revisions"].get(key, {})
            rev = revs.get(revision)
            if svc is None or rev is None:
                raise _not_found("REVISION", revision, project, location)
            if etag and not _etag_matches(etag, rev["etag"]):
                raise ApiError(
                    409,
                    f"The etag {etag} provided in the request does not match the current etag "
                    f"of revision '{revision}' ({rev['etag']}).",
                    rpc_status="ABORTED",
                    reason="ETAG_MISMATCH",
                )
            in_traffic = {st.get("revision") for st in svc.get("trafficStatuses") or []}
            in_traffic |= {tt.get("revision") for tt in svc["spec"]["traffic"]}
            if revision in in_traffic:
                raise _failed_precondition(
                    f"Revision '{revision}' cannot be deleted because it is receiving traffic "
                    "or is referenced by a traffic target. Move its traffic and tags first."
                )
            if revision == svc.get("latestCreated") or len(revs) == 1:
                raise _failed_precondition(
                    f"Revision '{revision}' cannot be deleted because it is the latest revision "
                    f"of service '{service}'."
                )
            view = _revision_view(svc, revision, rev)
            if validate_only:
                return _json(_done_operation(project, location, REVISION_TYPE, view))
            if not outcome.op_error:
                del revs[revision]
                if svc.get("latestReady") == revision:
                    svc["latestReady"] = _latest_ready(revs)
            op = _new_operation(
                sim, run, project, location, key=key, target=view["name"], kind="deleteRevision",
                rtype=REVISION_TYPE, snapshot=copy.deepcopy(view),
                done_at=t + sim.settings.run_op_seconds,
                error={"code": 13, "message": outcome.op_error} if outcome.op_error else None,
            )  # fmt: skip
            return _json(_op_view(sim, run, op, t))

    def _read_op(project: str, location: str, op_id: str) -> tuple[dict[str, Any], float]:
        name = f"projects/{project}/locations/{location}/operations/{op_id}"
        with sim.store.lock:
            op = sim.store.section("run").get("operations", {}).get(name)
            key = op["service"] if op else None
        if op is None or key is None:
            raise ApiError(404, f"Operation '{name}' not found.")
        settle(sim, [key])
        for hook in READ_HOOKS:
            hook(sim)
        t = now()
        with sim.store.lock:
            run = sim.store.section("run")
            return copy.deepcopy(_op_view(sim, run, op, t)), op["doneAt"]

    @r.post(base + "/operations/{op_id}:wait")
    async def wait_operation(
        project: str, location: str, op_id: str, body: dict[str, Any] | None = Body(None)
    ) -> Response:
        # async: a long wait sleeps on the event loop, not in one of the threadpool's workers
        # (Stagecoach waits for every Cloud Run operation this way).
        await run_in_threadpool(sim.faults.apply, "run.operations.wait")
        timeout = MAX_WAIT_SECONDS
        raw = (body or {}).get("timeout")
        if raw:
            try:
                timeout = min(float(str(raw).rstrip("s")), MAX_WAIT_SECONDS)
            except ValueError:
                raise _bad_request(f"Invalid timeout '{raw}'.", "timeout") from None
        deadline = time.monotonic() + timeout
        while True:
            view, done_at = await run_in_threadpool(_read_op, project, location, op_id)
            left = deadline - time.monotonic()
            if view.get("done") or left <= 0:
                return _json(view)
            await asyncio.sleep(min(left, max(done_at - now(), 0.0) + 0.005, 1.0))

    @r.get(base + "/operations/{op_id}")
    def get_operation(project: str, location: str, op_id: str) -> Response:
        sim.faults.apply("run.operations.get")
        view, _ = _read_op(project, location, op_id)
        return _json(view)

    return r
