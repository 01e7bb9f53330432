"""Release hooks end to end: the real Temporal dev server and worker, the real run_v2 Jobs /
Executions / Revisions clients and the sqladmin client, gcpsim's Cloud Run jobs and its embedded
Postgres. Order and run-once are read from gcpsim's own records (backup end, execution create
and completion, revision create times; the executions of the job) and from the database.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.cloud_run_jobs import CloudRunJobsActivities
from stagecoach.config import Hook, Hooks
from stagecoach.hooks import LABEL_RELEASE
from stagecoach.payloads.common import AbortInput, Outcome, Phase
from stagecoach.payloads.hooks import StartHookInput
from stagecoach.payloads.release import ReleaseInput, ReleaseStatus
from stagecoach.plan import build_release
from stagecoach.temporal import workflow_result
from testing.cloudrun import live_traffic
from testing.cloudsql import connected, sqladmin, wait_ok
from testing.gcpsim import GcpsimProcess, config_for
from testing.gcpsim import served_percents as canary_history
from testing.releases import start_release as start
from testing.releases import wait_for, worker
from tests.e2e.test_release import BAKE, INTERVAL

pytestmark = pytest.mark.asyncio

PROJECT = "legal-forms-staging"
INSTANCE = "legal-forms-db-staging"
IMAGE = "example.com/legal-forms/migrate"


def hooked(
    sim: GcpsimProcess,
    version: str,
    *,
    pre: list[Hook] | None = None,
    post: list[Hook] | None = None,
    services: list[str] | None = None,
    on_post: str = "rollback",
) -> ReleaseInput:
    """A staging release with a pre-deploy backup and these hooks."""
    cfg = config_for(sim)
    env = cfg.environments["staging"]
    hooks = Hooks.model_validate(
        {
            "pre_deploy": pre or [],
            "post_deploy": post or [],
            "on_post_deploy_failure": on_post,
        }
    )
    release = env.release.model_copy(update={"backup": True, "hooks": hooks})
    envs = {**cfg.environments, "staging": env.model_copy(update={"release": release})}
    cfg = cfg.model_copy(update={"environments": envs})
    return build_release(
        cfg,
        "staging",
        version,
        secrets.token_hex(3)[:5],
        services=services,
        bake=BAKE,
        interval=INTERVAL,
        requested_by="e2e",
    )


def migration(name: str, tag: str, **more: Any) -> Hook:
    return Hook.model_validate(
        {
            "name": name,
            "image": IMAGE,
            "args": ["db:migrate"],
            "env": {"MIGRATION": tag},
            "uses_database": True,
            **more,
        }
    )


def run_clients(sim: GcpsimProcess) -> tuple[run_v2.ExecutionsClient, run_v2.RevisionsClient]:
    opts = ClientOptions(api_endpoint=sim.url)
    creds = AnonymousCredentials()
    return (
        run_v2.ExecutionsClient(credentials=creds, transport="rest", client_options=opts),
        run_v2.RevisionsClient(credentials=creds, transport="rest", client_options=opts),
    )


def executions_of(sim: GcpsimProcess, job: str, release_id: str) -> list[run_v2.Execution]:
    execs, _ = run_clients(sim)
    parent = f"projects/{PROJECT}/locations/us-central1/jobs/{job}"
    return [
        e for e in execs.list_executions(parent=parent) if e.labels[LABEL_RELEASE] == release_id
    ]


@contextmanager
def database(sim: GcpsimProcess) -> Iterator[Any]:
    inst = sqladmin(sim.url).instances().get(project=PROJECT, instance=INSTANCE).execute()
    with connected(inst) as c:
        yield c


def migrations(sim: GcpsimProcess) -> set[str]:
    with database(sim) as c:
        exists = c.run("SELECT to_regclass('public.schema_migrations') IS NOT NULL")[0][0]
        return {r[0] for r in c.run("SELECT version FROM schema_migrations")} if exists else set()


def job_behavior(sim: GcpsimProcess, job: str, version: str, *args: str) -> None:
    res = sim.cli("job-behavior", job, version, *args)
    assert res.returncode == 0, res.stderr


def ts(value: Any) -> datetime:
    dt: datetime = value
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


async def test_pre_deploy_migration_runs_once_after_the_backup_before_any_revision(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    job_behavior(gcpsim, "migrate-staging", "v1.5.0", "--duration", "2s")
    inp = hooked(gcpsim, "v1.5.0", pre=[migration("migrate", "0005_add_case_status")])
    assert "0005_add_case_status" not in migrations(gcpsim)
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        running = await wait_for(handle, lambda s: s.phase == Phase.RUNNING_HOOK)
        assert running.backup_id and all(s.state == "pending" for s in running.services)
        result: ReleaseStatus = await workflow_result(handle)
    assert result.outcome == Outcome.PROMOTED, result.error
    (hook,) = result.hooks
    assert (hook.stage, hook.job, hook.state) == ("pre_deploy", "migrate-staging", "succeeded")
    assert (hook.succeeded, hook.task_count, hook.failed) == (1, 1, 0)
    assert hook.log_uri.startswith("https://console.cloud.google.com/logs/")
    assert hook.image == f"{IMAGE}:v1.5.0"

    # once: the job has exactly one execution of this release
    (ex,) = executions_of(gcpsim, "migrate-staging", inp.release_id)
    assert ex.name.endswith(hook.execution) and ex.succeeded_count == 1
    # bound to the database the way services are
    container = ex.template.containers[0]
    conn = f"{PROJECT}:us-central1:{INSTANCE}"
    assert {e.name: e.value for e in container.env}["INSTANCE_CONNECTION_NAME"] == conn
    assert list(ex.template.volumes[0].cloud_sql_instance.instances) == [conn]
    # after the backup, before any revision (gcpsim's own timestamps)
    backup = (
        sqladmin(gcpsim.url)
        .backupRuns()
        .get(project=PROJECT, instance=INSTANCE, id=result.backup_id)
        .execute()
    )
    backup_end = datetime.fromisoformat(backup["endTime"].replace("Z", "+00:00"))
    assert backup_end <= ts(ex.create_time)
    _, revisions = run_clients(gcpsim)
    for svc in result.services:
        rev = revisions.get_revision(
            name=f"projects/{PROJECT}/locations/us-central1/services/{svc.run_service}"
            f"/revisions/{svc.canary_revision}"
        )
        assert ts(ex.completion_time) <= ts(rev.create_time), (ex.completion_time, rev)
    # and the migration is in the database
    assert "0005_add_case_status" in migrations(gcpsim)
    assert any("pre_deploy hook migrate: job migrate-staging execution" in e for e in result.events)


async def test_start_hook_retried_finds_its_execution_instead_of_running_twice(
    gcpsim: GcpsimProcess,
) -> None:
    """What a worker crash during StartHook leaves behind: the next attempt runs the activity
    again with the same input; it must adopt the execution, not start a second migration."""
    job_behavior(gcpsim, "once-staging", "v1.5.1", "--duration", "1s")
    inp = hooked(gcpsim, "v1.5.1", pre=[migration("once", "0051_once")])
    (plan,) = inp.pre_deploy_hooks
    act = CloudRunJobsActivities()
    env = ActivityEnvironment()
    start_input = StartHookInput(hook=plan, release_id=inp.release_id, version=inp.version)
    first = await asyncio.to_thread(env.run, act.start_hook, start_input)
    second = await asyncio.to_thread(env.run, act.start_hook, start_input)
    assert (first.reused, second.reused) == (False, True)
    assert first.execution == second.execution
    assert len(executions_of(gcpsim, "once-staging", inp.release_id)) == 1
    # another release of the same job gets its own execution
    other = StartHookInput(hook=plan, release_id="zzzzz", version=inp.version)
    third = await asyncio.to_thread(env.run, act.start_hook, other)
    assert third.execution != first.execution and not third.reused


async def test_failing_migration_ends_the_release_with_no_traffic_moved(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    job_behavior(
        gcpsim, "migrate-fail-staging", "v1.6.0", "--fail", "--duration", "1s",
        "--message", "relation cases_v2 already exists",
    )  # fmt: skip
    before = {
        s: live_traffic(gcpsim, PROJECT, s)
        for s in ("python-pipeline-staging", "node-server-staging")
    }
    inp = hooked(gcpsim, "v1.6.0", pre=[migration("migrate-fail", "0006_broken")])
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        result: ReleaseStatus = await workflow_result(handle)
    assert result.outcome == Outcome.FAILED
    assert result.hooks[0].state == "failed" and result.hooks[0].failed == 1
    assert "relation cases_v2 already exists" in result.error
    assert "no traffic moved" in result.error
    assert result.backup_id and (
        f"`python starter.py restore staging --backup-id {result.backup_id} --yes`" in result.error
    )
    for svc in result.services:
        assert svc.state == "pending" and not svc.canary_revision
        assert live_traffic(gcpsim, PROJECT, svc.run_service) == before[svc.run_service]


async def test_failing_post_deploy_hook_rolls_every_service_back(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    job_behavior(gcpsim, "e2e-suite-staging", "v1.7.0", "--fail", "--message", "3 tests failed")
    services = ("python-pipeline-staging", "node-server-staging")
    before = {s: live_traffic(gcpsim, PROJECT, s) for s in services}
    suite = Hook.model_validate({"name": "e2e-suite", "image": "example.com/suite:{version}"})
    inp = hooked(gcpsim, "v1.7.0", post=[suite])
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        result: ReleaseStatus = await workflow_result(handle)
    assert result.outcome == Outcome.ROLLED_BACK, result.error
    (hook,) = result.hooks
    assert (hook.stage, hook.state, hook.image) == (
        "post_deploy",
        "failed",
        "example.com/suite:v1.7.0",
    )
    assert "3 tests failed" in result.error and "rolling every service back" in result.error
    for svc in result.services:
        assert svc.state == "rolled_back"
        # promoted to 100% first, then back to exactly the split before
        assert 100 in canary_history(gcpsim, PROJECT, svc.run_service, svc.canary_revision)
        assert live_traffic(gcpsim, PROJECT, svc.run_service) == before[svc.run_service]
    assert not result.migration_note  # no database hook ran


async def test_post_deploy_failure_can_be_report_only(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    job_behavior(gcpsim, "smoke-suite-staging", "v1.7.1", "--fail", "--message", "flaky")
    suite = Hook.model_validate({"name": "smoke-suite", "image": "example.com/suite"})
    inp = hooked(gcpsim, "v1.7.1", post=[suite], services=["python-pipeline"], on_post="report")
    async with worker(client, task_queue):
        result: ReleaseStatus = await workflow_result(await start(client, task_queue, inp))
    assert result.outcome == Outcome.PROMOTED
    assert result.hooks[0].state == "failed"
    assert any("reported only" in e for e in result.events)


@contextmanager
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A Slack-compatible webhook on loopback; yields the JSON bodies it received."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            received.append(json.loads(self.rfile.read(n)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("STAGECOACH_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    try:
        yield received
    finally:
        server.shutdown()


async def test_rollback_after_a_migration_names_the_backup_and_a_restore_undoes_it(
    client: Client, task_queue: str, gcpsim: GcpsimProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = gcpsim.cli("behavior", "python-pipeline-staging", "v1.8.0", "--error-rate", "0.3")
    assert res.returncode == 0, res.stderr
    inp = hooked(
        gcpsim,
        "v1.8.0",
        pre=[migration("migrate", "0008_split_names")],
        services=["python-pipeline"],
    )
    inp = inp.model_copy(update={"notify": True})
    with webhook(monkeypatch) as received:
        async with worker(client, task_queue):
            result: ReleaseStatus = await workflow_result(await start(client, task_queue, inp))
    assert result.outcome == Outcome.ROLLED_BACK, result.error
    texts = [json.dumps(b) for b in received]
    assert any("does not undo" in t and result.backup_id in t for t in texts), texts
    assert "0008_split_names" in migrations(gcpsim)  # the schema outlived the traffic rollback
    note = result.migration_note
    assert "does not undo" in note and "migrate" in note
    assert f"`python starter.py restore staging --backup-id {result.backup_id} --yes`" in note
    assert any(note in e for e in result.events)

    # the named backup undoes the migration
    sql = sqladmin(gcpsim.url)
    body = {"restoreBackupContext": {"backupRunId": result.backup_id, "instanceId": INSTANCE}}
    op = sql.instances().restoreBackup(project=PROJECT, instance=INSTANCE, body=body).execute()
    wait_ok(sql, PROJECT, op, timeout=120)
    assert "0008_split_names" not in migrations(gcpsim)


async def test_abort_during_a_hook_cancels_its_execution(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    job_behavior(gcpsim, "slow-migrate-staging", "v1.9.0", "--duration", "120s")
    inp = hooked(gcpsim, "v1.9.0", pre=[migration("slow-migrate", "0009_slow")])
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        await wait_for(handle, lambda s: bool(s.hooks and s.hooks[0].execution))
        await handle.signal("abort", AbortInput(reason="wrong migration"))
        result: ReleaseStatus = await workflow_result(handle)
    assert result.outcome == Outcome.ABORTED and result.abort_reason == "wrong migration"
    (hook,) = result.hooks
    assert hook.state == "cancelled" and hook.cancelled == 1
    (ex,) = executions_of(gcpsim, "slow-migrate-staging", inp.release_id)
    assert ex.cancelled_count == 1 and ex.completion_time
    assert all(s.state == "pending" for s in result.services)
    assert "0009_slow" not in migrations(gcpsim)


async def test_worker_restart_mid_hook_neither_loses_nor_repeats_it(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    job_behavior(gcpsim, "restart-migrate-staging", "v1.9.1", "--duration", "6s")
    inp = hooked(
        gcpsim, "v1.9.1", pre=[migration("restart-migrate", "0091_restart")],
        services=["python-pipeline"],
    )  # fmt: skip
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        await wait_for(handle, lambda s: bool(s.hooks and s.hooks[0].execution))
    # no worker for a while: the execution goes on in Cloud Run
    await asyncio.sleep(3)
    async with worker(client, task_queue):
        result: ReleaseStatus = await workflow_result(handle)
    assert result.outcome == Outcome.PROMOTED, result.error
    assert result.hooks[0].state == "succeeded"
    assert len(executions_of(gcpsim, "restart-migrate-staging", inp.release_id)) == 1
    assert "0091_restart" in migrations(gcpsim)


async def test_execution_deleted_under_a_hook_fails_the_release_cleanly(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    job_behavior(gcpsim, "gone-migrate-staging", "v1.9.2", "--duration", "60s")
    inp = hooked(gcpsim, "v1.9.2", pre=[migration("gone-migrate", "0092_gone")])
    execs, _ = run_clients(gcpsim)
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        st = await wait_for(handle, lambda s: bool(s.hooks and s.hooks[0].execution))
        parent = f"projects/{PROJECT}/locations/us-central1/jobs/gone-migrate-staging"
        await asyncio.to_thread(
            lambda: execs.delete_execution(
                name=f"{parent}/executions/{st.hooks[0].execution}"
            ).result(timeout=30)
        )
        result: ReleaseStatus = await workflow_result(handle)
    assert result.outcome == Outcome.FAILED
    assert "could not read execution" in result.error and "no traffic moved" in result.error
    assert all(s.state == "pending" for s in result.services)
