"""Disaster-recovery workflows: on-demand backup, restore (Scenario 1), point-in-time recovery
(Scenario 2) and the DR drill. The brief's runbook as code that is rehearsed, not a wiki page.

Deterministic: no I/O, no wall clock (`workflow.now()`), no randomness. Measured durations are
`workflow.now()` deltas around the activity that does the work, so a replay reproduces them.

Exclusivity: Restore and PointInTimeRecovery run under the release's workflow id
`deploy-<app>-<env>` (see `stagecoach.cli_dr`). Temporal allows one running execution per id, so
a release and a restore of the same environment can never run at once and whichever starts second
is refused atomically by the server (no check-then-start race). It also means `starter.py approve
ENV --by NAME` and `starter.py abort ENV` reach a waiting restore exactly as they reach a release.

Cleanup that must happen whatever ends the run (resuming drained services, deleting a drill's
scratch instance) runs in `finally` through `_to_completion`: the cleanup is its own asyncio task
awaited behind `asyncio.shield`, so neither Temporal cancellation nor an `abort` can interrupt it,
and the workflow does not end before it has finished.

Messages (starter.py, `temporal workflow signal/update` and the Web UI):
- query `status` (all but Backup): the live status object, also the result;
- signal `abort` {reason} (any payload aborts; the reason is capped): a restore stops before
  its restore operation starts (after that the operation cannot be stopped half way, so it
  finishes and the services resume); a drill or a
  point-in-time recovery stops at once and deletes its scratch / partial instance;
- update `approve` {by, comment} (Restore): where the environment asks for approval
  (`release.restore_requires_approval`), nothing is drained or restored before one of
  `release.approval.approvers` approves. An update, not a signal, so the caller learns at once
  whether the approval was accepted.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

from workflows.common import (
    API_RETRY,
    ENVIRONMENT,
    OUTCOME,
    PHASE,
    QUICK,
    VERSION,
    Visible,
    decode_abort,
    error_message,
    fail_with_status,
)

with workflow.unsafe.imports_passed_through():
    from stagecoach.bounds import MAX_REJECTED
    from stagecoach.config import ENV_NAME_RE, Approval
    from stagecoach.dr_models import (
        BackupInput,
        BackupResult,
        DrillInput,
        DrillReport,
        DrillTable,
        DrOutcome,
        DrPhase,
        PointInTimeInput,
        PointInTimeResult,
        RestoreInput,
        RestoreStatus,
        ServiceScaling,
        Verification,
    )
    from stagecoach.models import (
        DR_NOT_SUCCEEDED,
        AbortInput,
        ApprovalRecord,
        ApproveInput,
        ApproveResult,
        BackupInfo,
        CloneInstanceInput,
        CreateBackupInput,
        DeleteInstanceInput,
        InstanceRef,
        ListBackupsInput,
        NotifyInput,
        OperationResult,
        RecoveryInfo,
        RecoveryWindow,
        RecoveryWindowInput,
        RejectedApproval,
        RestoreBackupInput,
        ScalingRecord,
        ServiceState,
        SetScalingInput,
        ValidateDatabaseInput,
        ValidationReport,
    )
    from stagecoach.plan import recovery_instance_name
    from stagecoach.trust import LoadPolicyInput, TargetClaim, WorkerPolicy, judge_approval

BACKUP_LIST_LIMIT = 500
BACKUP_ID_RE = re.compile(r"[0-9]{1,20}")  # Cloud SQL backupRuns ids are int64
POLICY_FROM_WORKER = "policy-from-worker"  # workflow.patched id: LoadPolicy before anything

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


async def _to_completion(coro: Coroutine[Any, Any, T]) -> tuple[T, bool]:
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


def _scaling_restored(record: ScalingRecord, live: ServiceState) -> bool:
    """The service-level scaling and the recorded tags are back as they were."""
    now = live.scaling
    if now is None:
        return False
    same_mode = (record.mode == "MANUAL") == (now.mode == "MANUAL")
    same_counts = (record.min_instances, record.max_instances) == (
        now.min_instances,
        now.max_instances,
    ) or record.mode == "MANUAL"
    tags = {(t.tag, t.revision) for t in now.tags}
    return same_mode and same_counts and all((t.tag, t.revision) in tags for t in record.tags)


def _seconds(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 3)


def _stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC")


def drill_instance_name(instance: str, at: datetime) -> str:
    return f"{instance}-drill-{at.strftime('%Y%m%d%H%M%S')}"


def newest_successful(backups: list[BackupInfo]) -> BackupInfo | None:
    ok = [b for b in backups if b.status == "SUCCESSFUL"]
    if not ok:
        return None

    def key(b: BackupInfo) -> tuple[float, float, str]:
        t = b.enqueued_time or b.end_time
        e = b.end_time or b.enqueued_time
        return (t.timestamp() if t else 0.0, e.timestamp() if e else 0.0, b.id)

    return max(ok, key=key)


def _validate_input(v: Verification, instance: InstanceRef) -> ValidateDatabaseInput:
    return ValidateDatabaseInput(
        ref=instance, database=v.database, tables=v.tables, timestamp_column=v.timestamp_column
    )


class _Stop(Exception):
    """Ends a DR workflow early: the outcome says how, the message says why."""

    def __init__(self, outcome: DrOutcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


class _Visible(Visible):
    """`Visible`, plus notifications that never fail a recovery."""

    async def _notify(self, enabled: bool, event: NotifyEvent, text: str) -> None:
        if not enabled:
            return
        try:
            await workflow.execute_activity(
                "Notify",
                NotifyInput(event=event, text=text),
                start_to_close_timeout=QUICK,
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary=f"notify {event}",
            )
        except ActivityError as err:  # a lost notification never fails a recovery
            self._event(f"notification failed: {error_message(err)}")


# =============================================================================== Backup


@workflow.defn(name="Backup")
class BackupWorkflow:
    """On-demand backup of an environment's instance, described `On-demand backup <UTC time>`,
    waited for until SUCCESSFUL. Id `backup-<app>-<env>`."""

    @workflow.run
    async def run(self, inp: BackupInput) -> BackupResult:
        start = workflow.now()
        desc = f"On-demand backup {_stamp(start)}"
        workflow.upsert_search_attributes(
            [
                ENVIRONMENT.value_set(inp.env),
                VERSION.value_set("backup"),
                PHASE.value_set(DrPhase.BACKING_UP.value),
                OUTCOME.value_set(DrOutcome.RUNNING.value),
            ]
        )
        workflow.set_current_details(f"backing up {inp.instance.instance}: {desc}")
        try:
            info: BackupInfo = await workflow.execute_activity(
                "CreateBackup",
                CreateBackupInput(ref=inp.instance, description=desc),
                result_type=BackupInfo,
                start_to_close_timeout=OPERATION,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=API_RETRY,
                summary=f"backup {inp.instance.instance}",
            )
        except ActivityError as err:
            workflow.upsert_search_attributes(
                [PHASE.value_set(DrPhase.DONE.value), OUTCOME.value_set(DrOutcome.FAILED.value)]
            )
            raise ApplicationError(
                f"backup of {inp.instance.instance} failed: {error_message(err)}",
                type="BackupFailed",
                non_retryable=True,
            ) from err
        workflow.upsert_search_attributes(
            [PHASE.value_set(DrPhase.DONE.value), OUTCOME.value_set(DrOutcome.SUCCEEDED.value)]
        )
        workflow.set_current_details(f"backup {info.id} of {inp.instance.instance} {info.status}")
        return BackupResult(
            app=inp.app,
            env=inp.env,
            instance=inp.instance.instance,
            backup=info,
            seconds=_seconds(start, workflow.now()),
        )


# =============================================================================== Restore


@workflow.defn(name="Restore")
class RestoreWorkflow(_Visible):
    """Scenario 1 (corruption): check the backup, wait for approval where required, drain the
    services that use the instance (their scaling recorded first), restore the backup into the
    instance, run the validation queries, and resume every drained service at exactly its
    recorded min/max instances. The resume runs in `finally`: after success, failure, abort and
    cancellation alike. `database_state` and `left_in` say what state everything was left in.
    """

    @workflow.init
    def __init__(self, inp: RestoreInput) -> None:
        self.inp = inp
        self.env = inp.env
        self.version = f"restore:{inp.backup_id}"
        self.st = RestoreStatus(
            app=inp.app,
            env=inp.env,
            instance=inp.instance.instance,
            backup_id=inp.backup_id,
            services=[ServiceScaling(service=r.service, ref=r) for r in inp.services],
        )
        self.abort_requested: AbortInput | None = None
        self.policy: WorkerPolicy | None = None
        self._restore_started = False
        self._drained_at: datetime | None = None

    def _state(self) -> RestoreStatus:
        return self.st

    # ------------------------------------------------------------------ messages

    @workflow.query(
        name="status",
        description=(
            "The restore's status (JSON): {env, instance, backup_id, phase, outcome, error, "
            "services: [scaling recorded/resumed], validation, left_in, events}. No input."
        ),
    )
    def status(self) -> RestoreStatus:
        return self.st

    @workflow.signal(
        dynamic=True,
        description=(
            "abort: stop and clean up (services resumed, scratch instances deleted); input "
            '{"reason": "...", "by": "NAME"} (any payload aborts). Other names are ignored.'
        ),
    )
    def _signal(self, name: str, args: Sequence[RawValue]) -> None:
        """`abort` with any payload (a typed handler would drop what does not decode)."""
        if name == "abort":
            self.abort(decode_abort(args))
        else:
            workflow.logger.warning("ignoring unknown signal %r", name[:100])

    def abort(self, inp: AbortInput | None = None) -> None:
        if self.abort_requested is not None or self.st.outcome != DrOutcome.RUNNING:
            return
        reason = (inp or AbortInput()).reason
        if self._restore_started:
            self._event(
                f"abort ignored ({reason}): the restore operation is running and cannot be "
                "stopped half way; services resume when it ends"
            )
            return
        self.abort_requested = inp or AbortInput()
        self._event(f"abort requested: {reason}")

    @workflow.update(
        name="approve",
        description=(
            "Approve the restore (where restore_requires_approval is set; only by a listed "
            'approver with proof). Input {"by": "release-manager", "comment": "...", "proof": '
            "{workflow_id, run_id, version, step: 0, key, signature}}. "
            "Returns {approved_weight, by}."
        ),
    )
    async def approve(self, inp: ApproveInput) -> ApproveResult:
        """Counts only with proof of who sent it, judged against the worker's policy (see
        stagecoach.trust; the step is 0); a refused attempt is recorded, then the update fails."""
        assert self.policy is not None  # awaiting approval implies a loaded policy
        info = workflow.info()
        verdict = judge_approval(
            self.policy,
            by=inp.by,
            comment=inp.comment,
            proof=inp.proof,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            version=self.version,
            step=0,
            requested_by=self.inp.requested_by,
        )
        if self.st.approvals:
            verdict = verdict.model_copy(update={"ok": False, "problem": "already approved"})
        if not verdict.ok:
            self.st.rejected_approvals.append(
                RejectedApproval(
                    at=workflow.now(),
                    claimed=inp.by,
                    authenticated=verdict.authenticated,
                    reason=verdict.problem,
                )
            )
            del self.st.rejected_approvals[:-MAX_REJECTED]
            who = verdict.authenticated or "not authenticated"
            self._event(f"approval REJECTED (claimed {inp.by}, {who}): {verdict.problem}")
            raise ApplicationError(verdict.problem, type="ApprovalRejected", non_retryable=True)
        self.st.approvals.append(
            ApprovalRecord(
                by=inp.by,
                at=workflow.now(),
                comment=inp.comment,
                before_weight=0,
                authenticated=verdict.authenticated,
            )
        )
        self._event(
            f"restore approved by {inp.by} ({verdict.authenticated}): {inp.comment or 'no comment'}"
        )
        return ApproveResult(approved_weight=0, by=inp.by)

    @approve.validator
    def _validate_approve(self, inp: ApproveInput) -> None:
        if not self.st.awaiting_approval or self.policy is None:
            raise ValueError(
                f"restore of backup {self.inp.backup_id} into {self.inp.env} is not awaiting "
                f"approval (phase {self.st.phase.value})"
            )
        if self.st.approvals:
            raise ValueError("already approved")

    async def _load_policy(self) -> None:
        """The worker's policy (approvers, proof, whether a restore needs approval) and its
        check of every target the input names; refused: the restore stops, nothing touched."""
        inp = self.inp
        claims = [
            TargetClaim(
                what=f"instance {inp.instance.instance}",
                kind=inp.instance.target.kind,
                host=inp.instance.target.host,
                project=inp.instance.project,
            )
        ] + [
            TargetClaim(
                what=f"service {r.service}",
                kind=r.target.kind,
                host=r.target.host,
                project=r.project,
                region=r.region,
            )
            for r in inp.services
        ]
        try:
            self.policy = await workflow.execute_activity(
                "LoadPolicy",
                LoadPolicyInput(env=inp.env, claims=claims),
                result_type=WorkerPolicy,
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary=f"policy for {inp.env}",
            )
        except ActivityError as err:
            raise _Stop(
                DrOutcome.FAILED, f"refused by the worker's policy: {error_message(err)}"
            ) from err

    @workflow.run
    async def run(self, inp: RestoreInput) -> RestoreStatus:
        # any Temporal client can start this: refuse what starter.py never builds before the
        # input reaches search attributes
        if not (BACKUP_ID_RE.fullmatch(inp.backup_id) and ENV_NAME_RE.fullmatch(inp.env)):
            raise ApplicationError(
                f"invalid restore input: backup id {inp.backup_id[:40]!r} / environment "
                f"{inp.env[:40]!r}",
                type="InvalidInput",
                non_retryable=True,
            )
        st = self.st
        st.started_at = workflow.now()
        self._set_phase(DrPhase.VALIDATING)
        self._event(
            f"restore of backup {inp.backup_id} into {inp.instance.instance} ({inp.env}) "
            f"requested by {inp.requested_by or 'unknown'}"
        )
        await self._notify(
            inp.notify, "started", f"Restore of backup {inp.backup_id} into {inp.env} started"
        )
        cancelled = False
        try:
            try:
                if workflow.patched(POLICY_FROM_WORKER):
                    await self._load_policy()
                else:  # histories from before: the approvers of the input
                    self.policy = WorkerPolicy(
                        env=inp.env,
                        source="workflow input (legacy)",
                        approval=Approval(approvers=inp.approvers) if inp.approvers else None,
                        restore_requires_approval=bool(inp.approvers),
                        proof="none",
                    )
                await self._check_backup()
                await self._await_approval()
                self._check_abort()
                await self._drain()
                self._check_abort()
                await self._restore()
                await self._verify()
                st.outcome = DrOutcome.SUCCEEDED
            except _Stop as stop:
                st.outcome = stop.outcome
                if stop.outcome == DrOutcome.ABORTED:
                    st.abort_reason = str(stop)
                else:
                    st.error = str(stop)
            except asyncio.CancelledError:
                cancelled = True
            except ActivityError as err:
                if is_cancelled_exception(err):
                    cancelled = True
                else:
                    st.outcome = DrOutcome.FAILED
                    st.error = f"{st.phase.value}: {error_message(err)}"
            if cancelled:
                st.outcome = DrOutcome.CANCELLED
                st.error = st.error or "cancelled"
                self._event("restore cancelled")
        finally:
            _, late = await _to_completion(self._resume_all())
            cancelled = cancelled or late
        self._finish()
        if st.outcome != DrOutcome.SUCCEEDED:
            await self._notify(
                inp.notify,
                "failed",
                f"Restore of backup {inp.backup_id} into {inp.env} {st.outcome.value}: "
                f"{st.error or st.abort_reason}. Left in: " + "; ".join(st.left_in),
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        if cancelled:
            raise asyncio.CancelledError()  # the execution ends Cancelled; `status` tells all
        if st.outcome != DrOutcome.SUCCEEDED:
            why = st.error or st.abort_reason or "no reason recorded"
            fail_with_status(
                st, f"restore of backup {inp.backup_id} {st.outcome.value}: {why}", DR_NOT_SUCCEEDED
            )
        return st

    # ------------------------------------------------------------------ steps

    async def _check_backup(self) -> None:
        """The backup must exist and be SUCCESSFUL before anything is drained."""
        inp = self.inp
        source = inp.source_instance or inp.instance.instance
        self._progress(f"checking backup {inp.backup_id} of {source}")
        ref = inp.instance.model_copy(update={"instance": source})
        backups: list[BackupInfo] = await workflow.execute_activity(
            "ListBackups",
            ListBackupsInput(ref=ref, limit=BACKUP_LIST_LIMIT),
            result_type=list[BackupInfo],
            start_to_close_timeout=QUICK,
            retry_policy=API_RETRY,
            summary=f"list backups of {source}",
        )
        found = next((b for b in backups if b.id == inp.backup_id), None)
        if found is None:
            raise _Stop(
                DrOutcome.FAILED,
                f"backup {inp.backup_id} of {source} not found; list them with "
                f"`starter.py backups {inp.env}`",
            )
        if found.status != "SUCCESSFUL":
            raise _Stop(
                DrOutcome.FAILED,
                f"backup {inp.backup_id} of {source} is {found.status}, not SUCCESSFUL",
            )
        self.st.backup = found
        self._event(
            f"backup {found.id} ({found.type}, {found.description or 'no description'}) is "
            "SUCCESSFUL"
        )

    async def _await_approval(self) -> None:
        inp = self.inp
        policy = self.policy
        assert policy is not None
        if not (policy.restore_requires_approval and policy.approvers):
            return
        self.st.awaiting_approval = True
        self._set_phase(DrPhase.AWAITING_APPROVAL)
        who = " or ".join(policy.approvers)
        self._progress(f"awaiting approval by {who}")
        self._event(f"awaiting approval by {who}")
        await self._notify(
            inp.notify,
            "awaiting_approval",
            f"Restore of backup {inp.backup_id} into {inp.env} awaits approval ({who})",
        )
        try:
            await workflow.wait_condition(
                lambda: bool(self.st.approvals) or self.abort_requested is not None
            )
        finally:
            self.st.awaiting_approval = False

    def _check_abort(self) -> None:
        if self.abort_requested is not None:
            raise _Stop(DrOutcome.ABORTED, self.abort_requested.reason)

    async def _drain(self) -> None:
        """Record each service's scaling, then drain it (manual scaling, 0 instances)."""
        self._set_phase(DrPhase.DRAINING)
        for svc in self.st.services:
            self._check_abort()
            self._progress(f"recording the scaling of {svc.service}")
            live: ServiceState = await workflow.execute_activity(
                "GetServiceState",
                svc.ref,
                result_type=ServiceState,
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary=f"record scaling of {svc.service}",
            )
            svc.recorded = True
            svc.min_instances = live.min_instances
            svc.max_instances = live.max_instances
            svc.record = live.scaling
            svc.was_drained = live.drained
            if live.drained:
                svc.state = "left_drained"
                self._event(f"{svc.service}: already drained; left as found")
                continue
            self._progress(f"draining {svc.service}")
            svc.state = "draining"  # from here on the resume covers it, whatever happens
            self._drained_at = self._drained_at or workflow.now()
            await workflow.execute_activity(
                "SetScaling",
                SetScalingInput(
                    ref=svc.ref,
                    drained=True,
                    min_instances=svc.min_instances,
                    max_instances=svc.max_instances,
                    record=svc.record,
                ),
                result_type=ServiceState,
                start_to_close_timeout=SCALING,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=API_RETRY,
                summary=f"drain {svc.service}",
            )
            svc.state = "drained"
            self._event(
                f"{svc.service}: drained (recorded min {svc.min_instances}, "
                f"max {svc.max_instances})"
            )

    async def _restore(self) -> None:
        inp, st = self.inp, self.st
        source = inp.source_instance or inp.instance.instance
        self._restore_started = True
        self._set_phase(DrPhase.RESTORING)
        self._progress(f"restoring backup {inp.backup_id} into {inp.instance.instance}")
        st.database_state = f"restore of backup {inp.backup_id} in progress"
        start = workflow.now()
        try:
            res, cancelled = await _to_completion(
                workflow.execute_activity(
                    "RestoreBackup",
                    RestoreBackupInput(
                        ref=inp.instance, backup_id=inp.backup_id, source_instance=source
                    ),
                    result_type=OperationResult,
                    start_to_close_timeout=OPERATION,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=API_RETRY,
                    summary=f"restore {inp.backup_id} into {inp.instance.instance}",
                )
            )
        except ActivityError as err:
            st.restore_seconds = _seconds(start, workflow.now())
            st.database_state = (
                f"restore of backup {inp.backup_id} FAILED ({error_message(err)}): the data "
                "may be unchanged or partly restored; check it before serving traffic"
            )
            self._event(f"restore failed: {error_message(err)}")
            raise
        st.restore_seconds = _seconds(start, workflow.now())
        st.operation = res.operation
        st.operation_seconds = res.seconds
        st.database_state = f"restored from backup {inp.backup_id} (not validated)"
        self._event(
            f"backup {inp.backup_id} restored into {inp.instance.instance} in "
            f"{st.restore_seconds:g}s"
        )
        if cancelled:
            raise asyncio.CancelledError()

    async def _verify(self) -> None:
        inp, st = self.inp, self.st
        self._set_phase(DrPhase.VERIFYING)
        self._progress(f"validating {inp.verification.database} on {inp.instance.instance}")
        report: ValidationReport = await workflow.execute_activity(
            "ValidateDatabase",
            _validate_input(inp.verification, inp.instance),
            result_type=ValidationReport,
            start_to_close_timeout=VALIDATION,
            retry_policy=API_RETRY,
            summary=f"validate {inp.instance.instance}",
        )
        st.validation = report
        counts = ", ".join(f"{t.table}={t.rows}" for t in report.tables) or "no tables"
        if not report.ok:
            st.database_state = (
                f"restored from backup {inp.backup_id}; validation found problems: "
                + "; ".join(report.problems)
            )
            raise _Stop(DrOutcome.FAILED, "validation failed: " + "; ".join(report.problems))
        st.database_state = f"restored from backup {inp.backup_id} and validated ({counts})"
        self._event(f"validation passed: {counts}")

    async def _resume_all(self) -> None:
        """Resume every service this restore drained at exactly its recorded scaling."""
        for svc in self.st.services:
            if svc.state not in ("draining", "drained"):
                continue
            self._set_phase(DrPhase.RESUMING)
            self._progress(
                f"resuming {svc.service} at min {svc.min_instances}, max {svc.max_instances}"
            )
            try:
                live: ServiceState = await workflow.execute_activity(
                    "SetScaling",
                    SetScalingInput(
                        ref=svc.ref,
                        drained=False,
                        min_instances=svc.min_instances,
                        max_instances=svc.max_instances,
                        record=svc.record,
                    ),
                    result_type=ServiceState,
                    start_to_close_timeout=SCALING,
                    schedule_to_close_timeout=CLEANUP_DEADLINE,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=CLEANUP_RETRY,
                    summary=f"resume {svc.service}",
                )
            except ActivityError as err:
                svc.state = "resume_failed"
                svc.error = error_message(err)
                self._event(f"{svc.service}: resume FAILED: {svc.error}")
                continue
            exact = (
                not live.drained
                and live.min_instances == svc.min_instances
                and live.max_instances == svc.max_instances
                and (svc.record is None or _scaling_restored(svc.record, live))
            )
            if exact:
                svc.state = "resumed"
                self._event(
                    f"{svc.service}: resumed at min {svc.min_instances}, max {svc.max_instances}"
                )
            else:
                svc.state = "resume_failed"
                svc.error = (
                    f"after resume: drained={live.drained}, min {live.min_instances}, "
                    f"max {live.max_instances}; expected min {svc.min_instances}, "
                    f"max {svc.max_instances}"
                )
                self._event(f"{svc.service}: {svc.error}")
        if self._drained_at is not None:
            self.st.downtime_seconds = _seconds(self._drained_at, workflow.now())

    def _finish(self) -> None:
        st = self.st
        st.left_in = [f"instance {st.instance}: {st.database_state}"]
        for svc in st.services:
            scaling = f"min {svc.min_instances}, max {svc.max_instances}"
            st.left_in.append(
                f"service {svc.service}: "
                + {
                    "untouched": "untouched (never drained)",
                    "resumed": f"resumed at its recorded scaling ({scaling})",
                    "left_drained": "left drained, as it was before the restore",
                    "resume_failed": (
                        f"STILL DRAINED or not at its recorded scaling ({svc.error}); set it "
                        f"back to automatic scaling with {scaling} by hand"
                    ),
                }.get(svc.state, svc.state)
            )
        st.ended_at = workflow.now()
        self._set_phase(DrPhase.DONE)
        summary = st.error or st.abort_reason or st.database_state
        self._progress(f"{st.outcome.value}: {summary}")


