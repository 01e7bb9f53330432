"""Cloud Run Admin API v2 state: jobs and their executions (what Stagecoach's release hooks
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

Routes: gcpsim.api.run_jobs; views: gcpsim.model.jobs_views.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import threading
from typing import Any

from google.cloud.run_v2.types import job as job_types
from google.protobuf import json_format

from gcpsim.errors import ApiError
from gcpsim.model import run as run_model
from gcpsim.model import run_spec
from gcpsim.model.behavior import image_version
from gcpsim.model.jobs_views import execution_view, status_of
from gcpsim.model.rules import put_rule
from gcpsim.sim import Sim
from gcpsim.store import now

log = logging.getLogger("gcpsim.jobs")


JOB_TYPE = "type.googleapis.com/google.cloud.run.v2.Job"


EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"


DEFAULT_DURATION = 1.0  # seconds an execution runs without a behaviour


DEFAULT_TIMEOUT = 600.0  # a task's timeout when the template gives none (Cloud Run: 10 min)


MAX_EXECUTIONS = 50  # kept per job (oldest finished go first)


JOB_ID = run_spec.SERVICE_ID


JOB_PB = job_types.Job.pb()


_SETTLE = threading.Lock()  # one settling pass at a time (a migration applies once)


def job_key(project: str, location: str, job: str) -> str:
    return f"{project}/{location}/{job}"


def job_name(project: str, location: str, job: str) -> str:
    return f"projects/{project}/locations/{location}/jobs/{job}"


def not_found(kind: str, name: str, project: str, location: str) -> ApiError:
    return run_spec.not_found(kind, name, project, location)


def job_tables(d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    run = run_model.run_section(d)
    return run, run.setdefault("jobs", {}), run.setdefault("executions", {})


def seconds(value: Any, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        return float(str(value).rstrip("s"))
    except ValueError:
        raise run_spec.bad_request(f"Invalid duration '{value}'.", "timeout") from None


def set_job_behavior(
    sim: Sim, job: str, version: str, *, fail: bool = False, duration: float | None = None,
    message: str = "",
) -> dict[str, Any]:  # fmt: skip
    rule = {"job": job, "version": version, "fail": fail, "duration": duration, "message": message}
    return put_rule(sim, "jobBehaviors", rule, ("job", "version"))


def job_behavior_for(sim: Sim, job: str, image: str) -> dict[str, Any]:
    version = image_version(image)
    out: dict[str, Any] = {"fail": False, "duration": DEFAULT_DURATION, "message": ""}
    with sim.store.lock:
        rules = list(sim.store.section("sim").get("jobBehaviors", []))
    for r in rules:
        if fnmatch.fnmatchcase(job, r["job"]) and r["version"] in (version, "*"):
            out.update({k: v for k, v in r.items() if k in out and v is not None})
    return out


def parse_job(body: dict[str, Any] | None) -> dict[str, Any]:
    if not body:
        raise run_spec.bad_request("The request has no job.", "job")
    try:
        json_format.ParseDict(body, JOB_PB(), ignore_unknown_fields=False)
    except json_format.ParseError as err:
        raise run_spec.bad_request(f"Invalid Job: {err}", "job") from None
    template = copy.deepcopy(body.get("template") or {})
    task = template.get("template") or {}
    containers = task.get("containers") or []
    if not containers or not all(c.get("image") for c in containers):
        raise run_spec.bad_request(
            "Job template must have at least one container with an image.",
            "job.template.template.containers",
        )
    return {
        "labels": dict(body.get("labels") or {}),
        "annotations": dict(body.get("annotations") or {}),
        "template": template,
    }


def connections(task: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for vol in task.get("volumes") or []:
        found += (vol.get("cloudSqlInstance") or {}).get("instances") or []
    return found


def log_uri(project: str, job: str, execution: str) -> str:
    return (
        "https://console.cloud.google.com/logs/viewer?project="
        f"{project}&advancedFilter=resource.type%3D%22cloud_run_job%22%0A"
        f"resource.labels.job_name%3D%22{job}%22%0A"
        f"labels.%22run.googleapis.com%2Fexecution_name%22%3D%22{execution}%22"
    )


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
            if status_of(ex, t) == "succeeded" and ex["connections"]:
                try:
                    error = _apply_migration(sim, ex)
                except Exception as err:  # the task failed against its database
                    error = f"Task failed against its database: {err}"
            with sim.store.mutate() as d:
                _, _, execs = job_tables(d)
                rec = execs.get(k, {}).get(i)
                if rec is None:
                    continue
                rec["settled"] = True
                if error:
                    rec["outcome"], rec["message"] = "failed", error
                    finish_op(sim, d, rec)
            log.info("execution %s: %s", rec["name"], status_of(rec, t))


def finish_op(sim: Sim, d: dict[str, Any], ex: dict[str, Any]) -> None:
    """Make the execution's `:run` operation answer with its final state."""
    run = run_model.run_section(d)
    op = run["operations"].get(ex.get("runOp") or "")
    if op is None:
        return
    t = max(now(), ex["doneAt"])
    view = execution_view(ex, t)
    op["snapshot"] = view
    op["doneAt"] = ex["doneAt"]
    status = status_of(ex, t)
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
                            "status": status_of(e, t),
                            "tasks": e["taskCount"],
                            "release": e["labels"].get("stagecoach-release", ""),
                            "database": ", ".join(e["connections"]),
                            "message": e["message"] if status_of(e, t) == "failed" else "",
                        }
                        for e in execs[:newest]
                    ],
                }
            )
    return out


def job_behaviors(sim: Sim) -> list[dict[str, Any]]:
    with sim.store.lock:
        return list(sim.store.section("sim").get("jobBehaviors", []))


def new_job_operation(
    sim: Sim, run: dict[str, Any], project: str, location: str, key: str, target: str,
    rtype: str, view: dict[str, Any], *, kind: str = "job", done_at: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    t = now()
    op = run_model.new_operation(
        sim, run, project, location, key=key, target=target, kind=kind, rtype=rtype,
        snapshot=copy.deepcopy(view), done_at=t if done_at is None else done_at,
    )  # fmt: skip
    op["done"] = done_at is None
    return op


# Cloud Run operations are read through the same routes: apply the jobs' due work first.
run_model.READ_HOOKS.append(settle)
