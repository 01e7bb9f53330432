"""Fault drill: SIGKILL the worker at random points of a release, start a new worker.

    .venv/bin/python bench/drills/drill_worker_kill.py [--kills 20] [--quick]

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

from stagecoach.models import Outcome, ReleaseInput, ReleaseStatus

PROJECT = "legal-forms-prod"
INSTANCE = "legal-forms-db-prod"
SIM_ARGS = ["--run-op-seconds", "0.3", "--sql-op-seconds", "1.0", "--request-rate", "1000"]


def check_release(
    stack: common.Stack,
    inp: ReleaseInput,
    result: ReleaseStatus,
    before: dict[str, common.Split],
    revs_before: dict[str, int],
    project: str = PROJECT,
    instance: str | None = INSTANCE,
) -> list[str]:
    """Violations of the drill's invariants (empty: all good)."""
    sim = stack.gcpsim
    problems: list[str] = []
    state = common.sim_state(sim)
    for plan in inp.services:
        svc = plan.ref.service
        live = common.live_split(sim, project, svc)
        tl = common.timeline(state, project, svc)
        hist = common.canary_history(tl, plan.revision)
        if result.outcome == Outcome.PROMOTED:
            if live != [(plan.revision, 100)]:
                problems.append(f"{svc}: promoted but serving {live}")
            if hist != [10, 50, 100]:
                problems.append(f"{svc}: canary history {hist}, expected [10, 50, 100]")
        else:
            if live != before[svc]:
                problems.append(f"{svc}: {result.outcome.value} but serving {live}, "
                                f"before {before[svc]}")  # fmt: skip
            if hist and hist != [10, 50, 100][: len(hist)]:
                problems.append(f"{svc}: canary history {hist}")
        named = common.revisions_with_prefix(sim, project, svc, plan.revision)
        gained = common.revision_count(sim, project, svc) - revs_before[svc]
        if named > 1 or gained > 1:
            problems.append(f"{svc}: {named} revisions named {plan.revision}, {gained} new")
    if instance and inp.backup is not None:
        n = common.backups_described(
            sim, project, instance, f"Pre-deployment backup {inp.version} "
        )
        if n != 1:
            problems.append(f"{n} backups described 'Pre-deployment backup {inp.version} ...'")
    return problems


def snapshot(
    stack: common.Stack, inp: ReleaseInput, project: str = PROJECT
) -> tuple[dict[str, common.Split], dict[str, int]]:
    sim = stack.gcpsim
    before = {p.ref.service: common.live_split(sim, project, p.ref.service) for p in inp.services}
    revs = {p.ref.service: common.revision_count(sim, project, p.ref.service) for p in inp.services}
    return before, revs


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="5 kills")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    kills = 5 if args.quick else args.kills
    rng = random.Random(args.seed)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="drill-worker-kill-"))
    common.log(f"machine: {common.machine()}")
    outcomes: collections.Counter[str] = collections.Counter()
    violations: list[str] = []
    recover: list[float] = []
    started = time.monotonic()
    with common.Stack(work, gcpsim_args=SIM_ARGS) as stack:
        client = await stack.client()
        cfg = stack.config()

        def new_input(k: int) -> ReleaseInput:
            return common.release_input(
                cfg,
                "prod",
                f"v8.0.{k}",
                bake=timedelta(seconds=3),
                interval=timedelta(seconds=1),
            )

        # an undisturbed release: how long one takes, so kill points cover all of it
        inp = new_input(0)
        t = time.monotonic()
        handle = await common.start_release(client, stack.task_queue, inp)
        approver = asyncio.create_task(common.approve_when_asked(handle))
        res = await handle.result()
        await approver
        span = time.monotonic() - t
        assert res.outcome == Outcome.PROMOTED, res
        common.log(f"undisturbed release: {span:.1f}s; kill points uniform in [0, {span:.1f}s)")

        for k in range(1, kills + 1):
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
            stack.kill_worker(signal.SIGKILL)
            t_kill = time.monotonic()
            stack.start_worker()
            res = await asyncio.wait_for(handle.result(), timeout=600)
            recover.append(time.monotonic() - t_kill)
            await approver
            problems = check_release(stack, inp, res, before, revs_before)
            outcomes[res.outcome.value] += 1
            violations += [f"kill {k}: {p}" for p in problems]
            common.log(
                f"kill {k}/{kills} at {delay:.1f}s during [{where}]: {res.outcome.value}"
                f"{' ' + res.error if res.error else ''}; finished {recover[-1]:.1f}s after "
                f"the kill; {'OK' if not problems else 'VIOLATIONS: ' + '; '.join(problems)}"
            )

    print()
    print(f"machine: {common.machine()}")
    print(f"{kills} kills in {time.monotonic() - started:.0f}s; outcomes {dict(outcomes)}")
    print(f"kill -> release finished: {common.Spread.of(recover).line('s', 1)}")
    for v in violations:
        print(f"VIOLATION {v}")
    ok = not violations and sum(outcomes.values()) == kills
    common.figure(
        "drill_worker_kill",
        f"kills={kills} "
        + " ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
        + f" violations={len(violations)}",
        ":every_release_promoted_or_restored,<=1_revision,1_backup",
        ok,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
