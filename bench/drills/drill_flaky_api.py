"""Fault drill: gcpsim answers 503 or 429 on 20% of API calls and adds 200 ms to every call.

    python -m bench.drills.drill_flaky_api [--releases 6] [--quick]

gcpsim fault rules (every API method: Cloud Run, Cloud SQL, Monitoring):
    *  latency 200 ms (every call)
    *  status 503, rate 0.1
    *  status 429, rate 0.1112   (a call fails with probability 1 - 0.9 * 0.8888 = 0.20)
Then `--releases` prod releases of both services, one after another (pre-deploy backup, canary
10/50/100 with 3 s bakes polled every 1 s, approval before 100% granted by the drill).

Checked per release: promoted, each canary at exactly 10 -> 50 -> 100 in gcpsim's traffic timeline
and serving 100%, at most one revision per service, exactly one pre-deploy backup. Shown: the
retries the faults caused (activity attempts > 1 from ActivityTaskStarted events, local-activity
attempts > 1 from their markers).
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from bench import common
from bench.drills.drill_worker_kill import INSTANCE, PROJECT, SIM_ARGS
from stagecoach.payloads.common import Outcome
from testing.gcpsim import GcpsimProcess, add_fault, clear_faults, sim_call
from testing.histories import local_activities, release_events
from testing.releases import release_input, run_release
from testing.stack import Stack


def arm(sim: GcpsimProcess) -> None:
    add_fault(sim, "*", latency_ms=200)
    add_fault(sim, "*", status=503, rate=0.1)
    add_fault(sim, "*", status=429, rate=0.1112)


async def main() -> int:
    _, work, n = common.counted_args(__doc__, "drill-flaky-api-", "releases", 6, quick=2)

    rows: list[tuple[str, str, float, int, int, list[str]]] = []
    with Stack(work, gcpsim_args=SIM_ARGS) as stack:
        sim = stack.gcpsim
        client = await stack.client()
        cfg = stack.config()
        for k in range(n):
            inp = release_input(
                cfg, "prod", f"v8.2.{k}", bake=timedelta(seconds=3), interval=timedelta(seconds=1)
            )
            before, revs_before = common.snapshot(stack, inp, PROJECT)  # own reads: no faults
            arm(sim)
            t = time.monotonic()
            run = await run_release(client, stack.task_queue, inp, timeout=900)
            res, handle, took = run.result, run.handle, run.finished - t
            events = await release_events(client, handle)
            retries = sum(
                e.activity_task_started_event_attributes.attempt - 1
                for e in events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            )
            la_retries = sum(m.attempt - 1 for m in local_activities(events))
            armed = len(sim_call(sim, "GET", "/_sim/faults")["faults"])
            assert armed == 3, "fault rules went missing"
            clear_faults(sim)  # the checks read gcpsim without faults
            problems = common.check_release(stack, inp, res, before, revs_before, PROJECT, INSTANCE)
            if res.outcome != Outcome.PROMOTED:
                problems.append(f"outcome {res.outcome.value}: {res.error}")
            rows.append((inp.version, res.outcome.value, took, retries, la_retries, problems))
            common.log(
                f"release {k + 1}/{n} {inp.version}: {res.outcome.value} in {took:.1f}s, "
                f"{retries} activity retries, {la_retries} metric-read retries; "
                f"{common.verdict(problems)}"
            )

    print()
    print(f"machine: {common.machine()}")
    for version, outcome, took, r, lr, problems in rows:
        print(f"{version}: {outcome} in {took:.1f}s, retries {r} + {lr} (reads), {problems}")
    ok = all(not p for *_, p in rows)
    promoted = sum(1 for r in rows if r[1] == "promoted" and not r[5])
    durations = common.Spread.of([r[2] for r in rows])
    common.figure(
        "drill_flaky_api",
        f"releases={n} promoted={promoted} retries={sum(r[3] for r in rows)} "
        f"read_retries={sum(r[4] for r in rows)} duration_median={durations.median:.1f}s",
        ":every_release_completes",
        ok and promoted == n,
        "20% 503/429 + 200 ms on every call",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
