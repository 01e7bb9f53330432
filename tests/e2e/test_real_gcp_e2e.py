"""Issue 9 end to end: the real Temporal dev server, a worker started here, the real Google
clients and gcpsim modelling what real Google Cloud does."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from stagecoach.cli.dr import drill_input
from stagecoach.payloads.common import Outcome
from stagecoach.payloads.dr import DrillReport
from stagecoach.plan import instance_ref
from stagecoach.temporal import workflow_result
from testing.gcpsim import GcpsimProcess, config_for
from testing.releases import worker
from tests.e2e.test_dr import assert_scratch_gone, cli, result, start_drill


async def test_drill_of_a_protected_instance_deletes_its_scratch_clone(
    gcpsim: GcpsimProcess, client: Client, task_queue: str
) -> None:
    """Item 4. prod's instance has deletion protection; the scratch clone inherits it. Before:
    the drill ended with `scratch instance NOT deleted` and a REGIONAL instance left running."""
    from stagecoach.clients import clients_for

    cfg = config_for(gcpsim)
    ref = instance_ref(cfg, "prod")
    sql = clients_for(ref.target).sqladmin()
    inst = sql.instances().get(project=ref.project, instance=ref.instance).execute()
    assert inst["settings"]["deletionProtectionEnabled"] is True
    async with worker(client, task_queue):
        handle = await start_drill(client, task_queue, drill_input(cfg, "prod"))
        r: DrillReport = await result(handle, timeout=180)
    assert r.outcome == Outcome.SUCCEEDED, r.error
    assert_scratch_gone(cfg, "prod", r)
    # the source keeps its protection
    inst = sql.instances().get(project=ref.project, instance=ref.instance).execute()
    assert inst["settings"]["deletionProtectionEnabled"] is True


async def last_run(client: Client, workflow_id: str) -> str | None:
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).run_id
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def test_point_in_time_outside_the_window_is_refused_before_anything_starts(
    gcpsim: GcpsimProcess, temporal_address: str, client: Client, task_queue: str
) -> None:
    """Item 6. Before: the CLI assumed 7 days of logs; with 1 day kept, a time 2 days back
    started the recovery, whose clone the API then refused (exit 1, a failed workflow)."""
    from testing.cloudsql import sqladmin

    cfg = config_for(gcpsim)
    ref = instance_ref(cfg, "staging")

    def patch(days: int) -> None:
        sql = sqladmin(gcpsim.url)  # its own connection (a pooled idle one may be closed)
        body = {"settings": {"backupConfiguration": {"transactionLogRetentionDays": days}}}
        op = sql.instances().patch(project=ref.project, instance=ref.instance, body=body).execute()
        for _ in range(600):
            cur = sql.operations().get(project=ref.project, operation=op["name"]).execute()
            if cur["status"] == "DONE":
                return
            time.sleep(0.1)
        raise AssertionError("patch did not finish")

    wf_id = f"deploy-{cfg.app}-staging"
    before = await last_run(client, wf_id)
    await asyncio.to_thread(patch, 1)
    try:
        at = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        code, out, err = await cli(
            gcpsim, temporal_address, task_queue, "restore", "staging", "--point-in-time", at
        )
    finally:
        await asyncio.to_thread(patch, 7)
    assert code == 2, out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --point-in-time"), err
    assert "earliest recoverable time" in err and "kept 1 days" in err and "--backup-id" in err
    assert await last_run(client, wf_id) == before  # nothing started


async def test_internal_service_released_with_its_smoke_route_said_aloud(
    gcpsim: GcpsimProcess, client: Client, task_queue: str
) -> None:
    """Item 3. python-pipeline has ingress internal; gcpsim answers its tag URL with 404 to a
    caller outside the VPC, as Cloud Run does. Before: every release failed its smoke test.
    Now its route is explicit (`smoke: none` in deploy.yaml) and the status says so."""
    from stagecoach.payloads.common import Outcome
    from stagecoach.payloads.release import ReleaseStatus
    from testing.releases import start_release as start
    from testing.releases import worker as release_worker
    from tests.e2e.test_release import release_input

    inp = release_input(gcpsim, "dev", "v1.8.0", ["python-pipeline"])
    assert inp.services[0].smoke == "none"
    async with release_worker(client, task_queue):
        st: ReleaseStatus = await workflow_result(await start(client, task_queue, inp))
    assert st.outcome == Outcome.PROMOTED, st.error
    events = " | ".join(st.events)
    assert "NO smoke test (smoke: none; ingress internal" in events, events
