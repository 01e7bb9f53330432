"""The canary judge: cumulative, relative, anytime-valid. Pure (no I/O, no clock, no randomness).

Fed one reading at a time (`Judge.observe`): what the canary revision and the stable revisions
served in one metric window (requests, 5xx, ERROR log entries, request_latencies buckets), the
windows disjoint and in order. It keeps the evidence of the whole canary life in a `JudgeState`
(a pydantic model, so it rides in the release status across continue-as-new) and answers
FAIL (a regression is shown), PASS (nothing shown, and the step has enough evidence) or
INCONCLUSIVE (nothing shown yet, too little evidence), with the reasons and the evidence.

The tests (test martingales against stable, against hard limits and, at 100%, against a
historical baseline) and why their error rate holds however often the judge looks are in
stagecoach.judge_stats; this module feeds them the readings and assembles the verdict.

Low traffic is not failure: a step has enough evidence when the canary served `min_requests`
requests in it; until then the verdict is INCONCLUSIVE, and the bake policy (`stagecoach.bake`)
extends, pauses, passes or fails as configured, saying what the judge could have detected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel

from stagecoach.judge_stats import (
    LATENCY_TESTS,
    P95_TAIL,
    RATIO_GRID,
    TESTS,
    Settings,
    above,
    bernoulli_grid,
    bernoulli_log_lr,
    bucket_at_least,
    mixture_log_e,
    quantile_bucket,
    relative_log_lr,
    upper_bound,
)

LABELS = {
    "errors_vs_stable": "error rate vs stable",
    "errors_vs_baseline": "error rate vs baseline",
}


def label(test: str) -> str:
    """A test's name as people read it in reasons and evidence."""
    return LABELS.get(test, test.replace("_", " "))


SUSPICIOUS = 0.5  # a test past half its bar (in log) keeps a step from passing: more evidence


class Counts(BaseModel):
    """What a revision group served in a window (or, summed, in several)."""

    requests: int = 0
    errors: int = 0  # 5xx responses
    error_logs: int = 0  # log entries of severity ERROR or worse
    latency: list[int] = []  # request_latencies bucket counts, in the judge's bucket layout

    def add(self, other: Counts) -> Counts:
        a, b = self.latency, other.latency
        if len(a) < len(b):
            a, b = b, a
        lat = list(a)
        for i, c in enumerate(b):
            lat[i] += c
        return Counts.model_construct(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            error_logs=self.error_logs + other.error_logs,
            latency=lat,
        )

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


class Observation(BaseModel):
    """One reading: canary and stable over one window, disjoint from the windows before it.

    `bounds` are the upper bounds (ms) of latency buckets 0..N-2 (bucket N-1 is the overflow);
    `Counts.latency` follows that layout.
    """

    canary: Counts = Counts()
    stable: Counts = Counts()
    bounds: list[float] = []


class Evidence(BaseModel):
    """One test's standing: the comparison, its e-value against the bar, and what it rests on."""

    test: str
    log_e: float  # log of the mixture martingale's value
    bar: float  # log(1/alpha_test): rejection at or above
    canary: str  # e.g. "3.10% (31/1000)"
    reference: str  # stable's, the baseline's, or the limit
    rejected: bool = False

    @property
    def line(self) -> str:
        """One line for a person: what was compared, the evidence and the bar."""
        verdict = "FAILS" if self.rejected else "holds"
        return (
            f"{label(self.test)}: canary {self.canary} vs {self.reference}; "
            f"evidence {_fmt_e(self.log_e)}, fails at {_fmt_e(self.bar)}: {verdict}"
        )


class Decision(BaseModel):
    verdict: str  # "pass" | "fail" | "inconclusive"
    reasons: list[str]
    evidence: list[Evidence] = []


class JudgeState(BaseModel):
    """Everything the judge knows; small, and serialisable with the release status."""

    bounds: list[float] = []
    canary: Counts = Counts()  # the canary's whole life
    stable: Counts = Counts()
    step_canary: Counts = Counts()  # the current step
    step_stable: Counts = Counts()
    step_weight: int = 0
    readings: int = 0
    log_lr: dict[str, list[float]] = {}  # test -> cumulative log likelihood ratio per alternative
    baseline: Counts | None = None  # set at the first step without stable traffic
    baseline_refs: dict[str, float] = {}  # frozen reference rates/thresholds of the baseline


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}%"


