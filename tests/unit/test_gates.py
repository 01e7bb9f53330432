"""Gate evaluation: examples from the brief and properties over all readings."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from stagecoach.config import Gates
from stagecoach.gates import evaluate, wilson_lower
from stagecoach.payloads.common import Verdict
from stagecoach.payloads.monitoring import MetricWindow

GATES = Gates()  # brief: healthy < 1% and p95 < 5 s; roll back > 5% or p95 > 10 s


def w(requests: int, errors: int = 0, p95: float | None = 100.0) -> MetricWindow:
    return MetricWindow(requests=requests, errors=errors, p95_ms=p95)


def test_healthy_canary_passes() -> None:
    r = evaluate(w(500, 2, 180), w(4500, 9, 170), GATES)
    assert r.verdict == Verdict.PASS


def test_error_rate_above_max_fails_with_reason() -> None:
    r = evaluate(w(500, 40), w(4500, 9), GATES)
    assert r.verdict == Verdict.FAIL
    assert any("error rate 8.00% > 5.00%" in x for x in r.reasons)


def test_p95_above_max_fails() -> None:
    r = evaluate(w(500, 0, 12_000), None, GATES)
    assert r.verdict == Verdict.FAIL
    assert "p95 12000 ms > 10000 ms" in r.reasons[0]


def test_increase_over_stable_fails_below_absolute_max() -> None:
    r = evaluate(w(1000, 40), w(9000, 0), GATES)  # 4% vs 0%: under 5% but +4 points
    assert r.verdict == Verdict.FAIL
    assert "exceeds stable" in r.reasons[0]


def test_one_unlucky_error_in_a_small_canary_sample_is_not_a_regression() -> None:
    r = evaluate(w(30, 1), w(270, 0), GATES)  # 3.3% on 30 requests: not significant
    assert r.verdict != Verdict.FAIL


def test_increase_ignored_when_stable_sample_too_small() -> None:
    r = evaluate(w(1000, 40), w(5, 0), GATES)
    assert r.verdict == Verdict.INCONCLUSIVE  # degraded (4% > 1%) but no hard breach


def test_too_few_requests_is_inconclusive() -> None:
    r = evaluate(w(3, 3), None, GATES)
    assert r.verdict == Verdict.INCONCLUSIVE
    assert "only 3 canary requests" in r.reasons[0]


def test_degraded_between_healthy_and_max_is_inconclusive() -> None:
    r = evaluate(w(1000, 20, 6000), None, GATES)  # 2% errors, p95 6 s
    assert r.verdict == Verdict.INCONCLUSIVE
    assert len(r.reasons) == 2


def test_missing_latency_does_not_block_a_pass() -> None:
    assert evaluate(w(100, 0, None), None, GATES).verdict == Verdict.PASS


windows = st.builds(
    lambda n, frac, p95: MetricWindow(requests=n, errors=int(n * frac), p95_ms=p95),
    st.integers(0, 100_000),
    st.floats(0, 1),
    st.one_of(st.none(), st.floats(0, 60_000)),
)
gate_policies = st.builds(
    lambda hr, extra, hp, extra_p: Gates(
        healthy_error_rate=hr,
        max_error_rate=min(1.0, hr + extra),
        healthy_p95_latency=timedelta(milliseconds=hp),
        max_p95_latency=timedelta(milliseconds=hp + extra_p),
    ),
    st.floats(0, 0.5),
    st.floats(0, 0.5),
    st.integers(1, 20_000),
    st.integers(0, 20_000),
)


@given(windows, st.one_of(st.none(), windows), gate_policies)
def test_verdict_always_has_reasons(c: MetricWindow, s: MetricWindow | None, g: Gates) -> None:
    assert evaluate(c, s, g).reasons


@given(windows, st.one_of(st.none(), windows), gate_policies)
def test_fail_iff_a_hard_limit_is_breached(
    c: MetricWindow, s: MetricWindow | None, g: Gates
) -> None:
    r = evaluate(c, s, g)
    if c.requests < max(g.min_requests, 1):
        assert r.verdict == Verdict.INCONCLUSIVE
        return
    rate = c.errors / c.requests
    hard = rate > g.max_error_rate or (
        c.p95_ms is not None and c.p95_ms > g.max_p95_latency.total_seconds() * 1000
    )
    if hard:
        assert r.verdict == Verdict.FAIL
    if r.verdict == Verdict.PASS:
        assert rate <= g.healthy_error_rate
        assert c.p95_ms is None or c.p95_ms <= g.healthy_p95_latency.total_seconds() * 1000


@given(windows, gate_policies, st.integers(0, 1000))
def test_more_errors_never_improve_the_verdict(c: MetricWindow, g: Gates, extra: int) -> None:
    order = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.FAIL: 2}
    worse = MetricWindow(
        requests=c.requests, errors=min(c.requests, c.errors + extra), p95_ms=c.p95_ms
    )
    assert order[evaluate(worse, None, g).verdict] >= order[evaluate(c, None, g).verdict]


@given(st.integers(0, 10_000), st.integers(1, 10_000))
def test_wilson_lower_bound_is_below_the_observed_rate(errors: int, n: int) -> None:
    errors = min(errors, n)
    lb = wilson_lower(errors, n)
    assert 0 <= lb <= errors / n + 1e-12