# =============================================================================== drill / PITR base


class _ScratchWorkflow(_Visible):
    """Shared shape of the drill and the point-in-time recovery: the work runs as a body task,
    which `abort` cancels; the instance this run creates is deleted in `finally` when the run
    does not keep it, whatever ended the body."""

    abort_requested: AbortInput | None = None
    _body: asyncio.Task[None] | None = None

    @workflow.signal(
        dynamic=True,
        description=(
            "abort: stop and clean up (services resumed, scratch instances deleted); input "
            '{"reason": "...", "by": "NAME"} (any payload aborts). Other names are ignored.'
        ),
    )
    def _signal(self, name: str, args: Sequence[RawValue]) -> None:
        """`abort` with any payload (a typed handler would drop what does not decode)."""
        if name == "abort":
            self.abort(decode_abort(args))
        else:
            workflow.logger.warning("ignoring unknown signal %r", name[:100])

    def abort(self, inp: AbortInput | None = None) -> None:
        st = self._state()
        if self.abort_requested is not None or st.outcome != DrOutcome.RUNNING:
            return
        self.abort_requested = inp or AbortInput()
        self._event(f"abort requested: {self.abort_requested.reason}")
        if self._body is not None and not self._body.done():
            self._body.cancel()

    async def _run_body(self) -> bool:
        """Run `_work()`; record the outcome. True when Temporal cancelled the workflow."""
        st = self._state()
        try:
            if self.abort_requested is not None:
                raise _Stop(DrOutcome.ABORTED, self.abort_requested.reason)
            self._body = asyncio.create_task(self._work())
            await self._body
            if st.outcome == DrOutcome.RUNNING:
                st.outcome = DrOutcome.SUCCEEDED
        except _Stop as stop:
            st.outcome = stop.outcome
            if stop.outcome == DrOutcome.ABORTED:
                st.abort_reason = str(stop)
            else:
                st.error = str(stop)
        except (asyncio.CancelledError, ActivityError) as err:
            if not is_cancelled_exception(err):
                st.outcome = DrOutcome.FAILED
                st.error = f"{st.phase.value}: {error_message(err)}"
            elif self.abort_requested is not None:
                st.outcome = DrOutcome.ABORTED
                st.abort_reason = self.abort_requested.reason
            else:
                st.outcome = DrOutcome.CANCELLED
                st.error = "cancelled"
                self._event("cancelled")
                return True
        return False

    async def _work(self) -> None:
        raise NotImplementedError

    async def _delete(self, ref: InstanceRef, why: str) -> tuple[bool, str]:
        """Delete `ref` (a 404 counts as deleted). (deleted, error)."""
        self._set_phase(DrPhase.CLEANING_UP)
        self._progress(f"deleting {ref.instance} ({why})")
        try:
            await workflow.execute_activity(
                "DeleteInstance",
                DeleteInstanceInput(ref=ref, created_by_stagecoach=True),
                result_type=OperationResult,
                start_to_close_timeout=OPERATION,
                schedule_to_close_timeout=OPERATION,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=CLEANUP_RETRY,
                summary=f"delete {ref.instance}",
            )
        except ActivityError as err:
            msg = error_message(err)
            self._event(f"{ref.instance} NOT deleted: {msg}")
            return False, msg
        self._event(f"{ref.instance} deleted ({why})")
        return True, ""

    async def _clone(self, inp: CloneInstanceInput, what: str) -> OperationResult:
        # Waiting for the cancellation to complete: when this run is cancelled mid-clone, the
        # delete that follows never races a clone activity still creating the instance.
        res: OperationResult = await workflow.execute_activity(
            "CloneInstance",
            inp,
            result_type=OperationResult,
            start_to_close_timeout=OPERATION,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=API_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=what,
        )
        return res

    async def _validate(self, v: Verification, ref: InstanceRef) -> ValidationReport:
        self._set_phase(DrPhase.VERIFYING)
        self._progress(f"validating {v.database} on {ref.instance}")
        report: ValidationReport = await workflow.execute_activity(
            "ValidateDatabase",
            _validate_input(v, ref),
            result_type=ValidationReport,
            start_to_close_timeout=VALIDATION,
            retry_policy=API_RETRY,
            summary=f"validate {ref.instance}",
        )
        counts = ", ".join(f"{t.table}={t.rows}" for t in report.tables) or "no tables"
        problems = f"; problems: {'; '.join(report.problems)}" if report.problems else ""
        self._event(f"{ref.instance}: {counts}{problems}")
        return report


