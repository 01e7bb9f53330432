"""The sequential canary judge (stagecoach.judge) and the bake policy (stagecoach.bake)."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagecoach.bake import after_reading, metrics_timing
from stagecoach.config import Gates
from stagecoach.judge import Counts, Judge, JudgeState, Observation
from stagecoach.judge_stats import RATIO_GRID, Settings, relative_log_lr, upper_bound

GROWTH = 1.4
BOUNDS = [GROWTH**i for i in range(65)]  # Cloud Run's layout: scale 1 ms, growth 1.4


def lat_probs(p50: float = 40.0, p95: float = 120.0) -> np.ndarray:
    sigma = math.log(p95 / p50) / 1.6448536269514722
    z = [(math.log(b) - math.log(p50)) / sigma for b in BOUNDS]
    cdf = np.array([0.5 * (1 + math.erf(x / math.sqrt(2))) for x in z])
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return probs / probs.sum()


BASE_LAT = lat_probs()


def draw(
    rng: np.random.Generator, n_mean: float, p: float, lat: np.ndarray = BASE_LAT, logs: float = 0.0
) -> Counts:
    n = int(rng.poisson(n_mean))
    if n == 0:
        return Counts()
    e = int(rng.binomial(n, p))
    return Counts(
        requests=n,
        errors=e,
        error_logs=e + int(rng.poisson(n * (0.001 + logs))),
        latency=[int(x) for x in rng.multinomial(n, lat)],
    )


def obs(canary: Counts, stable: Counts) -> Observation:
    return Observation(canary=canary, stable=stable, bounds=BOUNDS)


# ----------------------------------------------------------------------------- the statistics


@pytest.mark.parametrize("pi", [0.05, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("m", [1, 5, 30])
def test_relative_likelihood_ratio_has_expectation_one_under_the_null(pi: float, m: int) -> None:
    # the canary's share of m events is Binomial(m, pi) for a canary no worse than stable
    for r_index in range(len(RATIO_GRID)):
        expectation = 0.0
        for c in range(m + 1):
            pmf = math.comb(m, c) * pi**c * (1 - pi) ** (m - c)
            expectation += pmf * math.exp(relative_log_lr(c, m - c, pi, 1.0, RATIO_GRID)[r_index])
        assert expectation == pytest.approx(1.0, rel=1e-9)


def test_upper_bound_covers_the_rate() -> None:
    rng = np.random.default_rng(7)
    misses = sum(upper_bound(int(rng.binomial(2000, 0.03)), 2000, 0.05) < 0.03 for _ in range(400))
    assert misses / 400 <= 0.05
    assert upper_bound(0, 1000, 0.01) > 0
    assert upper_bound(3, 1000, 0.01, poisson=True) > 0.003


# ----------------------------------------------------------------------------- error control


@settings(max_examples=12, deadline=None)
@given(
    rate=st.sampled_from([0.0005, 0.005, 0.015, 0.03]),
    rps=st.sampled_from([0.5, 5.0, 50.0]),
    weight=st.sampled_from([10, 50]),
    seed=st.integers(0, 2**16),
)
def test_identical_canary_fails_no_more_often_than_the_level(
    rate: float, rps: float, weight: int, seed: int
) -> None:
    """Over 60 readings per release, an identical canary fails at most `alpha` of the time
    (checked at a large alpha, 0.3, so 150 releases can see a breach of the level)."""
    rng = np.random.default_rng(seed)
    alpha = 0.3
    releases = 150
    failed = 0
    for _ in range(releases):
        judge = Judge(Settings(alpha=alpha))
        judge.start_step(weight)
        for _ in range(60):
            d = judge.observe(
                obs(
                    draw(rng, rps * weight / 100 * 60, rate),
                    draw(rng, rps * (100 - weight) / 100 * 60, rate),
                )
            )
            if d.verdict == "fail":
                failed += 1
                break
    # the level plus three standard errors of the estimate
    assert failed / releases <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / releases)


@settings(max_examples=25, deadline=None)
@given(
    n_c=st.integers(1, 500),
    n_s=st.integers(1, 5000),
    e_c=st.integers(0, 50),
    e_s=st.integers(0, 100),
    extra=st.integers(1, 20),
)
def test_more_canary_errors_never_judge_better(
    n_c: int, n_s: int, e_c: int, e_s: int, extra: int
) -> None:
    e_c = min(e_c, n_c)
    e_s = min(e_s, n_s)
    worse_e = min(e_c + extra, n_c)

    def run(errors: int) -> tuple[str, dict[str, float]]:
        judge = Judge(Settings())
        judge.start_step(10)
        d = judge.observe(
            Observation(
                canary=Counts(requests=n_c, errors=errors, error_logs=errors),
                stable=Counts(requests=n_s, errors=e_s, error_logs=e_s),
            )
        )
        return d.verdict, {e.test: e.log_e for e in d.evidence}

    v1, ev1 = run(e_c)
    v2, ev2 = run(worse_e)
    for test in ("errors_vs_stable", "error_logs_vs_stable", "error_rate_limit"):
        assert ev2[test] >= ev1[test] - 1e-9
    assert not (v1 == "fail" and v2 != "fail")


@settings(max_examples=25, deadline=None)
@given(shift=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_slower_canary_never_judges_better(shift: int, seed: int) -> None:
    """Moving canary requests to slower buckets never lowers the latency evidence."""
    rng = np.random.default_rng(seed)
    history = [(draw(rng, 60, 0.005), draw(rng, 540, 0.005)) for _ in range(4)]

    def run(k: int) -> float:
        judge = Judge(Settings())
        judge.start_step(10)
        d = None
        for canary, stable in history:
            lat = [0] * k + canary.latency[: len(canary.latency) - k]
            lat[-1] += sum(canary.latency[len(canary.latency) - k :])
            d = judge.observe(obs(canary.model_copy(update={"latency": lat}), stable))
        assert d is not None
        return {e.test: e.log_e for e in d.evidence}.get("latency_vs_stable", 0.0)

    assert run(shift) >= run(0) - 1e-9


# ----------------------------------------------------------------------------- behaviour


def test_thirty_percent_errors_fail_at_the_first_reading() -> None:
    judge = Judge(Settings(services=2))
    judge.start_step(10)
    d = judge.observe(
        obs(Counts(requests=40, errors=12, latency=[]), Counts(requests=360, errors=1))
    )
    assert d.verdict == "fail"
    assert any("error rate vs stable" in r for r in d.reasons)


def test_noisy_stable_with_an_equal_canary_passes() -> None:
    rng = np.random.default_rng(3)
    judge = Judge(Settings(services=2))
    for weight in (10, 50):
        judge.start_step(weight)
        for _ in range(5):
            d = judge.observe(
                obs(
                    draw(rng, 600 * weight / 100, 0.015),
                    draw(rng, 600 * (100 - weight) / 100, 0.015),
                )
            )
        assert d.verdict == "pass", d.reasons


def test_three_times_slower_canary_under_absolute_limits_fails() -> None:
    rng = np.random.default_rng(4)
    judge = Judge(Settings(services=2))
    judge.start_step(10)
    slow = lat_probs(120.0, 360.0)  # 3x stable, far below the 5 s and 10 s limits
    verdicts = [
        judge.observe(obs(draw(rng, 60, 0.005, slow), draw(rng, 540, 0.005))).verdict
        for _ in range(6)
    ]
    assert "fail" in verdicts
    failing = judge.decide()
    assert any("latency vs stable" in r for r in failing.reasons)


def test_rising_error_logs_fail_with_unchanged_http_codes() -> None:
    rng = np.random.default_rng(5)
    judge = Judge(Settings(services=2))
    judge.start_step(10)
    verdicts = [
        judge.observe(obs(draw(rng, 60, 0.005, logs=0.2), draw(rng, 540, 0.005))).verdict
        for _ in range(5)
    ]
    assert "fail" in verdicts
    assert any("error logs vs stable" in r for r in judge.decide().reasons)


def test_quiet_canary_is_inconclusive_and_says_what_it_could_detect() -> None:
    judge = Judge(Settings(min_requests=20))
    judge.start_step(10)
    d = judge.observe(obs(Counts(requests=3, latency=[]), Counts(requests=27, latency=[])))
    assert d.verdict == "inconclusive"
    assert "3 canary requests in this step, need 20" in d.reasons[0]
    assert "would have been detected" in d.reasons[0]


def test_watch_at_100_compares_with_the_baseline() -> None:
    rng = np.random.default_rng(6)
    history = Counts()
    for _ in range(60):
        history = history.add(draw(rng, 600, 0.005))
    healthy, bad = Judge(Settings()), Judge(Settings())
    for judge, rate in ((healthy, 0.005), (bad, 0.035)):
        judge.start_step(100)
        judge.set_baseline(history, BOUNDS)
        for _ in range(30):
            d = judge.observe(obs(draw(rng, 600, rate), Counts()))
            if d.verdict == "fail":
                break
    assert healthy.decide().verdict == "pass"
    assert bad.decide().verdict == "fail"
    assert any("error rate vs baseline" in r for r in bad.decide().reasons)


def test_state_round_trips_and_decides_the_same() -> None:
    rng = np.random.default_rng(8)
    judge = Judge(Settings())
    judge.start_step(10)
    windows = [(draw(rng, 60, 0.02), draw(rng, 540, 0.01)) for _ in range(6)]
    for c, s in windows[:3]:
        judge.observe(obs(c, s))
    again = Judge(Settings(), JudgeState.model_validate_json(judge.state.model_dump_json()))
    for c, s in windows[3:]:
        assert judge.observe(obs(c, s)) == again.observe(obs(c, s))


# ----------------------------------------------------------------------------- bake policy


@pytest.mark.parametrize(
    ("verdict", "at_end", "extensions", "gates", "action"),
    [
        ("fail", False, 0, Gates(), "rollback"),
        ("fail", False, 0, Gates(on_failure="pause"), "pause"),
        ("fail", False, 0, Gates(consecutive_breaches=2), "wait"),
        ("pass", False, 0, Gates(), "wait"),
        ("pass", True, 0, Gates(), "advance"),
        ("inconclusive", False, 0, Gates(), "wait"),
        ("inconclusive", True, 0, Gates(), "extend"),
        ("inconclusive", True, 3, Gates(), "pause_inconclusive"),
        ("inconclusive", True, 3, Gates(on_inconclusive="pass"), "advance"),
        ("inconclusive", True, 3, Gates(on_inconclusive="fail"), "rollback"),
        ("inconclusive", True, 3, Gates(on_inconclusive="extend"), "rollback"),
        ("inconclusive", True, 0, Gates(max_extensions=0, on_inconclusive="pass"), "advance"),
    ],
)
def test_bake_policy(
    verdict: str, at_end: bool, extensions: int, gates: Gates, action: str
) -> None:
    assert after_reading(verdict, at_end, 0, extensions, gates).action == action


def test_consecutive_breaches_count_and_reset() -> None:
    gates = Gates(consecutive_breaches=2)
    first = after_reading("fail", False, 0, 0, gates)
    assert (first.action, first.breaches) == ("wait", 1)
    assert after_reading("fail", False, first.breaches, 0, gates).action == "rollback"
    assert after_reading("pass", False, first.breaches, 0, gates).breaches == 0


def test_metrics_timing_by_target() -> None:
    assert metrics_timing(Gates(), "gcp") == (timedelta(seconds=180), timedelta(seconds=60))
    assert metrics_timing(Gates(), "gcpsim") == (timedelta(0), timedelta(seconds=1))
    custom = Gates(metrics_delay=timedelta(seconds=3), metrics_alignment=timedelta(seconds=2))
    assert metrics_timing(custom, "gcpsim") == (timedelta(seconds=3), timedelta(seconds=2))


def test_one_and_a_half_times_slower_body_fails_on_the_median_test() -> None:
    rng = np.random.default_rng(9)
    judge = Judge(Settings(services=2))
    judge.start_step(10)
    slower = lat_probs(60.0, 180.0)
    for _ in range(8):
        d = judge.observe(obs(draw(rng, 600, 0.005, slower), draw(rng, 5400, 0.005)))
        if d.verdict == "fail":
            break
    assert d.verdict == "fail"
    assert any(r.startswith("median latency vs stable") for r in d.reasons)


def test_hard_latency_limit_fails_a_canary_as_slow_as_a_slow_stable() -> None:
    """Nothing to see against stable (both have a 15 s p95), but the 10 s limit holds."""
    rng = np.random.default_rng(10)
    judge = Judge(Settings())
    judge.start_step(50)
    slow = lat_probs(9000.0, 15000.0)
    verdicts = [
        judge.observe(obs(draw(rng, 100, 0.005, slow), draw(rng, 100, 0.005, slow))).verdict
        for _ in range(10)
    ]
    assert "fail" in verdicts
    reasons = judge.decide().reasons
    assert any(r.startswith("latency limit") for r in reasons), reasons
    assert not any("vs stable" in r for r in reasons)
