"""Cloud Run Admin v2 routes for jobs (create, patch, get, list, delete, run) and executions
(get, list, cancel, delete), and gcpsim's `/_sim/job-behaviors` controls. State:
gcpsim.model.jobs."""

from __future__ import annotations

import copy
import random
import string
import uuid
from typing import Any

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import JSONResponse

from gcpsim.api import run_json
from gcpsim.api.deps import SimDep
from gcpsim.errors import ApiError
from gcpsim.model import run_spec, run_views
from gcpsim.model.jobs import (
    DEFAULT_TIMEOUT,
    EXECUTION_TYPE,
    JOB_ID,
    JOB_TYPE,
    MAX_EXECUTIONS,
    connections,
    finish_op,
    job_behavior_for,
    job_behaviors,
    job_key,
    job_name,
    job_tables,
    log_uri,
    new_job_operation,
    not_found,
    parse_job,
    seconds,
    set_job_behavior,
    settle,
    status_of,
)
from gcpsim.model.jobs_views import execution_view, job_view
from gcpsim.sim import Sim
from gcpsim.store import now


def op_response(sim: Sim, run: dict[str, Any], op: dict[str, Any]) -> Response:
    return run_json.json_response(copy.deepcopy(run_views.op_view(sim, run, op, now())))


router = APIRouter()
BASE = "/v2/projects/{project}/locations/{location}"


def _upsert(
    sim: Sim, project: str, location: str, job_id: str, body: dict[str, Any] | None, *,
    create: bool, allow_missing: bool = False, validate_only: bool = False,
) -> Response:  # fmt: skip
    spec = parse_job(body)
    key = job_key(project, location, job_id)
    name = job_name(project, location, job_id)
    t = now()
    with sim.store.mutate() as d:
        run, jobs, execs = job_tables(d)
        job = jobs.get(key)
        if create and job is not None:
            raise ApiError(409, f"Resource '{job_id}' already exists.", rpc_status="ALREADY_EXISTS")
        if not create and job is None and not allow_missing:
            raise not_found("JOB", job_id, project, location)
        if not create and job is not None:
            run_spec.check_etag((body or {}).get("etag"), job, name)
        new = job is None
        rec: dict[str, Any] = copy.deepcopy(job) if job else {
            "name": name, "uid": str(uuid.uuid4()), "generation": 0, "createTime": t,
            "executionCount": 0, "seq": 0,
        }  # fmt: skip
        rec.update(spec, generation=rec["generation"] + 1, updateTime=t)
        rec["etag"] = run_spec.new_etag()
        view = job_view(rec, execs.get(key, {}), t)
        if validate_only:
            return run_json.json_response(
                run_views.done_operation(project, location, JOB_TYPE, view)
            )
        jobs[key] = rec
        if new:
            execs.setdefault(key, {})
        op = new_job_operation(sim, run, project, location, key, name, JOB_TYPE, view)
        return op_response(sim, run, op)


@router.post(BASE + "/jobs")
def create_job(sim: SimDep,
    project: str, location: str, body: dict[str, Any] | None = Body(None),
    job_id: str = Query("", alias="jobId"),
    validate_only: bool = Query(False, alias="validateOnly"),
) -> Response:  # fmt: skip
    sim.faults.apply("run.jobs.create")
    if not JOB_ID.match(job_id or ""):
        raise run_spec.bad_request(
            f"jobId '{job_id}' is invalid: it must be a lowercase DNS label of at most 49 "
            "characters (letters, digits and '-', starting with a letter).",
            "job_id",
        )
    return _upsert(sim, project, location, job_id, body, create=True, validate_only=validate_only)


@router.patch(BASE + "/jobs/{job}")
def update_job(sim: SimDep,
    project: str, location: str, job: str, body: dict[str, Any] | None = Body(None),
    allow_missing: bool = Query(False, alias="allowMissing"),
    validate_only: bool = Query(False, alias="validateOnly"),
) -> Response:  # fmt: skip
    sim.faults.apply("run.jobs.patch")
    return _upsert(
        sim, project, location, job, body, create=False, allow_missing=allow_missing,
        validate_only=validate_only,
    )  # fmt: skip


def _find_job(run: dict[str, Any], project: str, location: str, job: str) -> dict[str, Any]:
    rec = run.get("jobs", {}).get(job_key(project, location, job))
    if rec is None:
        raise not_found("JOB", job, project, location)
    return rec


@router.get(BASE + "/jobs/{job}")
def get_job(sim: SimDep, project: str, location: str, job: str) -> Response:
    sim.faults.apply("run.jobs.get")
    settle(sim)
    key = job_key(project, location, job)
    with sim.store.lock:
        run = sim.store.section("run")
        rec = _find_job(run, project, location, job)
        return run_json.json_response(job_view(rec, run.get("executions", {}).get(key, {}), now()))


