"""Backups, restores and DR drills end to end: the real Temporal dev server, a real worker started
here, the real Google clients, gcpsim with real PostgreSQL data, and `starter.py` as a
subprocess where the command line is what is being shown.

Instances: staging and dev only (the release tests use prod). Faults are cleared after each test
that sets one. No timing assertions; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import CancelledError, WorkflowAlreadyStartedError

from activities.cloud_run import CloudRunActivities
from activities.cloud_sql import CloudSqlActivities
from stagecoach.cli.dr import drill_input
from stagecoach.cli.schedule import FIRST_SUNDAY_CRON
from stagecoach.config import Config
from stagecoach.payloads.common import (
    AbortInput,
    ApproveInput,
    InstanceRef,
    Outcome,
    Phase,
    ServiceRef,
)
from stagecoach.payloads.dr import (
    BackupInput,
    BackupResult,
    DrillInput,
    DrillReport,
    PointInTimeInput,
    PointInTimeResult,
    RestoreInput,
    RestoreStatus,
    Verification,
)
from stagecoach.payloads.run import ServiceState, SetScalingInput
from stagecoach.payloads.sql import DeleteInstanceInput
from stagecoach.plan import instance_ref, service_ref
from stagecoach.temporal import workflow_result
from testing.gcpsim import GcpsimProcess, config_for
from testing.histories import replays
from testing.paths import ROOT
from testing.releases import signed_approval, wait_for, worker, worker_config

APP = "legal-forms"
WAIT = 90.0  # upper bound of any single wait in these tests


# ----------------------------------------------------------------------------- helpers


def verification(cfg: Config, extra_tables: list[str] | None = None) -> Verification:
    v = cfg.database.validation
    return Verification(
        database=cfg.database.name,
        tables=list(v.tables) + (extra_tables or []),
        timestamp_column=v.timestamp_column,
    )


def db_services(cfg: Config, env: str) -> list[ServiceRef]:
    return [service_ref(cfg, env, s.name) for s in cfg.services if s.uses_database]


def uid() -> str:
    return secrets.token_hex(4)


async def result(handle: WorkflowHandle[Any, Any], timeout: float = WAIT) -> Any:
    return await asyncio.wait_for(workflow_result(handle), timeout)


def sqladmin(ref: InstanceRef) -> Any:
    from stagecoach.clients import clients_for

    return clients_for(ref.target).sqladmin()


def instance_exists(ref: InstanceRef, name: str) -> bool:
    from googleapiclient.errors import HttpError

    try:
        sqladmin(ref).instances().get(project=ref.project, instance=name).execute()
    except HttpError as e:
        if e.status_code == 404:
            return False
        raise
    return True


def connect(ref: InstanceRef, database: str) -> pg8000.native.Connection:
    """A connection to the instance's database at the address gcpsim reports."""
    inst = sqladmin(ref).instances().get(project=ref.project, instance=ref.instance).execute()
    c = inst["gcpsimConnection"]
    return pg8000.native.Connection(
        user=c["user"],
        password=c["password"],
        host=c["host"],
        port=int(c["port"]),
        database=c["databases"][database],
    )


def insert_marker(ref: InstanceRef, database: str, title: str) -> datetime:
    conn = connect(ref, database)
    try:
        rows = conn.run("INSERT INTO cases (title) VALUES (:t) RETURNING created_at", t=title)
        return rows[0][0]
    finally:
        conn.close()


def has_marker(ref: InstanceRef, database: str, title: str) -> bool:
    conn = connect(ref, database)
    try:
        return bool(conn.run("SELECT count(*) FROM cases WHERE title = :t", t=title)[0][0])
    finally:
        conn.close()


def db_now(ref: InstanceRef, database: str) -> datetime:
    conn = connect(ref, database)
    try:
        return conn.run("SELECT now()")[0][0]
    finally:
        conn.close()


def newest_row(ref: InstanceRef, database: str) -> datetime:
    """The newest created_at over the reference tables."""
    conn = connect(ref, database)
    try:
        rows = conn.run(
            "SELECT max(t) FROM (SELECT max(created_at) AS t FROM cases UNION ALL "
            "SELECT max(created_at) FROM parties UNION ALL "
            "SELECT max(created_at) FROM party_issue_selections) AS m"
        )
        return rows[0][0]
    finally:
        conn.close()


def scaling(ref: ServiceRef) -> ServiceState:
    return CloudRunActivities().get_service_state(ref)


