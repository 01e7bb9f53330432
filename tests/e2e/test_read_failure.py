"""A permanent failure of the canary read (Monitoring answers 403) ends the release rolled back
to the exact previous split, not a failed workflow with the canary left holding traffic.

The read is a local activity, whose non-retryable failure reaches the workflow as a bare
ApplicationError (not an ActivityError)."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from stagecoach.payloads.common import Outcome
from stagecoach.payloads.release import ReleaseStatus
from stagecoach.temporal import workflow_result
from testing.cloudrun import live_traffic
from testing.gcpsim import GcpsimProcess
from testing.releases import start_release as start
from testing.releases import worker
from tests.e2e.test_release import release_input

pytestmark = pytest.mark.asyncio


async def test_permanent_metrics_failure_rolls_the_canary_back(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    service = "python-pipeline-staging"
    before = live_traffic(gcpsim, "legal-forms-staging", service)
    res = gcpsim.cli("fault", "monitoring.timeSeries.list", "--status", "403")
    assert res.returncode == 0, res.stderr
    try:
        inp = release_input(gcpsim, "staging", "v3.0.1", ["python-pipeline"])
        async with worker(client, task_queue):
            result: ReleaseStatus = await workflow_result(await start(client, task_queue, inp))
    finally:
        gcpsim.cli("fault", "--clear")
    assert result.outcome == Outcome.FAILED
    assert "PermissionDenied" in result.error or "403" in result.error, result.error
    assert result.services[0].state == "failed"
    assert live_traffic(gcpsim, "legal-forms-staging", service) == before
