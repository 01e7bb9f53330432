"""Fault drill: SIGKILL the worker at random points of a release, start a new worker.

    python -m bench.drills.drill_worker_kill [--kills 20] [--quick]

Each trial is a new prod release of both services (pre-deploy backup, canary 10/50/100 with 3 s
bakes polled every 1 s, approval before 100% granted by the drill). After a random delay, uniform
over the length of an undisturbed release (measured first), the worker process (`python
worker.py`) gets SIGKILL and a new one is started at once. Checked per trial:

- the release ends: promoted with each canary at exactly 10 -> 50 -> 100 in gcpsim's traffic
  timeline and serving 100%, or rolled back/failed with the exact pre-release split live again;
- never two revisions for one release: revisions named with the release's deterministic revision
  name (prefix) <= 1 per service, and each service gained at most one revision;
- never two backups: exactly one backup run described "Pre-deployment backup <version> ...".

In-flight activities are retried when their heartbeat (30 s) or start-to-close timeout (SmokeTest,
GetServiceState: 60 s) expires, so a trial takes up to about a minute.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from datetime import timedelta

from bench import common
from stagecoach.payloads.release import ReleaseInput
from testing.releases import release_input, undisturbed_span
from testing.stack import Stack

PROJECT = "legal-forms-prod"
INSTANCE = "legal-forms-db-prod"
SIM_ARGS = ["--run-op-seconds", "0.3", "--sql-op-seconds", "1.0", "--request-rate", "1000"]


async def main() -> int:
    args, work, kills = common.counted_args(
        __doc__, "drill-worker-kill-", "kills", 20, quick=5, seed=7
    )
    rng = random.Random(args.seed)

    tally = common.DrillTally(kills)
    recover: list[float] = []
    killed_at: list[float] = []
    started = time.monotonic()
    with Stack(work, gcpsim_args=SIM_ARGS) as stack:
        client = await stack.client()
        cfg = stack.config()

        def new_input(k: int) -> ReleaseInput:
            return release_input(
                cfg,
                "prod",
                f"v8.0.{k}",
                bake=timedelta(seconds=3),
                interval=timedelta(seconds=1),
            )

        async def kill_worker() -> None:
            """SIGKILL the worker and start a new one at once."""
            stack.kill_worker(signal.SIGKILL)
            killed_at.append(time.monotonic())
            stack.start_worker()

        # an undisturbed release: how long one takes, so kill points cover all of it
        span = await undisturbed_span(client, stack.task_queue, new_input(0))
        common.log(f"undisturbed release: {span:.1f}s; kill points uniform in [0, {span:.1f}s)")

        for k in range(1, kills + 1):
            delay = rng.uniform(0, span)
            run, problems = await common.disturbed_release(
                stack, client, new_input(k), PROJECT, INSTANCE,
                disturb=kill_worker, after=delay, timeout=600,
            )  # fmt: skip
            res = run.result
            recover.append(run.finished - killed_at[-1])
            tally.add(f"kill {k}", res, problems)
            common.log(
                f"kill {k}/{kills} at {delay:.1f}s during [{run.disturbed_during}]: "
                f"{res.outcome.value}{' ' + res.error if res.error else ''}; finished "
                f"{recover[-1]:.1f}s after the kill; {common.verdict(problems)}"
            )

    ok = tally.report(
        "drill_worker_kill", "kills", ":every_release_promoted_or_restored,<=1_revision,1_backup",
        f"{kills} kills in {time.monotonic() - started:.0f}s; outcomes {dict(tally.outcomes)}",
        f"kill -> release finished: {common.Spread.of(recover).line('s', 1)}",
    )  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