def _rate(k: int, n: int) -> str:
    return f"{_pct(k / n if n else None)} ({k}/{n})"


def _ms(x: float) -> str:
    return f"{x / 1000:.1f} s" if x >= 1000 else f"{x:.0f} ms"


# ----------------------------------------------------------------------------- the judge


class Judge:
    """Applies readings to a `JudgeState` and decides. The state is the judge: a judge made
    again from a state (after continue-as-new, or in a replay) decides exactly as before."""

    def __init__(self, settings: Settings, state: JudgeState | None = None) -> None:
        self.s = settings
        self.state = state if state is not None else JudgeState()

    # -- lifecycle

    def start_step(self, weight: int) -> None:
        """A new traffic step: the evidence carries on, the step's sufficiency starts anew."""
        st = self.state
        st.step_weight = weight
        st.step_canary = Counts()
        st.step_stable = Counts()

    def reset_evidence(self) -> None:
        """A person overrode a failed judgement (promote after pause): start the tests afresh."""
        self.state.log_lr = {}

    @property
    def needs_baseline(self) -> bool:
        return self.state.baseline is None

    def set_baseline(self, history: Counts, bounds: Sequence[float] = ()) -> None:
        """The stable revisions' metrics from before the release; what stable served during the
        earlier steps is added. Frozen from here on (the references must not move with data the
        tests then judge)."""
        st = self.state
        if not st.bounds and bounds:
            st.bounds = list(bounds)
        base = history.add(st.stable)
        st.baseline = base
        refs: dict[str, float] = {}
        s = self.s
        if base.requests > 0:
            refs["errors"] = upper_bound(
                base.errors, base.requests, s.alpha_test("errors_vs_baseline") / 2
            )
            refs["error_logs"] = upper_bound(
                base.error_logs,
                base.requests,
                s.alpha_test("error_logs_vs_baseline") / 2,
                poisson=True,
            )
        lat_n = sum(base.latency)
        b = quantile_bucket(base.latency, self.s.latency_quantile)
        if lat_n > 0 and b is not None and b < len(st.bounds):
            canary_b = bucket_at_least(st.bounds, st.bounds[b] * self.s.latency_tolerance)
            if canary_b is not None:
                refs["slow_bucket"] = float(canary_b)
                refs["slow"] = upper_bound(
                    above(base.latency, b), lat_n, s.alpha_test("latency_vs_baseline") / 2
                )
                refs["slow_ms"] = st.bounds[canary_b]
        st.baseline_refs = refs

    # -- readings

    def observe(self, obs: Observation) -> Decision:
        st = self.state
        s = self.s
        if obs.bounds and not st.bounds:
            st.bounds = list(obs.bounds)
        layout_ok = not obs.bounds or obs.bounds == st.bounds
        canary = obs.canary if layout_ok else obs.canary.model_copy(update={"latency": []})
        stable = obs.stable if layout_ok else obs.stable.model_copy(update={"latency": []})

        prior_stable_latency = list(st.stable.latency)
        c, sb = canary, stable

        # relative tests: only while stable serves alongside
        if c.requests and sb.requests:
            pi = c.requests / (c.requests + sb.requests)
            self._add(
                "errors_vs_stable",
                relative_log_lr(c.errors, sb.errors, pi, s.error_tolerance, RATIO_GRID),
            )
            self._add(
                "error_logs_vs_stable",
                relative_log_lr(c.error_logs, sb.error_logs, pi, s.error_tolerance, RATIO_GRID),
            )
        lat_c, lat_s = sum(c.latency), sum(sb.latency)
        for test, q in LATENCY_TESTS.items():
            b = quantile_bucket(prior_stable_latency, q)
            if not (lat_c and lat_s and b is not None and b < len(st.bounds)):
                continue
            cb = bucket_at_least(st.bounds, st.bounds[b] * s.latency_tolerance)
            if cb is not None:
                pi = lat_c / (lat_c + lat_s)
                slow_c, slow_s = above(c.latency, cb), above(sb.latency, b)
                self._add(test, relative_log_lr(slow_c, slow_s, pi, 1.0, RATIO_GRID))

        # hard limits
        if c.requests:
            p0 = s.max_error_rate
            if 0 < p0 < 1:
                self._add(
                    "error_rate_limit",
                    [bernoulli_log_lr(c.errors, c.requests, p1, p0) for p1 in bernoulli_grid(p0)],
                )
        lim = bucket_at_least(st.bounds, s.max_p95_ms) if st.bounds else None
        if lat_c and lim is not None:
            self._add(
                "latency_limit",
                [
                    bernoulli_log_lr(above(c.latency, lim), lat_c, p1, P95_TAIL)
                    for p1 in bernoulli_grid(P95_TAIL)
                ],
            )

        # historical baseline: only where stable no longer serves
        refs = st.baseline_refs
        if st.baseline is not None and not sb.requests and c.requests:
            if "errors" in refs:
                p0 = min(refs["errors"] * s.error_tolerance, 1 - 1e-9)
                if p0 < 1 - 1e-6:
                    self._add(
                        "errors_vs_baseline",
                        [
                            bernoulli_log_lr(c.errors, c.requests, p1, p0)
                            for p1 in bernoulli_grid(p0)
                        ],
                    )
            if "error_logs" in refs and math.isfinite(refs["error_logs"]):
                lam0 = max(refs["error_logs"] * s.error_tolerance, 1e-9)
                self._add(
                    "error_logs_vs_baseline",
                    [
                        c.error_logs * math.log(r) - c.requests * lam0 * (r - 1.0)
                        for r in RATIO_GRID
                    ],
                )
            if "slow" in refs and lat_c:
                p0 = min(refs["slow"], 1 - 1e-9)
                if p0 < 1 - 1e-6:
                    slow = above(c.latency, int(refs["slow_bucket"]))
                    self._add(
                        "latency_vs_baseline",
                        [bernoulli_log_lr(slow, lat_c, p1, p0) for p1 in bernoulli_grid(p0)],
                    )

        st.canary = st.canary.add(canary)
        st.stable = st.stable.add(stable)
        st.step_canary = st.step_canary.add(canary)
        st.step_stable = st.step_stable.add(stable)
        st.readings += 1
        return self.decide()

    def _add(self, test: str, log_lr: list[float]) -> None:
        cur = self.state.log_lr.get(test)
        if cur is None or len(cur) != len(log_lr):
            cur = [0.0] * len(log_lr)
        self.state.log_lr[test] = [a + b for a, b in zip(cur, log_lr, strict=True)]

    # -- decisions

    def evidence(self) -> list[Evidence]:
        st, s = self.state, self.s
        out: list[Evidence] = []
        c, sb = st.canary, st.stable
        refs = st.baseline_refs
        lat_c, lat_s = sum(c.latency), sum(sb.latency)
        for test in TESTS:
            lr = st.log_lr.get(test)
            if lr is None:
                continue
            log_e = mixture_log_e(lr)
            bar = s.bar(test)
            if test == "errors_vs_stable":
                can, ref = _rate(c.errors, c.requests), f"stable {_rate(sb.errors, sb.requests)}"
                ref += f", tolerance x{s.error_tolerance:g}"
            elif test == "error_logs_vs_stable":
                can = f"{c.error_logs} ERROR logs in {c.requests} requests"
                ref = f"stable {sb.error_logs} in {sb.requests}, tolerance x{s.error_tolerance:g}"
            elif test in LATENCY_TESTS:
                q = LATENCY_TESTS[test]
                can = f"p{q * 100:.0f} {self._q_ms(c.latency, q)}"
                ref = (
                    f"stable p{q * 100:.0f} {self._q_ms(sb.latency, q)}, "
                    f"tolerance x{s.latency_tolerance:g} ({lat_c} vs {lat_s} requests)"
                )
            elif test == "error_rate_limit":
                can, ref = _rate(c.errors, c.requests), f"limit {_pct(s.max_error_rate)}"
            elif test == "latency_limit":
                can = f"p95 {self._q_ms(c.latency, 0.95)}"
                ref = f"limit {_ms(s.max_p95_ms)}"
            elif test == "errors_vs_baseline":
                base = st.baseline or Counts()
                can = _rate(c.errors, c.requests)
                ref = (
                    f"before the release {_rate(base.errors, base.requests)} "
                    f"(upper bound {_pct(refs.get('errors'))}), "
                    f"tolerance x{s.error_tolerance:g}"
                )
            elif test == "error_logs_vs_baseline":
                base = st.baseline or Counts()
                can = f"{c.error_logs} ERROR logs in {c.requests} requests"
                ref = f"before the release {base.error_logs} in {base.requests}"
            else:
                can = f"{_pct(self._slow_share())} slower than {_ms(refs.get('slow_ms', 0.0))}"
                ref = f"before the release at most {_pct(refs.get('slow'))}"
            out.append(
                Evidence(
                    test=test,
                    log_e=log_e,
                    bar=bar,
                    canary=can,
                    reference=ref,
                    rejected=log_e >= bar,
                )
            )
        return out

    def _slow_share(self) -> float | None:
        c = self.state.canary
        n = sum(c.latency)
        b = self.state.baseline_refs.get("slow_bucket")
        return above(c.latency, int(b)) / n if n and b is not None else None

    def _q_ms(self, counts: Sequence[int], q: float | None = None) -> str:
        b = quantile_bucket(counts, self.s.latency_quantile if q is None else q)
        bounds = self.state.bounds
        if b is None or not bounds:
            return "n/a"
        if b >= len(bounds):
            return f"> {_ms(bounds[-1])}"
        return f"<= {_ms(bounds[b])}"

    def decide(self) -> Decision:
        st, s = self.state, self.s
        ev = self.evidence()
        failed = [e for e in ev if e.rejected]
        level = f"false-rollback level {s.alpha:g}"
        if failed:
            reasons = [
                f"{label(e.test)}: canary {e.canary} vs {e.reference}; "
                f"evidence {_fmt_e(e.log_e)} >= {_fmt_e(e.bar)} ({level})"
                for e in failed
            ]
            return Decision(verdict="fail", reasons=reasons, evidence=ev)
        n = st.step_canary.requests
        if n < max(s.min_requests, 1):
            return Decision(
                verdict="inconclusive",
                reasons=[
                    f"{n} canary requests in this step, need {s.min_requests}; " + self.detectable()
                ],
                evidence=ev,
            )
        strongest = max(ev, key=lambda e: e.log_e / e.bar if e.bar else 0.0, default=None)
        if strongest is not None and strongest.log_e >= SUSPICIOUS * strongest.bar:
            return Decision(
                verdict="inconclusive",
                reasons=[
                    f"{label(strongest.test)} is leaning towards a regression "
                    f"(canary {strongest.canary} vs {strongest.reference}; evidence "
                    f"{_fmt_e(strongest.log_e)} of {_fmt_e(strongest.bar)}): needs more readings"
                ],
                evidence=ev,
            )
        detail = (
            f"; strongest: {label(strongest.test)} {_fmt_e(strongest.log_e)} of "
            f"{_fmt_e(strongest.bar)}"
            if strongest
            else ""
        )
        return Decision(
            verdict="pass",
            reasons=[
                f"no regression shown in {st.canary.requests} canary requests "
                f"({n} in this step){detail}"
            ],
            evidence=ev,
        )

    def detectable(self) -> str:
        """What the evidence so far could have shown: the smallest canary error rate that, with
        the requests seen, would already have failed the hard limit."""
        n = self.state.canary.requests
        p0 = self.s.max_error_rate
        if n == 0 or not 0 < p0 < 1:
            return "no canary requests yet, nothing could have been detected"
        grid = bernoulli_grid(p0)
        bar = self.s.bar("error_rate_limit")
        for k in range(n + 1):
            if mixture_log_e([bernoulli_log_lr(k, n, p1, p0) for p1 in grid]) >= bar:
                return (
                    f"so far only an error rate of {_pct(k / n)} ({k} of {n}) or more "
                    "would have been detected"
                )
        return f"with {n} canary requests not even 100% errors would have been detected"


def _fmt_e(log_e: float) -> str:
    if log_e > 700:
        return "e^" + f"{log_e:.0f}"
    v = math.exp(log_e)
    return f"{v:.3g}"


def settings_from_gates(gates: object, services: int) -> Settings:
    """The judge's settings from `stagecoach.config.Gates` (duck-typed: workflow payloads and
    the benchmark carry the same fields)."""
    g = gates
    return Settings(
        alpha=float(getattr(g, "false_rollback_rate", 0.01)),
        services=max(services, 1),
        error_tolerance=float(getattr(g, "error_tolerance", 1.0)),
        latency_tolerance=float(getattr(g, "latency_tolerance", 1.0)),
        max_error_rate=float(getattr(g, "max_error_rate", 0.05)),
        max_p95_ms=g.max_p95_latency.total_seconds() * 1000,  # type: ignore[attr-defined]
        min_requests=int(getattr(g, "min_requests", 20)),
    )
