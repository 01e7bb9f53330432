"""Cloud Run Admin v2: the names, enums, errors and etags of services and revisions, and the
rules a service spec must follow (parsing a request body into a normalized spec, update masks,
traffic targets), as the real API applies them. Bodies are proto3 JSON (gcpsim.api.run_json)."""

from __future__ import annotations

import base64
import copy
import os
import re
from typing import Any

from google.cloud.run_v2.types import revision as revision_types
from google.cloud.run_v2.types import service as service_types
from google.protobuf import json_format

from gcpsim.errors import ApiError
from gcpsim.store import rfc3339

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


SERVICE_PB = service_types.Service.pb()


REVISION_PB = revision_types.Revision.pb()


def service_name(project: str, location: str, service: str) -> str:
    return f"projects/{project}/locations/{location}/services/{service}"


def revision_name(project: str, location: str, service: str, revision: str) -> str:
    return f"{service_name(project, location, service)}/revisions/{revision}"


def not_found(kind: str, name: str, project: str, location: str) -> ApiError:
    return ApiError(
        404,
        f"Resource '{name}' of kind '{kind}' in region '{location}' in project '{project}' "
        "does not exist.",
    )


def bad_request(message: str, field: str | None = None) -> ApiError:
    details = []
    if field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        )
    return ApiError(400, message, details=details)


def failed_precondition(message: str) -> ApiError:
    return ApiError(400, message, rpc_status="FAILED_PRECONDITION")


def new_etag() -> str:
    return '"' + base64.urlsafe_b64encode(os.urandom(12)).decode().rstrip("=") + '"'


def etag_matches(given: str, current: str) -> bool:
    def norm(e: str) -> str:
        e = e.strip()
        return e[2:].strip('"') if e.startswith("W/") else e.strip('"')

    return norm(given) == norm(current)


def check_etag(given: str | None, svc: dict[str, Any], name: str) -> None:
    if given and not etag_matches(given, svc["etag"]):
        raise ApiError(
            409,
            f"The etag {given} provided in the request does not match the current etag of "
            f"'{name}' ({svc['etag']}): the resource was modified concurrently. Get it again "
            "and retry.",
            rpc_status="ABORTED",
            reason="ETAG_MISMATCH",
        )