def in_activity(fn: Callable[..., Any], arg: Any) -> Any:
    """Call an activity function directly (test setup / cleanup), in an activity context."""
    from temporalio.testing import ActivityEnvironment

    return ActivityEnvironment().run(fn, arg)


def fault(sim: GcpsimProcess, *args: str) -> None:
    out = sim.cli("fault", *args)
    assert out.returncode == 0, out.stderr


def clear_faults(sim: GcpsimProcess) -> None:
    sim.cli("fault", "--clear")


def cli_command() -> list[str]:
    return [sys.executable, str(ROOT / "starter.py")]


@functools.cache
def cli_config() -> Path:
    """deploy.yaml for the CLI, but for the judge's level: the switch releases here expect a
    promotion, and at deploy.yaml's 0.01 a correct judge leaves about 1 in 2000 of them
    unpromoted (a canary identical to stable; Monte Carlo of the judge). The other e2e tests
    run it at 1e-4 too."""
    path = Path(tempfile.mkdtemp(prefix="stagecoach-dr-")) / "deploy.yaml"
    return worker_config(path, lambda d: d["gates"].update(false_rollback_rate=1e-4))


async def cli(
    sim: GcpsimProcess, temporal_address: str, task_queue: str, *args: str
) -> tuple[int, str, str]:
    """Run the CLI as a subprocess (async: the worker in this process keeps working)."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_address,
        "STAGECOACH_TASK_QUEUE": task_queue,
        "GCPSIM_PORT": str(sim.port),
        "GCPSIM_GRPC_PORT": str(sim.grpc_port),
        "STAGECOACH_CONFIG": str(cli_config()),
        "COLUMNS": "200",
    }
    proc = await asyncio.create_subprocess_exec(
        *cli_command(), *args,
        cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), WAIT * 2)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def backup(client: Client, task_queue: str, cfg: Config, env: str) -> str:
    res: BackupResult = await client.execute_workflow(
        "Backup",
        BackupInput(app=APP, env=env, instance=instance_ref(cfg, env), requested_by="e2e"),
        id=f"backup-{APP}-{env}-{uid()}",
        task_queue=task_queue,
        result_type=BackupResult,
        execution_timeout=timedelta(seconds=WAIT),
    )
    assert res.backup.status == "SUCCESSFUL"
    assert res.backup.description.startswith("On-demand backup ")
    return res.backup.id


def restores_need_approval(path: Path, env: str) -> Path:
    """deploy.yaml as the worker's own config, `env`'s restores needing release-manager's
    approval."""
    return worker_config(
        path,
        lambda d: d["environments"][env]["release"].update(
            approval={"approvers": ["release-manager"]}, restore_requires_approval=True
        ),
    )


def restore_input(cfg: Config, env: str, backup_id: str, **kw: Any) -> RestoreInput:
    return RestoreInput(
        app=APP,
        env=env,
        instance=instance_ref(cfg, env),
        backup_id=backup_id,
        services=db_services(cfg, env),
        verification=verification(cfg),
        requested_by="e2e",
        **kw,
    )


# ----------------------------------------------------------------------------- restore


async def test_restore_brings_back_the_backup_and_drains_meanwhile(
    gcpsim: GcpsimProcess, temporal_address: str, client: Client, task_queue: str
) -> None:
    """Rows written before the backup are there after restoring it, rows written after it are
    gone; the services are drained during the restore and back at their exact scaling."""
    cfg = config_for(gcpsim)
    env = "staging"
    ref = instance_ref(cfg, env)
    db = cfg.database.name
    svc = db_services(cfg, env)[0]
    before, after = f"before-{uid()}", f"after-{uid()}"
    async with worker(client, task_queue):
        await asyncio.to_thread(insert_marker, ref, db, before)
        # the backup through the CLI, as a user takes it
        code, out, err = await cli(gcpsim, temporal_address, task_queue, "backup", env, "--json")
        assert code == 0, err
        backup_id = json.loads(out)["backup"]["id"]
        code, out, err = await cli(gcpsim, temporal_address, task_queue, "backups", env, "--json")
        assert code == 0, err
        listed = {b["id"]: b for b in json.loads(out)}
        assert listed[backup_id]["status"] == "SUCCESSFUL"
        assert listed[backup_id]["type"] == "ON_DEMAND"
        await asyncio.to_thread(insert_marker, ref, db, after)
        recorded = await asyncio.to_thread(scaling, svc)
        assert not recorded.drained

        # a slow restore call leaves time to look at the services while it runs
        fault(gcpsim, "sql.instances.restoreBackup", "--latency-ms", "3000", "--times", "1")
        try:
            handle = await client.start_workflow(
                "Restore",
                restore_input(cfg, env, backup_id),
                id=f"deploy-{APP}-{env}-{uid()}",
                task_queue=task_queue,
                result_type=RestoreStatus,
            )
            await wait_for(
                handle, lambda s: s.phase == Phase.RESTORING, WAIT, result_type=RestoreStatus
            )
            during = await asyncio.to_thread(scaling, svc)
            assert during.drained, "the service must be drained while the restore runs"
            st: RestoreStatus = await result(handle)
        finally:
            clear_faults(gcpsim)

    assert st.outcome == Outcome.SUCCEEDED, st.error
    assert st.validation is not None and st.validation.ok
    assert st.restore_seconds is not None and st.downtime_seconds is not None
    assert [s.state for s in st.services] == ["resumed"]
    assert await asyncio.to_thread(has_marker, ref, db, before)
    assert not await asyncio.to_thread(has_marker, ref, db, after)
    now = await asyncio.to_thread(scaling, svc)
    assert not now.drained
    assert (now.min_instances, now.max_instances) == (
        recorded.min_instances,
        recorded.max_instances,
    )


async def test_failed_restore_resumes_services_at_their_exact_scaling(
    gcpsim: GcpsimProcess, client: Client, task_queue: str
) -> None:
    cfg = config_for(gcpsim)
    env = "staging"
    svc = db_services(cfg, env)[0]
    run = CloudRunActivities()
    original = await asyncio.to_thread(scaling, svc)
    # an unusual live scaling (not the config's), so "exact" cannot come from the config
    unusual = SetScalingInput(ref=svc, drained=False, min_instances=1, max_instances=7)
    await asyncio.to_thread(in_activity, run.set_scaling, unusual)
    try:
        async with worker(client, task_queue):
            backup_id = await backup(client, task_queue, cfg, env)
            fault(gcpsim, "sql.instances.restoreBackup", "--op-error", "--times", "1")
            try:
                handle = await client.start_workflow(
                    "Restore",
                    restore_input(cfg, env, backup_id),
                    id=f"deploy-{APP}-{env}-{uid()}",
                    task_queue=task_queue,
                    result_type=RestoreStatus,
                )
                st: RestoreStatus = await result(handle)
            finally:
                clear_faults(gcpsim)
        await replays(handle)
        assert st.outcome == Outcome.FAILED
        assert "restor" in st.error.lower()
        assert any("drained (recorded min 1, max 7)" in e for e in st.events)
        assert [(s.state, s.min_instances, s.max_instances) for s in st.services] == [
            ("resumed", 1, 7)
        ]
        assert "FAILED" in st.database_state
        assert any("resumed at its recorded scaling (min 1, max 7)" in s for s in st.left_in)
        now = await asyncio.to_thread(scaling, svc)
        assert (now.drained, now.min_instances, now.max_instances) == (False, 1, 7)
    finally:
        await asyncio.to_thread(
            in_activity,
            run.set_scaling,
            SetScalingInput(
                ref=svc,
                drained=False,
                min_instances=original.min_instances,
                max_instances=original.max_instances,
            ),
        )


async def test_restore_waits_for_approval_and_excludes_a_release(
    gcpsim: GcpsimProcess, temporal_address: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """A restore holds `deploy-<app>-<env>`: a release (or a second restore) of the same
    environment is refused while it runs. Approval: only listed approvers; abort before the
    restore started leaves everything untouched."""
    cfg = config_for(gcpsim)
    env = "staging"
    wf_id = f"deploy-{APP}-{env}"
    # the worker's own config asks for approval of staging restores (the input's approvers
    # count for nothing)
    policy = restores_need_approval(tmp_path / "worker.yaml", "staging")
    async with worker(client, task_queue, policy):
        backup_id = await backup(client, task_queue, cfg, env)
        handle = await client.start_workflow(
            "Restore",
            restore_input(cfg, env, backup_id, approvers=["release-manager"]),
            id=wf_id,
            task_queue=task_queue,
            result_type=RestoreStatus,
        )
        try:
            await wait_for(handle, lambda s: s.awaiting_approval, WAIT, result_type=RestoreStatus)
            # a release of the same environment cannot start
            with pytest.raises(WorkflowAlreadyStartedError):
                await client.start_workflow(
                    "Release", {"app": APP}, id=wf_id, task_queue=task_queue
                )
            # nor a second restore, through the CLI: exit 2 naming what runs
            code, out, err = await cli(
                gcpsim, temporal_address, task_queue,
                "restore", env, "--backup-id", backup_id, "--yes",
            )  # fmt: skip
            assert code == 2, out + err
            assert "restore is running" in err and wf_id in err
            # nor a deploy through the CLI, which names the restore
            code, out, err = await cli(
                gcpsim, temporal_address, task_queue, "deploy", env, "v9.9.9", "--detach"
            )
            assert code == 2, out + err
            assert "a restore of staging's database is running" in err
            # `status ENV` shows the restore that holds the environment
            code, out, err = await cli(
                gcpsim, temporal_address, task_queue, "status", env, "--json"
            )
            assert code == 0, out + err
            shown = json.loads(out)
            assert shown["backup_id"] == backup_id and shown["awaiting_approval"] is True
            with pytest.raises(WorkflowUpdateFailedError):
                await handle.execute_update("approve", ApproveInput(by="mallory"))
            await handle.signal("abort", AbortInput(reason="e2e: changed our mind"))
            st: RestoreStatus = await result(handle)
        finally:
            with contextlib.suppress(Exception):
                await handle.terminate("test cleanup")
    assert st.outcome == Outcome.ABORTED
    assert [s.state for s in st.services] == ["untouched"]
    assert st.database_state == "untouched"


async def test_approved_restore_runs(
    gcpsim: GcpsimProcess, client: Client, task_queue: str, tmp_path: Path
) -> None:
    cfg = config_for(gcpsim)
    env = "dev"
    policy = restores_need_approval(tmp_path / "worker.yaml", "dev")
    async with worker(client, task_queue, policy):
        backup_id = await backup(client, task_queue, cfg, env)
        handle = await client.start_workflow(
            "Restore",
            restore_input(cfg, env, backup_id, approvers=["release-manager"]),
            id=f"deploy-{APP}-{env}-{uid()}",
            task_queue=task_queue,
            result_type=RestoreStatus,
        )
        await wait_for(handle, lambda s: s.awaiting_approval, WAIT, result_type=RestoreStatus)
        waiting = await handle.query("status", result_type=RestoreStatus)
        assert all(s.state == "untouched" for s in waiting.services)
        await handle.execute_update("approve", await signed_approval(handle, comment="ok"))
        st: RestoreStatus = await result(handle)
    assert st.outcome == Outcome.SUCCEEDED, st.error
    assert [a.by for a in st.approvals] == ["release-manager"]
    assert st.approvals[0].authenticated.startswith("release-manager (ed25519 key ")


async def test_prod_restore_without_yes_exits_2_and_starts_nothing(
    gcpsim: GcpsimProcess, temporal_address: str, client: Client, task_queue: str
) -> None:
    code, out, err = await cli(
        gcpsim, temporal_address, task_queue, "restore", "prod", "--backup-id", "1"
    )
    assert code == 2, out + err
    assert "--yes" in err and "Nothing was started" in err
    count = await client.count_workflows(f"WorkflowType = 'Restore' AND TaskQueue = '{task_queue}'")
    assert count.count == 0
    # bad inputs: exit 2 too
    for args in (
        ("restore", "prod"),
        ("restore", "nowhere", "--backup-id", "1", "--yes"),
        ("restore", "dev", "--point-in-time", "yesterday"),
        ("restore", "dev", "--point-in-time", "2020-01-01T00:00:00"),
        ("restore", "dev", "--point-in-time", "2020-01-01T00:00:00Z", "--switch"),  # no --yes
        ("restore", "dev", "--point-in-time", "2020-01-01T00:00:00Z", "--switch", "--yes"),
        ("restore", "dev", "--point-in-time", "2026-01-01T00:00:00Z", "--bake", "1s"),
        ("restore", "dev", "--backup-id", "1", "--yes", "--switch"),
        ("schedule", "dr-drill", "dev", "--cron", "every sunday"),
    ):
        code, out, err = await cli(gcpsim, temporal_address, task_queue, *args)
        assert code == 2, (args, out, err)
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


# ----------------------------------------------------------------------------- point in time


async def test_point_in_time_recovery_yields_the_data_as_of_the_timestamp(
    gcpsim: GcpsimProcess, temporal_address: str, client: Client, task_queue: str
) -> None:
    """gcpsim replays inserts exactly by `created_at` (gcpsim/pgdata.py): a row created before
    the recovery point is in the clone, one created after it is not."""
    cfg = config_for(gcpsim)
    env = "dev"
    ref = instance_ref(cfg, env)
    db = cfg.database.name
    before, after = f"pitr-before-{uid()}", f"pitr-after-{uid()}"
    t_before = await asyncio.to_thread(insert_marker, ref, db, before)
    await asyncio.sleep(1.2)
    point = await asyncio.to_thread(db_now, ref, db)
    await asyncio.sleep(1.2)
    t_after = await asyncio.to_thread(insert_marker, ref, db, after)
    assert t_before < point < t_after
    async with worker(client, task_queue):
        code, out, err = await cli(
            gcpsim, temporal_address, task_queue,
            "restore", env, "--point-in-time", point.astimezone(UTC).isoformat(), "--json",
        )  # fmt: skip
    assert code == 0, out + err
    st = PointInTimeResult.model_validate_json(out)
    try:
        assert st.outcome == Outcome.SUCCEEDED, st.error
        assert st.recovery_instance == f"{ref.instance}-recovery-{point:%Y%m%d%H%M}"
        assert st.clone_seconds is not None
        assert st.validation is not None and st.validation.ok
        rec = ref.model_copy(update={"instance": st.recovery_instance})
        assert await asyncio.to_thread(has_marker, rec, db, before)
        assert not await asyncio.to_thread(has_marker, rec, db, after)
        assert await asyncio.to_thread(has_marker, ref, db, after)  # the source is untouched
    finally:
        await asyncio.to_thread(
            in_activity,
            CloudSqlActivities().delete_instance,
            DeleteInstanceInput(ref=ref.model_copy(update={"instance": st.recovery_instance})),
        )


@pytest.fixture
def own_gcpsim(tmp_path: Any) -> Any:
    """A simulator of this test's own: the switch re-binds a service, which no other test
    should see."""
    from testing.gcpsim import start_seeded_gcpsim, stop_gcpsim

    sim = start_seeded_gcpsim(tmp_path)
    yield sim
    stop_gcpsim(sim)


def serving_revision(ref: ServiceRef) -> Any:
    """The revision receiving 100% of the service's traffic, read with the real client."""
    from stagecoach.clients import clients_for

    clients = clients_for(ref.target)
    svc = clients.services.get_service(name=ref.name)
    full = [t for t in svc.traffic if t.percent == 100]
    assert len(full) == 1, svc.traffic
    name = full[0].revision or svc.latest_ready_revision
    return clients.revisions.get_revision(name=f"{ref.name}/revisions/{name.rsplit('/', 1)[-1]}")


