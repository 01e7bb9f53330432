"""Gate evaluation: a pure function from metric readings and the gate policy to a verdict.

- FAIL when the canary breaches a hard limit: error rate above `max_error_rate`, p95 above
  `max_p95_latency`, or an error rate more than `max_error_rate_increase` above the stable
  revision's. The comparison with stable is statistical: it uses the lower bound of the canary
  error rate's one-sided 95% Wilson interval, so one unlucky error among a few dozen canary
  requests does not read as a regression (and only when stable has enough requests).
- INCONCLUSIVE when the canary has fewer than `min_requests` requests in the window, or sits
  between healthy and hard limits (degraded but not failing).
- PASS when the canary has enough requests and is within the healthy limits.

The workflow decides what a verdict does (consecutive breaches, extend/pass/fail on
inconclusive, rollback/pause on failure); this module only judges one reading.
"""

from __future__ import annotations

import math

from stagecoach.bake import Gates
from stagecoach.payloads.common import Verdict
from stagecoach.payloads.monitoring import GateResult, MetricWindow

Z_ONE_SIDED_95 = 1.6448536269514722


def wilson_lower(errors: int, n: int, z: float = Z_ONE_SIDED_95) -> float:
    """Lower bound of the Wilson score interval for a proportion errors/n."""
    if n <= 0:
        return 0.0
    p = errors / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / denom)


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def evaluate(canary: MetricWindow, stable: MetricWindow | None, gates: Gates) -> GateResult:
    reasons: list[str] = []
    rate = canary.error_rate
    max_p95_ms = gates.max_p95_latency.total_seconds() * 1000
    healthy_p95_ms = gates.healthy_p95_latency.total_seconds() * 1000

    if canary.requests < max(gates.min_requests, 1) or rate is None:
        return GateResult(
            verdict=Verdict.INCONCLUSIVE,
            reasons=[f"only {canary.requests} canary requests, need {gates.min_requests}"],
        )

    if rate > gates.max_error_rate:
        reasons.append(f"error rate {_pct(rate)} > {_pct(gates.max_error_rate)}")
    if canary.p95_ms is not None and canary.p95_ms > max_p95_ms:
        reasons.append(f"p95 {canary.p95_ms:.0f} ms > {max_p95_ms:.0f} ms")
    stable_rate = stable.error_rate if stable is not None else None
    if (
        gates.max_error_rate_increase is not None
        and stable is not None
        and stable_rate is not None
        and stable.requests >= gates.min_requests
        and wilson_lower(canary.errors, canary.requests) - stable_rate
        > gates.max_error_rate_increase
    ):
        reasons.append(
            f"error rate {_pct(rate)} exceeds stable {_pct(stable_rate)} by more than "
            f"{_pct(gates.max_error_rate_increase)} (95% confidence)"
        )
    if reasons:
        return GateResult(verdict=Verdict.FAIL, reasons=reasons)

    if rate > gates.healthy_error_rate:
        reasons.append(f"error rate {_pct(rate)} above healthy {_pct(gates.healthy_error_rate)}")
    if canary.p95_ms is not None and canary.p95_ms > healthy_p95_ms:
        reasons.append(f"p95 {canary.p95_ms:.0f} ms above healthy {healthy_p95_ms:.0f} ms")
    if reasons:
        return GateResult(verdict=Verdict.INCONCLUSIVE, reasons=reasons)

    p95 = f", p95 {canary.p95_ms:.0f} ms" if canary.p95_ms is not None else ""
    return GateResult(
        verdict=Verdict.PASS,
        reasons=[f"{canary.requests} requests, error rate {_pct(rate)}{p95}"],
    )
