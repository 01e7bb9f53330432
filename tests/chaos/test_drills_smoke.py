"""Two fault drills small enough for the test suite (each well under a minute).

The full drills, with many random kill points, are scripts: bench/drills/. These run one fixed
point each, with the same harness (testing/stack.py: gcpsim, a Temporal dev server and
`python worker.py` as separate processes) and assert the outcome, never timings:

- the worker gets SIGKILL while a canary bakes, a new worker starts: the release is promoted,
  the canary served exactly 10% then 100%, and exactly one revision carries the release's name;
- the Temporal dev server (on-disk database) gets SIGKILL while a canary bakes and comes back on
  the same port: the release is promoted the same way.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta
from pathlib import Path

from stagecoach.payloads.common import Outcome, Phase
from stagecoach.payloads.release import ReleaseInput, ReleaseStatus
from stagecoach.temporal import workflow_result
from testing.cloudrun import live_split, revisions_with_prefix
from testing.gcpsim import canary_history, sim_state, timeline
from testing.releases import release_input, start_release, wait_for
from testing.stack import Stack

PROJECT = "legal-forms-staging"
SERVICE = "python-pipeline-staging"
SIM_ARGS = ["--run-op-seconds", "0.2", "--request-rate", "1000"]


def one_service_release(stack: Stack, version: str) -> ReleaseInput:
    return release_input(
        stack.config(),
        "staging",
        version,
        services=["python-pipeline"],
        steps=[(10, 5), (100, 0)],
        interval=timedelta(seconds=1),
    )


def baking_at_10(st: ReleaseStatus) -> bool:
    svc = st.services[0]
    return st.phase == Phase.BAKING and svc.percent == 10 and svc.reading_count >= 1


def assert_promoted_once(stack: Stack, inp: ReleaseInput, res: ReleaseStatus) -> None:
    assert res.outcome == Outcome.PROMOTED, res.error
    revision = inp.services[0].revision
    tl = timeline(sim_state(stack.gcpsim), PROJECT, SERVICE)
    assert canary_history(tl, revision) == [10, 100]
    assert live_split(stack.gcpsim, PROJECT, SERVICE) == [(revision, 100)]
    assert revisions_with_prefix(stack.gcpsim, PROJECT, SERVICE, revision) == 1


async def test_worker_sigkill_mid_bake_then_new_worker_promotes(tmp_path: Path) -> None:
    with Stack(tmp_path / "stack", gcpsim_args=SIM_ARGS) as stack:
        client = await stack.client()
        inp = one_service_release(stack, "v8.9.0")
        handle = await start_release(client, stack.task_queue, inp)
        await wait_for(handle, baking_at_10, timeout=60)
        stack.kill_worker(signal.SIGKILL)
        stack.start_worker()
        res = await asyncio.wait_for(workflow_result(handle), timeout=90)
        assert_promoted_once(stack, inp, res)


async def test_temporal_sigkill_mid_bake_then_restart_promotes(tmp_path: Path) -> None:
    with Stack(tmp_path / "stack", gcpsim_args=SIM_ARGS, temporal_db=True) as stack:
        client = await stack.client()
        inp = one_service_release(stack, "v8.9.1")
        handle = await start_release(client, stack.task_queue, inp)
        await wait_for(handle, baking_at_10, timeout=60)
        stack.stop_temporal(signal.SIGKILL)
        await asyncio.sleep(2)
        stack.start_temporal()
        res: ReleaseStatus | None = None
        for _ in range(30):  # the result long-poll may break while the server restarts
            try:
                res = await asyncio.wait_for(workflow_result(handle), timeout=90)
                break
            except TimeoutError:
                raise
            except Exception:
                await asyncio.sleep(1)
        assert res is not None
        assert_promoted_once(stack, inp, res)