def binding(rev: Any) -> tuple[str, list[str]]:
    """(INSTANCE_CONNECTION_NAME value, Cloud SQL volume instances) of a revision."""
    env = {e.name: e.value for e in rev.containers[0].env}
    volumes = [list(v.cloud_sql_instance.instances) for v in rev.volumes if v.name == "cloudsql"]
    return env.get("INSTANCE_CONNECTION_NAME", ""), volumes[0] if volumes else []


async def test_point_in_time_switch_moves_the_services_through_a_release(
    own_gcpsim: GcpsimProcess, temporal_address: str, client: Client, task_queue: str
) -> None:
    """restore --point-in-time --switch: the verified recovery instance hands over to a release
    (same workflow id) that points the database services at it through a canary; the next
    release with the old config is stopped before it touches anything; --switch-database moves
    the services back."""
    sim = own_gcpsim
    cfg = config_for(sim)
    env = "staging"
    ref = instance_ref(cfg, env)
    db = cfg.database.name
    node, pipeline = service_ref(cfg, env, "node-server"), service_ref(cfg, env, "python-pipeline")
    source_conn = f"{cfg.env(env).project}:{cfg.env(env).region}:{ref.instance}"
    node_before = await asyncio.to_thread(serving_revision, node)
    pipeline_before = await asyncio.to_thread(serving_revision, pipeline)
    assert binding(node_before) == (source_conn, [source_conn])  # seeded as a release binds
    before, after = f"switch-before-{uid()}", f"switch-after-{uid()}"
    await asyncio.to_thread(insert_marker, ref, db, before)
    await asyncio.sleep(1.2)
    point = await asyncio.to_thread(db_now, ref, db)
    await asyncio.sleep(1.2)
    await asyncio.to_thread(insert_marker, ref, db, after)
    at = point.astimezone(UTC).isoformat()
    fast = ("--bake", "2s", "--interval", "2s")  # >= 20 canary requests per read at 10%
    async with worker(client, task_queue):
        asked = datetime.now(UTC)
        code, out, err = await cli(
            sim, temporal_address, task_queue, "restore", env, "--point-in-time", at, "--switch"
        )
        assert code == 2, out + err
        assert "rerun with --yes" in err and "Nothing was started" in err
        last = await describe_or_none(client, f"deploy-{APP}-{env}")
        assert last is None or last.start_time < asked  # nothing started

        code, out, err = await cli(
            sim, temporal_address, task_queue,
            "restore", env, "--point-in-time", at, "--switch", "--yes", *fast, "--json",
        )  # fmt: skip
        assert code == 0, out + err
        st = json.loads(out)
        recovery = f"{ref.instance}-recovery-{point:%Y%m%d%H%M}"
        assert st["outcome"] == "promoted", st
        assert st["version"] == f"recovery-{point:%Y%m%d%H%M}"
        assert st["recovery"]["recovery_instance"] == recovery
        assert st["recovery"]["validation"]["ok"] is True
        assert st["recovery"]["clone_seconds"] is not None
        [svc] = st["services"]  # only the service that uses the database
        assert svc["run_service"] == node.service
        assert (svc["database_before"], svc["database"]) == (ref.instance, recovery)
        assert svc["image"] == node_before.containers[0].image  # the serving image, kept
        assert [r["weight"] for r in svc["readings"]][:1] == [10]  # rolled out in steps

        rec = ref.model_copy(update={"instance": recovery})
        assert await asyncio.to_thread(has_marker, rec, db, before)
        assert not await asyncio.to_thread(has_marker, rec, db, after)
        node_now = await asyncio.to_thread(serving_revision, node)
        rec_conn = f"{cfg.env(env).project}:{cfg.env(env).region}:{recovery}"
        assert node_now.name.endswith(svc["canary_revision"])
        assert binding(node_now) == (rec_conn, [rec_conn])
        assert node_now.containers[0].image == node_before.containers[0].image
        pipeline_now = await asyncio.to_thread(serving_revision, pipeline)
        assert pipeline_now.name == pipeline_before.name  # untouched
        # gcpsim's simulated application writes where the serving revisions are bound: the new
        # rows now land in the recovery instance and the source stops growing
        src1, rec1 = (
            await asyncio.to_thread(newest_row, ref, db),
            await asyncio.to_thread(newest_row, rec, db),
        )
        await asyncio.sleep(3)
        src2, rec2 = (
            await asyncio.to_thread(newest_row, ref, db),
            await asyncio.to_thread(newest_row, rec, db),
        )
        assert rec2 > rec1, (rec1, rec2)
        assert src2 == src1, (src1, src2)

        # the config still names the old instance: the next release stops before anything
        code, out, err = await cli(
            sim, temporal_address, task_queue, "deploy", env, "v1.3.0", *fast, "--json"
        )
        assert code == 1, out + err
        st = json.loads(out)
        assert st["outcome"] == "failed"
        assert f"serves from database instance {recovery}" in st["error"]
        assert "--switch-database" in st["error"]
        assert all(s["canary_revision"] == "" for s in st["services"])
        assert (await asyncio.to_thread(serving_revision, node)).name == node_now.name
        assert (await asyncio.to_thread(serving_revision, pipeline)).name == pipeline_before.name

        # --switch-database moves the services back to the configured instance
        code, out, err = await cli(
            sim, temporal_address, task_queue,
            "deploy", env, "v1.3.0", *fast, "--switch-database", "--json",
        )  # fmt: skip
        assert code == 0, out + err
        node_back = await asyncio.to_thread(serving_revision, node)
        assert binding(node_back) == (source_conn, [source_conn])
        assert node_back.containers[0].image.endswith(":v1.3.0")


