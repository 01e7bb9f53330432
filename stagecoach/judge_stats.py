"""The statistics of the canary judge (stagecoach.judge): its tests and their level. Pure.

The judge (`Judge.observe`) feeds each reading's counts to the likelihood ratios below and adds
their logs up in its `JudgeState`; a test fails when its mixture (`mixture_log_e`) reaches
`Settings.bar`.

## The tests
Each test is a test martingale: a mixture, over a grid of alternatives, of likelihood ratios
against the edge of the null hypothesis. Under the null its expectation stays at most 1 however
many readings are multiplied in, so by Ville's inequality the chance that it *ever* reaches 1/a is
at most a: looking after every reading, for hours, costs nothing (Howard et al. 2021, "Time-uniform,
nonparametric, nonasymptotic confidence sequences"; Lindon, Sanden & Shirikian, KDD 2022, "Rapid
regression detection in software deployments through sequential testing").

- Relative to stable (errors, error logs, latency). Given what each revision group served in a
  window, an event (a 5xx, an ERROR log entry, a request slower than a threshold) falls on the
  canary with probability pi = n_canary / (n_canary + n_stable) if the canary is no worse than
  stable. A canary whose event rate is r times stable's moves that to r*pi / (r*pi + 1 - pi). The
  test multiplies, per window, the binomial likelihood ratio of the canary's share of the events
  for r on a grid above the tolerance against r = tolerance. Conditioning on the window's events
  makes the unknown baseline rate cancel: a noisy stable (3% errors) and a quiet one judge alike,
  and data that Monitoring has not delivered yet is missing on both sides alike. With binomial
  events the canary's count given the total is hypergeometric, which is dominated by the binomial
  in convex order (Hoeffding 1963), so the martingale property holds exactly for an identical
  canary. Latency, two tests: a request is slow when it falls above a bucket bound that
  stable's own latencies chose before the window (their median; their p90); the canary's
  requests count as slow only above `latency_tolerance` times that bound (rounded up to a bucket
  bound), so the null is "the canary is at most that much slower than stable".
- Hard limits (guard rails, with or without stable): the canary's error rate above
  `max_error_rate`, and more than 5% of its requests slower than `max_p95` (a p95 above it); a
  one-sample sequential likelihood-ratio test per request, so one unlucky window is not enough
  and a 30% error rate fails at the first reading that holds a few dozen requests.
- At 100% there is no stable traffic to compare with: the canary is compared with a historical
  baseline, the stable revisions' own metrics from before the release plus what they served
  during the earlier steps. Its rates enter through one-sided upper confidence bounds (Chernoff
  KL bounds), then the same one-sample tests apply.

The level: `alpha` (gates.false_rollback_rate) is shared by the release's services and, within
a service, by its tests (`TEST_SHARE`, Bonferroni; a baseline test spends half its share on
its confidence bound). So the probability that a release rolls back any canary that is no worse
than stable is at most `alpha`, for the whole release however long it bakes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel

# Alternatives of the mixtures: multiples of the null's edge (relative tests) or of the limit.
RATIO_GRID = (1.5, 2.0, 3.0, 5.0, 10.0, 100.0)
# Each test's share of a service's level (Bonferroni with weights): most to the comparisons with
# stable, which decide nearly every rollback; a baseline test spends half of its share on the
# confidence bound of the baseline's rate.
TEST_SHARE = {
    "errors_vs_stable": 0.25,
    "error_logs_vs_stable": 0.10,
    "latency_vs_stable": 0.10,
    "median_latency_vs_stable": 0.10,
    "error_rate_limit": 0.05,
    "latency_limit": 0.05,
    "errors_vs_baseline": 0.15,
    "error_logs_vs_baseline": 0.05,
    "latency_vs_baseline": 0.15,
}
TESTS = tuple(TEST_SHARE)

# latency against stable: the share of requests above stable's p90 (the tail) and above its
# median (the body: far more events, so a shifted distribution shows sooner)
LATENCY_TESTS = {"latency_vs_stable": 0.9, "median_latency_vs_stable": 0.5}
BASELINE_TESTS = ("errors_vs_baseline", "error_logs_vs_baseline", "latency_vs_baseline")
P95_TAIL = 0.05  # a p95 above the limit: more than 5% of requests above it


class Settings(BaseModel):
    """What the judge needs of the gates (see `stagecoach.judge.settings_from_gates`), and the
    level each test gets of it."""

    alpha: float = 0.01
    services: int = 1
    error_tolerance: float = 1.0
    latency_tolerance: float = 1.0
    latency_quantile: float = 0.9  # the baseline's slow threshold (the watch at 100%)
    max_error_rate: float = 0.05
    max_p95_ms: float = 10_000.0
    min_requests: int = 20

    def alpha_test(self, test: str) -> float:
        return self.alpha * TEST_SHARE[test] / max(self.services, 1)

    def bar(self, test: str) -> float:
        """The log e-value at which a test rejects: log(1/alpha_test); a baseline test keeps
        half of its share for the baseline's confidence bound."""
        a = self.alpha_test(test)
        return math.log(2.0 / a if test in BASELINE_TESTS else 1.0 / a)


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return m
    return m + math.log(sum(math.exp(x - m) for x in xs))


