"""Cloud Run Admin v2 jobs and executions: gcpsim driven by the real `run_v2.JobsClient` and
`ExecutionsClient` (REST), as release hooks use them. A job bound to a Cloud SQL instance
records its migration in the instance's real Postgres; a restore of an earlier backup undoes it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.protobuf import duration_pb2

from testing.cloudsql import OwnInstances, connected, sqladmin, wait_ok
from testing.gcpsim import GcpsimProcess

PROJECT = "gcpsim-jobs"
PARENT = f"projects/{PROJECT}/locations/us-central1"
SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED
FAILED = run_v2.Condition.State.CONDITION_FAILED
STATUS = run_v2.ExecutionReference.CompletionStatus


@pytest.fixture(scope="module")
def jobs(gcpsim: GcpsimProcess) -> run_v2.JobsClient:
    opts = ClientOptions(api_endpoint=gcpsim.url)
    return run_v2.JobsClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=opts
    )


@pytest.fixture(scope="module")
def executions(gcpsim: GcpsimProcess) -> run_v2.ExecutionsClient:
    opts = ClientOptions(api_endpoint=gcpsim.url)
    return run_v2.ExecutionsClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=opts
    )


def behave(sim: GcpsimProcess, job: str, version: str, **body: Any) -> None:
    r = requests.post(
        f"{sim.url}/_sim/job-behaviors", json={"job": job, "version": version, **body}, timeout=10
    )
    r.raise_for_status()


def job_of(image: str, **task: Any) -> run_v2.Job:
    return run_v2.Job(
        labels={"app": "conformance"},
        template=run_v2.ExecutionTemplate(
            labels={"stagecoach-release": "r1"},
            task_count=2,
            template=run_v2.TaskTemplate(
                containers=[run_v2.Container(image=image, args=["migrate"])], **task
            ),
        ),
    )


def follow(executions: run_v2.ExecutionsClient, name: str, timeout: float = 30) -> run_v2.Execution:
    deadline = time.monotonic() + timeout
    while True:
        ex = executions.get_execution(name=name)
        if ex.completion_time or time.monotonic() > deadline:
            return ex
        time.sleep(0.2)


def test_create_get_patch_run_list(
    gcpsim: GcpsimProcess, jobs: run_v2.JobsClient, executions: run_v2.ExecutionsClient
) -> None:
    jid = f"migrate-{uuid.uuid4().hex[:6]}"
    behave(gcpsim, jid, "v1", duration=1.0)
    created = jobs.create_job(parent=PARENT, job=job_of("example.com/m:v1"), job_id=jid).result(
        timeout=30
    )
    assert created.name == f"{PARENT}/jobs/{jid}" and created.generation == 1
    assert created.terminal_condition.state == SUCCEEDED
    with pytest.raises(exceptions.Conflict):
        jobs.create_job(parent=PARENT, job=job_of("example.com/m:v1"), job_id=jid)

    job = jobs.get_job(name=created.name)
    job.template.labels["stagecoach-release"] = "r2"
    updated = jobs.update_job(job=job).result(timeout=30)
    assert updated.generation == 2 and updated.template.labels["stagecoach-release"] == "r2"

    op = jobs.run_job(name=created.name)
    running = op.metadata
    assert running.name.startswith(f"{created.name}/executions/{jid}-")
    assert running.running_count == 2 and running.labels["stagecoach-release"] == "r2"
    assert running.log_uri.startswith("https://console.cloud.google.com/logs/")
    done = op.result(timeout=30)  # the operation ends with the execution
    assert done.succeeded_count == 2 and done.completion_time
    assert done.conditions[0].state == SUCCEEDED

    listed = list(executions.list_executions(parent=created.name))
    assert [e.name for e in listed] == [running.name]
    job = jobs.get_job(name=created.name)
    assert job.execution_count == 1
    assert job.latest_created_execution.name == running.name
    assert job.latest_created_execution.completion_status == STATUS.EXECUTION_SUCCEEDED

    # a second run is a second execution, newest first
    second = jobs.run_job(name=created.name).metadata
    assert [e.name for e in executions.list_executions(parent=created.name)] == [
        second.name,
        running.name,
    ]


def test_failure_timeout_cancel_and_errors(
    gcpsim: GcpsimProcess, jobs: run_v2.JobsClient, executions: run_v2.ExecutionsClient
) -> None:
    jid = f"check-{uuid.uuid4().hex[:6]}"
    res = gcpsim.cli(
        "job-behavior",
        jid,
        "v2",
        "--fail",
        "--duration",
        "0.5s",
        "--message",
        "exit 3: tests failed",
    )
    assert res.returncode == 0 and "job behaviour set" in res.stdout, res.stderr
    behave(gcpsim, jid, "v3", duration=30)
    behave(gcpsim, jid, "v4", duration=5)
    name = (
        jobs.create_job(parent=PARENT, job=job_of("example.com/c:v2"), job_id=jid)
        .result(timeout=30)
        .name
    )
    op = jobs.run_job(name=name)
    with pytest.raises(exceptions.GoogleAPICallError, match="tests failed"):
        op.result(timeout=30)
    ex = follow(executions, op.metadata.name)
    assert ex.failed_count == 2 and ex.succeeded_count == 0
    assert ex.conditions[0].state == FAILED and "tests failed" in ex.conditions[0].message

    # the task template's timeout ends a long task
    job = jobs.get_job(name=name)
    job.template.template.containers[0].image = "example.com/c:v3"
    job.template.template.timeout = duration_pb2.Duration(seconds=1)
    jobs.update_job(job=job).result(timeout=30)
    ex = follow(executions, jobs.run_job(name=name).metadata.name)
    assert ex.failed_count == 2 and "timed out" in ex.conditions[0].message

    # cancel a running execution
    job = jobs.get_job(name=name)
    job.template.template.containers[0].image = "example.com/c:v4"
    job.template.template.timeout = duration_pb2.Duration(seconds=600)
    jobs.update_job(job=job).result(timeout=30)
    run = jobs.run_job(name=name).metadata
    assert executions.get_execution(name=run.name).running_count == 2
    cancelled = executions.cancel_execution(name=run.name).result(timeout=30)
    assert cancelled.cancelled_count == 2 and cancelled.completion_time
    assert jobs.get_job(name=name).latest_created_execution.completion_status == (
        STATUS.EXECUTION_CANCELLED
    )

    with pytest.raises(exceptions.NotFound):
        jobs.get_job(name=f"{PARENT}/jobs/nope")
    with pytest.raises(exceptions.NotFound):
        executions.get_execution(name=f"{name}/executions/nope")
    with pytest.raises(exceptions.BadRequest):
        jobs.create_job(parent=PARENT, job=run_v2.Job(template={}), job_id="x-empty")
    # allow_missing creates
    made = jobs.update_job(
        request=run_v2.UpdateJobRequest(
            job=run_v2.Job(name=f"{PARENT}/jobs/{jid}-new", template=job_of("e.com/x:v1").template),
            allow_missing=True,
        )
    ).result(timeout=30)
    assert made.generation == 1
    jobs.delete_job(name=made.name).result(timeout=30)
    with pytest.raises(exceptions.NotFound):
        jobs.get_job(name=made.name)


@pytest.fixture(scope="module")
def own(gcpsim: GcpsimProcess) -> Iterator[OwnInstances]:
    o = OwnInstances(sqladmin(gcpsim.url), "gcpsim-jobs-sql")
    yield o
    o.cleanup()


def test_bound_job_migrates_the_database_and_a_restore_undoes_it(
    gcpsim: GcpsimProcess,
    jobs: run_v2.JobsClient,
    executions: run_v2.ExecutionsClient,
    own: OwnInstances,
) -> None:
    instance = own.clone("jobs")
    sql = own.sql
    op = sql.backupRuns().insert(project=own.project, instance=instance, body={}).execute()
    wait_ok(sql, own.project, op)
    backup = sql.backupRuns().list(project=own.project, instance=instance).execute()["items"][0]

    conn = f"{own.project}:us-central1:{instance}"
    jid = f"db-migrate-{uuid.uuid4().hex[:6]}"
    job = run_v2.Job(
        template=run_v2.ExecutionTemplate(
            template=run_v2.TaskTemplate(
                containers=[
                    run_v2.Container(
                        image="example.com/m:v7",
                        env=[run_v2.EnvVar(name="MIGRATION", value="0007_add_status")],
                        volume_mounts=[run_v2.VolumeMount(name="cloudsql", mount_path="/cloudsql")],
                    )
                ],
                volumes=[
                    run_v2.Volume(
                        name="cloudsql",
                        cloud_sql_instance=run_v2.CloudSqlInstance(instances=[conn]),
                    )
                ],
            )
        )
    )
    name = jobs.create_job(parent=PARENT, job=job, job_id=jid).result(timeout=30).name
    ex = jobs.run_job(name=name).result(timeout=30)
    assert ex.succeeded_count == 1
    inst = own.get(instance)
    with connected(inst) as c:
        rows = c.run("SELECT version, job, execution FROM schema_migrations")
    assert rows == [["0007_add_status", jid, ex.name.rsplit("/", 1)[-1]]]

    body = {"restoreBackupContext": {"backupRunId": backup["id"], "instanceId": instance}}
    op = sql.instances().restoreBackup(project=own.project, instance=instance, body=body).execute()
    wait_ok(sql, own.project, op)
    with connected(own.get(instance)) as c:
        gone = c.run(
            "SELECT count(*) FROM information_schema.tables WHERE table_name='schema_migrations'"
        )
    assert gone == [[0]]


def test_job_behavior_cli_round_trip_and_bad_args(gcpsim: GcpsimProcess) -> None:
    res = gcpsim.cli("job-behavior", "cli-*", "v9", "--fail", "--duration", "2.5s")
    assert res.returncode == 0, res.stderr
    rules = requests.get(f"{gcpsim.url}/_sim/job-behaviors", timeout=10).json()["jobBehaviors"]
    assert {"job": "cli-*", "version": "v9", "fail": True, "duration": 2.5, "message": ""} in rules
    for args in (["job-behavior"], ["job-behavior", "j", "v1", "--duration", "soon"]):
        res = gcpsim.cli(*args)
        assert res.returncode == 2, (args, res.stderr)
    res = gcpsim.cli("show")
    assert res.returncode == 0 and "Job behaviours" in res.stdout and "cli-* v9" in res.stdout
    res = gcpsim.cli("show", "--json")
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert isinstance(shown["jobs"], list)
    assert any(r["job"] == "cli-*" for r in shown["job_behaviors"])
    res = gcpsim.cli("job-behavior", "--clear")
    assert res.returncode == 0 and "cleared" in res.stdout
    assert requests.get(f"{gcpsim.url}/_sim/job-behaviors", timeout=10).json() == {
        "jobBehaviors": []
    }
