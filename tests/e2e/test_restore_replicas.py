"""`restore` of an environment whose Cloud SQL instance has a cross-region read replica, end to
end: the real Temporal dev server, a real worker, the real Google clients, gcpsim with real
PostgreSQL data. Cloud SQL (and gcpsim) refuse a restore into an instance that has replicas, so
the restore deletes the replica first and recreates it from the restored instance afterwards;
when recreating fails, the restore still succeeded and the run says how to recreate it.

Staging's instance only; the replica each test makes is deleted again whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from googleapiclient.errors import HttpError
from temporalio.client import Client

from stagecoach.config import Config
from stagecoach.payloads.common import AbortInput, InstanceRef, Outcome, Phase
from stagecoach.payloads.dr import RestoreStatus
from stagecoach.plan import instance_ref
from testing.cli import starter
from testing.gcpsim import GcpsimProcess, config_for
from testing.histories import record_history, replays
from testing.releases import signed_approval, wait_for, worker, worker_config
from tests.e2e.test_cli import assert_one_line_error
from tests.e2e.test_dr import (
    APP,
    WAIT,
    backup,
    clear_faults,
    fault,
    has_marker,
    insert_marker,
    restore_input,
    restores_need_approval,
    result,
    sqladmin,
    uid,
)
from tests.e2e.test_hooks import webhook

pytestmark = pytest.mark.asyncio

ENV = "staging"
REGION = "us-east1"


def get(ref: InstanceRef, name: str) -> dict[str, Any] | None:
    try:
        out: dict[str, Any] = (
            sqladmin(ref).instances().get(project=ref.project, instance=name).execute()
        )
    except HttpError as e:
        if e.status_code == 404:
            return None
        raise
    return out


def make_replica(sim: GcpsimProcess, ref: InstanceRef, region: str) -> str:
    """A read replica of `ref` in `region`, made with gcpsim's `replica create` (as an environment
    with `database.replicas` is seeded)."""
    out = sim.cli("replica", "create", ref.instance, "--region", region, "--project", ref.project)
    assert out.returncode == 0, out.stderr
    return f"{ref.instance}-replica-{region}"


def delete_replica(ref: InstanceRef, name: str) -> None:
    with contextlib.suppress(HttpError):  # 404: gone already
        sqladmin(ref).instances().delete(project=ref.project, instance=name).execute()
    deadline = time.monotonic() + 60
    while get(ref, name) is not None:  # other tests restore this instance
        assert time.monotonic() < deadline, f"{name} not deleted"
        time.sleep(0.1)


@contextlib.contextmanager
def replica_of(sim: GcpsimProcess, ref: InstanceRef, region: str = REGION) -> Iterator[str]:
    """A read replica of `ref` in `region`, deleted again at the end."""
    name = make_replica(sim, ref, region)
    try:
        yield name
    finally:
        clear_faults(sim)
        delete_replica(ref, name)


async def restore_with_replica(
    client: Client,
    task_queue: str,
    cfg: Config,
    replica: str,
    before: str,
    after: str,
    notify: bool = False,
) -> tuple[RestoreStatus, Any]:
    """Marker `before`, a backup, marker `after`, then a restore of that backup."""
    ref = instance_ref(cfg, ENV)
    db = cfg.database.name
    await asyncio.to_thread(insert_marker, ref, db, before)
    backup_id = await backup(client, task_queue, cfg, ENV)
    await asyncio.to_thread(insert_marker, ref, db, after)
    handle = await client.start_workflow(
        "Restore",
        restore_input(cfg, ENV, backup_id, configured_replicas=[replica], notify=notify),
        id=f"deploy-{APP}-{ENV}-{uid()}",
        task_queue=task_queue,
        result_type=RestoreStatus,
    )
    st: RestoreStatus = await result(handle)
    return st, handle


async def test_restore_deletes_the_replica_and_recreates_it(
    gcpsim: GcpsimProcess, client: Client, task_queue: str
) -> None:
    cfg = config_for(gcpsim)
    ref = instance_ref(cfg, ENV)
    db = cfg.database.name
    before, after = f"before-{uid()}", f"after-{uid()}"
    with replica_of(gcpsim, ref) as replica:
        assert get(ref, ref.instance)["replicaNames"] == [replica]  # type: ignore[index]
        async with worker(client, task_queue):
            st, handle = await restore_with_replica(client, task_queue, cfg, replica, before, after)
            await replays(handle)
            await record_history(handle, "restore_replica_recreated")

        assert st.outcome == Outcome.SUCCEEDED, st.error
        assert st.validation is not None and st.validation.ok
        assert await asyncio.to_thread(has_marker, ref, db, before)
        assert not await asyncio.to_thread(has_marker, ref, db, after)
        # the replica is back, replicating from the restored instance
        inst = get(ref, replica)
        assert inst is not None and inst["state"] == "RUNNABLE"
        assert inst["instanceType"] == "READ_REPLICA_INSTANCE"
        assert inst["masterInstanceName"] == ref.instance and inst["region"] == REGION
        assert get(ref, ref.instance)["replicaNames"] == [replica]  # type: ignore[index]
        replica_ref = ref.model_copy(update={"instance": replica})
        assert await asyncio.to_thread(has_marker, replica_ref, db, before)
        assert not await asyncio.to_thread(has_marker, replica_ref, db, after)
        # and the run says so
        assert [(r.replica.name, r.configured, r.state) for r in st.replicas] == [
            (replica, True, "recreated")
        ]
        assert st.replicas_deleted_seconds is not None
        assert st.replicas_recreated_seconds is not None
        assert any(f"read replica {replica} deleted" in e for e in st.events), st.events
        assert any(f"read replica {replica} recreated in {REGION}" in e for e in st.events)
        assert any(
            f"read replica {replica} ({REGION}): deleted for the restore and recreated" in x
            for x in st.left_in
        ), st.left_in
        # the order: deleted before the restore, recreated after the services resumed
        order = [
            next(i for i, e in enumerate(st.events) if needle in e)
            for needle in (
                f"read replica {replica} deleted",
                f"restored into {ref.instance}",
                "resumed at",
                f"read replica {replica} recreated",
            )
        ]
        assert order == sorted(order), st.events


async def test_a_replica_not_recreated_is_said_plainly(
    gcpsim: GcpsimProcess, client: Client, task_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restore succeeded; recreating the replica failed: the outcome stays succeeded,
    `left_in` says the replica is gone and the command that recreates it, and the notification
    says so."""
    cfg = config_for(gcpsim)
    ref = instance_ref(cfg, ENV)
    with replica_of(gcpsim, ref) as replica, webhook(monkeypatch) as received:
        fault(gcpsim, "sql.instances.insert", "--op-error", "--times", "1")
        async with worker(client, task_queue):
            st, _ = await restore_with_replica(
                client, task_queue, cfg, replica, f"b-{uid()}", f"a-{uid()}", notify=True
            )
        assert st.outcome == Outcome.SUCCEEDED, st.error
        assert [(r.replica.name, r.state) for r in st.replicas] == [(replica, "recreate_failed")]
        assert get(ref, replica) is None
        line = next(x for x in st.left_in if x.startswith(f"read replica {replica}"))
        assert "NOT recreated" in line
        assert (
            f"gcloud sql instances create {replica} --project={ref.project} "
            f"--master-instance-name={ref.instance} --region={REGION}"
        ) in line
        assert any("recreate FAILED" in e for e in st.events), st.events
        texts = [json.dumps(b) for b in received]
        assert any(
            "succeeded, but not every read replica was recreated" in t and replica in t
            for t in texts
        ), texts