async def test_prod_switch_waits_for_approval_before_any_traffic_and_abort_keeps_the_source(
    own_gcpsim: GcpsimProcess, temporal_address: str, client: Client, task_queue: str
) -> None:
    """prod asks for approval before a restore: the switch release waits for `approve` before
    its first step; aborting there leaves every service on the source instance."""
    from stagecoach.payloads.release import ReleaseStatus

    sim = own_gcpsim
    cfg = config_for(sim)
    env = "prod"
    ref = instance_ref(cfg, env)
    node = service_ref(cfg, env, "node-server")
    node_before = await asyncio.to_thread(serving_revision, node)
    point = await asyncio.to_thread(db_now, ref, cfg.database.name)
    async with worker(client, task_queue):
        code, out, err = await cli(
            sim, temporal_address, task_queue,
            "restore", env, "--point-in-time", point.astimezone(UTC).isoformat(),
            "--switch", "--yes", "--bake", "2s", "--interval", "2s", "--detach",
        )  # fmt: skip
        assert code == 0, out + err
        handle = client.get_workflow_handle(f"deploy-{APP}-{env}", result_type=ReleaseStatus)
        for _ in range(int(WAIT / 0.2)):  # the recovery runs first, then continues as new
            if (await handle.describe()).workflow_type == "Release":
                break
            await asyncio.sleep(0.2)
        st = await wait_for(
            handle, lambda s: s.awaiting_approval_for is not None, WAIT, result_type=ReleaseStatus
        )
        assert st.awaiting_approval_for == 10  # before any traffic reaches the recovery
        assert st.services[0].canary_revision  # created and smoke-tested, 0% traffic
        assert st.services[0].percent == 0
        code, out, err = await cli(sim, temporal_address, task_queue, "status", env)
        assert code == 0, out + err
        assert "approve prod --by release-manager" in out
        assert f"recovery: {st.recovery.recovery_instance if st.recovery else '?'}" in out
        code, out, err = await cli(sim, temporal_address, task_queue, "abort", env)
        assert code == 0, out + err
        final: ReleaseStatus = await result(handle)
    assert final.outcome == "aborted", final.error
    node_now = await asyncio.to_thread(serving_revision, node)
    assert node_now.name == node_before.name
    assert binding(node_now) == binding(node_before)
    assert st.recovery is not None
    assert await asyncio.to_thread(instance_exists, ref, st.recovery.recovery_instance)


