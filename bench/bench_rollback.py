"""Rollback latency: from the failed verdict to 100% back on the stable revision in gcpsim.

    python -m bench.bench_rollback [--rollbacks 50] [--quick]

gcpsim runs with fast Cloud Run operations (`--run-op-seconds 0.05`: a traffic change takes
effect 50 ms after the PATCH; real Cloud Run takes seconds, which no orchestrator can shorten)
and 1000 synthetic requests/s per service. Every version v6.0.0 canary of python-pipeline-staging
answers 50% 5xx, so each release (steps 10/50/100, poll interval 1 s) fails its first reading at
10% and rolls back. Releases run one after another on the same service.

Definitions:
- t_verdict: completion of the failing ReadCanaryMetrics local activity (`complete_time` in its
  marker); the gate evaluation that turns it into FAIL runs right after, in the same workflow task;
- t_restored: the time of the entry in gcpsim's traffic timeline (state.json) where the service
  serves the pre-release split again (stable revision 100%): when gcpsim's routing changed.
Rollback latency = t_restored - t_verdict. Also shown: until the rollback SetTraffic was scheduled
and started (history), and until it completed (it polls the operation; first poll after 0.2 s).
Target: p99 <= 0.5 s.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from bench import common
from stagecoach import contract
from stagecoach.payloads.common import Outcome
from stagecoach.temporal import workflow_result
from testing.cloudrun import live_split
from testing.gcpsim import set_behavior, sim_state, timeline
from testing.histories import local_activities, release_events, rollback_calls
from testing.releases import release_input, start_release
from testing.stack import Stack

PROJECT = "legal-forms-staging"
SERVICE = "python-pipeline-staging"
VERSION = "v6.0.0"
TARGET = 0.5


async def main() -> int:
    _, work, n = common.counted_args(__doc__, "bench-rollback-", "rollbacks", 50, quick=10)

    sim_args = ["--run-op-seconds", "0.05", "--request-rate", "1000"]
    restored: list[float] = []
    scheduled: list[float] = []
    started: list[float] = []
    completed: list[float] = []
    with Stack(work, gcpsim_args=sim_args) as stack:
        sim = stack.gcpsim
        client = await stack.client()
        cfg = stack.config()
        set_behavior(sim, SERVICE, VERSION, error_rate=0.5)
        for k in range(n):
            before = live_split(sim, PROJECT, SERVICE)
            inp = release_input(
                cfg,
                "staging",
                VERSION,
                services=["python-pipeline"],
                steps=[(10, 60), (50, 60), (100, 0)],
                interval=timedelta(seconds=1),
            )
            handle = await start_release(client, stack.task_queue, inp)
            result = await workflow_result(handle)
            if result.outcome != Outcome.ROLLED_BACK:
                raise RuntimeError(f"release {k}: {result.outcome} {result.error}")
            events = await release_events(client, handle)
            reads = [
                m
                for m in local_activities(events)
                if m.type == contract.Activity.READ_CANARY_METRICS
            ]
            t_verdict = reads[-1].completed
            rb = rollback_calls(events)
            assert t_verdict is not None and len(rb) == 1, (t_verdict, rb)
            tl = timeline(sim_state(sim), PROJECT, SERVICE)
            back = [at for at, split in tl if at >= t_verdict and sorted(split) == before]
            if not back:
                raise RuntimeError(f"release {k}: gcpsim never served {before} again: {tl[-3:]}")
            after = live_split(sim, PROJECT, SERVICE)
            if after != before:
                raise RuntimeError(f"release {k}: traffic {after}, expected {before}")
            restored.append(back[0] - t_verdict)
            scheduled.append(rb[0].scheduled - t_verdict)
            started.append((rb[0].started or rb[0].scheduled) - t_verdict)
            completed.append((rb[0].closed or rb[0].scheduled) - t_verdict)
            common.log(
                f"rollback {k + 1}/{n}: restored after {restored[-1] * 1000:.0f} ms "
                f"(scheduled {scheduled[-1] * 1000:.0f} ms, started {started[-1] * 1000:.0f} "
                f"ms, activity done {completed[-1] * 1000:.0f} ms)"
            )

    s = common.Spread.of(restored)
    print()
    print(f"machine: {common.machine()}")
    print(f"gcpsim {' '.join(sim_args)}; {n} rollbacks, one at a time")
    print(f"verdict -> stable 100% in gcpsim       {common.Spread.of(restored).line('s')}")
    print(f"verdict -> rollback scheduled          {common.Spread.of(scheduled).line('s')}")
    print(f"verdict -> rollback activity started   {common.Spread.of(started).line('s')}")
    print(f"verdict -> rollback activity completed {common.Spread.of(completed).line('s')}")
    common.figure(
        "rollback_latency",
        f"p99={s.p99:.3f}s median={s.median:.3f}s max={s.hi:.3f}s n={s.n}",
        f"<={TARGET}s(p99)",
        s.p99 <= TARGET,
        "gcpsim --run-op-seconds 0.05",
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
