"""Release workflow end to end: the real Temporal dev server, a real worker, the real Google
clients, and gcpsim. Traffic history is read from gcpsim's own record of every split it served.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from googleapiclient import discovery
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError

from gcpsim.store import parse_rfc3339
from stagecoach.config import Step
from stagecoach.contract import RELEASE_NOT_PROMOTED
from stagecoach.payloads.common import AbortInput, ApproveInput, Outcome, Phase
from stagecoach.payloads.release import ReleaseInput, ReleaseStatus
from stagecoach.temporal import temporal_binary, workflow_result
from testing.cloudrun import live_traffic
from testing.gcpsim import GcpsimProcess, config_for
from testing.gcpsim import served_percents as canary_history
from testing.histories import record_history
from testing.releases import release_input as shared_release_input
from testing.releases import signed_approval, wait_for, worker
from testing.releases import start_release as start

pytestmark = pytest.mark.asyncio

# The session's gcpsim serves 200 requests/s per service: a 10% canary sees ~40 requests in a
# 2 s window, above the default min_requests (20), so the default gates judge every reading.
BAKE = timedelta(seconds=4)
TESTS_FALSE_ROLLBACK_RATE = 1e-4
INTERVAL = timedelta(seconds=2)


def release_input(
    sim: GcpsimProcess, env: str, version: str, services: list[str] | None = None, **gates: object
) -> ReleaseInput:
    """deploy.yaml's release of `version` to `env` on this gcpsim, with the e2e bake and interval.

    The judge may roll back a canary no worse than stable with probability false_rollback_rate
    (1% by default, for a release); tests that are not about the judgement run it at 1e-4 so
    that the suite's few dozen releases do not flake on it. tests/e2e/test_judgement.py passes
    the default level."""
    overrides: dict[str, Any] = {"false_rollback_rate": TESTS_FALSE_ROLLBACK_RATE, **gates}
    return shared_release_input(
        config_for(sim), env, version, services=services, bake=BAKE, interval=INTERVAL,
        requested_by="e2e", **overrides,
    )  # fmt: skip


async def test_happy_path_shifts_exactly_10_50_100(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    inp = release_input(gcpsim, "staging", "v1.2.0")
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        result: ReleaseStatus = await workflow_result(handle)
    assert result.outcome == Outcome.PROMOTED, result.error
    await record_history(handle, "release_staging_promoted")
    assert result.phase == Phase.DONE
    for svc in result.services:
        assert svc.state == "promoted"
        assert canary_history(
            gcpsim, "legal-forms-staging", svc.run_service, svc.canary_revision
        ) == [10, 50, 100]
        assert live_traffic(gcpsim, "legal-forms-staging", svc.run_service) == [
            (svc.canary_revision, 100, "")
        ]
        verdicts = [(r.weight, r.verdict.value, r.reasons[0]) for r in svc.readings]
        assert svc.reading_count >= 2 and not any(v == "fail" for _, v, _ in verdicts), verdicts
        assert verdicts[-1][1] == "pass", verdicts  # a step completes on a passing reading
    # dependency order: the pipeline before the front end
    assert [s.name for s in result.services] == ["python-pipeline", "node-server"]


async def test_bad_canary_is_rolled_back_to_the_exact_previous_split(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    before = live_traffic(gcpsim, "legal-forms-staging", "node-server-staging")
    r = gcpsim.cli("behavior", "node-server-staging", "v1.3.0", "--error-rate", "0.4")
    assert r.returncode == 0, r.stderr
    inp = release_input(gcpsim, "staging", "v1.3.0", ["node-server"])
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        result: ReleaseStatus = await workflow_result(handle)
    assert result.outcome == Outcome.ROLLED_BACK
    # the execution ends Failed (the Web UI never shows it as a success); its failure carries
    # the status that workflow_result just read
    with pytest.raises(WorkflowFailureError) as exc:
        await handle.result()
    cause = exc.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == RELEASE_NOT_PROMOTED
    assert cause.non_retryable and "rolled back" in cause.message and "error rate" in cause.message
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED
    await record_history(handle, "release_staging_rolled_back")
    svc = result.services[0]
    fail = [r for r in svc.readings if r.verdict == "fail"]
    assert fail and fail[0].weight == 10
    assert fail[0].canary_error_rate is not None and fail[0].canary_error_rate > 0.05
    assert "error rate" in result.error
    assert live_traffic(gcpsim, "legal-forms-staging", "node-server-staging") == before
    assert canary_history(
        gcpsim, "legal-forms-staging", "node-server-staging", svc.canary_revision
    ) == [10]


async def test_slow_canary_p95_is_rolled_back(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    before = live_traffic(gcpsim, "legal-forms-staging", "python-pipeline-staging")
    gcpsim.cli(
        "behavior", "python-pipeline-staging", "v1.3.1", "--p50-ms", "9000", "--p95-ms", "15000"
    )
    inp = release_input(gcpsim, "staging", "v1.3.1", ["python-pipeline"])
    async with worker(client, task_queue):
        result: ReleaseStatus = await workflow_result(await start(client, task_queue, inp))
    assert result.outcome == Outcome.ROLLED_BACK
    assert "latency" in result.error  # against stable's, and the 10 s p95 limit
    assert live_traffic(gcpsim, "legal-forms-staging", "python-pipeline-staging") == before


async def test_abort_mid_bake_restores_traffic_at_once(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    before = live_traffic(gcpsim, "legal-forms-staging", "node-server-staging")
    inp = release_input(gcpsim, "staging", "v1.5.0", ["node-server"])
    inp = inp.model_copy(
        update={
            "steps": [
                s.model_copy(update={"bake": timedelta(minutes=10)}) if s.weight < 100 else s
                for s in inp.steps
            ]
        }
    )
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        await wait_for(handle, lambda st: st.phase == Phase.BAKING)
        await handle.signal("abort", AbortInput(reason="operator saw bad logs"))
        result: ReleaseStatus = await workflow_result(handle)
    assert result.outcome == Outcome.ABORTED
    assert result.abort_reason == "operator saw bad logs"
    assert live_traffic(gcpsim, "legal-forms-staging", "node-server-staging") == before


async def test_approval_is_awaited_refused_for_non_approver_then_granted(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    inp = release_input(gcpsim, "prod", "v1.2.0", ["python-pipeline"])
    assert inp.approval is not None and inp.approval.before_weight == 100
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        st = await wait_for(handle, lambda st: st.phase == Phase.AWAITING_APPROVAL, timeout=120)
        assert st.awaiting_approval_for == 100
        assert st.services[0].percent == 50  # 10 and 50 baked, 100 waits
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update("approve", ApproveInput(by="intern"))
        assert "is not an approver" in str(err.value.cause)
        assert "release-manager" not in str(err.value.cause)  # never lists who may
        await handle.execute_update("approve", await signed_approval(handle, comment="LGTM"))
        result: ReleaseStatus = await workflow_result(handle)
    await record_history(handle, "release_prod_approved")
    assert result.outcome == Outcome.PROMOTED
    assert [(a.by, a.before_weight, a.comment) for a in result.approvals] == [
        ("release-manager", 100, "LGTM")
    ]
    assert result.approvals[0].authenticated.startswith("release-manager (ed25519 key ")
    assert [(r.claimed, r.authenticated) for r in result.rejected_approvals] == [("intern", "")]
    # the pre-deploy backup is real, described as the brief asks, and finished before any
    # traffic moved
    sql = discovery.build(
        "sqladmin", "v1", credentials=AnonymousCredentials(), static_discovery=True,
        cache_discovery=False, client_options={"api_endpoint": gcpsim.url + "/"},
    )  # fmt: skip
    backup = (
        sql.backupRuns()
        .get(project="legal-forms-prod", instance="legal-forms-db-prod", id=result.backup_id)
        .execute()
    )
    assert backup["status"] == "SUCCESSFUL" and backup["type"] == "ON_DEMAND"
    assert backup["description"].startswith("Pre-deployment backup v1.2.0 ")
    svc = result.services[0]
    assert canary_history(gcpsim, "legal-forms-prod", svc.run_service, svc.canary_revision) == [
        10, 50, 100,
    ]  # fmt: skip
    state = json.loads((gcpsim.state_dir / "state.json").read_text())
    timeline = state["sim"]["traffic"][f"legal-forms-prod/us-central1/{svc.run_service}"]
    first_move = min(
        at for at, split in timeline if any(r == svc.canary_revision for r, *_ in split)
    )
    assert parse_rfc3339(backup["endTime"]) <= first_move


async def test_second_service_failing_rolls_back_the_first(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    pipeline_before = live_traffic(gcpsim, "legal-forms-staging", "python-pipeline-staging")
    node_before = live_traffic(gcpsim, "legal-forms-staging", "node-server-staging")
    gcpsim.cli("behavior", "node-server-staging", "v1.6.0", "--error-rate", "0.5")
    inp = release_input(gcpsim, "staging", "v1.6.0")
    async with worker(client, task_queue):
        result: ReleaseStatus = await workflow_result(await start(client, task_queue, inp))
    assert result.outcome == Outcome.ROLLED_BACK
    pipeline, node = result.services
    assert pipeline.state == "rolled_back" and node.state == "rolled_back"
    assert canary_history(
        gcpsim, "legal-forms-staging", pipeline.run_service, pipeline.canary_revision
    ) == [10, 50, 100]
    assert live_traffic(gcpsim, "legal-forms-staging", "python-pipeline-staging") == pipeline_before
    assert live_traffic(gcpsim, "legal-forms-staging", "node-server-staging") == node_before
    # newest first: node-server restored before python-pipeline
    restored = [e for e in result.events if "traffic restored" in e]
    assert "node-server" in restored[0] and "python-pipeline" in restored[1]


@pytest.mark.parametrize("flag", ["--smoke-fail", "--broken"])
async def test_smoke_failure_and_never_ready_revision_move_no_traffic(
    client: Client, task_queue: str, gcpsim: GcpsimProcess, flag: str
) -> None:
    version = "v1.7.0" if flag == "--smoke-fail" else "v1.7.1"
    before = live_traffic(gcpsim, "legal-forms-dev", "node-server-dev")
    gcpsim.cli("behavior", "node-server-dev", version, flag)
    inp = release_input(gcpsim, "dev", version, ["node-server"])
    async with worker(client, task_queue):
        result: ReleaseStatus = await workflow_result(await start(client, task_queue, inp))
    assert result.outcome == Outcome.FAILED
    svc = result.services[0]
    assert svc.state == "failed" and svc.step == -1
    assert (
        ("smoke test" in result.error) if flag == "--smoke-fail" else ("not ready" in result.error)
    )
    assert live_traffic(gcpsim, "legal-forms-dev", "node-server-dev") == before
    assert (
        canary_history(
            gcpsim,
            "legal-forms-dev",
            "node-server-dev",
            svc.canary_revision or inp.services[0].revision,
        )
        == []
    )


async def test_messages_work_from_the_temporal_cli(
    client: Client, task_queue: str, gcpsim: GcpsimProcess, temporal_address: str
) -> None:
    """`temporal workflow query/signal` (what the Web UI's buttons do) need no Stagecoach CLI."""
    inp = release_input(gcpsim, "staging", "v1.8.0", ["python-pipeline"])
    long_bake = [
        s.model_copy(update={"bake": timedelta(minutes=10)}) if s.weight < 100 else s
        for s in inp.steps
    ]
    inp = inp.model_copy(update={"steps": long_bake})

    async def temporal(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            temporal_binary(), *args, "--address", temporal_address,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        await wait_for(handle, lambda st: st.phase == Phase.BAKING)
        shown = await temporal(
            "workflow", "query", "--workflow-id", handle.id, "--type", "status", "-o", "json"
        )
        assert '"phase": "baking"' in shown.replace('":"', '": "')
        await temporal(
            "workflow", "signal", "--workflow-id", handle.id, "--name", "abort",
            "--input", '{"reason": "from the temporal CLI"}',
        )  # fmt: skip
        result: ReleaseStatus = await workflow_result(handle)
    assert result.outcome == Outcome.ABORTED
    assert result.abort_reason == "from the temporal CLI"


async def test_long_bake_continues_as_new_and_keeps_its_state(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    """A bake long enough to pass the history threshold continues as new mid-step and carries
    on where it was: same canary, same readings, exactly 10/50/100."""
    # 1 s polls see ~20 canary requests at 10%, right at the default min_requests: judge from 5
    # (this test is about continue-as-new, not about thin windows being inconclusive)
    inp = release_input(gcpsim, "dev", "v1.9.0", ["python-pipeline"], min_requests=5)
    steps = [
        Step(weight=10, bake=timedelta(seconds=6)),
        Step(weight=50, bake=timedelta(seconds=4)),
        Step(weight=100),
    ]
    inp = inp.model_copy(
        update={"steps": steps, "interval": timedelta(seconds=1), "continue_as_new_after": 60}
    )
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        result: ReleaseStatus = await workflow_result(handle)
        runs = 0
        async for wf in client.list_workflows(f"WorkflowId = '{handle.id}'"):
            runs += 1
            assert wf.status is not None
    assert result.outcome == Outcome.PROMOTED, result.error
    assert runs >= 2, "the bake should have continued as new at least once"
    svc = result.services[0]
    assert canary_history(gcpsim, "legal-forms-dev", svc.run_service, svc.canary_revision) == [
        10, 50, 100,
    ]  # fmt: skip
    assert svc.reading_count >= 6  # readings counted across runs
    assert len([e for e in result.events if "started by" in e]) == 1
