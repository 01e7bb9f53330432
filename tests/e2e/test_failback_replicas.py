"""`failback` when the primary instance has a read replica, end to end: prod configured with
`database.replicas: [{region: us-east1}]`, gcpsim seeded with it, `outage us-central1`, then
`failover --from backup` to us-east1 (the primary in us-central1 keeps its replica) and, after
`outage --clear`, `failback`. Cloud SQL (and gcpsim) refuse a restore into an instance that has
replicas, so the failback deletes the replica before restoring the secondary's fresh backup into
the primary and recreates it from the restored primary after the DNS move; when recreating
fails, the failback still succeeded and the run says how to recreate it; when the failback
fails after the delete, the replica is recreated all the same.

The real Temporal dev server, a worker inside the test, `starter.py` as a subprocess, the real
Google clients and a gcpsim of this module's own (it takes prod's region down). The steps
depend on each other: one test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from googleapiclient.errors import HttpError
from temporalio.client import Client

from stagecoach.payloads.common import Outcome
from stagecoach.payloads.failover import FailoverStatus
from stagecoach.plan import instance_ref
from stagecoach.temporal import workflow_result
from testing.cli import show, starter, starter_env
from testing.gcpsim import GcpsimProcess, config_for, start_seeded_gcpsim, stop_gcpsim
from testing.histories import record_history, replays
from testing.releases import prod_with_replica, worker, worker_config
from tests.e2e.test_dr import clear_faults, fault, has_marker, insert_marker, uid
from tests.e2e.test_failover import CENTRAL, EAST, WID, clients, record, run_with_approval
from tests.e2e.test_failover_replica import REPLICA

pytestmark = pytest.mark.asyncio

PRIMARY = "legal-forms-db-prod"
SECONDARY = "legal-forms-db-prod-us-east1"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("failback-config") / "deploy.yaml"
    return worker_config(path, prod_with_replica)


@pytest.fixture(scope="module")
def fsim(tmp_path_factory: pytest.TempPathFactory, config: Path) -> Iterator[GcpsimProcess]:
    s = start_seeded_gcpsim(tmp_path_factory.mktemp("gcpsim-failback"), config)
    yield s
    stop_gcpsim(s)


@pytest.fixture
def fenv(
    temporal_address: str, task_queue: str, fsim: GcpsimProcess, tmp_path: Path, config: Path
) -> dict[str, str]:
    return starter_env(
        temporal_address, task_queue, fsim, tmp_path / "home", STAGECOACH_CONFIG=str(config)
    )


def get(sim: GcpsimProcess, name: str) -> dict[str, Any] | None:
    try:
        out: dict[str, Any] = (
            clients(sim).sqladmin().instances().get(project="legal-forms-prod", instance=name)
        ).execute()
    except HttpError as e:
        if e.status_code == 404:
            return None
        raise
    return out


def follows_primary(sim: GcpsimProcess) -> bool:
    """REPLICA exists, RUNNABLE, as a read replica of the primary, in us-east1."""
    inst = get(sim, REPLICA)
    return (
        inst is not None
        and inst["state"] == "RUNNABLE"
        and inst["instanceType"] == "READ_REPLICA_INSTANCE"
        and inst["masterInstanceName"] == PRIMARY
        and inst["region"] == "us-east1"
    )


async def fail_over(sim: GcpsimProcess, env: dict[str, str], client: Client) -> None:
    """us-central1 down, prod failed over from backup to us-east1; the region back."""
    assert sim.cli("outage", "us-central1").returncode == 0
    st = await run_with_approval(
        env, client, "failover", "prod", "--to-region", "us-east1", "--yes", "--version", "v1.1.0"
    )
    assert st.outcome == Outcome.SUCCEEDED, st.error
    assert st.instance == SECONDARY and st.replicas == []
    assert sim.cli("outage", "us-central1", "--clear").returncode == 0


async def test_failback_deletes_the_primarys_replica_and_recreates_it(
    client: Client,
    task_queue: str,
    fsim: GcpsimProcess,
    fenv: dict[str, str],
    config: Path,
) -> None:
    cfg = config_for(fsim, config)
    primary = instance_ref(cfg, "prod")
    secondary = primary.model_copy(update={"instance": SECONDARY})
    replica = primary.model_copy(update={"instance": REPLICA})
    db = cfg.database.name
    assert follows_primary(fsim)
    async with worker(client, task_queue, config=config):
        await fail_over(fsim, fenv, client)
        # the failover from backup left the primary's replica as it was
        assert follows_primary(fsim)
        # written in us-east1 during the outage: must reach the primary and its replica
        during = f"during-outage-{uid()}"
        await asyncio.to_thread(insert_marker, secondary, db, during)

        # a failback that fails after the replica was deleted (node-server's smoke test in
        # us-central1) recreates it all the same; users stay in us-east1
        out = fsim.cli("behavior", "node-server-prod", "v1.1.0", "--smoke-fail")
        assert out.returncode == 0, out.stderr
        try:
            bad = await starter(fenv, "failback", "prod", "--yes")
        finally:
            assert fsim.cli("behavior", "--clear").returncode == 0
        assert bad.returncode == 1, show(bad)
        failed = await workflow_result(client.get_workflow_handle(WID, result_type=FailoverStatus))
        assert failed.outcome == Outcome.FAILED and "smoke test" in failed.error, failed.error
        assert [(r.replica.name, r.state) for r in failed.replicas] == [(REPLICA, "recreated")]
        assert follows_primary(fsim)
        assert record(fsim) == [EAST]
        assert any(f"read replica {REPLICA} (us-east1): deleted for" in x for x in failed.left_in)
        assert (
            f"replica    {REPLICA} (us-east1) of {PRIMARY}: deleted for the restore" in bad.stdout
        )
        await replays(client.get_workflow_handle(WID))

        back = await run_with_approval(fenv, client, "failback", "prod", "--yes")
        assert back.outcome == Outcome.SUCCEEDED, back.error
        handle = client.get_workflow_handle(WID)
        await replays(handle)
        await record_history(handle, "failback_replica_recreated")
        status = await starter(fenv, "status", "prod")
        assert status.returncode == 0, show(status)

        assert record(fsim) == [CENTRAL]
        assert back.source_instance == SECONDARY and back.instance == PRIMARY
        assert await asyncio.to_thread(has_marker, primary, db, during)
        # the replica is back, replicating from the restored primary, with the outage's rows
        assert follows_primary(fsim)
        assert get(fsim, PRIMARY)["replicaNames"] == [REPLICA]  # type: ignore[index]
        assert await asyncio.to_thread(has_marker, replica, db, during)
        # and the run says so
        assert [(r.replica.name, r.state) for r in back.replicas] == [(REPLICA, "recreated")]
        assert not any("not in environments.prod" in e for e in back.events), back.events
        assert back.replicas_deleted_seconds is not None
        assert back.replicas_recreated_seconds is not None
        assert [p.phase for p in back.phases] == [
            "database", "services", "awaiting_approval", "dns", "replicas"
        ]  # fmt: skip
        # the RTO is measured to users back (the DNS move), not to the replicas' recreation
        assert back.total_seconds is not None and back.recovery_seconds is not None
        assert back.recovery_seconds == pytest.approx(
            back.total_seconds - back.phases[-1].seconds, abs=0.01
        )
        assert "users back " in status.stdout and "vs RTO" in status.stdout, show(status)
        line = next(x for x in back.left_in if x.startswith(f"read replica {REPLICA}"))
        assert "deleted for the failback's restore and recreated from legal-forms-db-prod" in line
        # deleted before the restore into the primary, recreated after users moved back
        order = [
            next(i for i, e in enumerate(back.events) if needle in e)
            for needle in (
                f"read replica {REPLICA} deleted",
                f"restored into {PRIMARY}",
                "verified:",
                f"read replica {REPLICA} recreated in us-east1",
            )
        ]
        assert order == sorted(order), back.events
        assert f"replica    {REPLICA} (us-east1) of {PRIMARY}: deleted for the restore, " in (
            status.stdout
        ), show(status)

        # again, and recreating the replica fails: the failback still succeeded, and the run
        # (report, next steps) says how to recreate it
        await fail_over(fsim, fenv, client)
        fault(fsim, "sql.instances.insert", "--op-error", "--times", "1")
        try:
            failed = await run_with_approval(fenv, client, "failback", "prod", "--yes")
        finally:
            clear_faults(fsim)
        assert failed.outcome == Outcome.SUCCEEDED, failed.error
        await replays(client.get_workflow_handle(WID))
        assert record(fsim) == [CENTRAL]
        assert [(r.replica.name, r.state) for r in failed.replicas] == [
            (REPLICA, "recreate_failed")
        ]
        assert get(fsim, REPLICA) is None
        command = (
            f"gcloud sql instances create {REPLICA} --project=legal-forms-prod "
            f"--master-instance-name={PRIMARY} --region=us-east1"
        )
        line = next(x for x in failed.left_in if x.startswith(f"read replica {REPLICA}"))
        assert "NOT recreated" in line and command in line, line
        assert any(command in n for n in failed.next_steps), failed.next_steps
        shown = await starter(fenv, "status", "prod")
        assert f"replica    {REPLICA} (us-east1) of {PRIMARY}: recreate failed" in shown.stdout
