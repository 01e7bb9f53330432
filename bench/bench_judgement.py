"""Canary judgement: false rollbacks, detections and readings to detection of three judges on the
same simulated releases.

    python -m bench.bench_judgement [--releases 1000] [--seed 1] [--quick] [--only NAME]

Each simulated release is one service through the prod steps of deploy.yaml (10% baking 5 min,
50% baking 5 min, then 100%), read every 60 s. Traffic is shaped like production: request counts
per window are Poisson (the service's rate times the canary's or stable's share times the window),
5xx are binomial, latencies log-normal (stable p50 40 ms, p95 120 ms) counted into Cloud Run's
exponential request_latencies buckets (growth 1.4, 64 finite buckets), ERROR log entries are the
5xx request logs plus Poisson application errors (0.1% of requests). Every judge sees the very
same windows (one random stream per release, drawn once).

Judges, side by side:
- `windows`: today's per-window gates (`stagecoach.gates.evaluate` with the default gates) and
  today's bake policy (fail on a breach; inconclusive at the end of a bake extends one interval,
  up to 3, then rolls back);
- `mann-whitney`: Kayenta's manner: at a fixed horizon (the end of the 50% bake) a one-sided
  Mann-Whitney U test per metric (the per-window error rate and p95 of canary against stable's),
  each at 0.5% (1% for the release); a canary fails when either metric is significantly higher;
- `sequential`: the new judge (`stagecoach.judge`, default settings: level 1% for the release,
  tolerance x1.25 for errors and latency, min_requests 20 per step), with the new bake policy
  (inconclusive at the end of a bake extends up to 3 intervals, then `pause` for a person:
  counted as "no evidence", not as a rollback).

Per scenario: the false-rollback rate (healthy canaries: canary identical to stable), the detection
rate and the median (p90) readings to detection (regressions present from the first canary
request), and the share of releases that ended for lack of evidence. `watch` scenarios run a
30 min bake at 100% and put the regression only at 100% (only judges that keep watching can
catch it).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from stagecoach.config import Gates
from stagecoach.distribution import ExponentialBuckets, percentile
from stagecoach.gates import evaluate
from stagecoach.judge import Counts, Judge, Observation, settings_from_gates
from stagecoach.payloads.common import Verdict
from stagecoach.payloads.monitoring import MetricWindow

INTERVAL = 60.0
STEPS = ((10, 5), (50, 5), (100, 0))  # (weight, readings of bake)
WATCH_READINGS = 30
MAX_EXTENSIONS = 3
NUM_FINITE, GROWTH, SCALE = 64, 1.4, 1.0
OPTIONS = ExponentialBuckets(NUM_FINITE, GROWTH, SCALE)
BOUNDS = [SCALE * GROWTH**i for i in range(NUM_FINITE + 1)]
P50, P95 = 40.0, 120.0
APP_ERROR_LOGS = 0.001
MW_ALPHA = 0.005  # per metric: 1% for the release


@dataclass(frozen=True)
class Scenario:
    name: str
    rps: float  # the service's total requests per second
    base: float  # stable's (and a healthy canary's) 5xx rate
    add: float = 0.0  # points of 5xx the canary adds
    slow: float = 1.0  # the canary's latency factor
    logs: float = 0.0  # extra ERROR log entries per canary request
    watch: bool = False  # regression only at 100%, with a 30 min watch

    @property
    def healthy(self) -> bool:
        return self.add == 0 and self.slow == 1.0 and self.logs == 0


def scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    for rps in (0.05, 0.3, 1.0, 10.0, 100.0):
        for base in (0.001, 0.015, 0.03):
            out.append(Scenario(f"healthy {rps:g} rps, {base:.1%} errors", rps, base))
    for rps in (1.0, 10.0, 100.0):
        for base in (0.001, 0.03):
            for add in (0.01, 0.03, 0.10):
                out.append(Scenario(f"errors +{add * 100:g} pt on {base:.1%}, {rps:g} rps",
                                    rps, base, add=add))  # fmt: skip
    for rps in (1.0, 10.0, 100.0):
        for slow in (1.5, 2.0, 3.0, 5.0):
            out.append(Scenario(f"latency x{slow:g}, {rps:g} rps", rps, 0.005, slow=slow))
    for rps in (0.3, 1.0, 10.0):
        out.append(Scenario(f"hard failure (30% 5xx), {rps:g} rps", rps, 0.005, add=0.30))
    out.append(Scenario("error logs +5% of requests, 10 rps", 10.0, 0.005, logs=0.05))
    out.append(Scenario("watch: healthy, 10 rps", 10.0, 0.005, watch=True))
    out.append(Scenario("watch: errors +3 pt at 100%, 10 rps", 10.0, 0.005, add=0.03, watch=True))
    out.append(Scenario("watch: latency x2 at 100%, 10 rps", 10.0, 0.005, slow=2.0, watch=True))
    return out


def _bucket_probs(factor: float) -> np.ndarray:
    sigma = math.log(P95 / P50) / 1.6448536269514722
    mu = math.log(P50 * factor)
    edges = np.array([(math.log(b) - mu) / sigma for b in BOUNDS])
    cdf = 0.5 * (1 + np.vectorize(math.erf)(edges / math.sqrt(2)))
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return np.clip(probs, 0, None) / probs.clip(0, None).sum()


@dataclass
class Window:
    canary: Counts
    stable: Counts


def draw_release(
    rng: np.random.Generator, sc: Scenario, probs: dict[float, np.ndarray]
) -> list[list[Window]]:
    """Windows per step (bake readings plus extensions), the same for every judge."""
    steps: list[list[Window]] = []
    for weight, bake in STEPS:
        readings = bake + MAX_EXTENSIONS if weight < 100 else (WATCH_READINGS if sc.watch else 0)
        regressed = not sc.watch or weight == 100
        out = []
        for _ in range(readings):
            out.append(Window(
                canary=_draw(rng, sc.rps * weight / 100, sc, regressed, probs),
                stable=_draw(rng, sc.rps * (100 - weight) / 100, sc, False, probs),
            ))  # fmt: skip
        steps.append(out)
    return steps


def _draw(
    rng: np.random.Generator, rps: float, sc: Scenario, bad: bool, probs: dict[float, np.ndarray]
) -> Counts:
    n = int(rng.poisson(rps * INTERVAL)) if rps > 0 else 0
    if n == 0:
        return Counts()
    p = min(sc.base + (sc.add if bad else 0.0), 1.0)
    errors = int(rng.binomial(n, p))
    logs = errors + int(rng.poisson(n * (APP_ERROR_LOGS + (sc.logs if bad else 0.0))))
    lat = rng.multinomial(n, probs[sc.slow if bad else 1.0])
    return Counts(requests=n, errors=errors, error_logs=logs, latency=[int(x) for x in lat])


def baseline_history(rng: np.random.Generator, sc: Scenario, probs: dict[float, np.ndarray]
                     ) -> Counts:  # fmt: skip
    """The stable revision's hour before the release."""
    total = Counts()
    for _ in range(60):
        total = total.add(_draw(rng, sc.rps, sc, False, probs))
    return total