def condition(
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


def prune_zero(obj: Any) -> Any:
    """Drop zero values (None, 0, "", False, [], {}) as proto3 JSON does."""
    if isinstance(obj, dict):
        out = {k: prune_zero(v) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v not in (None, 0, "", False, [], {})}
    if isinstance(obj, list):
        return [prune_zero(v) for v in obj]
    return obj


def image_of(template: dict[str, Any]) -> str:
    containers = template.get("containers") or []
    for c in containers:
        if c.get("ports"):
            return str(c.get("image", ""))
    return str(containers[0].get("image", "")) if containers else ""


def template_core(template: dict[str, Any]) -> dict[str, Any]:
    """The part of a template that decides whether a new revision is needed."""
    return {k: v for k, v in template.items() if k != "revision"}


def is_drained(spec: dict[str, Any]) -> bool:
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
            if desc is SERVICE_PB.DESCRIPTOR and k in OUTPUT_ONLY:
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


def parse_body(body: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """Request body -> (spec, etag): known fields canonical (enum ints), unknown ones kept,
    output-only ones dropped."""
    msg = SERVICE_PB()
    try:
        json_format.ParseDict(body or {}, msg, ignore_unknown_fields=True)
    except json_format.ParseError as err:
        raise bad_request(f"Invalid JSON payload received. {err}") from None
    parsed = json_format.MessageToDict(msg, use_integers_for_enums=True)
    _graft_unknown(parsed, body or {}, SERVICE_PB.DESCRIPTOR)
    etag = str(parsed.get("etag", ""))
    spec = {k: v for k, v in parsed.items() if k not in OUTPUT_ONLY}
    return spec, etag


def _camel(path: str) -> str:
    return ".".join(re.sub(r"_([a-z])", lambda m: m.group(1).upper(), p) for p in path.split("."))


def _check_mask_path(path: str) -> None:
    desc = SERVICE_PB.DESCRIPTOR
    for part in path.split("."):
        fields = {f.json_name: f for f in (desc.fields if desc is not None else [])}
        f = fields.get(part)
        if f is None or (desc is SERVICE_PB.DESCRIPTOR and part in OUTPUT_ONLY):
            raise bad_request(
                f"Invalid update mask: '{path}' is not a field of Service that can be updated.",
                "update_mask",
            )
        desc = f.message_type
        if desc is not None and f.is_repeated and part != path.split(".")[-1]:
            raise bad_request(
                f"Invalid update mask: '{path}' reaches into a repeated field; name the whole "
                "field instead.",
                "update_mask",
            )


def masked(current: dict[str, Any], given: dict[str, Any], mask: str) -> dict[str, Any]:
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
        raise bad_request(
            f"service.template.containers.resources.limits.cpu: '{text}' is not a CPU value.",
            "service.template.containers.resources.limits.cpu",
        ) from None


def normalize(spec: dict[str, Any], service: str) -> dict[str, Any]:
    """Defaults the API fills in and the checks it makes on a whole spec."""
    spec.setdefault("ingress", 1)
    spec.setdefault("launchStage", 4)
    template = spec.setdefault("template", {})
    containers = template.get("containers") or []
    if not containers or not all(c.get("image") for c in containers):
        raise bad_request(
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
            raise bad_request(
                f"service.template.max_instance_request_concurrency: Total cpu < 1 "
                f"({total_cpu:g}) is not supported with concurrency > 1 "
                f"({template['maxInstanceRequestConcurrency']}); set it to 1 or request at "
                "least 1 CPU.",
                "service.template.max_instance_request_concurrency",
            )
        if not all((c.get("resources") or {}).get("cpuIdle") for c in containers):
            raise bad_request(
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
        raise bad_request(
            f"service.template.revision: revision name '{rev}' must start with the service "
            f"name followed by a hyphen ('{service}-') and be a lowercase DNS label of at most "
            "63 characters.",
            "service.template.revision",
        )
    return spec


def parse_service(body: dict[str, Any] | None, service: str) -> tuple[dict[str, Any], str]:
    """Request body -> (normalized spec, etag). Accepts enum ints and names, keeps unknowns."""
    spec, etag = parse_body(body)
    return normalize(spec, service), etag


def validate_traffic(traffic: list[dict[str, Any]], known: set[str], service: str) -> None:
    total = 0
    tags: set[str] = set()
    for i, t in enumerate(traffic):
        field = f"service.traffic[{i}]"
        ttype = t.get("type", 0)
        rev = t.get("revision", "")
        pct = int(t.get("percent", 0))
        tag = t.get("tag", "")
        if ttype not in (LATEST, REVISION):
            raise bad_request(
                f"Invalid value at '{field}.type': a traffic target needs the type "
                "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST or TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION.",
                f"{field}.type",
            )
        if ttype == LATEST and rev:
            raise bad_request(
                f"{field}: a TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST target must not name a "
                f"revision (got '{rev}'); use TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION to pin one.",
                f"{field}.revision",
            )
        if ttype == REVISION and not rev:
            raise bad_request(
                f"{field}: a TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION target needs a revision.",
                f"{field}.revision",
            )
        if ttype == REVISION and rev not in known:
            raise bad_request(
                f"Revision '{rev}' does not exist or is deleted. Update all traffic to route to "
                "currently available revisions.",
                f"{field}.revision",
            )
        if not 0 <= pct <= 100:
            raise bad_request(
                f"{field}.percent must be between 0 and 100, got {pct}.", f"{field}.percent"
            )
        if tag:
            if not DNS_LABEL.match(tag) or len(tag) > 46:
                raise bad_request(
                    f"{field}.tag '{tag}' is not valid: a tag must be a lowercase DNS label "
                    "(letters, digits and '-', starting with a letter) of at most 46 characters.",
                    f"{field}.tag",
                )
            if len(tag) + len(service) > 46:
                raise bad_request(
                    f"{field}.tag: Combined traffic tag and service name cannot exceed 46 "
                    f"characters ('{tag}' + '{service}' = {len(tag) + len(service)}).",
                    f"{field}.tag",
                )
            if tag in tags:
                raise bad_request(
                    f"{field}.tag '{tag}' is used more than once; traffic tags must be unique.",
                    f"{field}.tag",
                )
            tags.add(tag)
        total += pct
    if total != 100:
        raise bad_request(
            f"Traffic percentages must add up to 100, but the traffic targets add up to {total}.",
            "service.traffic",
        )
