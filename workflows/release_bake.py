"""The bake of one traffic step of a release: read the canary's metrics every interval until the
bake window ends, let the judge (stagecoach.judge, or the legacy gates) and the bake policy
(stagecoach.bake) decide: go on, extend, pause for a person, or roll back.

Deterministic: a mixin of `ReleaseRun` (workflows/release_run.py).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow

from workflows.common import API_RETRY, QUICK

with workflow.unsafe.imports_passed_through():
    from activities.monitoring import MonitoringActivities
    from activities.revision_health import RevisionHealthActivities
    from stagecoach.bake import after_reading, metrics_timing
    from stagecoach.gates import evaluate
    from stagecoach.judge import Counts, Judge, Observation, settings_from_gates
    from stagecoach.judge_stats import Settings
    from stagecoach.payloads.common import Outcome, Phase, Verdict
    from stagecoach.payloads.monitoring import (
        CanaryMetrics,
        MetricWindow,
        ReadCanaryMetricsInput,
        Reading,
    )
    from stagecoach.payloads.release import ServicePlan, ServiceStatus
    from stagecoach.payloads.run import RevisionHealth, RevisionHealthInput

from workflows.release_run import (
    MAX_READINGS,
    SEQUENTIAL_JUDGE,
    ContinueAsNew,
    ReleaseRun,
    ReleaseStop,
)


class BakeJudgement(ReleaseRun):
    """Bake a step, read the metrics and judge them."""

    async def _bake(self, plan: ServicePlan, svc: ServiceStatus, i: int) -> None:
        """Read metrics every interval until the bake window ends; gates decide."""
        gates = self.inp.gates
        weight = self.inp.steps[i].weight
        assert svc.bake_until is not None
        while True:
            self._check_abort()
            now = workflow.now()
            if now >= svc.bake_until or (self.promote_requested and self._last_passed(svc)):
                if svc.bake_until > now:
                    self._event(f"{svc.run_service}: bake at {weight}% cut short by promote")
                return
            if workflow.info().get_current_history_length() > self.inp.continue_as_new_after:
                raise ContinueAsNew()
            self._set_phase(Phase.BAKING)
            left = svc.bake_until - now
            self._progress(
                f"{svc.run_service}: baking at {weight}%, {int(left.total_seconds())}s left"
            )
            wait = min(self.inp.interval, left)
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: (
                        self.abort_requested is not None
                        or (self.promote_requested and not self._promote_seen)
                    ),
                    timeout=wait,
                    timeout_summary=(
                        f"{svc.run_service} at {weight}%: wait for reading "
                        f"{svc.reading_count + 1} ({int(left.total_seconds())}s of bake left)"
                    ),
                )
            self._promote_seen = self.promote_requested
            self._check_abort()
            verdict = await self._read(plan, svc, weight)
            if self._sequential():
                await self._apply_policy(plan, svc, weight, verdict)
                continue
            if verdict == Verdict.FAIL:
                svc.breaches += 1
                if svc.breaches >= gates.consecutive_breaches:
                    await self._on_gate_failure(svc, weight)
                    continue
            else:
                svc.breaches = 0
            at_end = workflow.now() >= svc.bake_until
            if at_end and verdict == Verdict.INCONCLUSIVE:
                if gates.on_inconclusive == "fail":
                    raise ReleaseStop(
                        Outcome.ROLLED_BACK,
                        f"{svc.run_service}: gates inconclusive at the end of the {weight}% bake",
                    )
                if gates.on_inconclusive == "extend":
                    if svc.extensions >= gates.max_extensions:
                        raise ReleaseStop(
                            Outcome.ROLLED_BACK,
                            f"{svc.run_service}: gates still inconclusive after "
                            f"{svc.extensions} extensions at {weight}%",
                        )
                    svc.extensions += 1
                    svc.bake_until = workflow.now() + self.inp.interval
                    self._event(f"{svc.run_service}: inconclusive; bake extended by one interval")

    def _sequential(self) -> bool:
        """Whether this run judges with the sequential judge (runs recorded before it did not)."""
        return workflow.patched(SEQUENTIAL_JUDGE)

    async def _check_can_serve(self, plan: ServicePlan, svc: ServiceStatus, weight: int) -> None:
        """Few requests are no sign of a quiet canary when it cannot serve: request_count leaves
        out requests that never reach an instance (not ready, at max instances)."""
        health: RevisionHealth = await workflow.execute_activity_method(
            RevisionHealthActivities.check_revision_health,
            RevisionHealthInput(ref=plan.ref, revision=svc.canary_revision),
            start_to_close_timeout=QUICK,
            retry_policy=API_RETRY,
            summary=f"can {svc.canary_revision} serve at {weight}%?",
        )
        if not health.can_serve:
            raise ReleaseStop(
                Outcome.ROLLED_BACK,
                f"{svc.run_service}: {svc.canary_revision} cannot serve at {weight}% "
                f"({health.reason}); its few requests are no sign of a quiet canary",
            )
        instances = "?" if health.instances is None else str(health.instances)
        self._event(
            f"{svc.run_service}: {svc.canary_revision} is ready and can serve "
            f"({instances} active instances of {health.max_instances or 'the default maximum'}); "
            "its traffic is low"
        )

    def _judge_settings(self) -> Settings:
        return settings_from_gates(self.inp.gates, len(self.inp.services))

    async def _apply_policy(
        self, plan: ServicePlan, svc: ServiceStatus, weight: int, verdict: Verdict
    ) -> None:
        """The bake policy (`stagecoach.bake`) applied to the judge's verdict."""
        gates = self.inp.gates
        at_end = workflow.now() >= svc.bake_until if svc.bake_until else True
        if verdict == Verdict.INCONCLUSIVE and at_end:
            await self._check_can_serve(plan, svc, weight)
        step = after_reading(verdict.value, at_end, svc.breaches, svc.extensions, gates)
        svc.breaches = step.breaches
        reasons = "; ".join(svc.readings[-1].reasons) if svc.readings else ""
        if step.action in ("rollback", "pause") and verdict == Verdict.FAIL:
            await self._on_gate_failure(svc, weight)  # raises on rollback; returns on promote
            judge = Judge(self._judge_settings(), svc.judge)
            judge.reset_evidence()
            svc.judge = judge.state
        elif step.action == "rollback":
            raise ReleaseStop(
                Outcome.ROLLED_BACK,
                f"{svc.run_service}: not enough evidence at {weight}% after {svc.extensions} "
                f"extensions (on_inconclusive: {gates.on_inconclusive}): {reasons}",
            )
        elif step.action == "extend":
            svc.extensions += 1
            svc.bake_until = workflow.now() + self.inp.interval
            self._event(
                f"{svc.run_service}: inconclusive at {weight}%, bake extended by one interval "
                f"({svc.extensions} of {gates.max_extensions}): {reasons}"
            )
        elif step.action == "pause_inconclusive":
            await self._pause(
                svc,
                f"{svc.run_service}: not enough evidence at {weight}% after {svc.extensions} "
                f"extensions: {reasons}",
            )
            svc.bake_until = workflow.now()
            self._event(f"{svc.run_service}: going on without enough evidence (promote)")
        elif step.action == "advance" and verdict == Verdict.INCONCLUSIVE:
            self._event(
                f"{svc.run_service}: passed at {weight}% on thin evidence "
                f"(on_inconclusive: pass): {reasons}"
            )

    async def _read(self, plan: ServicePlan, svc: ServiceStatus, weight: int) -> Verdict:
        if self._sequential():
            return await self._read_sequential(plan, svc, weight)
        window = max(self.inp.interval, timedelta(seconds=1))
        metrics = await self._read_metrics(
            ReadCanaryMetricsInput(
                ref=plan.ref,
                canary_revision=svc.canary_revision,
                stable_revisions=svc.stable_revisions,
                window=window,
            ),
            f"metrics {svc.canary_revision}",
        )
        result = evaluate(metrics.canary, metrics.stable, self.inp.gates)
        self._keep_reading(svc, _reading(svc, weight, metrics, result.verdict, result.reasons))
        return result.verdict

    async def _read_metrics(self, inp: ReadCanaryMetricsInput, summary: str) -> CanaryMetrics:
        # A canary read is one short API call; a local activity keeps a poll to a handful of
        # history events, so long bakes stay far inside Temporal's history limits.
        return await workflow.execute_local_activity_method(
            MonitoringActivities.read_canary_metrics,
            inp,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=API_RETRY,
            summary=summary,
        )

    async def _read_sequential(self, plan: ServicePlan, svc: ServiceStatus, weight: int) -> Verdict:
        """One reading for the sequential judge: the complete metric data since the last one."""
        gates = self.inp.gates
        delay, alignment = metrics_timing(gates, plan.ref.target.kind)
        judge = Judge(self._judge_settings(), svc.judge)
        since = svc.canary_since or workflow.now()
        if weight == 100 and judge.needs_baseline:
            # no stable traffic from here on: compare with stable's own past
            base = await self._read_metrics(
                ReadCanaryMetricsInput(
                    ref=plan.ref,
                    canary_revision="",
                    stable_revisions=svc.stable_revisions,
                    window=gates.baseline_window,
                    start=since - gates.baseline_window,
                    end=since,
                    alignment=alignment,
                ),
                f"baseline of {', '.join(svc.stable_revisions) or 'no stable revision'} "
                f"before {since:%H:%M:%S}",
            )
            judge.set_baseline(_counts(base.stable), base.bounds)
            b = judge.state.baseline or Counts()
            self._event(
                f"{svc.run_service}: baseline for the watch at 100%: {b.requests} requests, "
                f"{b.errors} 5xx, {b.error_logs} ERROR logs of the stable revisions before "
                "the release and during its earlier steps"
            )
        start = svc.window_end or since
        m = await self._read_metrics(
            ReadCanaryMetricsInput(
                ref=plan.ref,
                canary_revision=svc.canary_revision,
                stable_revisions=svc.stable_revisions,
                window=self.inp.interval,
                start=start,
                delay=delay,
                alignment=alignment,
            ),
            f"{svc.canary_revision} at {weight}%: reading {svc.reading_count + 1}",
        )
        if m.end > m.start:
            decision = judge.observe(
                Observation(canary=_counts(m.canary), stable=_counts(m.stable), bounds=m.bounds)
            )
            svc.window_end = m.end
        else:
            decision = judge.decide()
            decision.reasons.append(f"no complete metric data since {start:%H:%M:%S} yet")
        svc.judge = judge.state
        verdict = Verdict(decision.verdict)
        reading = _reading(svc, weight, m, verdict, decision.reasons)
        stable = m.stable or MetricWindow()
        reading = reading.model_copy(
            update={
                "window_start": m.start,
                "window_end": m.end,
                "canary_errors": m.canary.errors,
                "canary_error_logs": m.canary.error_logs,
                "stable_errors": stable.errors,
                "stable_error_logs": stable.error_logs,
                "evidence": [e.line for e in decision.evidence],
            }
        )
        self._keep_reading(svc, reading)
        return verdict

    def _keep_reading(self, svc: ServiceStatus, reading: Reading) -> None:
        for earlier in svc.readings:
            if earlier.verdict == Verdict.PASS:
                earlier.evidence = []  # the newest reading carries the cumulative evidence
        svc.readings.append(reading)
        svc.reading_count += 1
        keep = [r for r in svc.readings[:-MAX_READINGS] if r.verdict == Verdict.FAIL]
        svc.readings = keep + svc.readings[-MAX_READINGS:]
        if reading.verdict != Verdict.PASS:
            self._event(
                f"{svc.run_service} at {reading.weight}%: {reading.verdict.value}: "
                + "; ".join(reading.reasons)
            )

    def _last_passed(self, svc: ServiceStatus) -> bool:
        """May a promote cut this bake short? Once the judge passes; with the sequential judge,
        also on thin evidence (a person's promote overrides), never on a failing reading."""
        if not svc.readings:
            return False
        verdict = svc.readings[-1].verdict
        return verdict == Verdict.PASS or (verdict == Verdict.INCONCLUSIVE and self._sequential())

    async def _on_gate_failure(self, svc: ServiceStatus, weight: int) -> None:
        reasons = "; ".join(svc.readings[-1].reasons)
        message = f"{svc.run_service}: gate failed at {weight}%: {reasons}"
        if self.inp.gates.on_failure == "rollback":
            raise ReleaseStop(Outcome.ROLLED_BACK, message)
        await self._pause(svc, message)
        svc.breaches = 0
        svc.bake_until = workflow.now()
        self._event(f"{svc.run_service}: gate failure overridden by promote")


def _counts(w: MetricWindow | None) -> Counts:
    if w is None:
        return Counts()
    return Counts(
        requests=w.requests, errors=w.errors, error_logs=w.error_logs, latency=list(w.latency)
    )


def _reading(
    svc: ServiceStatus, weight: int, m: CanaryMetrics, verdict: Verdict, reasons: list[str]
) -> Reading:
    stable = m.stable
    return Reading(
        at=workflow.now(),
        service=svc.run_service,
        weight=weight,
        canary_requests=m.canary.requests,
        canary_error_rate=m.canary.error_rate,
        canary_p95_ms=m.canary.p95_ms,
        stable_requests=stable.requests if stable else 0,
        stable_error_rate=stable.error_rate if stable else None,
        stable_p95_ms=stable.p95_ms if stable else None,
        verdict=verdict,
        reasons=reasons,
    )