# ----------------------------------------------------------------------------- judges


@dataclass
class Outcome:
    kind: str  # "fail" | "pass" | "no_evidence"
    readings: int  # readings until the decision


def run_windows(steps: list[list[Window]], gates: Gates) -> Outcome:
    readings = 0
    for (weight, bake), windows in zip(STEPS, steps, strict=True):
        if weight == 100 and not windows:
            break
        limit = bake if weight < 100 else len(windows)
        verdict = Verdict.PASS
        for i, w in enumerate(windows):
            readings += 1
            stable = _mw(w.stable) if w.stable.requests else None
            verdict = evaluate(_mw(w.canary), stable, gates).verdict
            if verdict == Verdict.FAIL:
                return Outcome("fail", readings)
            at_end = i + 1 >= limit
            if at_end and verdict != Verdict.INCONCLUSIVE:
                break
            if at_end and i + 1 >= limit + MAX_EXTENSIONS:
                return Outcome("fail", readings)  # inconclusive after 3 extensions: rollback
    return Outcome("pass", readings)


def _mw(c: Counts) -> MetricWindow:
    return MetricWindow(
        requests=c.requests, errors=c.errors,
        p95_ms=percentile(OPTIONS, c.latency, 95) if c.latency else None,
    )  # fmt: skip


def run_sequential(steps: list[list[Window]], gates: Gates, history: Counts) -> Outcome:
    judge = Judge(settings_from_gates(gates, 1))
    readings = 0
    for (weight, bake), windows in zip(STEPS, steps, strict=True):
        if weight == 100 and not windows:
            break
        judge.start_step(weight)
        if weight == 100:
            judge.set_baseline(history, BOUNDS)
        limit = bake if weight < 100 else len(windows)
        for i, w in enumerate(windows):
            readings += 1
            d = judge.observe(Observation(canary=w.canary, stable=w.stable, bounds=BOUNDS))
            if d.verdict == "fail":
                return Outcome("fail", readings)
            at_end = i + 1 >= limit
            if at_end and d.verdict == "pass":
                break
            if at_end and i + 1 >= limit + MAX_EXTENSIONS:
                return Outcome("no_evidence", readings)  # pause for a person
    return Outcome("pass", readings)


