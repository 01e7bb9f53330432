"""What the benchmarks and fault drills share beyond the harness (a library, not a benchmark).

The processes, releases, histories and gcpsim helpers are the shared harness of tests and bench
(`testing/`). Here: this machine's description, statistics and the final FIGURE line, the
scripts' command line, and the fault drills' trial: the live state before, a release disturbed
mid-way, the invariant checks after, and the tally of outcomes and violations.

Run the scripts as modules from the repository root: `python -m bench.bench_rollback --quick`.
"""

from __future__ import annotations

import argparse
import collections
import math
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from temporalio.client import Client

from stagecoach.payloads.common import Outcome
from stagecoach.payloads.release import ReleaseInput, ReleaseStatus
from testing.cloudrun import live_split, revision_count, revisions_with_prefix
from testing.cloudsql import backups_described
from testing.gcpsim import Split, canary_history, sim_state, timeline
from testing.releases import ReleaseRun, run_release
from testing.stack import Stack, provision_approver_keys

# --------------------------------------------------------------------------- the machine


def machine() -> str:
    """Cores, memory and CPU model of this machine (for RESULTS.md)."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{psutil.cpu_count(logical=True)} cores ({model or 'unknown CPU'}), {mem:.1f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


# --------------------------------------------------------------------------- statistics


def percentile(xs: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    s = sorted(xs)
    if not s:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(s)))
    return s[min(rank, len(s)) - 1]


@dataclass
class Spread:
    n: int
    median: float
    p90: float
    p99: float
    lo: float
    hi: float

    @classmethod
    def of(cls, xs: list[float]) -> Spread:
        return cls(
            n=len(xs),
            median=statistics.median(xs) if xs else math.nan,
            p90=percentile(xs, 90),
            p99=percentile(xs, 99),
            lo=min(xs) if xs else math.nan,
            hi=max(xs) if xs else math.nan,
        )

    def line(self, unit: str = "", digits: int = 3) -> str:
        f = f"{{:.{digits}f}}{unit}"
        return (
            f"median={f.format(self.median)} p90={f.format(self.p90)} p99={f.format(self.p99)} "
            f"min={f.format(self.lo)} max={f.format(self.hi)} n={self.n}"
        )


def figure(name: str, values: str, target: str, ok: bool | None, note: str = "") -> None:
    """The last line every benchmark prints; `ok` None: a figure without a target."""
    tail = f" ({note})" if note else ""
    verdict = "REPORTED" if ok is None else "PASS" if ok else "MISS"
    print(f"FIGURE {name} {values} target{target} {verdict}{tail}", flush=True)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- the command line


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """A script's parser, described by the first line of its docstring `doc`."""
    return argparse.ArgumentParser(description=doc.split("\n")[0] if doc else None)


def parse_args(ap: argparse.ArgumentParser, prefix: str) -> tuple[argparse.Namespace, Path]:
    """Add `--workdir` (the last option) and parse; returns the arguments and the work directory
    (`--workdir`, or a new temporary one named `prefix`...), after logging this machine."""
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix=prefix))
    log(f"machine: {machine()}")
    provision_approver_keys(work / "keys")
    return args, work


def counted_args(
    doc: str | None, prefix: str, count: str, default: int, quick: int, seed: int | None = None
) -> tuple[argparse.Namespace, Path, int]:
    """The command line of a script that runs `--<count>` of something (`--quick`: `quick` of
    them), with `--seed` when a default `seed` is given, and `--workdir` (`parse_args`).
    Returns the arguments, the work directory and how many to run."""
    ap = arg_parser(doc)
    ap.add_argument(f"--{count}", type=int, default=default)
    ap.add_argument("--quick", action="store_true", help=f"{quick} {count}")
    if seed is not None:
        ap.add_argument("--seed", type=int, default=seed)
    args, work = parse_args(ap, prefix)
    return args, work, quick if args.quick else int(getattr(args, count))


# --------------------------------------------------------------------------- fault drills


def snapshot(
    stack: Stack, inp: ReleaseInput, project: str
) -> tuple[dict[str, Split], dict[str, int]]:
    """Each service's live split and revision count before a release (for `check_release`)."""
    sim = stack.gcpsim
    before = {p.ref.service: live_split(sim, project, p.ref.service) for p in inp.services}
    revs = {p.ref.service: revision_count(sim, project, p.ref.service) for p in inp.services}
    return before, revs


def check_release(
    stack: Stack,
    inp: ReleaseInput,
    result: ReleaseStatus,
    before: dict[str, Split],
    revs_before: dict[str, int],
    project: str,
    instance: str | None,
) -> list[str]:
    """Violations of the drills' invariants (empty: all good)."""
    sim = stack.gcpsim
    problems: list[str] = []
    state = sim_state(sim)
    for plan in inp.services:
        svc = plan.ref.service
        live = live_split(sim, project, svc)
        tl = timeline(state, project, svc)
        hist = canary_history(tl, plan.revision)
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
        named = revisions_with_prefix(sim, project, svc, plan.revision)
        gained = revision_count(sim, project, svc) - revs_before[svc]
        if named > 1 or gained > 1:
            problems.append(f"{svc}: {named} revisions named {plan.revision}, {gained} new")
    if instance and inp.backup is not None:
        n = backups_described(sim.url, project, instance, f"Pre-deployment backup {inp.version} ")
        if n != 1:
            problems.append(f"{n} backups described 'Pre-deployment backup {inp.version} ...'")
    return problems


def verdict(problems: list[str]) -> str:
    return "OK" if not problems else "VIOLATIONS: " + "; ".join(problems)


async def disturbed_release(
    stack: Stack,
    client: Client,
    inp: ReleaseInput,
    project: str,
    instance: str | None,
    *,
    disturb: Callable[[], Awaitable[None]],
    after: float,
    timeout: float,
) -> tuple[ReleaseRun, list[str]]:
    """One fault-drill trial: the live state before, the release with `disturb` striking
    `after` seconds into it (`run_release`), then `check_release`. Returns the run and the
    violations."""
    before, revs_before = snapshot(stack, inp, project)
    run = await run_release(
        client, stack.task_queue, inp, timeout=timeout, disturb=disturb, after=after
    )
    problems = check_release(stack, inp, run.result, before, revs_before, project, instance)
    return run, problems


@dataclass
class DrillTally:
    """The outcomes and invariant violations of a fault drill's `trials`."""

    trials: int
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    violations: list[str] = field(default_factory=list)

    def add(self, trial: str, result: ReleaseStatus, problems: list[str]) -> None:
        self.outcomes[result.outcome.value] += 1
        self.violations += [f"{trial}: {p}" for p in problems]

    def report(self, name: str, count: str, target: str, *lines: str) -> bool:
        """Print the summary (this machine, then `lines`), the violations and the FIGURE line;
        True: every trial ended and none broke an invariant."""
        print()
        print(f"machine: {machine()}")
        for line in lines:
            print(line)
        for v in self.violations:
            print(f"VIOLATION {v}")
        ok = not self.violations and sum(self.outcomes.values()) == self.trials
        figure(
            name,
            f"{count}={self.trials} "
            + " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
            + f" violations={len(self.violations)}",
            target,
            ok,
        )
        return ok
