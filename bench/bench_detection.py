"""Detection latency: a canary turns bad mid-bake; time until the rollback starts.

    python -m bench.bench_detection [--trials 20] [--interval 5] [--quick]

Each trial releases python-pipeline to staging (steps 10/50/100, the 10% step baking 10 minutes,
poll interval `--interval`). Once the canary has passed at least one reading, the bench waits a
random fraction of an interval (uniform in [0, interval)), then marks the canary's version bad in
gcpsim (`POST /_sim/behaviors`: 50% of its requests answer 5xx).

Definitions (all clocks are this machine's wall clock):
- t_bad: the moment the bench sent that request. gcpsim looks behaviours up when it computes a
  metric window, so from t_bad on every window read of the canary shows the breach: t_bad is the
  start of the first metric window that shows it (the breach is not delayed by metric ingestion,
  which on Cloud Monitoring adds up to a few minutes; gcpsim has none);
- t_rollback: the ActivityTaskScheduled event time of the SetTraffic activity whose reason is
  "rollback" in the workflow history (the moment the rollback starts).

Detection latency = t_rollback - t_bad. It splits into the wait for the next poll (t_bad to the
completion of the first failing ReadCanaryMetrics local activity, from its marker) and the
reaction (that completion to t_rollback). Target: every trial <= one poll interval + 1 s.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from datetime import timedelta

from bench import common
from stagecoach import contract
from stagecoach.payloads.common import Outcome, Phase
from stagecoach.payloads.release import ReleaseStatus
from stagecoach.temporal import workflow_result
from testing.gcpsim import set_behavior
from testing.histories import LocalActivity, local_activities, release_events, rollback_calls
from testing.releases import release_input, start_release, wait_for
from testing.stack import Stack

SERVICE = "python-pipeline-staging"
BAD_ERROR_RATE = 0.5


def first_failing_read(markers: list[LocalActivity], after: float) -> float | None:
    """Completion time of the first ReadCanaryMetrics that finished after `after`."""
    for m in markers:
        if (
            m.type == contract.Activity.READ_CANARY_METRICS
            and m.completed is not None
            and m.completed > after
        ):
            return m.completed
    return None


async def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--interval", type=float, default=5.0, help="poll interval, seconds")
    ap.add_argument("--quick", action="store_true", help="5 trials")
    ap.add_argument("--seed", type=int, default=1)
    args, work = common.parse_args(ap, "bench-detection-")
    trials = 5 if args.quick else args.trials
    interval = args.interval
    rng = random.Random(args.seed)

    sim_args = ["--run-op-seconds", "0.3", "--request-rate", "400"]
    latencies: list[float] = []
    waits: list[float] = []
    reactions: list[float] = []
    with Stack(work, gcpsim_args=sim_args) as stack:
        sim = stack.gcpsim
        client = await stack.client()
        cfg = stack.config()
        for k in range(trials):
            version = f"v4.0.{k}"
            inp = release_input(
                cfg,
                "staging",
                version,
                services=["python-pipeline"],
                steps=[(10, 600), (50, 600), (100, 0)],
                interval=timedelta(seconds=interval),
            )
            handle = await start_release(client, stack.task_queue, inp)

            def baking(st: ReleaseStatus) -> bool:
                svc = st.services[0]
                return st.phase == Phase.BAKING and svc.percent == 10 and svc.reading_count >= 1

            await wait_for(handle, baking, timeout=120, every=0.05)
            await asyncio.sleep(rng.uniform(0, interval))
            t_bad = time.time()
            set_behavior(sim, SERVICE, version, error_rate=BAD_ERROR_RATE)
            t_set = time.time()
            result = await workflow_result(handle)
            if result.outcome != Outcome.ROLLED_BACK:
                raise RuntimeError(f"trial {k}: expected a rollback, got {result.outcome}")
            events = await release_events(client, handle)
            rollback = rollback_calls(events)
            if len(rollback) != 1:
                raise RuntimeError(f"trial {k}: {len(rollback)} rollback SetTraffic activities")
            t_rollback = rollback[0].scheduled
            t_read = first_failing_read(local_activities(events), t_set)
            latency = t_rollback - t_bad
            latencies.append(latency)
            if t_read is not None:
                waits.append(t_read - t_bad)
                reactions.append(t_rollback - t_read)
            common.log(
                f"trial {k + 1}/{trials}: detection {latency:.3f}s "
                f"(behaviour POST {1000 * (t_set - t_bad):.0f} ms, "
                f"wait for poll {(t_read or t_bad) - t_bad:.3f}s, "
                f"reaction {t_rollback - (t_read or t_rollback):.3f}s) - {result.error}"
            )

    limit = interval + 1.0
    s = common.Spread.of(latencies)
    print()
    print(f"machine: {common.machine()}")
    print(f"poll interval {interval:g}s, gcpsim {' '.join(sim_args)}, {trials} trials")
    print(f"detection latency      {s.line('s')}")
    print(f"  wait for next poll   {common.Spread.of(waits).line('s')}")
    print(f"  reaction (read->rollback scheduled) {common.Spread.of(reactions).line('s')}")
    common.figure(
        "detection_latency",
        f"median={s.median:.3f}s p90={s.p90:.3f}s max={s.hi:.3f}s n={s.n} interval={interval:g}s",
        f"<={limit:g}s(interval+1s, every trial)",
        s.hi <= limit,
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