async def describe_or_none(client: Client, workflow_id: str) -> Any:
    from temporalio.service import RPCError

    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return None


# ----------------------------------------------------------------------------- drill


async def start_drill(
    client: Client, task_queue: str, inp: DrillInput
) -> WorkflowHandle[Any, DrillReport]:
    return await client.start_workflow(
        "DrDrill",
        inp,
        id=f"dr-drill-{APP}-{inp.env}-{uid()}",
        task_queue=task_queue,
        result_type=DrillReport,
    )


def assert_scratch_gone(cfg: Config, env: str, r: DrillReport) -> None:
    assert r.scratch_instance.startswith(f"legal-forms-db-{env}-drill-")
    assert r.scratch_deleted
    assert not instance_exists(instance_ref(cfg, env), r.scratch_instance)


async def test_drill_success_reports_and_deletes_scratch(
    gcpsim: GcpsimProcess, temporal_address: str, client: Client, task_queue: str
) -> None:
    cfg = config_for(gcpsim)
    async with worker(client, task_queue):
        code, out, err = await cli(gcpsim, temporal_address, task_queue, "dr-drill", "dev")
        assert code == 0, out + err
        assert "scratch instance  deleted" in out
        handle = await start_drill(client, task_queue, drill_input(cfg, "dev"))
        r: DrillReport = await result(handle)
    await replays(handle)
    assert r.outcome == Outcome.SUCCEEDED, r.error
    assert r.verified and r.backup is not None and r.backup.status == "SUCCESSFUL"
    assert [t.table for t in r.tables] == cfg.database.validation.tables
    assert all(t.source_rows and t.scratch_rows for t in r.tables)
    assert r.restore_seconds is not None and r.rto_met is not None
    assert r.data_loss_seconds is not None and r.rpo_met is not None
    assert r.source_newest is not None and r.scratch_newest is not None
    assert_scratch_gone(cfg, "dev", r)


