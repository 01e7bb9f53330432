"""Cloud Run Admin API v2 over REST: jobs and their executions (what Stagecoach's release hooks
run), served to the real `google.cloud.run_v2.JobsClient` / `ExecutionsClient` (`transport="rest"`).

Jobs: create / get / list / patch (with `allowMissing`) / delete / `:run` (with overrides).
Executions: get / list (newest first) / delete / `:cancel`. Every mutation answers with a
long-running operation kept beside the services' ones (`run.operations`, read through the same
`operations/{id}` routes); a `:run` operation is done when its execution completes, its response
the completed Execution (its error, when the execution failed or was cancelled).

An execution inherits the job template's labels and annotations (as on Cloud Run), runs its
tasks for a time and succeeds or fails by the job behaviour set for the job and image version
(`python -m gcpsim job-behavior JOB VERSION --fail --duration 5s`; default: succeeds after
`DEFAULT_DURATION` seconds), or times out at the task template's `timeout`. Its outcome is
decided when it starts and applied lazily by the first read after its end (no threads).

A job bound to a Cloud SQL instance (a `cloudSqlInstance` volume, as Stagecoach binds services)
really changes it: a succeeding execution records its migration in every application database of
the instance (`schema_migrations(version, job, execution, applied_at)`; the version is the env
var `MIGRATION` of its container, else the image tag). A restore of a backup taken before it
undoes it, as on a real instance.

State: `run.jobs[key]`, `run.executions[key][execution id]`, key `project/location/job`.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import random
import string
import threading
import uuid
from typing import Any

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import JSONResponse
from google.cloud.run_v2.types import job as job_types
from google.protobuf import json_format

from gcpsim import run_v2
from gcpsim.behavior import image_version
from gcpsim.errors import ApiError
from gcpsim.sim import Sim
from gcpsim.store import now, rfc3339

log = logging.getLogger("gcpsim.jobs")

JOB_TYPE = "type.googleapis.com/google.cloud.run.v2.Job"
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"
DEFAULT_DURATION = 1.0  # seconds an execution runs without a behaviour
DEFAULT_TIMEOUT = 600.0  # a task's timeout when the template gives none (Cloud Run: 10 min)
MAX_EXECUTIONS = 50  # kept per job (oldest finished go first)
JOB_ID = run_v2.SERVICE_ID

# Condition.State, ExecutionReference.CompletionStatus, Condition.ExecutionReason
RECONCILING, FAILED, SUCCEEDED = 2, 3, 4
STATUS = {"succeeded": 1, "failed": 2, "running": 3, "cancelled": 5}
REASON_NON_ZERO_EXIT, REASON_CANCELLED = 2, 3

_JOB_PB = job_types.Job.pb()
_SETTLE = threading.Lock()  # one settling pass at a time (a migration applies once)


def job_key(project: str, location: str, job: str) -> str:
    return f"{project}/{location}/{job}"


def _job_name(project: str, location: str, job: str) -> str:
    return f"projects/{project}/locations/{location}/jobs/{job}"


def _not_found(kind: str, name: str, project: str, location: str) -> ApiError:
    return run_v2._not_found(kind, name, project, location)


def _jobs(d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    run = run_v2._run(d)
    return run, run.setdefault("jobs", {}), run.setdefault("executions", {})


def _seconds(value: Any, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        return float(str(value).rstrip("s"))
    except ValueError:
        raise run_v2._bad_request(f"Invalid duration '{value}'.", "timeout") from None


# --------------------------------------------------------------------------- behaviours


def set_job_behavior(
    sim: Sim, job: str, version: str, *, fail: bool = False, duration: float | None = None,
    message: str = "",
) -> dict[str, Any]:  # fmt: skip
    rule = {"job": job, "version": version, "fail": fail, "duration": duration, "message": message}
    with sim.store.mutate() as d:
        rules = [
            r
            for r in d["sim"].get("jobBehaviors", [])
            if (r["job"], r["version"]) != (job, version)
        ]
        rules.append(rule)
        d["sim"]["jobBehaviors"] = rules
    return rule


def job_behavior_for(sim: Sim, job: str, image: str) -> dict[str, Any]:
    version = image_version(image)
    out: dict[str, Any] = {"fail": False, "duration": DEFAULT_DURATION, "message": ""}
    with sim.store.lock:
        rules = list(sim.store.section("sim").get("jobBehaviors", []))
    for r in rules:
        if fnmatch.fnmatchcase(job, r["job"]) and r["version"] in (version, "*"):
            out.update({k: v for k, v in r.items() if k in out and v is not None})
    return out


# --------------------------------------------------------------------------- parsing and views


def _parse_job(body: dict[str, Any] | None) -> dict[str, Any]:
    if not body:
        raise run_v2._bad_request("The request has no job.", "job")
    try:
        json_format.ParseDict(body, _JOB_PB(), ignore_unknown_fields=False)
    except json_format.ParseError as err:
        raise run_v2._bad_request(f"Invalid Job: {err}", "job") from None
    template = copy.deepcopy(body.get("template") or {})
    task = template.get("template") or {}
    containers = task.get("containers") or []
    if not containers or not all(c.get("image") for c in containers):
        raise run_v2._bad_request(
            "Job template must have at least one container with an image.",
            "job.template.template.containers",
        )
    return {
        "labels": dict(body.get("labels") or {}),
        "annotations": dict(body.get("annotations") or {}),
        "template": template,
    }


def _connections(task: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for vol in task.get("volumes") or []:
        found += (vol.get("cloudSqlInstance") or {}).get("instances") or []
    return found


def _log_uri(project: str, job: str, execution: str) -> str:
    return (
        "https://console.cloud.google.com/logs/viewer?project="
        f"{project}&advancedFilter=resource.type%3D%22cloud_run_job%22%0A"
        f"resource.labels.job_name%3D%22{job}%22%0A"
        f"labels.%22run.googleapis.com%2Fexecution_name%22%3D%22{execution}%22"
    )


def _status_of(ex: dict[str, Any], t: float) -> str:
    if ex.get("cancelledAt") is not None:
        return "cancelled"
    if t < ex["doneAt"]:
        return "running"
    return ex["outcome"]


def _execution_view(ex: dict[str, Any], t: float) -> dict[str, Any]:
    status = _status_of(ex, t)
    n = ex["taskCount"]
    out: dict[str, Any] = {
        "name": ex["name"],
        "uid": ex["uid"],
        "creator": "gcpsim@example.com",
        "generation": "1",
        "labels": ex["labels"],
        "annotations": ex["annotations"],
        "createTime": rfc3339(ex["createTime"]),
        "startTime": rfc3339(ex["createTime"]),
        "updateTime": rfc3339(min(t, ex["doneAt"])),
        "job": ex["job"],
        "parallelism": ex["parallelism"],
        "taskCount": n,
        "template": ex["template"],
        "reconciling": status == "running",
        "observedGeneration": "1",
        "logUri": ex["logUri"],
        "etag": ex["etag"],
    }
    end = ex["doneAt"]
    if status == "running":
        out["runningCount"] = n
        cond = run_v2._cond("Completed", RECONCILING, ex["createTime"], "Running tasks.")
    elif status == "succeeded":
        out["succeededCount"] = n
        out["completionTime"] = rfc3339(end)
        cond = run_v2._cond("Completed", SUCCEEDED, end, f"Execution completed: {n} task(s).")
    elif status == "failed":
        out["failedCount"] = n
        out["retriedCount"] = ex.get("retried", 0)
        out["completionTime"] = rfc3339(end)
        cond = run_v2._cond(
            "Completed", FAILED, end, ex["message"], executionReason=REASON_NON_ZERO_EXIT
        )
    else:
        out["cancelledCount"] = n
        out["completionTime"] = rfc3339(end)
        cond = run_v2._cond(
            "Completed", FAILED, end, "The execution was cancelled.",
            executionReason=REASON_CANCELLED,
        )  # fmt: skip
    out["conditions"] = [cond]
    return run_v2._prune(out)


def _job_view(job: dict[str, Any], execs: dict[str, Any], t: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": job["name"],
        "uid": job["uid"],
        "generation": str(job["generation"]),
        "labels": job["labels"],
        "annotations": job["annotations"],
        "createTime": rfc3339(job["createTime"]),
        "updateTime": rfc3339(job["updateTime"]),
        "creator": "gcpsim@example.com",
        "lastModifier": "gcpsim@example.com",
        "template": job["template"],
        "observedGeneration": str(job["generation"]),
        "terminalCondition": run_v2._cond("Ready", SUCCEEDED, job["updateTime"]),
        "executionCount": job["executionCount"],
        "etag": job["etag"],
    }
    if execs:
        latest = max(execs.values(), key=lambda e: e["seq"])
        status = _status_of(latest, t)
        ref: dict[str, Any] = {
            "name": latest["name"],
            "createTime": rfc3339(latest["createTime"]),
            "completionStatus": STATUS[status],
        }
        if status != "running":
            ref["completionTime"] = rfc3339(latest["doneAt"])
        out["latestCreatedExecution"] = ref
    return run_v2._prune(out)


# --------------------------------------------------------------------------- settling


def _apply_migration(sim: Sim, ex: dict[str, Any]) -> str | None:
    """Record the execution's migration in every application database of the instances it is
    bound to. Returns an error message, or None."""
    from gcpsim.model import sql, sql_runtime  # the Cloud SQL side owns the embedded Postgres

    version = image_version(ex["image"])
    for c in ex["template"].get("containers") or []:
        for e in c.get("env") or []:
            if e.get("name") == "MIGRATION" and e.get("value"):
                version = e["value"]
    for conn in ex["connections"]:
        project, _region, instance = [*conn.split(":"), "", ""][:3]
        with sim.store.lock:
            inst = sql.tbl(sim.store.data, "instances").get(sql.instance_key(project, instance))
            uid = inst["uid"] if inst else None
        if uid is None:
            return f"Cloud SQL instance '{conn}' not found: the task could not connect."
        cluster = sql_runtime.get_cluster(sim)
        dbs = cluster.databases(uid)
        targets = [db for logical, db in dbs.items() if logical != "postgres"] or list(dbs.values())
        for db in targets:
            c = cluster.connect(db)
            try:
                c.run(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
                    "job text NOT NULL, execution text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                )
                c.run(
                    "INSERT INTO schema_migrations (version, job, execution) "
                    "VALUES (:v, :j, :e) ON CONFLICT (version) DO NOTHING",
                    v=version,
                    j=ex["jobId"],
                    e=ex["id"],
                )
            finally:
                c.close()
    return None


def settle(sim: Sim) -> None:
    """Apply the effects of executions whose time has come (a bound job's migration), once."""
    t = now()
    with sim.store.lock:
        run = sim.store.section("run")
        due = [
            (k, i)
            for k, execs in run.get("executions", {}).items()
            for i, ex in execs.items()
            if not ex["settled"] and (ex.get("cancelledAt") is not None or ex["doneAt"] <= t)
        ]
    if not due:
        return
    with _SETTLE:
        for k, i in due:
            with sim.store.lock:
                ex = sim.store.section("run").get("executions", {}).get(k, {}).get(i)
                if ex is None or ex["settled"]:
                    continue
                ex = copy.deepcopy(ex)
            error = None
            if _status_of(ex, t) == "succeeded" and ex["connections"]:
                try:
                    error = _apply_migration(sim, ex)
                except Exception as err:  # the task failed against its database
                    error = f"Task failed against its database: {err}"
            with sim.store.mutate() as d:
                _, _, execs = _jobs(d)
                rec = execs.get(k, {}).get(i)
                if rec is None:
                    continue
                rec["settled"] = True
                if error:
                    rec["outcome"], rec["message"] = "failed", error
                    _finish_op(sim, d, rec)
            log.info("execution %s: %s", rec["name"], _status_of(rec, t))


def _finish_op(sim: Sim, d: dict[str, Any], ex: dict[str, Any]) -> None:
    """Make the execution's `:run` operation answer with its final state."""
    run = run_v2._run(d)
    op = run["operations"].get(ex.get("runOp") or "")
    if op is None:
        return
    t = max(now(), ex["doneAt"])
    view = _execution_view(ex, t)
    op["snapshot"] = view
    op["doneAt"] = ex["doneAt"]
    status = _status_of(ex, t)
    if status == "failed":
        op["error"] = {"code": 2, "message": f"Execution {ex['id']} failed: {ex['message']}"}
    elif status == "cancelled":
        op["error"] = {"code": 1, "message": f"Execution {ex['id']} was cancelled."}
    else:
        op["error"] = None


def summary(sim: Sim, newest: int = 5) -> list[dict[str, Any]]:
    """Jobs and their newest executions, for `python -m gcpsim show`."""
    settle(sim)
    t = now()
    out = []
    with sim.store.lock:
        run = sim.store.section("run")
        for key, job in sorted(run.get("jobs", {}).items()):
            execs = sorted(run.get("executions", {}).get(key, {}).values(), key=lambda e: -e["seq"])
            containers = job["template"].get("template", {}).get("containers") or [{}]
            out.append(
                {
                    "key": key,
                    "image": containers[0].get("image", ""),
                    "generation": job["generation"],
                    "executionCount": job["executionCount"],
                    "executions": [
                        {
                            "id": e["id"],
                            "status": _status_of(e, t),
                            "tasks": e["taskCount"],
                            "release": e["labels"].get("stagecoach-release", ""),
                            "database": ", ".join(e["connections"]),
                            "message": e["message"] if _status_of(e, t) == "failed" else "",
                        }
                        for e in execs[:newest]
                    ],
                }
            )
    return out


def job_behaviors(sim: Sim) -> list[dict[str, Any]]:
    with sim.store.lock:
        return list(sim.store.section("sim").get("jobBehaviors", []))


# --------------------------------------------------------------------------- operations


def _op(
    sim: Sim, run: dict[str, Any], project: str, location: str, key: str, target: str,
    rtype: str, view: dict[str, Any], *, kind: str = "job", done_at: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    t = now()
    op = run_v2._new_operation(
        sim, run, project, location, key=key, target=target, kind=kind, rtype=rtype,
        snapshot=copy.deepcopy(view), done_at=t if done_at is None else done_at,
    )  # fmt: skip
    op["done"] = done_at is None
    return op


def _op_json(sim: Sim, run: dict[str, Any], op: dict[str, Any]) -> Response:
    return run_v2._json(copy.deepcopy(run_v2._op_view(sim, run, op, now())))


# --------------------------------------------------------------------------- routes


def router(sim: Sim) -> APIRouter:
    r = APIRouter()
    base = "/v2/projects/{project}/locations/{location}"

    def upsert(
        project: str, location: str, job_id: str, body: dict[str, Any] | None, *, create: bool,
        allow_missing: bool = False, validate_only: bool = False,
    ) -> Response:  # fmt: skip
        spec = _parse_job(body)
        key = job_key(project, location, job_id)
        name = _job_name(project, location, job_id)
        t = now()
        with sim.store.mutate() as d:
            run, jobs, execs = _jobs(d)
            job = jobs.get(key)
            if create and job is not None:
                raise ApiError(
                    409, f"Resource '{job_id}' already exists.", rpc_status="ALREADY_EXISTS"
                )
            if not create and job is None and not allow_missing:
                raise _not_found("JOB", job_id, project, location)
            if not create and job is not None:
                run_v2._check_etag((body or {}).get("etag"), job, name)
            new = job is None
            rec: dict[str, Any] = copy.deepcopy(job) if job else {
                "name": name, "uid": str(uuid.uuid4()), "generation": 0, "createTime": t,
                "executionCount": 0, "seq": 0,
            }  # fmt: skip
            rec.update(spec, generation=rec["generation"] + 1, updateTime=t)
            rec["etag"] = run_v2._new_etag()
            view = _job_view(rec, execs.get(key, {}), t)
            if validate_only:
                return run_v2._json(run_v2._done_operation(project, location, JOB_TYPE, view))
            jobs[key] = rec
            if new:
                execs.setdefault(key, {})
            op = _op(sim, run, project, location, key, name, JOB_TYPE, view)
            return _op_json(sim, run, op)

    @r.post(base + "/jobs")
    def create_job(
        project: str, location: str, body: dict[str, Any] | None = Body(None),
        job_id: str = Query("", alias="jobId"),
        validate_only: bool = Query(False, alias="validateOnly"),
    ) -> Response:  # fmt: skip
        sim.faults.apply("run.jobs.create")
        if not JOB_ID.match(job_id or ""):
            raise run_v2._bad_request(
                f"jobId '{job_id}' is invalid: it must be a lowercase DNS label of at most 49 "
                "characters (letters, digits and '-', starting with a letter).",
                "job_id",
            )
        return upsert(project, location, job_id, body, create=True, validate_only=validate_only)

    @r.patch(base + "/jobs/{job}")
    def update_job(
        project: str, location: str, job: str, body: dict[str, Any] | None = Body(None),
        allow_missing: bool = Query(False, alias="allowMissing"),
        validate_only: bool = Query(False, alias="validateOnly"),
    ) -> Response:  # fmt: skip
        sim.faults.apply("run.jobs.patch")
        return upsert(
            project, location, job, body, create=False, allow_missing=allow_missing,
            validate_only=validate_only,
        )  # fmt: skip

    @r.get(base + "/jobs/{job}")
    def get_job(project: str, location: str, job: str) -> Response:
        sim.faults.apply("run.jobs.get")
        settle(sim)
        key = job_key(project, location, job)
        with sim.store.lock:
            run = sim.store.section("run")
            rec = run.get("jobs", {}).get(key)
            if rec is None:
                raise _not_found("JOB", job, project, location)
            return run_v2._json(_job_view(rec, run.get("executions", {}).get(key, {}), now()))

    @r.get(base + "/jobs")
    def list_jobs(
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
            chunk, nxt = run_v2._page(keys, page_size, page_token)
            t = now()
            out: dict[str, Any] = {}
            views = [_job_view(jobs[k], run.get("executions", {}).get(k, {}), t) for k in chunk]
            if views:
                out["jobs"] = views
            if nxt:
                out["nextPageToken"] = nxt
            return run_v2._json(out)

    @r.delete(base + "/jobs/{job}")
    def delete_job(
        project: str, location: str, job: str, etag: str = Query(""),
        validate_only: bool = Query(False, alias="validateOnly"),
    ) -> Response:  # fmt: skip
        sim.faults.apply("run.jobs.delete")
        key = job_key(project, location, job)
        t = now()
        with sim.store.mutate() as d:
            run, jobs, execs = _jobs(d)
            rec = jobs.get(key)
            if rec is None:
                raise _not_found("JOB", job, project, location)
            run_v2._check_etag(etag, rec, rec["name"])
            view = _job_view(rec, execs.get(key, {}), t)
            if validate_only:
                return run_v2._json(run_v2._done_operation(project, location, JOB_TYPE, view))
            del jobs[key]
            execs.pop(key, None)
            op = _op(sim, run, project, location, key, rec["name"], JOB_TYPE, view)
            return _op_json(sim, run, op)

    @r.post(base + "/jobs/{job}:run")
    def run_job(
        project: str, location: str, job: str, body: dict[str, Any] | None = Body(None)
    ) -> Response:
        outcome = sim.faults.apply("run.jobs.run")
        body = body or {}
        key = job_key(project, location, job)
        t = now()
        with sim.store.mutate() as d:
            run, jobs, execs = _jobs(d)
            rec = jobs.get(key)
            if rec is None:
                raise _not_found("JOB", job, project, location)
            run_v2._check_etag(body.get("etag"), rec, rec["name"])
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
                            c["env"] = [
                                e for e in c.get("env") or [] if e["name"] not in names
                            ] + list(co["env"])
            if ov.get("timeout"):
                task["timeout"] = ov["timeout"]
            n = int(ov.get("taskCount") or tmpl.get("taskCount") or 1)
            image = task["containers"][0]["image"]
            beh = job_behavior_for(sim, job, image)
            timeout = _seconds(task.get("timeout"), DEFAULT_TIMEOUT)
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
                "connections": _connections(task), "createTime": t, "doneAt": t + duration,
                "outcome": result, "message": message, "settled": False, "cancelledAt": None,
                "logUri": _log_uri(project, job, ex_id), "etag": run_v2._new_etag(),
            }  # fmt: skip
            mine = execs.setdefault(key, {})
            mine[ex_id] = ex
            finished = sorted((e for e in mine.values() if e["settled"]), key=lambda e: e["seq"])
            for old in finished[: max(len(mine) - MAX_EXECUTIONS, 0)]:
                del mine[old["id"]]
            op = _op(
                sim, run, project, location, key, ex["name"], EXECUTION_TYPE,
                _execution_view(ex, t), kind="runJob", done_at=ex["doneAt"],
            )  # fmt: skip
            ex["runOp"] = op["name"]
            _finish_op(sim, d, ex)
            op["snapshotRunning"] = _execution_view(ex, t)
            return _op_json(sim, run, op)

    def find_execution(
        run: dict[str, Any], project: str, location: str, job: str, execution: str
    ) -> dict[str, Any]:
        ex = run.get("executions", {}).get(job_key(project, location, job), {}).get(execution)
        if ex is None:
            raise _not_found("EXECUTION", execution, project, location)
        return ex

    @r.get(base + "/jobs/{job}/executions/{execution}")
    def get_execution(project: str, location: str, job: str, execution: str) -> Response:
        sim.faults.apply("run.executions.get")
        settle(sim)
        with sim.store.lock:
            ex = find_execution(sim.store.section("run"), project, location, job, execution)
            return run_v2._json(_execution_view(ex, now()))

    @r.get(base + "/jobs/{job}/executions")
    def list_executions(
        project: str, location: str, job: str, page_size: int = Query(0, alias="pageSize"),
        page_token: str = Query("", alias="pageToken"),
    ) -> Response:  # fmt: skip
        sim.faults.apply("run.executions.list")
        settle(sim)
        key = job_key(project, location, job)
        with sim.store.lock:
            run = sim.store.section("run")
            if key not in run.get("jobs", {}):
                raise _not_found("JOB", job, project, location)
            mine = run.get("executions", {}).get(key, {})
            ids = sorted(mine, key=lambda i: -mine[i]["seq"])
            chunk, nxt = run_v2._page(ids, page_size, page_token)
            t = now()
            out: dict[str, Any] = {}
            if chunk:
                out["executions"] = [_execution_view(mine[i], t) for i in chunk]
            if nxt:
                out["nextPageToken"] = nxt
            return run_v2._json(out)

    @r.post(base + "/jobs/{job}/executions/{execution}:cancel")
    def cancel_execution(
        project: str, location: str, job: str, execution: str,
        body: dict[str, Any] | None = Body(None),
    ) -> Response:  # fmt: skip
        sim.faults.apply("run.executions.cancel")
        settle(sim)
        t = now()
        with sim.store.mutate() as d:
            run, _, _ = _jobs(d)
            ex = find_execution(run, project, location, job, execution)
            run_v2._check_etag((body or {}).get("etag"), ex, ex["name"])
            if (body or {}).get("validateOnly"):
                view = _execution_view(ex, t)
                return run_v2._json(run_v2._done_operation(project, location, EXECUTION_TYPE, view))
            if _status_of(ex, t) == "running":
                ex["cancelledAt"] = t
                ex["doneAt"] = t
                ex["settled"] = True
                _finish_op(sim, d, ex)
            view = _execution_view(ex, t)
            op = _op(sim, run, project, location, "", ex["name"], EXECUTION_TYPE, view)
            return _op_json(sim, run, op)

    @r.delete(base + "/jobs/{job}/executions/{execution}")
    def delete_execution(project: str, location: str, job: str, execution: str) -> Response:
        sim.faults.apply("run.executions.delete")
        t = now()
        with sim.store.mutate() as d:
            run, _, execs = _jobs(d)
            ex = find_execution(run, project, location, job, execution)
            view = _execution_view(ex, t)
            del execs[job_key(project, location, job)][execution]
            op = _op(sim, run, project, location, "", ex["name"], EXECUTION_TYPE, view)
            return _op_json(sim, run, op)

    # ----------------------------------------------------------------- control surface

    @r.get("/_sim/job-behaviors")
    def list_job_behaviors() -> JSONResponse:
        return JSONResponse({"jobBehaviors": job_behaviors(sim)})

    @r.post("/_sim/job-behaviors")
    def post_job_behavior(body: dict[str, Any] = Body(...)) -> JSONResponse:
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

    @r.delete("/_sim/job-behaviors")
    def clear_job_behaviors() -> JSONResponse:
        with sim.store.mutate() as d:
            d["sim"]["jobBehaviors"] = []
        return JSONResponse({"cleared": True})

    return r


run_v2.READ_HOOKS.append(settle)
