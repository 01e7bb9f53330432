"""Fault drill: restart gcpsim (the Google APIs) in the middle of a release.

    .venv/bin/python bench/drills/drill_gcpsim_restart.py [--restarts 6] [--quick]

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

import argparse
import asyncio
import collections
import random
import signal
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common
from drill_worker_kill import INSTANCE, PROJECT, SIM_ARGS, check_release, snapshot

from stagecoach.models import Outcome, ReleaseInput


def extra_checks(stack: common.Stack, inp: ReleaseInput) -> list[str]:
    problems = []
    services = common.run_services(stack.gcpsim)
    for plan in inp.services:
        svc = services.get_service(name=plan.ref.name)
        if svc.reconciling:
            problems.append(f"{plan.ref.service}: still reconciling")
    if inp.backup is not None:
        sql = common.sqladmin(stack.gcpsim)
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--restarts", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="2 restarts")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    trials = 2 if args.quick else args.restarts
    rng = random.Random(args.seed)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="drill-gcpsim-restart-"))
    common.log(f"machine: {common.machine()}")
    outcomes: collections.Counter[str] = collections.Counter()
    violations: list[str] = []
    downtimes: list[float] = []
    with common.Stack(work, gcpsim_args=SIM_ARGS) as stack:
        client = await stack.client()
        cfg = stack.config()

        def new_input(k: int) -> ReleaseInput:
            return common.release_input(
                cfg, "prod", f"v8.3.{k}", bake=timedelta(seconds=3), interval=timedelta(seconds=1)
            )

        inp = new_input(0)
        t = time.monotonic()
        handle = await common.start_release(client, stack.task_queue, inp)
        approver = asyncio.create_task(common.approve_when_asked(handle))
        res = await handle.result()
        await approver
        span = time.monotonic() - t
        assert res.outcome == Outcome.PROMOTED, res
        common.log(f"undisturbed release: {span:.1f}s; restart points uniform in [0, {span:.1f}s)")

        for k in range(1, trials + 1):
            sig = signal.SIGKILL if k % 2 else signal.SIGTERM
            inp = new_input(k)
            before, revs_before = snapshot(stack, inp)
            delay = rng.uniform(0, span)
            handle = await common.start_release(client, stack.task_queue, inp)
            approver = asyncio.create_task(common.approve_when_asked(handle))
            await asyncio.sleep(delay)
            try:
                st = await asyncio.wait_for(common.status(handle), timeout=1.0)
                where = f"{st.phase.value} {st.progress[:60]}"
            except Exception:
                where = "(status unavailable)"
            t_down = time.monotonic()
            stack.kill_gcpsim(sig)
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            stack.start_gcpsim(reset=False)
            downtimes.append(time.monotonic() - t_down)
            res = await asyncio.wait_for(handle.result(), timeout=900)
            await approver
            problems = check_release(stack, inp, res, before, revs_before)
            problems += extra_checks(stack, inp)
            outcomes[res.outcome.value] += 1
            violations += [f"restart {k}: {p}" for p in problems]
            common.log(
                f"restart {k}/{trials} ({signal.Signals(sig).name}) at {delay:.1f}s during "
                f"[{where}], gcpsim down {downtimes[-1]:.1f}s: {res.outcome.value}"
                f"{' ' + res.error if res.error else ''}; "
                f"{'OK' if not problems else 'VIOLATIONS: ' + '; '.join(problems)}"
            )

    print()
    print(f"machine: {common.machine()}")
    print(f"{trials} restarts; outcomes {dict(outcomes)}")
    print(f"gcpsim down (stop to serving again): {common.Spread.of(downtimes).line('s', 1)}")
    for v in violations:
        print(f"VIOLATION {v}")
    ok = not violations and sum(outcomes.values()) == trials
    common.figure(
        "drill_gcpsim_restart",
        f"restarts={trials} "
        + " ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
        + f" violations={len(violations)}",
        ":completes_or_restores,nothing_half_applied",
        ok,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