@router.get(BASE + "/jobs")
def list_jobs(sim: SimDep,
    project: str, location: str, page_size: int = Query(0, alias="pageSize"),
    page_token: str = Query("", alias="pageToken"),
) -> Response:  # fmt: skip
    sim.faults.apply("run.jobs.list")
    settle(sim)
    prefix = f"{project}/" if location == "-" else f"{project}/{location}/"
    with sim.store.lock:
        run = sim.store.section("run")
        jobs = run.get("jobs", {})
        keys = sorted(k for k in jobs if k.startswith(prefix))
        chunk, nxt = run_json.paginate(keys, page_size, page_token)
        t = now()
        views = [job_view(jobs[k], run.get("executions", {}).get(k, {}), t) for k in chunk]
        return run_json.page_response("jobs", views, nxt)


@router.delete(BASE + "/jobs/{job}")
def delete_job(sim: SimDep,
    project: str, location: str, job: str, etag: str = Query(""),
    validate_only: bool = Query(False, alias="validateOnly"),
) -> Response:  # fmt: skip
    sim.faults.apply("run.jobs.delete")
    key = job_key(project, location, job)
    t = now()
    with sim.store.mutate() as d:
        run, jobs, execs = job_tables(d)
        rec = _find_job(run, project, location, job)
        run_spec.check_etag(etag, rec, rec["name"])
        view = job_view(rec, execs.get(key, {}), t)
        if validate_only:
            return run_json.json_response(
                run_views.done_operation(project, location, JOB_TYPE, view)
            )
        del jobs[key]
        execs.pop(key, None)
        op = new_job_operation(sim, run, project, location, key, rec["name"], JOB_TYPE, view)
        return op_response(sim, run, op)


@router.post(BASE + "/jobs/{job}:run")
def run_job(
    sim: SimDep, project: str, location: str, job: str, body: dict[str, Any] | None = Body(None)
) -> Response:
    outcome = sim.faults.apply("run.jobs.run")
    body = body or {}
    key = job_key(project, location, job)
    t = now()
    with sim.store.mutate() as d:
        run, _, execs = job_tables(d)
        rec = _find_job(run, project, location, job)
        run_spec.check_etag(body.get("etag"), rec, rec["name"])
        tmpl = copy.deepcopy(rec["template"])
        task = tmpl.setdefault("template", {})
        ov = body.get("overrides") or {}
        for co in ov.get("containerOverrides") or []:
            for c in task.get("containers") or []:
                if co.get("name") in (None, "", c.get("name")):
                    if co.get("args") or co.get("clearArgs"):
                        c["args"] = list(co.get("args") or [])
                    if co.get("env"):
                        names = {e["name"] for e in co["env"]}
                        c["env"] = [e for e in c.get("env") or [] if e["name"] not in names] + list(
                            co["env"]
                        )
        if ov.get("timeout"):
            task["timeout"] = ov["timeout"]
        n = int(ov.get("taskCount") or tmpl.get("taskCount") or 1)
        image = task["containers"][0]["image"]
        beh = job_behavior_for(sim, job, image)
        timeout = seconds(task.get("timeout"), DEFAULT_TIMEOUT)
        duration = float(beh["duration"])
        result, message = ("failed", beh["message"] or "Task exited with a non-zero code: 1.")
        if not beh["fail"]:
            result, message = "succeeded", ""
        if outcome.op_error:
            result, message = "failed", outcome.op_error
        if duration > timeout:
            duration, result = timeout, "failed"
            message = f"Task timed out after {timeout:g}s (the task template's timeout)."
        rnd = random.Random(f"{key}:{rec['seq']}:{uuid.uuid4()}")
        suffix = "".join(rnd.choice(string.ascii_lowercase + string.digits) for _ in range(5))
        ex_id = f"{job}-{suffix}"
        rec["seq"] += 1
        rec["executionCount"] += 1
        ex = {
            "id": ex_id, "jobId": job, "seq": rec["seq"],
            "name": f"{rec['name']}/executions/{ex_id}", "uid": str(uuid.uuid4()),
            "job": job, "labels": dict(tmpl.get("labels") or {}),
            "annotations": dict(tmpl.get("annotations") or {}),
            "template": task, "taskCount": n,
            "parallelism": int(tmpl.get("parallelism") or n), "image": image,
            "connections": connections(task), "createTime": t, "doneAt": t + duration,
            "outcome": result, "message": message, "settled": False, "cancelledAt": None,
            "logUri": log_uri(project, job, ex_id), "etag": run_spec.new_etag(),
        }  # fmt: skip
        mine = execs.setdefault(key, {})
        mine[ex_id] = ex
        finished = sorted((e for e in mine.values() if e["settled"]), key=lambda e: e["seq"])
        for old in finished[: max(len(mine) - MAX_EXECUTIONS, 0)]:
            del mine[old["id"]]
        op = new_job_operation(
            sim, run, project, location, key, ex["name"], EXECUTION_TYPE,
            execution_view(ex, t), kind="runJob", done_at=ex["doneAt"],
        )  # fmt: skip
        ex["runOp"] = op["name"]
        finish_op(sim, d, ex)
        op["snapshotRunning"] = execution_view(ex, t)
        return op_response(sim, run, op)


