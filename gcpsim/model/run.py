"""Cloud Run Admin API v2 state: services, revisions and their long-running operations.

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
`key` is `gcpsim.model.traffic.service_key(project, location, service)`.

Routes: gcpsim.api.run_services; views: gcpsim.model.run_views; spec rules:
gcpsim.model.run_spec; read-only helpers other modules use: gcpsim.model.run_queries.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gcpsim.errors import ApiError
from gcpsim.model.behavior import behavior_for
from gcpsim.model.run_spec import (
    BROKEN_MESSAGE,
    FAILED,
    LATEST,
    SCALING_MANUAL,
    SERVICE_TYPE,
    SUCCEEDED,
    check_etag,
    condition,
    image_of,
    is_drained,
    masked,
    new_etag,
    normalize,
    not_found,
    parse_body,
    parse_service,
    prune_zero,
    service_name,
    template_core,
    validate_traffic,
)
from gcpsim.model.run_views import done_operation, op_finished, op_view, service_view
from gcpsim.model.traffic import record_split, service_key
from gcpsim.sim import Sim
from gcpsim.store import now
from gcpsim.urls import tag_uri

MAX_OPERATIONS = 500  # operation records kept (oldest finished ones go first)


KEEP_SNAPSHOTS = 32  # finished operations that keep their full result; older ones answer
# with the service as it is now (keeps state.json, rewritten on every write, small)


# Called before an operation is read: other resources sharing these operations (Cloud Run
# jobs, gcpsim.model.jobs) apply what is due first.
READ_HOOKS: list[Callable[[Sim], None]] = []


def run_section(d: dict[str, Any]) -> dict[str, Any]:
    run = d.setdefault("run", {})
    run.setdefault("services", {})
    run.setdefault("revisions", {})
    run.setdefault("operations", {})
    return run


def newest_ready(revs: dict[str, Any]) -> str | None:
    ready = [(r["seq"], n) for n, r in revs.items() if r["state"] == "ready"]
    return max(ready)[1] if ready else None


def split_from_statuses(svc: dict[str, Any], revs: dict[str, Any]) -> list[tuple[str, int, str]]:
    if svc.get("drained"):
        return []
    out = []
    for st in svc.get("trafficStatuses") or []:
        pct = int(st.get("percent", 0))
        rev = st.get("revision", "")
        if pct > 0 and rev in revs:
            out.append((rev, pct, revs[rev]["image"]))
    return out


def warm_revisions(svc: dict[str, Any], revs: dict[str, Any]) -> list[str]:
    """Revisions with instances running: those receiving traffic (none while drained) and,
    drained or not, revisions kept only by a traffic tag whose template asks for minimum
    instances (Cloud Run starts a tagged revision's revision-level minimum)."""
    out = [rev for rev, _, _ in split_from_statuses(svc, revs)]
    for st in svc.get("trafficStatuses") or []:
        rev = st.get("revision", "")
        if not st.get("tag") or rev not in revs or rev in out:
            continue
        scaling = revs[rev]["template"].get("scaling") or {}
        if int(scaling.get("minInstanceCount") or 0) > 0:
            out.append(rev)
    return out


def service_scaling(old: dict[str, Any], new: dict[str, Any]) -> None:
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
    run = run_section(d)
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
    latest_ready = newest_ready(revs)
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
            statuses.append(prune_zero(st))
    if failure is None:
        svc["latestReady"] = latest_ready
        svc["trafficStatuses"] = statuses
        svc["observedGeneration"] = op["generation"]
        svc["servingTraffic"] = copy.deepcopy(op["traffic"])
        svc["drained"] = op["drained"]
        svc["terminal"] = condition("Ready", SUCCEEDED, t)
        svc["conditions"] = [
            condition("RoutesReady", SUCCEEDED, t),
            condition("ConfigurationsReady", SUCCEEDED, t),
        ]
        record_split(sim, key, split_from_statuses(svc, revs), at=t)
    else:
        code, message = failure
        svc["terminal"] = condition("Ready", FAILED, t, message, severity=1)
        svc["conditions"] = [
            condition("RoutesReady", FAILED, t, message, severity=1),
            condition("ConfigurationsReady", FAILED if code == 9 else SUCCEEDED, t),
        ]
        if svc.get("specOp") == op["name"] and svc.get("servingTraffic") is not None:
            svc["spec"]["traffic"] = copy.deepcopy(svc["servingTraffic"])
        op["error"] = {"code": code, "message": message}
    svc["pending"] = [n for n in svc["pending"] if n != op["name"]]
    op["done"] = True
    op["snapshot"] = copy.deepcopy(service_view(sim, svc))


def settle_locked(sim: Sim, d: dict[str, Any], key: str, t: float) -> None:
    run = run_section(d)
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
def settled_service(
    sim: Sim, project: str, location: str, service: str
) -> Iterator[tuple[str, float, dict[str, Any], dict[str, Any] | None]]:
    """Hold the store for a read-modify-write of one service, its due operations applied first.

    Yields the service's key, the time `now()` taken before the lock, the run section and the
    service (None: it does not exist)."""
    key = service_key(project, location, service)
    t = now()
    with sim.store.mutate() as d:
        run = run_section(d)
        settle_locked(sim, d, key, t)
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
            settle_locked(sim, d, k, t)


def _prune_operations(run: dict[str, Any], t: float) -> None:
    ops = run["operations"]
    finished = [n for n, o in ops.items() if op_finished(o, t)]
    for name in finished[:-KEEP_SNAPSHOTS]:
        ops[name]["snapshot"] = None
    for name in finished[: max(len(ops) - MAX_OPERATIONS, 0)]:
        del ops[name]


def new_operation(
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


def decide_revision(
    sim: Sim,
    key: str,
    service: str,
    spec: dict[str, Any],
    svc: dict[str, Any] | None,
    revs: dict[str, Any],
) -> str | None:
    """The name of the revision this spec creates, or None when it creates none."""
    template = spec["template"]
    core = template_core(template)
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
    if svc is not None and template_core(svc["spec"]["template"]) == core:
        return None
    n = (svc["revCounter"] if svc else 0) + 1
    attempt = 0
    while True:
        name = f"{service}-{n:05d}-{_revision_suffix(sim, key, n, attempt)}"
        if name not in revs:
            return name
        attempt += 1


def add_revision(
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
        "template": copy.deepcopy(template_core(template)),
        "image": image_of(template),
        "createTime": t,
        "readyTime": t if state == "ready" else None,
        "state": state,
        "etag": new_etag(),
    }
    svc["latestCreated"] = name


def new_service_record(
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
        "etag": new_etag(),
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


def create(
    sim: Sim,
    project: str,
    location: str,
    service: str,
    body: dict[str, Any] | None,
    validate_only: bool,
    op_error: str | None,
) -> dict[str, Any]:
    spec, _ = parse_service(body, service)
    key = service_key(project, location, service)
    t = now()
    with sim.store.mutate() as d:
        run = run_section(d)
        if key in run["services"]:
            raise ApiError(
                409, f"Resource '{service}' already exists.", rpc_status="ALREADY_EXISTS"
            )
        revs: dict[str, Any] = {}
        new = decide_revision(sim, key, service, spec, None, revs)
        validate_traffic(spec["traffic"], {new} if new else set(), service)
        svc = new_service_record(sim, project, location, service, spec, t)
        if validate_only:
            view = service_view(sim, svc)
            d_ops = done_operation(project, location, SERVICE_TYPE, view)
            raise ValidateOnly(d_ops)
        run["services"][key] = svc
        run["revisions"][key] = revs
        if new:
            add_revision(sim, revs, svc, new, spec["template"], t)
        op = new_operation(
            sim, run, project, location, key=key, target=service_name(project, location, service),
            kind="create", rtype=SERVICE_TYPE,
            snapshot=None, done_at=t + sim.settings.run_op_seconds, newRevision=new,
            traffic=copy.deepcopy(spec["traffic"]), generation=1, drained=is_drained(spec),
            opError=op_error,
        )  # fmt: skip
        svc["pending"].append(op["name"])
        svc["specOp"] = op["name"]
        return copy.deepcopy(op_view(sim, run, op, t))


class ValidateOnly(Exception):  # control flow: carries the validateOnly answer
    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__("validateOnly")
        self.answer = answer


def update(
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
    given, etag = parse_body(body)
    spec = {} if update_mask else normalize(copy.deepcopy(given), service)
    key = service_key(project, location, service)
    t = now()
    with sim.store.lock:
        exists = key in sim.store.section("run").get("services", {})
    if not exists:
        if allow_missing:
            return create(sim, project, location, service, body, validate_only, op_error)
        raise not_found("SERVICE", service, project, location)
    with sim.store.mutate() as d:
        run = run_section(d)
        settle_locked(sim, d, key, t)
        svc = run["services"].get(key)
        if svc is None:
            raise not_found("SERVICE", service, project, location)
        check_etag(etag, svc, service_name(project, location, service))
        if update_mask:
            spec = normalize(masked(svc["spec"], given, update_mask), service)
        service_scaling(svc["spec"], spec)
        revs = run["revisions"].setdefault(key, {})
        new = decide_revision(sim, key, service, spec, svc, revs)
        validate_traffic(spec["traffic"], set(revs) | ({new} if new else set()), service)
        changed = spec != svc["spec"]
        generation = svc["generation"] + (1 if changed else 0)
        if validate_only:
            preview = copy.deepcopy(svc)
            preview.update(spec=spec, generation=generation)
            raise ValidateOnly(
                done_operation(project, location, SERVICE_TYPE, service_view(sim, preview))
            )
        if changed:
            svc["spec"] = spec
            svc["generation"] = generation
            svc["updateTime"] = t
        svc["etag"] = new_etag()
        if new:
            add_revision(sim, revs, svc, new, spec["template"], t)
        last = run["operations"].get(svc["pending"][-1]) if svc["pending"] else None
        start = max(t, last["doneAt"]) if last else t
        op = new_operation(
            sim, run, project, location, key=key, target=service_name(project, location, service),
            kind="update", rtype=SERVICE_TYPE,
            snapshot=None, done_at=start + sim.settings.run_op_seconds, newRevision=new,
            traffic=copy.deepcopy(spec["traffic"]), generation=generation,
            drained=is_drained(spec), opError=op_error,
        )  # fmt: skip
        svc["pending"].append(op["name"])
        svc["specOp"] = op["name"]
        return copy.deepcopy(op_view(sim, run, op, t))
