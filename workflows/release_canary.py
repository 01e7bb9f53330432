"""The canary rollout of one service in a release: snapshot the live traffic and create the
canary revision (no traffic, tag `canary`), smoke-test it, then for each traffic step wait for
approval and out freeze windows, shift, and bake (workflows/release_bake.py). Resumable from
the service's state after continue-as-new.

Deterministic: a mixin of `ReleaseRun` (workflows/release_run.py).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.common import API_RETRY, QUICK, TRAFFIC_RETRY, error_message

with workflow.unsafe.imports_passed_through():
    from activities.cloud_run import CloudRunActivities
    from activities.smoke import smoke_test
    from stagecoach.bounds import clip
    from stagecoach.freeze import frozen_at
    from stagecoach.judge import Judge
    from stagecoach.payloads.common import Outcome, Phase, TrafficTarget
    from stagecoach.payloads.release import ServicePlan, ServiceStatus
    from stagecoach.payloads.run import (
        CreateRevisionResult,
        ServiceState,
        SmokeTestInput,
        SmokeTestResult,
    )
    from stagecoach.splits import canary_split, describe, pin_latest, serving_revisions

from workflows.release_bake import BakeJudgement
from workflows.release_run import (
    APPROVAL_REMINDER,
    APPROVAL_TIMER,
    CANARY_TAG,
    FREEZE_WINDOWS,
    HEARTBEAT,
    LONG,
    SNAPSHOT_IN_CREATE,
    ReleaseStop,
)


class CanaryRollout(BakeJudgement):
    """One service's canary, step by step."""

    async def _rollout(self, plan: ServicePlan, svc: ServiceStatus) -> None:
        """One service's canary; resumable from `svc.state` after continue-as-new."""
        try:
            if svc.state == "pending":
                await self._snapshot_and_create(plan, svc)
            if svc.state == "created":
                await self._smoke_test(plan, svc)
            steps = self.inp.steps
            while svc.state in ("smoke_tested", "shifting"):
                i = svc.step + 1 if svc.bake_until is None else svc.step
                if i >= len(steps):
                    break
                if svc.bake_until is None and self.promote_requested and svc.step >= 0:
                    i = len(steps) - 1  # promote: straight to the last step (approval still holds)
                if svc.bake_until is None:
                    await self._await_approval(steps[i].weight)
                    await self._wait_freeze(svc, steps[i].weight)
                    await self._shift(plan, svc, i)
                    bake = timedelta(0) if self.promote_requested else steps[i].bake
                    svc.bake_until = workflow.now() + bake
                    svc.extensions = 0
                await self._bake(plan, svc, i)
                svc.bake_until = None
            svc.state = "promoted"
            self._event(f"{svc.run_service}: {svc.canary_revision} promoted to 100%")
        except ReleaseStop as stop:
            svc.state = "failed" if stop.outcome == Outcome.FAILED else "rolled_back"
            svc.error = str(stop)
            raise
        except (ActivityError, ApplicationError) as err:
            # a local activity's (ReadCanaryMetrics) non-retryable failure arrives as a bare
            # ApplicationError: it must stop the service and roll back like any other failure
            svc.state = "failed"
            svc.error = error_message(err)
            raise ReleaseStop(Outcome.FAILED, f"{svc.run_service}: {svc.error}") from err

    async def _snapshot_and_create(self, plan: ServicePlan, svc: ServiceStatus) -> None:
        self._set_phase(Phase.DEPLOYING)
        # CreateRevision reports the traffic it found (one read fewer per service); histories
        # from before that still replay the separate GetServiceState read.
        folded = workflow.patched(SNAPSHOT_IN_CREATE)
        if not folded:
            self._progress(f"{svc.run_service}: reading live traffic")
            live: ServiceState = await workflow.execute_activity_method(
                CloudRunActivities.get_service_state,
                plan.ref,
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary=f"snapshot {svc.run_service}",
            )
            self._keep_snapshot(svc, pin_latest(live.traffic, live.latest_ready_revision))
        self._progress(f"{svc.run_service}: creating {plan.revision} (no traffic, tag canary)")
        created: CreateRevisionResult = await workflow.execute_activity_method(
            CloudRunActivities.create_revision,
            plan.create_input(CANARY_TAG, image=svc.image),
            start_to_close_timeout=LONG,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=API_RETRY,
            summary=f"create {plan.revision}",
        )
        if folded:
            # the snapshot is the rollback target: from here on the service counts as touched
            self._keep_snapshot(svc, created.before)
        svc.canary_revision = created.revision
        svc.tag_url = created.tag_url
        svc.state = "created"
        self._event(f"{svc.run_service}: revision {created.revision} ready at {created.tag_url}")

    def _keep_snapshot(self, svc: ServiceStatus, snapshot: list[TrafficTarget]) -> None:
        svc.snapshot = snapshot
        svc.stable_revisions = serving_revisions(snapshot)
        self._event(f"{svc.run_service}: live traffic {describe(snapshot)}")

    async def _smoke_test(self, plan: ServicePlan, svc: ServiceStatus) -> None:
        if plan.smoke == "none" and workflow.patched("smoke-route"):
            svc.state = "smoke_tested"
            self._event(
                f"{svc.run_service}: NO smoke test (smoke: none; ingress {plan.ingress}, so its "
                "tag URL answers only inside the VPC); the gates judge it from traffic alone"
            )
            return
        self._set_phase(Phase.SMOKE_TESTING)
        self._progress(f"{svc.run_service}: smoke-testing {svc.tag_url}{plan.health_path}")
        res: SmokeTestResult = await workflow.execute_activity(
            smoke_test,
            SmokeTestInput(url=svc.tag_url, path=plan.health_path),
            start_to_close_timeout=QUICK,
            retry_policy=API_RETRY,
            summary=f"smoke {svc.canary_revision}",
        )
        if not res.ok:
            raise ReleaseStop(
                Outcome.FAILED,
                f"{svc.run_service}: smoke test of {svc.canary_revision} failed "
                f"(HTTP {res.status} {res.detail})",
            )
        svc.state = "smoke_tested"
        self._event(f"{svc.run_service}: smoke test passed (HTTP {res.status})")

    def _approval_weight(self) -> int | None:
        """The step weight from which approval is needed (the worker's policy, never the
        input); a switch release under `restore_requires_approval`: before its first step."""
        policy = self.policy
        if policy is None or policy.approval is None:
            return None
        if self.inp.recovery is not None and policy.restore_requires_approval:
            return self.inp.steps[0].weight
        return policy.approval.before_weight

    async def _await_approval(self, weight: int) -> None:
        assert self.policy is not None
        approval = self.policy.approval
        need = self._approval_weight()
        if approval is None or need is None or self._approved(weight):
            return
        # the legacy rule (histories from before POLICY_FROM_WORKER) asked at that weight only;
        # now every step from that weight on needs it (steps or a promote cannot skip it)
        if (weight != need) if self._legacy_policy else (weight < need):
            return
        self.st.awaiting_approval_for = weight
        self._set_phase(Phase.AWAITING_APPROVAL)
        who = " or ".join(approval.approvers)
        service = next(
            (s.run_service for s in self.st.services if s.name == self.st.current_service),
            "the release",
        )
        self._progress(
            f"WAITING FOR APPROVAL of {service} before {weight}% by {who}: "
            f"python starter.py approve {self.inp.env} --by NAME --comment '...' "
            "(or abort to roll back)"
        )
        self._event(f"awaiting approval by {who} before {weight}%")
        await self._notify(
            "awaiting_approval",
            f"Release {self.inp.version} to {self.inp.env} awaits approval ({who}) "
            f"before {weight}%",
        )

        def answered() -> bool:
            return self._approved(weight) or self.abort_requested is not None

        if workflow.patched(APPROVAL_TIMER):
            # a timer whose summary says who is awaited and how to approve: visible in the
            # Web UI's default page (event history and timeline), not only in User Metadata
            while not answered():
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        answered,
                        timeout=APPROVAL_REMINDER,
                        timeout_summary=clip(self.st.progress, 200),
                    )
        else:
            await workflow.wait_condition(answered)
        self.st.awaiting_approval_for = None
        self._check_abort()

    # ------------------------------------------------------------------ freeze windows

    def _record_freeze_override(self) -> None:
        ov = self.inp.freeze_override
        if ov is None:
            return
        self.st.freeze_override = ov
        self._event(
            f"freeze ({ov.window}, until {ov.until:%Y-%m-%d %H:%M:%S} UTC) overridden by "
            f"{ov.by}: {ov.reason}"
        )

    async def _wait_freeze(self, svc: ServiceStatus, weight: int) -> None:
        """Before a traffic step: wait while a freeze window holds (phase `frozen`); go on when
        it ends. `abort` cuts the wait short (rollbacks are never frozen). Pure evaluation on
        workflow.now(); the override of `deploy --override-freeze` covers its freeze."""
        if not self.inp.freeze or not workflow.patched(FREEZE_WINDOWS):
            return
        while True:
            self._check_abort()
            now = workflow.now()
            ov = self.inp.freeze_override
            freeze = frozen_at(self.inp.freeze, now)
            if freeze is None or (ov is not None and freeze.until <= ov.until):
                break
            if self.st.frozen_until != freeze.until:
                self.st.frozen_until = freeze.until
                self.st.frozen_reason = freeze.reason
                self._event(
                    f"{svc.run_service}: frozen before {weight}% until "
                    f"{freeze.until:%Y-%m-%d %H:%M:%S} UTC: {freeze.reason}"
                )
            self._set_phase(Phase.FROZEN)
            self._progress(
                f"{svc.run_service}: frozen before {weight}% until "
                f"{freeze.until:%H:%M:%S} UTC ({freeze.reason})"
            )
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self.abort_requested is not None,
                    timeout=max(freeze.until - now, timedelta(seconds=1)),
                    timeout_summary=f"frozen until {freeze.until:%Y-%m-%d %H:%M:%S} UTC: "
                    f"{freeze.reason}",
                )
        if self.st.frozen_until is not None:
            self._event(f"{svc.run_service}: freeze over, going on to {weight}%")
            self.st.frozen_until = None
            self.st.frozen_reason = ""

    async def _shift(self, plan: ServicePlan, svc: ServiceStatus, i: int) -> None:
        weight = self.inp.steps[i].weight
        self._set_phase(Phase.SHIFTING)
        split = canary_split(svc.snapshot, svc.canary_revision, weight, CANARY_TAG)
        self._progress(f"{svc.run_service}: shifting to {describe(split)}")
        svc.state = "shifting"
        await self._set_traffic(plan, split, f"step {i + 1}: {weight}%", TRAFFIC_RETRY)
        svc.step = i
        svc.percent = weight
        svc.breaches = 0
        self._event(f"{svc.run_service}: traffic {describe(split)}")
        if self._sequential():
            judge = Judge(self._judge_settings(), svc.judge)
            judge.start_step(weight)
            svc.judge = judge.state
            if svc.canary_since is None:
                svc.canary_since = workflow.now()
