"""Fault drill: restart the Temporal dev server (persistent database) in the middle of a bake.

    python -m bench.drills.drill_temporal_restart [--quick]

The dev server runs with `--db-filename` (sqlite on disk). Each trial is a staging release of both
services (steps 10/50/100, 20 s bake at 10% and 5 s at 50%, poll interval 2 s). Once the first
service's canary is baking at 10% and has passed a reading, the dev server is stopped -- SIGTERM
(a clean restart) or SIGKILL (a crash) --, kept down for `--down` seconds, and started again on
the same port with the same database. The worker process and this driver keep their
connections (they reconnect on their own).

Checked: the release completes, promoted, each canary at exactly 10 -> 50 -> 100 in gcpsim's
traffic timeline and serving 100%, no second revision.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from datetime import timedelta

from bench import common
from stagecoach.payloads.common import Outcome, Phase
from stagecoach.payloads.release import ReleaseStatus
from stagecoach.temporal import workflow_result
from testing.releases import release_input, start_release, wait_for
from testing.stack import Stack

PROJECT = "legal-forms-staging"
SIM_ARGS = ["--run-op-seconds", "0.3", "--request-rate", "1000"]


async def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument(
        "--signals", nargs="+", default=["TERM", "KILL", "KILL"], help="one trial per signal"
    )
    ap.add_argument("--down", type=float, default=5.0, help="seconds the server stays down")
    ap.add_argument("--quick", action="store_true", help="one SIGKILL trial")
    args, work = common.parse_args(ap, "drill-temporal-restart-")
    sigs = ["KILL"] if args.quick else args.signals

    results: list[tuple[str, str, float, list[str]]] = []
    with Stack(work, gcpsim_args=SIM_ARGS, temporal_db=True) as stack:
        client = await stack.client()
        cfg = stack.config()
        for k, name in enumerate(sigs):
            sig = getattr(signal, f"SIG{name}")
            inp = release_input(
                cfg,
                "staging",
                f"v8.1.{k}",
                steps=[(10, 20), (50, 5), (100, 0)],
                interval=timedelta(seconds=2),
            )
            before, revs_before = common.snapshot(stack, inp, PROJECT)
            handle = await start_release(client, stack.task_queue, inp)

            def baking(st: ReleaseStatus) -> bool:
                svc = st.services[0]
                return st.phase == Phase.BAKING and svc.percent == 10 and svc.reading_count >= 1

            await wait_for(handle, baking, timeout=120, every=0.05)
            stack.stop_temporal(sig)
            t_down = time.monotonic()
            common.log(f"trial {k + 1}: Temporal dev server stopped with SIG{name} mid-bake")
            await asyncio.sleep(args.down)
            stack.start_temporal()
            common.log(f"trial {k + 1}: restarted after {time.monotonic() - t_down:.1f}s")
            res = None
            deadline = time.monotonic() + 300
            while res is None:
                try:
                    res = await asyncio.wait_for(workflow_result(handle), timeout=300)
                except Exception as err:  # the result long-poll may break while it restarts
                    if time.monotonic() > deadline:
                        raise
                    common.log(f"trial {k + 1}: waiting for the result again ({err!r})")
                    await asyncio.sleep(1)
            took = time.monotonic() - t_down
            problems = common.check_release(stack, inp, res, before, revs_before, PROJECT, None)
            if res.outcome != Outcome.PROMOTED:
                problems.append(f"outcome {res.outcome.value}: {res.error}")
            results.append((name, res.outcome.value, took, problems))
            common.log(
                f"trial {k + 1}: {res.outcome.value}, done {took:.1f}s after the stop; "
                f"{common.verdict(problems)}"
            )

    print()
    print(f"machine: {common.machine()}")
    for name, outcome, took, problems in results:
        print(f"SIG{name}: {outcome}, finished {took:.1f}s after the stop, problems {problems}")
    ok = all(not p for *_, p in results)
    completed = sum(1 for _, o, _, p in results if o == "promoted" and not p)
    common.figure(
        "drill_temporal_restart",
        f"restarts={len(results)} completed={completed} signals={','.join(sigs)} "
        f"down={args.down:g}s",
        ":every_release_completes_promoted",
        ok,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
