"""`restore --point-in-time --switch` of an instance that has a read replica, end to end: the
switch moves the services to the recovery instance, not the replica, which keeps replicating
from the source. The point-in-time recovery names the replica in its events (which the CLI
prints), `left_in` and `next_steps`, with the gcloud command that creates its counterpart for
the recovery instance and the config to change; the replica itself is left as it was.

The real Temporal dev server, a worker inside the test, `starter.py` as a subprocess, the real
Google clients and a gcpsim of this test's own (the switch re-binds a service).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
from temporalio.client import Client

from stagecoach.payloads.dr import PointInTimeResult
from stagecoach.plan import instance_ref
from testing.gcpsim import GcpsimProcess, config_for, start_seeded_gcpsim, stop_gcpsim
from testing.histories import record_history, replays
from testing.releases import worker
from tests.e2e.test_dr import APP, cli, db_now
from tests.e2e.test_restore_replicas import get, make_replica

pytestmark = pytest.mark.asyncio

ENV = "staging"
REGION = "us-east1"


@pytest.fixture
def psim(tmp_path: Path) -> Iterator[GcpsimProcess]:
    sim = start_seeded_gcpsim(tmp_path)
    yield sim
    stop_gcpsim(sim)


async def test_switch_names_the_replica_left_following_the_source(
    psim: GcpsimProcess, temporal_address: str, client: Client, task_queue: str
) -> None:
    cfg = config_for(psim)
    ref = instance_ref(cfg, ENV)
    replica = await asyncio.to_thread(make_replica, psim, ref, REGION)
    await asyncio.sleep(1.2)
    point = await asyncio.to_thread(db_now, ref, cfg.database.name)
    recovery = f"{ref.instance}-recovery-{point:%Y%m%d%H%M}"
    wid = f"deploy-{APP}-{ENV}"
    async with worker(client, task_queue):
        code, out, err = await cli(
            psim, temporal_address, task_queue,
            "restore", ENV, "--point-in-time", point.astimezone(UTC).isoformat(),
            "--switch", "--yes", "--bake", "2s", "--interval", "2s",
        )  # fmt: skip
        assert code == 0, out + err
        # the CLI printed the recovery's events: the replica, named, and what to do
        said = (
            f"read replica {replica} ({REGION}) keeps replicating from {ref.instance}, not from "
            f"{recovery}"
        )
        command = (
            f"gcloud sql instances create {recovery}-replica-{REGION} --project={ref.project} "
            f"--master-instance-name={recovery} --region={REGION}"
        )
        assert said in out, out
        assert command in out, out
        assert f"environments.{ENV}.database.instance: {recovery}" in out, out

        # the point-in-time run (the release continued as new from it) says it too
        release = client.get_workflow_handle(wid)
        started = (await release.fetch_history()).events[0]
        first = started.workflow_execution_started_event_attributes.continued_execution_run_id
        assert first
        handle = client.get_workflow_handle(wid, run_id=first, result_type=PointInTimeResult)
        st = await handle.query("status", result_type=PointInTimeResult)
        await replays(handle)
        await record_history(handle, "pitr_switch_replica_named")
    assert st.switching and st.recovery_instance == recovery
    assert [(r.name, r.region) for r in st.replicas] == [(replica, REGION)]
    assert (
        f"read replica {replica} ({REGION}): still replicating from {ref.instance}, NOT from "
        f"{recovery}"
    ) in st.left_in, st.left_in
    assert any(command in n for n in st.next_steps), st.next_steps
    assert any(f"gcloud sql instances delete {replica}" in n for n in st.next_steps)
    # the replica itself is untouched: still a replica of the source
    inst = await asyncio.to_thread(get, ref, replica)
    assert inst is not None and inst["masterInstanceName"] == ref.instance
    assert inst["state"] == "RUNNABLE"