def _mann_whitney_p(x: list[float], y: list[float]) -> float:
    """One-sided p-value of 'x tends to be larger than y' (normal approximation, tie-corrected;
    exact enumeration is not needed for a benchmark comparison)."""
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return 1.0
    combined = sorted((v, g) for g, vs in ((0, x), (1, y)) for v in vs)
    ranks = [0.0] * len(combined)
    i = 0
    ties = 0.0
    while i < len(combined):
        j = i
        while j + 1 < len(combined) and combined[j + 1][0] == combined[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, combined, strict=True) if g == 0)
    u = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


def run_mann_whitney(steps: list[list[Window]]) -> Outcome:
    rates: tuple[list[float], list[float]] = ([], [])
    p95s: tuple[list[float], list[float]] = ([], [])
    readings = 0
    for (weight, bake), windows in zip(STEPS, steps, strict=True):
        if weight == 100:
            break
        for w in windows[:bake]:
            readings += 1
            for side, c in enumerate((w.canary, w.stable)):
                if c.requests:
                    rates[side].append(c.errors / c.requests)
                    p95s[side].append(percentile(OPTIONS, c.latency, 95) or 0.0)
    if len(rates[0]) < 3:
        return Outcome("no_evidence", readings)
    if (_mann_whitney_p(*rates) < MW_ALPHA) or (_mann_whitney_p(*p95s) < MW_ALPHA):
        return Outcome("fail", readings)
    return Outcome("pass", readings)


# ----------------------------------------------------------------------------- report


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--releases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="200 releases per scenario")
    ap.add_argument("--only", help="run the scenarios whose name contains this")
    args = ap.parse_args()
    n = 200 if args.quick else args.releases
    gates = Gates(max_p95_latency=timedelta(seconds=10))
    probs = {f: _bucket_probs(f) for f in (1.0, 1.5, 2.0, 3.0, 5.0)}
    judges = ("windows", "mann-whitney", "sequential")
    print(f"{n} releases per scenario; steps {STEPS}, {INTERVAL:g} s readings; seed {args.seed}")
    print("| scenario | judge | rolled back | readings to detection (median / p90) | no evidence |")
    print("|---|---|---|---|---|")
    worst_fr = {j: 0.0 for j in judges}
    misses: list[str] = []
    started = time.monotonic()
    for si, sc in enumerate(scenarios()):
        if args.only and args.only not in sc.name:
            continue
        rng = np.random.default_rng([args.seed, si])
        tallies: dict[str, list[Outcome]] = {j: [] for j in judges}
        for _ in range(n):
            steps = draw_release(rng, sc, probs)
            history = baseline_history(rng, sc, probs) if sc.watch else Counts()
            tallies["windows"].append(run_windows(steps, gates))
            tallies["mann-whitney"].append(run_mann_whitney(steps))
            tallies["sequential"].append(run_sequential(steps, gates, history))
        for j in judges:
            outs = tallies[j]
            fails = [o.readings for o in outs if o.kind == "fail"]
            rate = len(fails) / n
            no_ev = sum(o.kind == "no_evidence" for o in outs) / n
            when = f"{np.median(fails):.0f} / {np.percentile(fails, 90):.0f}" if fails else "-"
            if sc.healthy:
                worst_fr[j] = max(worst_fr[j], rate)
                if j == "sequential" and rate > 0.01:
                    misses.append(f"false rollbacks {_pct(rate)} in '{sc.name}'")
            elif j == "sequential" and rate < 0.95:
                big = sc.add >= 0.03 or sc.slow >= 2.0
                if big and sc.rps * 0.1 >= 1.0:
                    misses.append(f"detection {_pct(rate)} in '{sc.name}'")
            label = "false rollbacks" if sc.healthy else "detected"
            print(f"| {sc.name} | {j} | {label} {_pct(rate)} | {when} | {_pct(no_ev)} |")
        sys.stdout.flush()
    print()
    print("worst false-rollback rate over healthy scenarios: "
          + ", ".join(f"{j} {_pct(v)}" for j, v in worst_fr.items()))  # fmt: skip
    print(f"elapsed {time.monotonic() - started:.0f} s")
    verdict = "PASS" if not misses else "MISS"
    print(f"FIGURE judgement worst_false_rollback={_pct(worst_fr['sequential'])} "
          f"target<=1% and >=95% detection of +3pt/x2 at >=1 rps canary: {verdict}"
          + ("" if not misses else " (" + "; ".join(misses) + ")"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