async def test_approval_names_every_replica_and_the_restore_takes_those_found_after_it(
    gcpsim: GcpsimProcess, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """A replica the config does not name is deleted and recreated all the same (the events say
    so); the approval request names it; one created while the approval was awaited is found
    when the replicas are read again after it, and recreated too."""
    cfg = config_for(gcpsim)
    ref = instance_ref(cfg, ENV)
    policy = restores_need_approval(tmp_path / "worker.yaml", ENV)
    late = f"{ref.instance}-replica-us-west1"
    with replica_of(gcpsim, ref) as replica:
        try:
            async with worker(client, task_queue, policy):
                backup_id = await backup(client, task_queue, cfg, ENV)
                handle = await client.start_workflow(
                    "Restore",
                    restore_input(cfg, ENV, backup_id, approvers=["release-manager"]),
                    id=f"deploy-{APP}-{ENV}-{uid()}",
                    task_queue=task_queue,
                    result_type=RestoreStatus,
                )
                waiting = await wait_for(
                    handle, lambda s: s.awaiting_approval, WAIT, result_type=RestoreStatus
                )
                assert [(r.replica.name, r.configured) for r in waiting.replicas] == [
                    (replica, False)
                ]
                asked = next(e for e in waiting.events if "awaiting approval by" in e)
                assert f"read replicas {replica} ({REGION}) will be deleted" in asked, asked
                assert any(
                    f"read replica {replica} " in e and "not in environments.staging" in e
                    for e in waiting.events
                ), waiting.events
                await asyncio.to_thread(make_replica, gcpsim, ref, "us-west1")
                await handle.execute_update("approve", await signed_approval(handle))
                st: RestoreStatus = await result(handle)
                await replays(handle)
            assert st.outcome == Outcome.SUCCEEDED, st.error
            assert sorted((r.replica.name, r.state) for r in st.replicas) == sorted(
                [(replica, "recreated"), (late, "recreated")]
            )
            for name in (replica, late):
                inst = get(ref, name)
                assert inst is not None and inst["state"] == "RUNNABLE"
                assert inst["masterInstanceName"] == ref.instance
        finally:
            await asyncio.to_thread(delete_replica, ref, late)


async def test_an_abort_during_the_replica_delete_recreates_it_and_restores_nothing(
    gcpsim: GcpsimProcess, client: Client, task_queue: str
) -> None:
    cfg = config_for(gcpsim)
    ref = instance_ref(cfg, ENV)
    db = cfg.database.name
    after = f"after-{uid()}"
    with replica_of(gcpsim, ref) as replica:
        async with worker(client, task_queue):
            backup_id = await backup(client, task_queue, cfg, ENV)
            await asyncio.to_thread(insert_marker, ref, db, after)
            # a slow delete call leaves time to abort while the replica is being deleted
            fault(gcpsim, "sql.instances.delete", "--latency-ms", "3000", "--times", "1")
            handle = await client.start_workflow(
                "Restore",
                restore_input(cfg, ENV, backup_id, configured_replicas=[replica]),
                id=f"deploy-{APP}-{ENV}-{uid()}",
                task_queue=task_queue,
                result_type=RestoreStatus,
            )
            await wait_for(
                handle,
                lambda s: any(r.state != "found" for r in s.replicas),
                WAIT,
                result_type=RestoreStatus,
            )
            await handle.signal("abort", AbortInput(reason="e2e: not now"))
            st: RestoreStatus = await result(handle)
            await replays(handle)
        assert st.outcome == Outcome.ABORTED, st.error
        assert st.phase == Phase.DONE and st.database_state == "untouched"
        assert await asyncio.to_thread(has_marker, ref, db, after)  # nothing restored
        assert [(r.replica.name, r.state) for r in st.replicas] == [(replica, "recreated")]
        inst = get(ref, replica)
        assert inst is not None and inst["state"] == "RUNNABLE"
        assert inst["masterInstanceName"] == ref.instance


async def test_cli_refusal_without_yes_says_the_replicas_are_recreated(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The `--yes` refusal names everything a restore does, the replicas of the config included."""

    def with_replica(data: dict[str, Any]) -> None:
        data["environments"][ENV]["database"]["replicas"] = [{"region": REGION}]

    cfg = str(worker_config(tmp_path / "deploy.yaml", with_replica))
    res = await starter(cli_env, "restore", ENV, "--backup-id", "123", "--config", cfg)
    line = assert_one_line_error(res, 2, "--yes", "overwrites", "deletes its read replicas")
    assert "recreates them afterwards" in line
    # without replicas in the config the refusal does not mention them
    res = await starter(cli_env, "restore", ENV, "--backup-id", "123")
    assert "replicas" not in assert_one_line_error(res, 2, "--yes", "overwrites")