async def test_drill_failed_verification_deletes_scratch(
    gcpsim: GcpsimProcess, client: Client, task_queue: str
) -> None:
    cfg = config_for(gcpsim)
    inp = drill_input(cfg, "dev").model_copy(
        update={"verification": verification(cfg, ["no_such_table"])}
    )
    async with worker(client, task_queue):
        handle = await start_drill(client, task_queue, inp)
        r: DrillReport = await result(handle)
    await replays(handle)
    assert r.outcome == Outcome.FAILED
    assert not r.verified and "no_such_table" in r.error
    assert_scratch_gone(cfg, "dev", r)


async def test_drill_activity_failure_deletes_scratch(
    gcpsim: GcpsimProcess, client: Client, task_queue: str
) -> None:
    cfg = config_for(gcpsim)
    async with worker(client, task_queue):
        # the clone's operation ends in error; the first delete attempts fail transiently too
        fault(gcpsim, "sql.instances.clone", "--op-error", "--times", "1")
        fault(gcpsim, "sql.instances.delete", "--status", "503", "--times", "2")
        try:
            r: DrillReport = await result(
                await start_drill(client, task_queue, drill_input(cfg, "dev"))
            )
        finally:
            clear_faults(gcpsim)
    assert r.outcome == Outcome.FAILED
    assert "cloning" in r.error
    assert_scratch_gone(cfg, "dev", r)


