"""History size: Temporal history events per release, counted across continue-as-new runs.

    python -m bench.bench_history [--polls 2880] [--quick]

Two releases to prod (pre-deploy backup, canary 10 -> 50 -> 100, approval before 100%, granted
by this script as soon as it is asked), time scaled down so that the number of metric polls is
the production one:

1. default prod release, both services: 5 min bakes polled every 60 s = 5 polls per step, run as
   5 s bakes polled every 1 s (5 polls per step: the poll count is bake / interval);
2. a 48-hour bake polled every 60 s = 2880 polls, run on python-pipeline as the 50% step baking
   at a 1 s interval (about 48 minutes); the step is cut short with `promote` once 2880 polls
   were made at 50% (the 10% step keeps its 5 polls). The workflow continues as new after 4000
   events. (A shorter interval does not help: the dev server fires sub-second timers after
   about 1 s.)

gcpsim serves 2000 requests/s per service so every window has enough canary requests (a window
with too few, or with a stray error above the 1% healthy rate, is inconclusive and extends the
bake by one poll: such extra polls are counted and shown).

Targets: <= 1,000 events for the default release; <= 10,000 events per run for the 48 h bake
(Temporal warns at 10,240 and fails a run at 51,200).
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType

from bench import common
from stagecoach import contract
from stagecoach.payloads.common import Outcome
from stagecoach.payloads.release import ReleaseInput, ReleaseStatus
from stagecoach.temporal import workflow_result
from testing.histories import run_histories
from testing.releases import approve_when_asked, release_input, start_release, status
from testing.stack import Stack

DEFAULT_TARGET = 1_000
PER_RUN_TARGET = 10_000


async def run_and_count(
    stack: Stack, inp: ReleaseInput, promote_after_polls_at_50: int | None = None
) -> dict[str, Any]:
    client = await stack.client()
    handle = await start_release(client, stack.task_queue, inp)
    approver = asyncio.create_task(approve_when_asked(handle))
    t0 = time.monotonic()
    if promote_after_polls_at_50 is not None:
        base: int | None = None
        last_log = 0.0
        while True:
            st = await status(handle)
            svc = st.services[0]
            if base is None and svc.percent == 50:
                base = sum(1 for r in svc.readings if r.weight == 10)
            if base is not None:
                done = svc.reading_count - base
                if time.monotonic() - last_log > 30:
                    last_log = time.monotonic()
                    common.log(f"  {done} polls at 50% so far")
                if done >= promote_after_polls_at_50:
                    await handle.signal(contract.Message.PROMOTE)
                    break
            await asyncio.sleep(0.2)
    result: ReleaseStatus = await workflow_result(handle)
    took = time.monotonic() - t0
    await approver
    if result.outcome != Outcome.PROMOTED:
        raise RuntimeError(f"{inp.version}: {result.outcome} {result.error}")
    hists = await run_histories(client, handle.id, handle.result_run_id or "")
    per_run = [len(h.events) for h in hists]
    kinds: collections.Counter[str] = collections.Counter()
    for h in hists:
        for e in h.events:
            kinds[EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")] += 1
    biggest_payload = max(
        (
            len(p.data)
            for h in hists
            for e in h.events
            for p in (
                list(e.workflow_execution_started_event_attributes.input.payloads)
                + list(e.workflow_execution_completed_event_attributes.result.payloads)
                + list(e.workflow_execution_continued_as_new_event_attributes.input.payloads)
            )
        ),
        default=0,
    )
    polls = sum(s.reading_count for s in result.services)
    return {
        "version": inp.version,
        "services": len(inp.services),
        "runs": len(hists),
        "per_run": per_run,
        "total": sum(per_run),
        "polls": polls,
        "kinds": kinds,
        "seconds": took,
        "biggest_payload": biggest_payload,
    }


def show(label: str, r: dict[str, Any]) -> None:
    print(
        f"{label}: {r['services']} service(s), {r['polls']} polls, {r['runs']} run(s), "
        f"events per run {r['per_run']}, total {r['total']} "
        f"({r['total'] / max(r['polls'], 1):.1f} per poll overall), "
        f"largest workflow input/result payload {r['biggest_payload'] / 1024:.1f} KiB, "
        f"took {r['seconds']:.0f}s"
    )
    top = ", ".join(f"{k} {v}" for k, v in r["kinds"].most_common(8))
    print(f"  event types: {top}")


async def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--polls", type=int, default=2880, help="polls of the long bake")
    ap.add_argument("--interval", type=float, default=1.0, help="long bake poll interval, s")
    ap.add_argument("--quick", action="store_true", help="long bake of 720 polls (12 h)")
    args, work = common.parse_args(ap, "bench-history-")
    polls = 720 if args.quick else args.polls

    sim_args = ["--run-op-seconds", "0.3", "--sql-op-seconds", "1.0", "--request-rate", "2000"]
    with Stack(work, gcpsim_args=sim_args) as stack:
        cfg = stack.config()
        default_inp = release_input(
            cfg, "prod", "v7.0.0", bake=timedelta(seconds=5), interval=timedelta(seconds=1)
        )
        common.log("default prod release (2 services, 5 polls per step)")
        default = await run_and_count(stack, default_inp)
        show("default prod release", default)

        # 10%: 5 polls (a 5 min bake at 60 s, scaled like the rest); 50%: the 48 h bake
        long_inp = release_input(
            cfg,
            "prod",
            "v7.1.0",
            services=["python-pipeline"],
            steps=[(10, 5 * args.interval), (50, 48 * 3600), (100, 0)],
            interval=timedelta(seconds=args.interval),
        )
        common.log(f"48 h bake: {polls} polls at {args.interval:g}s on python-pipeline")
        longb = await run_and_count(stack, long_inp, promote_after_polls_at_50=polls)
        show(f"48 h bake ({polls} polls at 50%)", longb)

    print()
    print(f"machine: {common.machine()}")
    max_run = max(longb["per_run"])
    ok = default["total"] <= DEFAULT_TARGET and max_run <= PER_RUN_TARGET
    common.figure(
        "history_events",
        f"default_prod={default['total']} long_bake_max_per_run={max_run} "
        f"long_bake_runs={longb['runs']} long_bake_total={longb['total']} "
        f"long_bake_polls={longb['polls']}",
        f"<={DEFAULT_TARGET}_and_<={PER_RUN_TARGET}_per_run",
        ok,
        "quick: 720-poll bake" if args.quick else "",
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
