"""What the disaster-recovery workflows share: timeouts and retries, cleanup that runs to its end
whatever happens (`to_completion`), and `DrRun`, the one skeleton of a Restore, a
PointInTimeRecovery, a DrDrill and a Failover run:

    begin -> work (DrStop / failure / cancellation recorded as the outcome) -> cleanup in
    `finally`, shielded -> report -> handlers finished -> Cancelled, or a FAILED execution
    carrying the status (DR_NOT_SUCCEEDED), or the status.

Also `abort` (refused once a step cannot be stopped half way), the approval wait and the
`approve` update judged against the worker's policy, and notifications that never fail a run.

Deterministic: no I/O, no wall clock (`workflow.now()`), no randomness.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Literal, TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

from workflows.common import (
    API_RETRY,
    QUICK,
    Visible,
    error_message,
    fail_with_status,
    on_signal,
    send_notification,
)
from workflows.policy import POLICY_FROM_WORKER, accept_approval, legacy_dr_policy, load_policy

with workflow.unsafe.imports_passed_through():
    from activities.cloud_sql import CloudSqlActivities
    from activities.db_verify import DatabaseActivities
    from stagecoach.contract import DR_NOT_SUCCEEDED
    from stagecoach.payloads.common import AbortInput, ApproveInput, InstanceRef, Outcome
    from stagecoach.payloads.dr import Verification
    from stagecoach.payloads.policy import TargetClaim, WorkerPolicy
    from stagecoach.payloads.sql import (
        BackupInfo,
        ListBackupsInput,
        ValidateDatabaseInput,
        ValidationReport,
    )

BACKUP_LIST_LIMIT = 500
BACKUP_ID_RE = re.compile(r"[0-9]{1,20}")  # Cloud SQL backupRuns ids are int64

# Compensation (resume a drained service, delete a scratch instance) must win against a flaky
# API: retry quickly, without an attempt limit, bounded by a schedule-to-close timeout.
CLEANUP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=15),
)
CLEANUP_DEADLINE = timedelta(minutes=30)
OPERATION = timedelta(hours=6)  # restores and clones of big instances take hours
VALIDATION = timedelta(minutes=15)
SCALING = timedelta(minutes=5)
HEARTBEAT = timedelta(seconds=60)

T = TypeVar("T")
NotifyEvent = Literal["started", "awaiting_approval", "failed", "drill"]


async def to_completion(coro: Coroutine[Any, Any, T]) -> tuple[T, bool]:
    """Run `coro` to its end even if the calling task is cancelled meanwhile (Temporal
    cancellation, or an abort that cancels the caller). Returns its result and whether a
    cancellation arrived while waiting; its own exception propagates."""
    task: asyncio.Task[T] = asyncio.ensure_future(coro)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(task), cancelled
        except asyncio.CancelledError:
            if not task.done():
                cancelled = True
                continue
            if task.cancelled():
                raise
            return task.result(), True


def seconds(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 3)


def stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC")


def newest_successful(backups: list[BackupInfo]) -> BackupInfo | None:
    ok = [b for b in backups if b.status == "SUCCESSFUL"]
    if not ok:
        return None

    def key(b: BackupInfo) -> tuple[float, float, str]:
        t = b.enqueued_time or b.end_time
        e = b.end_time or b.enqueued_time
        return (t.timestamp() if t else 0.0, e.timestamp() if e else 0.0, b.id)

    return max(ok, key=key)


async def list_backups(ref: InstanceRef) -> list[BackupInfo]:
    """The backups of `ref` (newest BACKUP_LIST_LIMIT)."""
    return await workflow.execute_activity_method(
        CloudSqlActivities.list_backups,
        ListBackupsInput(ref=ref, limit=BACKUP_LIST_LIMIT),
        start_to_close_timeout=QUICK,
        retry_policy=API_RETRY,
        summary=f"list backups of {ref.instance}",
    )


def validate_input(v: Verification, instance: InstanceRef) -> ValidateDatabaseInput:
    return ValidateDatabaseInput(
        ref=instance, database=v.database, tables=v.tables, timestamp_column=v.timestamp_column
    )


def instance_claim(ref: InstanceRef) -> TargetClaim:
    """The policy claim of a Cloud SQL instance the input names."""
    return TargetClaim(
        what=f"instance {ref.instance}", kind=ref.target.kind, host=ref.target.host,
        project=ref.project,
    )  # fmt: skip


class DrStop(Exception):
    """Ends a DR workflow early: the outcome says how, the message says why."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


