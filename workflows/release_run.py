"""A release run's state, how it stops, and the small helpers every part of it uses (see
workflows/release.py for the workflow; release_canary, release_bake and release_hooks hold its
parts as mixins of `ReleaseRun`).

Deterministic: no I/O, no wall clock, no randomness.
"""

from __future__ import annotations

import re
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.common import Visible, send_notification

with workflow.unsafe.imports_passed_through():
    from activities.cloud_run import CloudRunActivities
    from stagecoach.bounds import MAX_ERROR, clip
    from stagecoach.payloads.common import AbortInput, Outcome, Phase, TrafficTarget
    from stagecoach.payloads.policy import WorkerPolicy
    from stagecoach.payloads.release import ReleaseInput, ReleaseStatus, ServicePlan, ServiceStatus
    from stagecoach.payloads.run import SetTrafficInput, SetTrafficResult
    from stagecoach.splits import describe


CANARY_TAG = "canary"
SNAPSHOT_IN_CREATE = "snapshot-in-create-revision"  # workflow.patched id
SEQUENTIAL_JUDGE = "sequential-judge"  # workflow.patched id: stagecoach.judge and stagecoach.bake
SERVICE_LOCK = "service-lock"  # workflow.patched id: the release holds its Cloud Run services
APPROVAL_TIMER = "approval-wait-timer"  # workflow.patched id: the approval wait is a timer
APPROVAL_REMINDER = timedelta(hours=24)  # one such timer a day while nobody answers
RECOVERY_VERSION_RE = re.compile(r"recovery-[0-9]{12}")
FREEZE_WINDOWS = "freeze-windows"  # workflow.patched id: traffic steps wait out freeze windows
RELEASE_HOOKS = "release-hooks"  # workflow.patched id: pre_deploy / post_deploy Cloud Run jobs
HOOK_POLL = timedelta(seconds=10)  # longest wait between two reads of a running hook
MAX_READINGS = 20  # newest readings kept per service (failures are always kept)

LONG = timedelta(minutes=20)
HEARTBEAT = timedelta(seconds=30)


class ReleaseStop(Exception):
    """Ends the rollout of a service: the outcome says how, the message says why."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(clip(message, MAX_ERROR))
        self.outcome = outcome


class ContinueAsNew(Exception):
    """Raised at a poll boundary when the history is long; the state object carries on."""


class ReleaseRun(Visible):
    """The state of a release run (set up by `ReleaseWorkflow.__init__`) and its helpers."""

    details_joiner = "to"
    inp: ReleaseInput
    st: ReleaseStatus
    env: str
    version: str
    policy: WorkerPolicy | None
    abort_requested: AbortInput | None
    promote_requested: bool
    _legacy_policy: bool
    _promote_seen: bool

    def _state(self) -> ReleaseStatus:
        return self.st

    def _approved(self, weight: int) -> bool:
        if self._legacy_policy:
            return any(a.before_weight == weight for a in self.st.approvals)
        return bool(self.st.approvals)  # one approval covers the release

    async def _pause(self, svc: ServiceStatus, message: str) -> None:
        """A person aborts (rollback) or promotes (override) from here."""
        self._set_phase(Phase.PAUSED)
        self._event(message + " -- paused: abort to roll back, promote to continue")
        self._progress(f"{message}; paused for abort or promote")
        await self._notify("failed", message + " (paused)")
        await workflow.wait_condition(
            lambda: self.abort_requested is not None or self.promote_requested
        )
        self._check_abort()

    def _check_abort(self) -> None:
        if self.abort_requested is not None:
            raise ReleaseStop(Outcome.ABORTED, self.abort_requested.reason)

    async def _set_traffic(
        self,
        plan: ServicePlan,
        split: list[TrafficTarget],
        reason: str,
        retry: RetryPolicy,
        summary: str = "",
    ) -> SetTrafficResult:
        return await workflow.execute_activity_method(
            CloudRunActivities.set_traffic,
            SetTrafficInput(ref=plan.ref, traffic=split, reason=reason),
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=retry,
            summary=summary or f"{plan.ref.service}: {reason} ({describe(split)})",
        )

    async def _notify(self, event: str, text: str) -> None:
        if not self.inp.notify:
            return
        await send_notification(event, text)