# =============================================================================== point in time


@workflow.defn(name="PointInTimeRecovery")
class PointInTimeWorkflow(_ScratchWorkflow):
    """Scenario 2: clone the instance at a timestamp into `<instance>-recovery-<YYYYMMDDHHMM>`
    and run the validation queries on the clone. The recovery instance is kept once the clone
    completed (also when validation finds problems: it is evidence); a clone that failed, was
    aborted or cancelled is deleted.

    With `switch_release` (restore --switch), a verified recovery continues as new into that
    Release under the same workflow id: the services move to the recovery instance through new
    revisions rolled out like any release (canary steps, gates, approval, abort, rollback), and
    no other release or restore can slip in between. The release's `recovery` field carries
    this run's result (clone time, validation)."""

    @workflow.init
    def __init__(self, inp: PointInTimeInput) -> None:
        self.inp = inp
        self.env = inp.env
        self.version = f"pitr:{inp.point_in_time.strftime('%Y%m%d%H%M')}"
        self.st = PointInTimeResult(
            app=inp.app,
            env=inp.env,
            source_instance=inp.instance.instance,
            recovery_instance=recovery_instance_name(inp.instance.instance, inp.point_in_time),
            point_in_time=inp.point_in_time,
        )
        self._clone_requested = False
        self._clone_done = False

    def _state(self) -> PointInTimeResult:
        return self.st

    @workflow.query(
        name="status",
        description=(
            "The point-in-time recovery's status (JSON): {source_instance, recovery_instance, "
            "point_in_time, phase, outcome, clone_seconds, validation, left_in, events}. No "
            "input."
        ),
    )
    def status(self) -> PointInTimeResult:
        return self.st

    @workflow.run
    async def run(self, inp: PointInTimeInput) -> PointInTimeResult:
        st = self.st
        st.started_at = workflow.now()
        self._set_phase(DrPhase.CLONING)
        self._event(
            f"point-in-time recovery of {st.source_instance} at {_stamp(inp.point_in_time)} "
            f"into {st.recovery_instance} requested by {inp.requested_by or 'unknown'}"
        )
        cancelled = False
        try:
            cancelled = await self._run_body()
        finally:
            if self._clone_requested and not self._clone_done:
                (st.recovery_deleted, err), late = await _to_completion(
                    self._delete(self._recovery_ref(), "the clone did not complete")
                )
                cancelled = cancelled or late
                if err:
                    st.error = f"{st.error}; {st.recovery_instance} not deleted: {err}"
        if self._clone_done:
            recovery = f"kept, data as of {_stamp(inp.point_in_time)}"
        elif st.recovery_deleted or not self._clone_requested:
            recovery = "not created (or deleted after the failed clone)"
        else:
            recovery = "NOT deleted after the failed clone: delete it by hand"
        switch = inp.switch_release
        st.switching = switch is not None and st.outcome == DrOutcome.SUCCEEDED and not cancelled
        services = "untouched (still pointed at the source instance)"
        if st.switching:
            assert switch is not None
            services = (
                f"release {switch.version} (same workflow id) moves "
                f"{', '.join(p.ref.service for p in switch.services)} to {st.recovery_instance}"
            )
        st.left_in = [
            f"instance {st.source_instance}: untouched (point-in-time recovery only reads it)",
            f"instance {st.recovery_instance}: {recovery}",
            f"services: {services}",
        ]
        st.ended_at = workflow.now()
        self._set_phase(DrPhase.DONE)
        self._progress(f"{st.outcome.value}: {st.error or st.abort_reason or st.recovery_instance}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        if cancelled:
            raise asyncio.CancelledError()
        if st.outcome != DrOutcome.SUCCEEDED:
            why = st.error or st.abort_reason or "no reason recorded"
            fail_with_status(
                st,
                f"point-in-time recovery of {st.source_instance} {st.outcome.value}: {why}",
                DR_NOT_SUCCEEDED,
            )
        if st.switching:
            assert switch is not None
            self._event(f"handing over to release {switch.version}")
            recovery_info = RecoveryInfo(
                source_instance=st.source_instance,
                recovery_instance=st.recovery_instance,
                point_in_time=inp.point_in_time,
                clone_seconds=st.clone_seconds,
                validation=st.validation,
                workflow_run_id=workflow.info().run_id,
            )
            workflow.continue_as_new(
                workflow="Release", args=[switch.model_copy(update={"recovery": recovery_info})]
            )
        return st

    def _recovery_ref(self) -> InstanceRef:
        return self.inp.instance.model_copy(update={"instance": self.st.recovery_instance})

    async def _work(self) -> None:
        inp, st = self.inp, self.st
        switch = inp.switch_release
        if switch is not None and any(
            p.database is None or p.database.instance != st.recovery_instance
            for p in switch.services
        ):
            raise _Stop(
                DrOutcome.FAILED, f"the switch release does not target {st.recovery_instance}"
            )
        if inp.point_in_time > workflow.now():
            raise _Stop(DrOutcome.FAILED, f"{_stamp(inp.point_in_time)} is in the future")
        if workflow.patched("pitr-recovery-window"):
            # Before anything is created: PITR on, and the time inside the recoverable window
            # (the API's own getLatestRecoveryTime and transaction-log retention).
            self._progress(f"reading the recoverable window of {st.source_instance}")
            window: RecoveryWindow = await workflow.execute_activity(
                "ReadRecoveryWindow",
                RecoveryWindowInput(ref=inp.instance, point_in_time=inp.point_in_time),
                result_type=RecoveryWindow,
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary=f"recoverable window of {st.source_instance}",
            )
            if window.problem:
                raise _Stop(DrOutcome.FAILED, window.problem)
        self._progress(f"cloning {st.source_instance} at {_stamp(inp.point_in_time)}")
        self._clone_requested = True
        start = workflow.now()
        res = await self._clone(
            CloneInstanceInput(
                ref=inp.instance,
                destination=st.recovery_instance,
                point_in_time=inp.point_in_time,
            ),
            f"clone {st.source_instance} at {inp.point_in_time.isoformat()}",
        )
        self._clone_done = True
        st.clone_seconds = _seconds(start, workflow.now())
        st.operation = res.operation
        self._event(f"{st.recovery_instance} created in {st.clone_seconds:g}s")
        report = await self._validate(inp.verification, self._recovery_ref())
        st.validation = report
        st.newest = report.newest
        if not report.ok:
            raise _Stop(DrOutcome.FAILED, "validation failed: " + "; ".join(report.problems))
        if st.newest is not None and st.newest > inp.point_in_time:
            # Nothing should write to a fresh recovery instance; worth a look, not a failure.
            self._event(
                f"note: {st.recovery_instance} holds rows newer than the recovery point "
                f"(newest {st.newest.isoformat()}); something wrote to it after the clone"
            )


# =============================================================================== DR drill


@workflow.defn(name="DrDrill")
class DrDrillWorkflow(_ScratchWorkflow):
    """The monthly drill: clone the newest SUCCESSFUL backup into a scratch instance
    `<instance>-drill-<YYYYMMDDHHMMSS>`, run the validation queries on the scratch and on the
    source, report (see `DrillReport`: restore time vs RTO, data-loss window vs RPO), and delete
    the scratch instance ALWAYS: on success, failed verification, activity failure, `abort` and
    Temporal cancellation (the delete runs in `finally`, shielded from cancellation).

    Definitions:
    - measured restore time = `workflow.now()` after CloneInstance (backup restored into the
      scratch instance, which is then usable) minus `workflow.now()` before it;
    - data-loss window = newest `created_at` on the source (read after the clone) minus newest
      `created_at` on the scratch: what restoring this backup would lose right now.
    """

    @workflow.init
    def __init__(self, inp: DrillInput) -> None:
        self.inp = inp
        self.env = inp.env
        self.version = "drill"
        self.st = DrillReport(
            app=inp.app,
            env=inp.env,
            source_instance=inp.instance.instance,
            rpo_seconds=inp.rpo.total_seconds(),
            rto_seconds=inp.rto.total_seconds(),
        )
        self._clone_requested = False

    def _state(self) -> DrillReport:
        return self.st

    @workflow.query(
        name="status",
        description=(
            "The drill's report (JSON): {source_instance, scratch_instance, backup, phase, "
            "outcome, tables, restore_seconds vs rto_seconds, data_loss_seconds vs "
            "rpo_seconds, scratch_deleted, events}. No input."
        ),
    )
    def status(self) -> DrillReport:
        return self.st

    @workflow.run
    async def run(self, inp: DrillInput) -> DrillReport:
        st = self.st
        st.started_at = workflow.now()
        st.scratch_instance = drill_instance_name(inp.instance.instance, st.started_at)
        self._set_phase(DrPhase.CLONING)
        self._event(
            f"DR drill of {st.source_instance} ({inp.env}) into {st.scratch_instance} "
            f"requested by {inp.requested_by or 'schedule'}"
        )
        cancelled = False
        try:
            cancelled = await self._run_body()
        finally:
            if self._clone_requested:
                (st.scratch_deleted, err), late = await _to_completion(
                    self._delete(self._scratch_ref(), "drill over")
                )
                cancelled = cancelled or late
                if err:
                    lost = f"scratch {st.scratch_instance} NOT deleted: {err}"
                    st.error = f"{st.error}; {lost}" if st.error else lost
                    if st.outcome == DrOutcome.SUCCEEDED:
                        st.outcome = DrOutcome.FAILED
            else:
                st.scratch_deleted = True  # never created
        st.ended_at = workflow.now()
        self._set_phase(DrPhase.DONE)
        self._progress(f"{st.outcome.value}: {self._summary()}")
        if not cancelled:
            await self._notify(inp.notify, "drill", f"DR drill {inp.env}: {self._summary()}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        if cancelled:
            raise asyncio.CancelledError()
        if st.outcome != DrOutcome.SUCCEEDED:
            fail_with_status(
                st, f"DR drill of {st.source_instance}: {self._summary()}", DR_NOT_SUCCEEDED
            )
        return st

    def _scratch_ref(self) -> InstanceRef:
        return self.inp.instance.model_copy(update={"instance": self.st.scratch_instance})

    def _summary(self) -> str:
        st = self.st
        parts = [f"{st.outcome.value}"]
        if st.restore_seconds is not None:
            parts.append(f"restore {st.restore_seconds:g}s (RTO {st.rto_seconds:g}s)")
        if st.data_loss_seconds is not None:
            parts.append(f"data-loss window {st.data_loss_seconds:g}s (RPO {st.rpo_seconds:g}s)")
        parts.append("scratch deleted" if st.scratch_deleted else "SCRATCH NOT DELETED")
        if st.error or st.abort_reason:
            parts.append(st.error or st.abort_reason)
        return ", ".join(parts)

    async def _work(self) -> None:
        inp, st = self.inp, self.st
        self._progress(f"finding the newest successful backup of {st.source_instance}")
        backups: list[BackupInfo] = await workflow.execute_activity(
            "ListBackups",
            ListBackupsInput(ref=inp.instance, limit=BACKUP_LIST_LIMIT),
            result_type=list[BackupInfo],
            start_to_close_timeout=QUICK,
            retry_policy=API_RETRY,
            summary=f"list backups of {st.source_instance}",
        )
        backup = newest_successful(backups)
        if backup is None:
            raise _Stop(DrOutcome.FAILED, f"{st.source_instance} has no SUCCESSFUL backup")
        st.backup = backup
        self._event(
            f"drilling backup {backup.id} ({backup.type}, "
            f"{backup.enqueued_time.isoformat() if backup.enqueued_time else 'no time'})"
        )

        self._set_phase(DrPhase.CLONING)
        self._progress(f"restoring backup {backup.id} into {st.scratch_instance}")
        self._clone_requested = True
        start = workflow.now()
        await self._clone(
            CloneInstanceInput(
                ref=inp.instance, destination=st.scratch_instance, backup_id=backup.id
            ),
            f"restore {backup.id} into {st.scratch_instance}",
        )
        st.restore_seconds = _seconds(start, workflow.now())
        st.rto_met = st.restore_seconds <= st.rto_seconds
        self._event(f"{st.scratch_instance} restored in {st.restore_seconds:g}s")

        st.scratch = await self._validate(inp.verification, self._scratch_ref())
        st.source = await self._validate(inp.verification, inp.instance)
        self._compare(st.source, st.scratch)
        if not st.verified:
            problems = [f"scratch: {p}" for p in st.scratch.problems]
            problems += [f"source: {p}" for p in st.source.problems]
            raise _Stop(DrOutcome.FAILED, "verification failed: " + "; ".join(problems))

    def _compare(self, source: ValidationReport, scratch: ValidationReport) -> None:
        st = self.st
        src = {t.table: t for t in source.tables}
        scr = {t.table: t for t in scratch.tables}
        st.tables = [
            DrillTable(
                table=name,
                source_rows=src[name].rows if name in src else None,
                scratch_rows=scr[name].rows if name in scr else None,
                source_newest=src[name].newest if name in src else None,
                scratch_newest=scr[name].newest if name in scr else None,
            )
            for name in self.inp.verification.tables
        ]
        st.source_newest = source.newest
        st.scratch_newest = scratch.newest
        if st.source_newest is not None and st.scratch_newest is not None:
            st.data_loss_seconds = max(
                0.0, round((st.source_newest - st.scratch_newest).total_seconds(), 3)
            )
            st.rpo_met = st.data_loss_seconds <= st.rpo_seconds
        st.verified = source.ok and scratch.ok