def mixture_log_e(log_lr: Sequence[float]) -> float:
    """log of the uniform mixture of the alternatives' likelihood ratios."""
    if not log_lr:
        return 0.0
    return _logsumexp(log_lr) - math.log(len(log_lr))


def bernoulli_log_lr(k: int, n: int, p1: float, p0: float) -> float:
    """log LR of k successes in n Bernoulli trials, success probability p1 against p0."""
    if n <= 0:
        return 0.0
    out = k * math.log(p1 / p0)
    if n - k:
        out += (n - k) * (math.log1p(-p1) - math.log1p(-p0))
    return out


def _shifted(pi: float, r: float) -> float:
    return r * pi / (r * pi + 1.0 - pi)


def relative_log_lr(
    canary_events: int, stable_events: int, pi: float, tolerance: float, grid: Sequence[float]
) -> list[float]:
    """Per alternative r (a multiple of `tolerance`): log LR of the canary's share of a window's
    events, rate ratio r*tolerance against tolerance. `pi` is the canary's share of exposure."""
    m = canary_events + stable_events
    if m == 0 or not 0.0 < pi < 1.0:
        return [0.0] * len(grid)
    p0 = _shifted(pi, tolerance)
    return [bernoulli_log_lr(canary_events, m, _shifted(pi, tolerance * r), p0) for r in grid]


def bernoulli_grid(p0: float) -> list[float]:
    """Alternatives above a limit p0 for a one-sample test of a proportion."""
    return sorted({min(p0 * r, 1.0 - 1e-9) for r in RATIO_GRID if p0 * r < 1.0} | {0.5, 0.9})


def kl_bernoulli(p: float, q: float) -> float:
    eps = 1e-15
    p = min(max(p, eps), 1 - eps)
    q = min(max(q, eps), 1 - eps)
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def kl_poisson(a: float, b: float) -> float:
    b = max(b, 1e-15)
    return (a * math.log(a / b) if a > 0 else 0.0) - a + b


def upper_bound(k: int, n: int, delta: float, poisson: bool = False) -> float:
    """One-sided upper confidence bound (Chernoff, KL) on a rate per trial: P(rate > bound) <=
    delta. Bernoulli rates are bounded by 1; Poisson rates (events per request) are not."""
    if n <= 0:
        return 1.0 if not poisson else math.inf
    mean = k / n
    budget = math.log(1.0 / delta) / n
    kl = kl_poisson if poisson else kl_bernoulli
    lo, hi = mean, (1.0 if not poisson else max(mean * 2 + 10.0 * budget + 1e-9, 1e-6))
    if not poisson and kl(mean, 1.0 - 1e-15) <= budget:
        return 1.0
    while poisson and kl(mean, hi) <= budget:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if kl(mean, mid) > budget:
            hi = mid
        else:
            lo = mid
    return hi


def quantile_bucket(counts: Sequence[int], q: float) -> int | None:
    """Index of the bucket holding the q-quantile of bucketed counts (None when empty)."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    cum = 0
    for i, c in enumerate(counts):
        cum += c
        if cum >= rank and c:
            return i
    return len(counts) - 1


def above(counts: Sequence[int], bucket: int) -> int:
    """Requests in buckets strictly above `bucket`."""
    return sum(counts[bucket + 1 :])


def bucket_at_least(bounds: Sequence[float], value: float) -> int | None:
    """The first bucket whose upper bound is >= value (requests above it are all > value);
    None when no finite bound reaches value."""
    for i, b in enumerate(bounds):
        if b >= value - 1e-9:
            return i
    return None