@pytest.mark.parametrize("ending", ["cancel", "abort"])
async def test_drill_cancelled_or_aborted_deletes_scratch(
    gcpsim: GcpsimProcess, client: Client, task_queue: str, ending: str
) -> None:
    cfg = config_for(gcpsim)
    async with worker(client, task_queue):
        # a slow clone call: the drill is stopped while the scratch instance is being made
        fault(gcpsim, "sql.instances.clone", "--latency-ms", "2000", "--times", "1")
        try:
            handle = await start_drill(client, task_queue, drill_input(cfg, "dev"))
            await wait_for(
                handle, lambda s: s.progress.startswith("restoring"), WAIT, result_type=DrillReport
            )
            await asyncio.sleep(0.5)
            if ending == "cancel":
                await handle.cancel()
                with pytest.raises(WorkflowFailureError) as exc:
                    await result(handle)
                assert isinstance(exc.value.cause, CancelledError)
                r: DrillReport = await handle.query("status", result_type=DrillReport)
                assert r.outcome == Outcome.CANCELLED
            else:
                await handle.signal("abort", AbortInput(reason="e2e abort"))
                r = await result(handle)
                assert r.outcome == Outcome.ABORTED and r.abort_reason == "e2e abort"
        finally:
            clear_faults(gcpsim)
    await replays(handle)
    assert_scratch_gone(cfg, "dev", r)