def _find_execution(
    run: dict[str, Any], project: str, location: str, job: str, execution: str
) -> dict[str, Any]:
    ex = run.get("executions", {}).get(job_key(project, location, job), {}).get(execution)
    if ex is None:
        raise not_found("EXECUTION", execution, project, location)
    return ex


@router.get(BASE + "/jobs/{job}/executions/{execution}")
def get_execution(sim: SimDep, project: str, location: str, job: str, execution: str) -> Response:
    sim.faults.apply("run.executions.get")
    settle(sim)
    with sim.store.lock:
        ex = _find_execution(sim.store.section("run"), project, location, job, execution)
        return run_json.json_response(execution_view(ex, now()))


@router.get(BASE + "/jobs/{job}/executions")
def list_executions(sim: SimDep,
    project: str, location: str, job: str, page_size: int = Query(0, alias="pageSize"),
    page_token: str = Query("", alias="pageToken"),
) -> Response:  # fmt: skip
    sim.faults.apply("run.executions.list")
    settle(sim)
    key = job_key(project, location, job)
    with sim.store.lock:
        run = sim.store.section("run")
        if key not in run.get("jobs", {}):
            raise not_found("JOB", job, project, location)
        mine = run.get("executions", {}).get(key, {})
        ids = sorted(mine, key=lambda i: -mine[i]["seq"])
        chunk, nxt = run_json.paginate(ids, page_size, page_token)
        t = now()
        views = [execution_view(mine[i], t) for i in chunk]
        return run_json.page_response("executions", views, nxt)


@router.post(BASE + "/jobs/{job}/executions/{execution}:cancel")
def cancel_execution(sim: SimDep,
    project: str, location: str, job: str, execution: str,
    body: dict[str, Any] | None = Body(None),
) -> Response:  # fmt: skip
    sim.faults.apply("run.executions.cancel")
    settle(sim)
    t = now()
    with sim.store.mutate() as d:
        run, _, _ = job_tables(d)
        ex = _find_execution(run, project, location, job, execution)
        run_spec.check_etag((body or {}).get("etag"), ex, ex["name"])
        if (body or {}).get("validateOnly"):
            view = execution_view(ex, t)
            return run_json.json_response(
                run_views.done_operation(project, location, EXECUTION_TYPE, view)
            )
        if status_of(ex, t) == "running":
            ex["cancelledAt"] = t
            ex["doneAt"] = t
            ex["settled"] = True
            finish_op(sim, d, ex)
        view = execution_view(ex, t)
        op = new_job_operation(sim, run, project, location, "", ex["name"], EXECUTION_TYPE, view)
        return op_response(sim, run, op)


@router.delete(BASE + "/jobs/{job}/executions/{execution}")
def delete_execution(
    sim: SimDep, project: str, location: str, job: str, execution: str
) -> Response:
    sim.faults.apply("run.executions.delete")
    t = now()
    with sim.store.mutate() as d:
        run, _, execs = job_tables(d)
        ex = _find_execution(run, project, location, job, execution)
        view = execution_view(ex, t)
        del execs[job_key(project, location, job)][execution]
        op = new_job_operation(sim, run, project, location, "", ex["name"], EXECUTION_TYPE, view)
        return op_response(sim, run, op)


# ----------------------------------------------------------------- control surface


@router.get("/_sim/job-behaviors")
def list_job_behaviors(
    sim: SimDep,
) -> JSONResponse:
    return JSONResponse({"jobBehaviors": job_behaviors(sim)})


@router.post("/_sim/job-behaviors")
def post_job_behavior(sim: SimDep, body: dict[str, Any] = Body(...)) -> JSONResponse:
    unknown = set(body) - {"job", "version", "fail", "duration", "message"}
    if unknown:
        return JSONResponse({"error": f"unknown keys {sorted(unknown)}"}, status_code=400)
    job, version = body.get("job"), body.get("version")
    if not isinstance(job, str) or not job or not isinstance(version, str) or not version:
        return JSONResponse(
            {"error": "job (a Cloud Run job name or glob) and version are required"},
            status_code=400,
        )
    duration = body.get("duration")
    if duration is not None and (not isinstance(duration, int | float) or duration < 0):
        return JSONResponse({"error": "duration must be seconds >= 0"}, status_code=400)
    rule = set_job_behavior(
        sim, job, version, fail=bool(body.get("fail")), duration=duration,
        message=str(body.get("message") or ""),
    )  # fmt: skip
    return JSONResponse(rule)


@router.delete("/_sim/job-behaviors")
def clear_job_behaviors(
    sim: SimDep,
) -> JSONResponse:
    with sim.store.mutate() as d:
        d["sim"]["jobBehaviors"] = []
    return JSONResponse({"cleared": True})
