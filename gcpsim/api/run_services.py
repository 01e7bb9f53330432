"""Cloud Run Admin v2 routes: services (get, list, create, patch, delete), revisions (get, list,
delete) and operations (get, wait). State: gcpsim.model.run."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from gcpsim.api.deps import SimDep
from gcpsim.api.run_json import enum_mode, json_response, page_response, paginate
from gcpsim.errors import ApiError
from gcpsim.model.run import (
    READ_HOOKS,
    ValidateOnly,
    create,
    new_operation,
    newest_ready,
    settle,
    settled_service,
    update,
)
from gcpsim.model.run_queries import settled_read
from gcpsim.model.run_spec import (
    REVISION_TYPE,
    SERVICE_ID,
    SERVICE_TYPE,
    bad_request,
    check_etag,
    etag_matches,
    failed_precondition,
    not_found,
    service_name,
)
from gcpsim.model.run_views import done_operation, op_view, revision_view, service_view
from gcpsim.model.traffic import record_split
from gcpsim.sim import Sim
from gcpsim.store import now

MAX_WAIT_SECONDS = 300.0


router = APIRouter(dependencies=[Depends(enum_mode)])
BASE = "/v2/projects/{project}/locations/{location}"


@router.get(BASE + "/services/{service}")
def get_service(sim: SimDep, project: str, location: str, service: str) -> Response:
    sim.faults.apply("run.services.get")
    with settled_read(sim, project, location, service) as (svc, _):
        if svc is None:
            raise not_found("SERVICE", service, project, location)
        return json_response(service_view(sim, svc))


@router.get(BASE + "/services")
def list_services(
    sim: SimDep,
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
    chunk, nxt = paginate(keys, page_size, page_token)
    with sim.store.lock:
        services = sim.store.section("run").get("services", {})
        views = [service_view(sim, services[k]) for k in chunk if k in services]
        return page_response("services", views, nxt)


def _operation_answer(change: Callable[[], dict[str, Any]]) -> Response:
    """The long-running operation `change` starts, or its validateOnly answer."""
    try:
        return json_response(change())
    except ValidateOnly as v:
        return json_response(v.answer)


@router.post(BASE + "/services")
def create_service(
    sim: SimDep,
    project: str,
    location: str,
    body: dict[str, Any] | None = Body(None),
    service_id: str = Query("", alias="serviceId"),
    validate_only: bool = Query(False, alias="validateOnly"),
) -> Response:
    outcome = sim.faults.apply("run.services.create")
    if not service_id:
        raise bad_request("serviceId is required.", "service_id")
    if not SERVICE_ID.match(service_id):
        raise bad_request(
            f"serviceId '{service_id}' is invalid: it must be a lowercase DNS label of at "
            "most 49 characters (letters, digits and '-', starting with a letter).",
            "service_id",
        )
    return _operation_answer(
        lambda: create(sim, project, location, service_id, body, validate_only, outcome.op_error)
    )


@router.patch(BASE + "/services/{service}")
def update_service(
    sim: SimDep,
    project: str,
    location: str,
    service: str,
    body: dict[str, Any] | None = Body(None),
    validate_only: bool = Query(False, alias="validateOnly"),
    allow_missing: bool = Query(False, alias="allowMissing"),
    update_mask: str = Query("", alias="updateMask"),
) -> Response:
    outcome = sim.faults.apply("run.services.patch")
    return _operation_answer(
        lambda: update(
            sim, project, location, service, body, validate_only, allow_missing,
            outcome.op_error, update_mask,
        )
    )  # fmt: skip


@router.delete(BASE + "/services/{service}")
def delete_service(
    sim: SimDep,
    project: str,
    location: str,
    service: str,
    etag: str = Query(""),
    validate_only: bool = Query(False, alias="validateOnly"),
) -> Response:
    outcome = sim.faults.apply("run.services.delete")
    with settled_service(sim, project, location, service) as (key, t, run, svc):
        if svc is None:
            raise not_found("SERVICE", service, project, location)
        check_etag(etag, svc, service_name(project, location, service))
        view = service_view(sim, svc)
        if validate_only:
            return json_response(done_operation(project, location, SERVICE_TYPE, view))
        if outcome.op_error:  # the deletion fails: the service stays
            op = new_operation(
                sim, run, project, location, key=key, target=view["name"], kind="delete",
                rtype=SERVICE_TYPE, snapshot=copy.deepcopy(view),
                done_at=t + sim.settings.run_op_seconds,
                error={"code": 13, "message": outcome.op_error},
            )  # fmt: skip
            return json_response(op_view(sim, run, op, t))
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
        op = new_operation(
            sim, run, project, location, key=key, target=view["name"], kind="delete",
            rtype=SERVICE_TYPE,
            snapshot=copy.deepcopy(view), done_at=t + sim.settings.run_op_seconds,
        )  # fmt: skip
        record_split(sim, key, [], at=t)
        return json_response(op_view(sim, run, op, t))


@router.get(BASE + "/services/{service}/revisions/{revision}")
def get_revision(sim: SimDep, project: str, location: str, service: str, revision: str) -> Response:
    sim.faults.apply("run.revisions.get")
    with settled_read(sim, project, location, service) as (svc, revs):
        rev = revs.get(revision)
        if svc is None or rev is None:
            raise not_found("REVISION", revision, project, location)
        return json_response(revision_view(svc, revision, rev))


@router.get(BASE + "/services/{service}/revisions")
def list_revisions(
    sim: SimDep,
    project: str,
    location: str,
    service: str,
    page_size: int = Query(0, alias="pageSize"),
    page_token: str = Query("", alias="pageToken"),
) -> Response:
    sim.faults.apply("run.revisions.list")
    with settled_read(sim, project, location, service) as (svc, revs):
        if svc is None:
            raise not_found("SERVICE", service, project, location)
        names = sorted(revs, key=lambda n: -revs[n]["seq"])
        chunk, nxt = paginate(names, page_size, page_token)
        return page_response("revisions", [revision_view(svc, n, revs[n]) for n in chunk], nxt)


@router.delete(BASE + "/services/{service}/revisions/{revision}")
def delete_revision(
    sim: SimDep,
    project: str,
    location: str,
    service: str,
    revision: str,
    etag: str = Query(""),
    validate_only: bool = Query(False, alias="validateOnly"),
) -> Response:
    outcome = sim.faults.apply("run.revisions.delete")
    with settled_service(sim, project, location, service) as (key, t, run, svc):
        revs = run["revisions"].get(key, {})
        rev = revs.get(revision)
        if svc is None or rev is None:
            raise not_found("REVISION", revision, project, location)
        if etag and not etag_matches(etag, rev["etag"]):
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
            raise failed_precondition(
                f"Revision '{revision}' cannot be deleted because it is receiving traffic "
                "or is referenced by a traffic target. Move its traffic and tags first."
            )
        if revision == svc.get("latestCreated") or len(revs) == 1:
            raise failed_precondition(
                f"Revision '{revision}' cannot be deleted because it is the latest revision "
                f"of service '{service}'."
            )
        view = revision_view(svc, revision, rev)
        if validate_only:
            return json_response(done_operation(project, location, REVISION_TYPE, view))
        if not outcome.op_error:
            del revs[revision]
            if svc.get("latestReady") == revision:
                svc["latestReady"] = newest_ready(revs)
        op = new_operation(
            sim, run, project, location, key=key, target=view["name"], kind="deleteRevision",
            rtype=REVISION_TYPE, snapshot=copy.deepcopy(view),
            done_at=t + sim.settings.run_op_seconds,
            error={"code": 13, "message": outcome.op_error} if outcome.op_error else None,
        )  # fmt: skip
        return json_response(op_view(sim, run, op, t))


def _read_op(sim: Sim, project: str, location: str, op_id: str) -> tuple[dict[str, Any], float]:
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
        return copy.deepcopy(op_view(sim, run, op, t)), op["doneAt"]


@router.post(BASE + "/operations/{op_id}:wait")
async def wait_operation(
    sim: SimDep, project: str, location: str, op_id: str, body: dict[str, Any] | None = Body(None)
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
            raise bad_request(f"Invalid timeout '{raw}'.", "timeout") from None
    deadline = time.monotonic() + timeout
    while True:
        view, done_at = await run_in_threadpool(_read_op, sim, project, location, op_id)
        left = deadline - time.monotonic()
        if view.get("done") or left <= 0:
            return json_response(view)
        await asyncio.sleep(min(left, max(done_at - now(), 0.0) + 0.005, 1.0))


@router.get(BASE + "/operations/{op_id}")
def get_operation(sim: SimDep, project: str, location: str, op_id: str) -> Response:
    sim.faults.apply("run.operations.get")
    view, _ = _read_op(sim, project, location, op_id)
    return json_response(view)