# ----------------------------------------------------------------------------- schedule


async def test_drill_schedule_created_listed_triggered_deleted(
    gcpsim: GcpsimProcess, temporal_address: str, client: Client, task_queue: str
) -> None:
    sched_id = f"dr-drill-{APP}-dev"
    async with worker(client, task_queue):
        code, out, err = await cli(
            gcpsim, temporal_address, task_queue,
            "schedule", "dr-drill", "dev", "--cron", FIRST_SUNDAY_CRON,
        )  # fmt: skip
        assert code == 0, out + err
        try:
            # Temporal ANDs day-of-month and day-of-week: every run is a first Sunday, 03:00
            desc = await client.get_schedule_handle(sched_id).describe()
            nxt = desc.info.next_action_times
            assert nxt
            for t in nxt:
                t = t.astimezone(UTC)
                assert (t.weekday(), t.hour, t.minute) == (6, 3, 0) and t.day <= 7, t
            code, out, err = await cli(
                gcpsim, temporal_address, task_queue, "schedule", "list", "--json"
            )
            assert code == 0, err
            assert sched_id in [row["id"] for row in json.loads(out)]
            code, out, err = await cli(
                gcpsim, temporal_address, task_queue,
                "schedule", "trigger", sched_id, "--wait", "--json",
            )  # fmt: skip
            assert code == 0, out + err
            r = DrillReport.model_validate_json(out)
            assert r.outcome == Outcome.SUCCEEDED and r.scratch_deleted
        finally:
            code, out, err = await cli(
                gcpsim, temporal_address, task_queue, "schedule", "delete", sched_id
            )
        assert code == 0, out + err
    code, out, err = await cli(gcpsim, temporal_address, task_queue, "schedule", "delete", sched_id)
    assert code == 2, out + err


def test_names_and_backup_choice() -> None:
    from stagecoach.payloads.sql import BackupInfo
    from stagecoach.plan import recovery_instance_name
    from workflows.dr import drill_instance_name, newest_successful

    def b(id_: str, status: str, day: int) -> BackupInfo:
        return BackupInfo(id=id_, status=status, enqueued_time=datetime(2025, 5, day, tzinfo=UTC))

    chosen = newest_successful(
        [b("1", "SUCCESSFUL", 1), b("3", "FAILED", 3), b("2", "SUCCESSFUL", 2)]
    )
    assert chosen is not None and chosen.id == "2"
    assert newest_successful([b("3", "RUNNING", 3)]) is None

    at = datetime(2025, 5, 4, 3, 0, 7, tzinfo=UTC)
    assert recovery_instance_name("db", at) == "db-recovery-202505040300"
    assert drill_instance_name("db", at) == "db-drill-20250504030007"
    assert PointInTimeInput.model_validate(
        {
            "app": "a",
            "env": "e",
            "instance": {"target": {}, "project": "p", "instance": "i"},
            "point_in_time": "2025-05-04T05:00:00+02:00",
            "verification": {"database": "d", "tables": ["t"]},
        }
    ).point_in_time == datetime(2025, 5, 4, 3, 0, tzinfo=UTC)