class DrRun(Visible):
    """The skeleton of a DR run (see the module docstring). A subclass sets up `inp`, `st`,
    `env` and `version` in its `@workflow.init`, implements `_work`, `_title` and `_report`,
    and where it has them `_clean_up` / `_needs_cleanup` and `_abort_refused`."""

    inp: Any
    policy: WorkerPolicy | None = None
    abort_requested: AbortInput | None = None
    # True: `_work` runs as a task that `abort` cancels (drill, point-in-time recovery); False:
    # `abort` is noticed at the next `_check_abort` (restore, failover)
    abort_cancels_work: ClassVar[bool] = False
    _body: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ what a run fills in

    async def _work(self) -> None:
        raise NotImplementedError

    def _title(self) -> str:
        """The run in a few words, e.g. `restore of backup 42` (failure messages)."""
        raise NotImplementedError

    async def _report(self, cancelled: bool) -> None:
        """After the cleanup: what is left where, the end time, phase DONE, notifications."""
        raise NotImplementedError

    def _needs_cleanup(self) -> bool:
        return False

    def _cancelled_line(self) -> str:
        """The event of a Temporal cancellation."""
        return "cancelled"

    async def _clean_up(self) -> None:
        """What must happen whatever ended the work; shielded from cancellation."""

    def _abort_refused(self) -> str:
        """Why an abort cannot act now (a step that cannot be stopped half way), or ""."""
        return ""

    def _failure_message(self) -> str:
        st = self._state()
        why = st.error or st.abort_reason or "no reason recorded"
        return f"{self._title()} {st.outcome.value}: {why}"

    # ------------------------------------------------------------------ the skeleton

    def _begin(self, phase: StrEnum, line: str) -> None:
        st = self._state()
        st.started_at = workflow.now()
        self._set_phase(phase)
        self._event(line)

    async def _run_to_end(self) -> None:
        """Work, cleanup, report, then end the execution as the outcome says. Returns only on
        success (the caller returns the status, or continues as new)."""
        cancelled = False
        try:
            cancelled = await self._run_work()
        finally:
            if self._needs_cleanup():
                _, late = await to_completion(self._clean_up())
                cancelled = cancelled or late
        await self._report(cancelled)
        await workflow.wait_condition(workflow.all_handlers_finished)
        if cancelled:
            raise asyncio.CancelledError()  # the execution ends Cancelled; `status` tells all
        if self._state().outcome != Outcome.SUCCEEDED:  # a FAILED execution with the status
            fail_with_status(self._state(), self._failure_message(), DR_NOT_SUCCEEDED)

    async def _run_work(self) -> bool:
        """Run `_work()`; record the outcome. True when Temporal cancelled the workflow."""
        st = self._state()
        try:
            if self.abort_cancels_work:
                if self.abort_requested is not None:
                    raise DrStop(Outcome.ABORTED, self.abort_requested.reason)
                self._body = asyncio.create_task(self._work())
                await self._body
            else:
                await self._work()
            if st.outcome == Outcome.RUNNING:
                st.outcome = Outcome.SUCCEEDED
        except DrStop as stop:
            st.outcome = stop.outcome
            if stop.outcome == Outcome.ABORTED:
                st.abort_reason = str(stop)
            else:
                st.error = str(stop)
        except (asyncio.CancelledError, ActivityError) as err:
            if not is_cancelled_exception(err):
                st.outcome = Outcome.FAILED
                st.error = f"{st.phase.value}: {error_message(err)}"
            elif self.abort_cancels_work and self.abort_requested is not None:
                st.outcome = Outcome.ABORTED
                st.abort_reason = self.abort_requested.reason
            else:
                st.outcome = Outcome.CANCELLED
                st.error = st.error or "cancelled"
                self._event(self._cancelled_line())
                return True
        return False

    # ------------------------------------------------------------------ abort

    def abort(self, inp: AbortInput | None = None) -> None:
        if self.abort_requested is not None or self._state().outcome != Outcome.RUNNING:
            return
        reason = (inp or AbortInput()).reason
        refused = self._abort_refused()
        if refused:
            self._event(f"abort ignored ({reason}): {refused}")
            return
        self.abort_requested = inp or AbortInput()
        self._event(f"abort requested: {reason}")
        if self._body is not None and not self._body.done():
            self._body.cancel()

    def _check_abort(self) -> None:
        if self.abort_requested is not None:
            raise DrStop(Outcome.ABORTED, self.abort_requested.reason)

    # ------------------------------------------------------------------ policy and approval

    async def _load_policy(self, claims: list[TargetClaim], approvers: Sequence[str]) -> None:
        """The worker's policy (approvers, proof, whether approval is needed) and its check of
        every target the input names; refused: the run stops before anything is touched.
        Histories from before POLICY_FROM_WORKER: the input's `approvers`, unverified."""
        if workflow.patched(POLICY_FROM_WORKER):
            try:
                self.policy = await load_policy(self.inp.env, claims)
            except ActivityError as err:
                raise DrStop(
                    Outcome.FAILED, f"refused by the worker's policy: {error_message(err)}"
                ) from err
        else:
            self.policy = legacy_dr_policy(self.inp.env, approvers)

    def _needs_approval(self) -> bool:
        p = self.policy
        return p is not None and p.restore_requires_approval and bool(p.approvers)

    def _accept_approval(self, inp: ApproveInput) -> str:
        """Judge an `approve` update (step 0, this run's `version`); the authenticated name."""
        assert self.policy is not None  # awaiting approval implies a loaded policy
        st = self._state()
        return accept_approval(
            self, st, self.policy, inp, version=self.version, step=0,
            requested_by=self.inp.requested_by, already=bool(st.approvals),
        )  # fmt: skip

    def _check_approvable(self, what: str) -> None:
        """The `approve` validator: only while awaiting approval, only once."""
        st = self._state()
        if not st.awaiting_approval or self.policy is None:
            raise ValueError(f"{what} is not awaiting approval (phase {st.phase.value})")
        if st.approvals:
            raise ValueError("already approved")

    async def _wait_for_approval(
        self, phase: StrEnum, progress: str, event: str, notify_text: str
    ) -> None:
        """Wait for an approval (or an abort); says who is awaited, also by notification."""
        st = self._state()
        st.awaiting_approval = True
        self._set_phase(phase)
        self._progress(progress)
        self._event(event)
        await self._notify(self.inp.notify, "awaiting_approval", notify_text)
        try:
            await workflow.wait_condition(
                lambda: bool(st.approvals) or self.abort_requested is not None
            )
        finally:
            st.awaiting_approval = False

    # ------------------------------------------------------------------ activities

    async def _notify(self, enabled: bool, event: NotifyEvent, text: str) -> None:
        if not enabled:
            return
        try:
            await send_notification(event, text)
        except ActivityError as err:  # a lost notification never fails a recovery
            self._event(f"notification failed: {error_message(err)}")

    async def _validate(self, v: Verification, ref: InstanceRef) -> ValidationReport:
        """Run the validation queries on `ref`; its row counts and problems as an event."""
        self._progress(f"validating {v.database} on {ref.instance}")
        report: ValidationReport = await workflow.execute_activity_method(
            DatabaseActivities.validate_database,
            validate_input(v, ref),
            start_to_close_timeout=VALIDATION,
            retry_policy=API_RETRY,
            summary=f"validate {ref.instance}",
        )
        counts = ", ".join(f"{t.table}={t.rows}" for t in report.tables) or "no tables"
        problems = f"; problems: {'; '.join(report.problems)}" if report.problems else ""
        self._event(f"{ref.instance}: {counts}{problems}")
        return report


class DrRunAnyAbort(DrRun):
    """A `DrRun` whose `abort` signal arrives through the dynamic handler: any payload aborts
    (a typed handler would drop what does not decode). Restore, PITR and drill; Failover keeps
    its typed `abort` signal."""

    @workflow.signal(
        dynamic=True,
        description=(
            "abort: stop and clean up (services resumed, scratch instances deleted); input "
            '{"reason": "...", "by": "NAME"} (any payload aborts). Other names are ignored.'
        ),
    )
    def _signal(self, name: str, args: Sequence[RawValue]) -> None:
        """`abort` with any payload (a typed handler would drop what does not decode)."""
        on_signal(name, args, self.abort)
