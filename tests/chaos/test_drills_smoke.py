"""Two fault drills small enough for the test suite (each well under a minute).

The full drills, with many random kill points, are scripts: bench/drills/. These run one fixed
point each, with the same harness (bench/common.py: gcpsim, a Temporal dev server and
`python worker.py` as separate processes) and assert the outcome, never timings:

- the worker gets SIGKILL while a canary bakes, a new worker starts: the release is promoted,
  the canary served exactly 10% then 100%, and exactly one revision carries the release's name;
- the Temporal dev server (on-disk database) gets SIGKILL while a canary bakes and comes back on
  the same port: the release is promoted the same way.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402

from stagecoach.models import Outcome, Phase, ReleaseInput, ReleaseStatus  # noqa: E402
from stagecoach.temporal import workflow_result  # noqa: E402

PROJECT = "legal-forms-staging"
SERVICE = "python-pipeline-staging"
SIM_ARGS = ["--run-op-seconds", "0.2", "--request-rate", "1000"]


def one_service_release(stack: common.Stack, version: str) -> ReleaseInput:
    return common.release_input(
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


def assert_promoted_once(stack: common.Stack, inp: ReleaseInput, res: ReleaseStatus) -> None:
    assert res.outcome == Outcome.PROMOTED, res.error
    revision = inp.services[0].revision
    tl = common.timeline(common.sim_state(stack.gcpsim), PROJECT, SERVICE)
    assert common.canary_history(tl, revision) == [10, 100]
    assert common.live_split(stack.gcpsim, PROJECT, SERVICE) == [(revision, 100)]
    assert common.revisions_with_prefix(stack.gcpsim, PROJECT, SERVICE, revision) == 1


async def test_worker_sigkill_mid_bake_then_new_worker_promotes(tmp_path: Path) -> None:
    with common.Stack(tmp_path / "stack", gcpsim_args=SIM_ARGS) as stack:
        client = await stack.client()
        inp = one_service_release(stack, "v8.9.0")
        handle = await common.start_release(client, stack.task_queue, inp)
        await common.wait_for(handle, baking_at_10, timeout=60)
        stack.kill_worker(signal.SIGKILL)
        stack.start_worker()
        res = await asyncio.wait_for(workflow_result(handle), timeout=90)
        assert_promoted_once(stack, inp, res)


async def test_temporal_sigkill_mid_bake_then_restart_promotes(tmp_path: Path) -> None:
    with common.Stack(tmp_path / "stack", gcpsim_args=SIM_ARGS, temporal_db=True) as stack:
        client = await stack.client()
        inp = one_service_release(stack, "v8.9.1")
        handle = await common.start_release(client, stack.task_queue, inp)
        await common.wait_for(handle, baking_at_10, timeout=60)
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
