"""Every branch of the bake, through the real ReleaseWorkflow (issue 13).

The workflow runs on the session's Temporal dev server (tests/conftest.py; the time-skipping
test server needs a download this machine cannot make) with activities registered under their
real names (stagecoach/contract.py) that return scripted answers: a live split of one stable
revision, a canary revision, traffic changes that succeed, and canary readings scripted per
test as `pass` (100 canary requests, no errors), `fail` (half of them 5xx) or `inconclusive`
(no requests), which the real judge (stagecoach/judge.py) turns into those verdicts. Each test
asserts the outcome, the traffic the release set, the readings and the events, then replays
the run's history with `Replayer` and keeps it as tests/replay/histories/bake_<branch>.json
(written when missing or with STAGECOACH_RECORD_HISTORY=1; tests/replay replays them too).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from stagecoach import contract
from stagecoach.config import Step
from stagecoach.config_file import load_config
from stagecoach.locks import LocksInput
from stagecoach.payloads.common import AbortInput, NotifyInput, Outcome, Phase, TrafficTarget
from stagecoach.payloads.monitoring import CanaryMetrics, MetricWindow, ReadCanaryMetricsInput
from stagecoach.payloads.policy import LoadPolicyInput, WorkerPolicy
from stagecoach.payloads.release import ReleaseInput, ReleaseStatus
from stagecoach.payloads.run import (
    CreateRevisionInput,
    CreateRevisionResult,
    ReadServingInput,
    RevisionHealth,
    RevisionHealthInput,
    ServingRevision,
    SetTrafficInput,
    SetTrafficResult,
    SmokeTestInput,
    SmokeTestResult,
)
from stagecoach.plan import build_release
from stagecoach.temporal import workflow_result
from testing.histories import replays
from testing.paths import DEPLOY_YAML, HISTORIES
from testing.releases import wait_for
from workflows.release import ReleaseWorkflow

pytestmark = pytest.mark.asyncio

STABLE = "node-server-staging-00001-abc"
DB = "legal-forms-staging:us-central1:legal-forms-db-staging"  # deploy.yaml's staging database
INTERVAL = timedelta(seconds=1)
# what the canary and the stable revisions served in one reading's window
READINGS: dict[str, tuple[MetricWindow, MetricWindow]] = {
    "pass": (MetricWindow(requests=100), MetricWindow(requests=900)),
    "fail": (MetricWindow(requests=100, errors=50), MetricWindow(requests=900)),
    "inconclusive": (MetricWindow(), MetricWindow()),
}


class Cloud:
    """The activities a release calls, under their real names, answering from a script."""

    def __init__(self, readings: Iterable[str]) -> None:
        self.script = list(readings)
        self.reads = 0
        self.traffic: list[tuple[str, int]] = []  # (reason, canary percent) per SetTraffic
        self.splits: list[list[TrafficTarget]] = []

    def activities(self) -> list[Any]:
        return [
            self.load_policy,
            self.acquire_locks,
            self.release_locks,
            self.read_serving,
            self.create_revision,
            self.smoke_test,
            self.set_traffic,
            self.read_canary_metrics,
            self.check_revision_health,
            self.notify,
        ]

    @activity.defn(name=contract.Activity.LOAD_POLICY)
    async def load_policy(self, inp: LoadPolicyInput) -> WorkerPolicy:
        return WorkerPolicy(env=inp.env, source="test_bake_workflow", approval=None)

    @activity.defn(name=contract.Activity.ACQUIRE_SERVICE_LOCKS)
    async def acquire_locks(self, inp: LocksInput) -> list[str]:
        return []

    @activity.defn(name=contract.Activity.RELEASE_SERVICE_LOCKS)
    async def release_locks(self, inp: LocksInput) -> None:
        return None

    @activity.defn(name=contract.Activity.READ_SERVING)
    async def read_serving(self, inp: ReadServingInput) -> list[ServingRevision]:
        # the stable revision is bound to the database the release binds: no drift
        return [ServingRevision(revision=STABLE, percent=100, image="stable", connection_name=DB)]

    @activity.defn(name=contract.Activity.CREATE_REVISION)
    async def create_revision(self, inp: CreateRevisionInput) -> CreateRevisionResult:
        return CreateRevisionResult(
            revision=inp.revision,
            tag_url="https://canary---node-server-staging.run.app",
            created=True,
            before=[TrafficTarget(revision=STABLE, percent=100)],
        )

    @activity.defn(name=contract.Activity.SMOKE_TEST)
    async def smoke_test(self, inp: SmokeTestInput) -> SmokeTestResult:
        return SmokeTestResult(ok=True, status=200)

    @activity.defn(name=contract.Activity.SET_TRAFFIC)
    async def set_traffic(self, inp: SetTrafficInput) -> SetTrafficResult:
        canary = sum(t.percent for t in inp.traffic if t.revision != STABLE)
        self.traffic.append((inp.reason, canary))
        self.splits.append(inp.traffic)
        return SetTrafficResult(traffic=inp.traffic, changed=True)

    @activity.defn(name=contract.Activity.READ_CANARY_METRICS)
    async def read_canary_metrics(self, inp: ReadCanaryMetricsInput) -> CanaryMetrics:
        assert inp.start is not None  # the sequential judge reads complete windows
        end = inp.end or inp.start + inp.window
        if not inp.canary_revision:  # the baseline before a watch at 100%
            return CanaryMetrics(start=inp.start, end=end, canary=MetricWindow(),
                                 stable=MetricWindow(requests=10_000))  # fmt: skip
        name = self.script[min(self.reads, len(self.script) - 1)]
        self.reads += 1
        canary, stable = READINGS[name]
        return CanaryMetrics(start=inp.start, end=end, canary=canary, stable=stable)

    @activity.defn(name=contract.Activity.CHECK_REVISION_HEALTH)
    async def check_revision_health(self, inp: RevisionHealthInput) -> RevisionHealth:
        return RevisionHealth(
            revision=inp.revision, ready=True, max_instances=10, instances=1, can_serve=True
        )

    @activity.defn(name=contract.Activity.NOTIFY)
    async def notify(self, inp: NotifyInput) -> None:
        return None


def release(steps: list[tuple[int, float]], **gates: Any) -> ReleaseInput:
    """deploy.yaml's release of node-server to staging, with these steps [(weight, bake
    seconds)], a 1 s interval and these gates; no backup, hooks or freeze windows."""
    cfg = load_config(DEPLOY_YAML)
    inp = build_release(cfg, "staging", "v3.1.4", "bake1", services=["node-server"],
                        interval=INTERVAL, requested_by="test")  # fmt: skip
    return inp.model_copy(
        update={
            "steps": [Step(weight=w, bake=timedelta(seconds=b)) for w, b in steps],
            "gates": inp.gates.model_copy(update=gates),
            "backup": None,
            "notify": False,
            "freeze": [],
            "pre_deploy_hooks": [],
            "post_deploy_hooks": [],
        }
    )


@asynccontextmanager
async def running(
    client: Client, task_queue: str, cloud: Cloud, branch: str, inp: ReleaseInput
) -> AsyncIterator[WorkflowHandle[Any, ReleaseStatus]]:
    """A worker with the real workflow and `cloud`'s activities, and the release started on
    it under the workflow id `bake_<branch>` (the history's name)."""
    async with Worker(
        client, task_queue=task_queue, workflows=[ReleaseWorkflow], activities=cloud.activities()
    ):
        yield await client.start_workflow(
            contract.WorkflowType.RELEASE,
            inp,
            id=f"bake_{branch}",
            task_queue=task_queue,
            result_type=ReleaseStatus,
        )


async def finish(handle: WorkflowHandle[Any, ReleaseStatus], branch: str) -> ReleaseStatus:
    """The release's end status; its history replays, and is kept as bake_<branch>.json."""
    result: ReleaseStatus = await asyncio.wait_for(workflow_result(handle), timeout=120)
    history = await replays(handle, [ReleaseWorkflow])
    path = HISTORIES / f"bake_{branch}.json"
    if os.environ.get("STAGECOACH_RECORD_HISTORY") or not path.exists():
        path.write_text(history.to_json())
    return result


def has(events: list[str], *fragments: str) -> bool:
    return any(all(f in e for f in fragments) for e in events)


def readings(st: ReleaseStatus) -> list[str]:
    return [r.verdict.value for r in st.services[0].readings]


def paused(st: ReleaseStatus) -> bool:
    return st.phase == Phase.PAUSED


# --------------------------------------------------------------------------- on_failure


async def test_on_failure_pause_waits_for_a_person_and_promote_overrides(
    client: Client, task_queue: str
) -> None:
    cloud = Cloud(["fail", "pass"])
    inp = release([(10, 30), (50, 30), (100, 0)], on_failure="pause")
    async with running(client, task_queue, cloud, "on_failure_pause_promote", inp) as handle:
        st = await wait_for(handle, paused)
        assert st.outcome == Outcome.RUNNING and cloud.traffic == [("step 1: 10%", 10)]
        # the `summary` query says it in words, with what to do
        summary = await handle.query(contract.Message.SUMMARY, result_type=str)
        assert "10%, paused; last verdict fail at 10%" in summary, summary
        assert "Paused: python starter.py promote" in summary, summary
        await handle.signal(contract.Message.PROMOTE)
        res = await finish(handle, "on_failure_pause_promote")
    assert res.outcome == Outcome.PROMOTED, res.error
    # the override skips the rest of the bake and the 50% step (promote: straight to the last)
    assert cloud.traffic == [("step 1: 10%", 10), ("step 3: 100%", 100)]
    assert readings(res) == ["fail"]
    assert has(res.events, "gate failed at 10%", "paused: abort to roll back, promote")
    assert has(res.events, "gate failure overridden by promote")


async def test_on_failure_pause_then_abort_rolls_back(client: Client, task_queue: str) -> None:
    cloud = Cloud(["fail"])
    inp = release([(10, 30), (100, 0)], on_failure="pause")
    async with running(client, task_queue, cloud, "on_failure_pause_abort", inp) as handle:
        await wait_for(handle, paused)
        await handle.signal(contract.Message.ABORT, AbortInput(reason="bad logs", by="oncall"))
        res = await finish(handle, "on_failure_pause_abort")
    assert res.outcome == Outcome.ABORTED and res.abort_reason == "bad logs"
    assert cloud.traffic == [("step 1: 10%", 10), ("rollback", 0)]
    assert cloud.splits[-1] == [TrafficTarget(revision=STABLE, percent=100)]
    assert has(res.events, "paused") and has(res.events, "abort requested by oncall")
    assert not has(res.events, "overridden by promote")


# --------------------------------------------------------------------------- breaches


@pytest.mark.parametrize("breaches", [2, 3])
async def test_consecutive_breaches_roll_back_only_at_the_nth_failing_reading(
    client: Client, task_queue: str, breaches: int
) -> None:
    cloud = Cloud(["fail"])
    inp = release([(10, 60), (100, 0)], consecutive_breaches=breaches)
    branch = f"consecutive_breaches_{breaches}"
    async with running(client, task_queue, cloud, branch, inp) as handle:
        res = await finish(handle, branch)
    assert res.outcome == Outcome.ROLLED_BACK
    assert readings(res) == ["fail"] * breaches  # the earlier failures only waited
    assert cloud.traffic == [("step 1: 10%", 10), ("rollback", 0)]
    assert cloud.splits[-1] == [TrafficTarget(revision=STABLE, percent=100)]
    assert "gate failed at 10%" in (res.error or "")
    assert sum("at 10%: fail:" in e for e in res.events) == breaches


# --------------------------------------------------------------------------- on_inconclusive


async def test_on_inconclusive_extend_extends_up_to_max_extensions_then_rolls_back(
    client: Client, task_queue: str
) -> None:
    cloud = Cloud(["inconclusive"])
    inp = release([(10, 1), (100, 0)], on_inconclusive="extend", max_extensions=2)
    async with running(client, task_queue, cloud, "on_inconclusive_extend", inp) as handle:
        res = await finish(handle, "on_inconclusive_extend")
    assert res.outcome == Outcome.ROLLED_BACK
    assert readings(res) == ["inconclusive"] * 3  # the bake's end and two extensions
    assert res.services[0].extensions == 2
    assert has(res.events, "bake extended by one interval (1 of 2)")
    assert has(res.events, "bake extended by one interval (2 of 2)")
    assert not has(res.events, "(3 of 2)")
    assert "after 2 extensions (on_inconclusive: extend)" in (res.error or "")
    assert cloud.traffic == [("step 1: 10%", 10), ("rollback", 0)]


async def test_max_extensions_bounds_the_extensions_and_a_pass_goes_on(
    client: Client, task_queue: str
) -> None:
    cloud = Cloud(["inconclusive", "inconclusive", "pass"])
    inp = release([(10, 1), (100, 0)], on_inconclusive="fail", max_extensions=3)
    async with running(client, task_queue, cloud, "max_extensions_then_pass", inp) as handle:
        res = await finish(handle, "max_extensions_then_pass")
    assert res.outcome == Outcome.PROMOTED, res.error
    assert readings(res)[:3] == ["inconclusive", "inconclusive", "pass"]
    assert has(res.events, "(2 of 3)") and not has(res.events, "(3 of 3)")
    assert cloud.traffic == [("step 1: 10%", 10), ("step 2: 100%", 100)]


async def test_on_inconclusive_fail_rolls_back_at_the_end_of_the_bake(
    client: Client, task_queue: str
) -> None:
    cloud = Cloud(["inconclusive"])
    inp = release([(10, 1), (100, 0)], on_inconclusive="fail", max_extensions=0)
    async with running(client, task_queue, cloud, "on_inconclusive_fail", inp) as handle:
        res = await finish(handle, "on_inconclusive_fail")
    assert res.outcome == Outcome.ROLLED_BACK
    assert readings(res) == ["inconclusive"]
    assert not has(res.events, "bake extended")
    assert "not enough evidence at 10% after 0 extensions (on_inconclusive: fail)" in (
        res.error or ""
    )
    assert cloud.traffic == [("step 1: 10%", 10), ("rollback", 0)]
    assert has(res.events, "can serve")  # a quiet canary is checked before it is judged


async def test_on_inconclusive_pass_advances_on_thin_evidence(
    client: Client, task_queue: str
) -> None:
    cloud = Cloud(["inconclusive"])
    inp = release([(10, 1), (100, 0)], on_inconclusive="pass", max_extensions=1)
    async with running(client, task_queue, cloud, "on_inconclusive_pass", inp) as handle:
        res = await finish(handle, "on_inconclusive_pass")
    assert res.outcome == Outcome.PROMOTED, res.error
    assert readings(res) == ["inconclusive", "inconclusive"]
    assert has(res.events, "(1 of 1)")
    assert has(res.events, "passed at 10% on thin evidence (on_inconclusive: pass)")
    assert cloud.traffic == [("step 1: 10%", 10), ("step 2: 100%", 100)]


async def test_on_inconclusive_pause_waits_for_a_person_and_promote_goes_on(
    client: Client, task_queue: str
) -> None:
    cloud = Cloud(["inconclusive"])
    inp = release([(10, 1), (100, 0)], on_inconclusive="pause", max_extensions=0)
    async with running(client, task_queue, cloud, "on_inconclusive_pause", inp) as handle:
        st = await wait_for(handle, paused)
        assert cloud.traffic == [("step 1: 10%", 10)] and readings(st) == ["inconclusive"]
        await handle.signal(contract.Message.PROMOTE)
        res = await finish(handle, "on_inconclusive_pause")
    assert res.outcome == Outcome.PROMOTED, res.error
    assert has(res.events, "not enough evidence at 10% after 0 extensions", "paused")
    assert has(res.events, "going on without enough evidence (promote)")
    assert cloud.traffic == [("step 1: 10%", 10), ("step 2: 100%", 100)]


# --------------------------------------------------------------------------- promote


async def test_promote_cuts_the_bake_short_and_skips_to_the_last_step(
    client: Client, task_queue: str
) -> None:
    cloud = Cloud(["pass"])
    inp = release([(10, 600), (50, 600), (100, 600)])
    async with running(client, task_queue, cloud, "promote", inp) as handle:
        await wait_for(handle, lambda st: st.phase == Phase.BAKING)
        summary = await handle.query(contract.Message.SUMMARY, result_type=str)
        assert ": 10%, baking at 10% until " in summary, summary  # not "shifting"
        await handle.signal(contract.Message.PROMOTE)
        res = await finish(handle, "promote")
    assert res.outcome == Outcome.PROMOTED, res.error
    assert cloud.traffic == [("step 1: 10%", 10), ("step 3: 100%", 100)]
    assert has(res.events, "promote requested")
    assert has(res.events, "bake at 10% cut short by promote")
    assert readings(res)[0] == "pass"
