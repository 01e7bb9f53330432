"""Fault drill: restart gcpsim (the Google APIs) in the middle of a release.

    python -m bench.drills.drill_gcpsim_restart [--restarts 6] [--quick]

Each trial is a prod release of both services (pre-deploy backup, canary 10/50/100 with 3 s bakes
polled every 1 s, approval before 100% granted by the drill). At a random point, uniform over the
length of an undisturbed release, gcpsim is stopped -- SIGKILL (a crash: its state is whatever its
last atomic write of state.json held) or SIGTERM, alternating --, kept down 0.5-3 s, then started
again on the same ports with the same state dir (its embedded Postgres keeps running across a
crash and is re-attached). Activities see connection errors meanwhile and retry.

Checked per trial ("nothing half-applied"): the release ends promoted (each canary at exactly
10 -> 50 -> 100 in gcpsim's timeline and serving 100%) or rolled back/failed with the exact
pre-release split live again; no service left reconciling (an operation never finished); at most
one revision per service for the release; exactly one pre-deploy backup, SUCCESSFUL.
"""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import sys
import time
from datetime import timedelta

from bench import common
from bench.drills.drill_worker_kill import INSTANCE, PROJECT, SIM_ARGS
from stagecoach.payloads.release import ReleaseInput
from testing.cloudrun import run_services
from testing.cloudsql import sqladmin
from testing.releases import release_input, undisturbed_span
from testing.stack import Stack


def extra_checks(stack: Stack, inp: ReleaseInput) -> list[str]:
    problems = []
    services = run_services(stack.gcpsim)
    for plan in inp.services:
        svc = services.get_service(name=plan.ref.name)
        if svc.reconciling:
            problems.append(f"{plan.ref.service}: still reconciling")
    if inp.backup is not None:
        sql = sqladmin(stack.gcpsim.url)
        runs = sql.backupRuns().list(project=PROJECT, instance=INSTANCE).execute()
        mine = [
            r
            for r in runs.get("items", [])
            if (r.get("description") or "").startswith(f"Pre-deployment backup {inp.version} ")
        ]
        if [r.get("status") for r in mine] != ["SUCCESSFUL"]:
            problems.append(f"backups {[(r.get('id'), r.get('status')) for r in mine]}")
    return problems


async def main() -> int:
    args, work, trials = common.counted_args(
        __doc__, "drill-gcpsim-restart-", "restarts", 6, quick=2, seed=11
    )
    rng = random.Random(args.seed)

    tally = common.DrillTally(trials)
    downtimes: list[float] = []
    with Stack(work, gcpsim_args=SIM_ARGS) as stack:
        client = await stack.client()
        cfg = stack.config()

        def new_input(k: int) -> ReleaseInput:
            return release_input(
                cfg, "prod", f"v8.3.{k}", bake=timedelta(seconds=3), interval=timedelta(seconds=1)
            )

        async def restart_gcpsim(sig: signal.Signals) -> None:
            """Stop gcpsim with `sig`, keep it down 0.5-3 s, start it again on its ports."""
            t_down = time.monotonic()
            stack.kill_gcpsim(sig)
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            stack.start_gcpsim(reset=False)
            downtimes.append(time.monotonic() - t_down)

        span = await undisturbed_span(client, stack.task_queue, new_input(0))
        common.log(f"undisturbed release: {span:.1f}s; restart points uniform in [0, {span:.1f}s)")

        for k in range(1, trials + 1):
            sig = signal.SIGKILL if k % 2 else signal.SIGTERM
            inp = new_input(k)
            delay = rng.uniform(0, span)
            run, problems = await common.disturbed_release(
                stack, client, inp, PROJECT, INSTANCE,
                disturb=functools.partial(restart_gcpsim, sig), after=delay, timeout=900,
            )  # fmt: skip
            res = run.result
            problems += extra_checks(stack, inp)
            tally.add(f"restart {k}", res, problems)
            common.log(
                f"restart {k}/{trials} ({signal.Signals(sig).name}) at {delay:.1f}s during "
                f"[{run.disturbed_during}], gcpsim down {downtimes[-1]:.1f}s: {res.outcome.value}"
                f"{' ' + res.error if res.error else ''}; {common.verdict(problems)}"
            )

    ok = tally.report(
        "drill_gcpsim_restart", "restarts", ":completes_or_restores,nothing_half_applied",
        f"{trials} restarts; outcomes {dict(tally.outcomes)}",
        f"gcpsim down (stop to serving again): {common.Spread.of(downtimes).line('s', 1)}",
    )  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
