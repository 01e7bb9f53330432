"""Restore (DR Scenario 1, corruption): check the backup, wait for approval where required, drain
the services that use the instance (their scaling recorded first), restore the backup into the
instance, run the validation queries, and resume every drained service at exactly its recorded
min/max instances, in the cleanup of the run skeleton (workflows/dr/common.py): after success,
failure, abort and cancellation alike.

Read replicas: Cloud SQL restores no backup into an instance that has read replicas (they must
be deleted first). The instance's replicas are read from the API after the backup check (all of
them, whether `environments.<env>.database.replicas` names them or not; the events say which it
does not), so the approval request names them; after the approval they are read again and
deleted, before anything is drained. The cleanup, after the services are resumed, recreates each
deleted one (same name, region, tier) as a replica of the restored instance, waited until
RUNNABLE, whatever ended the run; a replica that cannot be recreated leaves the restore's outcome
as it was and says in `left_in` how to recreate it. Runs recorded before this
(`workflow.patched(RESTORE_REPLICAS)`) never look for replicas.

Exclusivity: Restore runs under the release's workflow id `deploy-<app>-<env>`
(`stagecoach.contract.environment_workflow_id`). Temporal allows one running execution per id,
so a release and a restore of the same environment can never run at once and whichever starts
second is refused atomically by the server (no check-then-start race). It also means
`starter.py approve ENV --by NAME` and `starter.py abort ENV` reach a waiting restore exactly as
they reach a release.

Messages: query `status`; signal `abort` (any payload; a restore stops before its restore
operation starts: after that the operation cannot be stopped half way, so it finishes and the
services resume); update `approve` {by, comment, proof} where the environment asks for approval
(`release.restore_requires_approval`): nothing is drained or restored before it.

Deterministic: durations are `workflow.now()` deltas around the activity that does the work.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.common import API_RETRY, QUICK, error_message, refuse_input

with workflow.unsafe.imports_passed_through():
    from activities.cloud_run import CloudRunActivities
    from activities.cloud_sql import CloudSqlActivities
    from activities.db_verify import DatabaseActivities
    from stagecoach.config import ENV_NAME_RE
    from stagecoach.contract import Message, WorkflowType
    from stagecoach.payloads.common import ApproveInput, ApproveResult, InstanceRef, Outcome, Phase
    from stagecoach.payloads.dr import (
        ReplicaRecreation,
        RestoreInput,
        RestoreStatus,
        ServiceScaling,
    )
    from stagecoach.payloads.policy import TargetClaim
    from stagecoach.payloads.run import ScalingRecord, ServiceState, SetScalingInput
    from stagecoach.payloads.sql import (
        BackupInfo,
        RestoreBackupInput,
        ValidationReport,
    )

from workflows.dr.common import (
    BACKUP_ID_RE,
    CLEANUP_DEADLINE,
    CLEANUP_RETRY,
    HEARTBEAT,
    OPERATION,
    SCALING,
    VALIDATION,
    DrRunAnyAbort,
    DrStop,
    instance_claim,
    list_backups,
    seconds,
    to_completion,
    validate_input,
)
from workflows.dr.replica_steps import ReplicaSteps, replica_left_in

# Restores started after this look for the instance's read replicas, delete them before the
# restore and recreate them after it (recorded histories from before never do).
RESTORE_REPLICAS = "restore-replicas"


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


def _scaling_input(svc: ServiceScaling, *, drained: bool) -> SetScalingInput:
    """Drain `svc`, or resume it at exactly its recorded scaling."""
    return SetScalingInput(
        ref=svc.ref,
        drained=drained,
        min_instances=svc.min_instances,
        max_instances=svc.max_instances,
        record=svc.record,
    )


@workflow.defn(name=WorkflowType.RESTORE)
class RestoreWorkflow(ReplicaSteps, DrRunAnyAbort):
    """Scenario 1 (corruption): check the backup, wait for approval where required, drain the
    services that use the instance (their scaling recorded first), restore the backup into the
    instance, run the validation queries, and resume every drained service at exactly its
    recorded min/max instances. The resume runs in the skeleton's cleanup: after success,
    failure, abort and cancellation alike, and then so does the recreation of the read replicas
    deleted before the restore (see the module docstring). `database_state` and `left_in` say
    what state everything was left in.
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
        self.abort_requested = None
        self.policy = None
        self._restore_started = False
        self._drained_at: datetime | None = None

    def _state(self) -> RestoreStatus:
        return self.st

    def _title(self) -> str:
        return f"restore of backup {self.inp.backup_id}"

    # ------------------------------------------------------------------ messages

    @workflow.query(
        name=Message.STATUS,
        description=(
            "The restore's status (JSON): {env, instance, backup_id, phase, outcome, error, "
            "services: [scaling recorded/resumed], replicas: [read replicas deleted and "
            "recreated], validation, left_in, events}. No input."
        ),
    )
    def status(self) -> RestoreStatus:
        return self.st

    def _abort_refused(self) -> str:
        if self._restore_started:
            return (
                "the restore operation is running and cannot be stopped half way; services "
                "resume when it ends"
            )
        return ""

    @workflow.update(
        name=Message.APPROVE,
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
        authenticated = self._accept_approval(inp)
        self._event(
            f"restore approved by {inp.by} ({authenticated}): {inp.comment or 'no comment'}"
        )
        return ApproveResult(approved_weight=0, by=inp.by)

    @approve.validator
    def _validate_approve(self, inp: ApproveInput) -> None:
        self._check_approvable(f"restore of backup {self.inp.backup_id} into {self.inp.env}")

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, inp: RestoreInput) -> RestoreStatus:
        if not (BACKUP_ID_RE.fullmatch(inp.backup_id) and ENV_NAME_RE.fullmatch(inp.env)):
            refuse_input(
                "restore",
                [f"backup id {inp.backup_id[:40]!r} / environment {inp.env[:40]!r}"],
            )
        self._begin(
            Phase.VALIDATING,
            f"restore of backup {inp.backup_id} into {inp.instance.instance} ({inp.env}) "
            f"requested by {inp.requested_by or 'unknown'}",
        )
        await self._notify(
            inp.notify, "started", f"Restore of backup {inp.backup_id} into {inp.env} started"
        )
        await self._run_to_end()
        return self.st

    async def _work(self) -> None:
        inp = self.inp
        claims = [instance_claim(inp.instance)] + [
            TargetClaim(
                what=f"service {r.service}", kind=r.target.kind, host=r.target.host,
                project=r.project, region=r.region,
            )
            for r in inp.services
        ]  # fmt: skip
        await self._load_policy(claims, inp.approvers)
        await self._check_backup()
        replicas = workflow.patched(RESTORE_REPLICAS)
        if replicas:
            await self._find_replicas()
        await self._await_approval()
        self._check_abort()
        if replicas:
            await self._delete_replicas(read_again=self._needs_approval(), phase=Phase.RESTORING)
            self._check_abort()
        await self._drain()
        self._check_abort()
        await self._restore()
        await self._verify()

    def _needs_cleanup(self) -> bool:
        return True

    async def _clean_up(self) -> None:
        await self._resume_all()
        await self._recreate_replicas(phase=Phase.RESUMING)

    async def _report(self, cancelled: bool) -> None:
        st = self.st
        self._finish()
        if st.outcome != Outcome.SUCCEEDED:
            await self._notify(
                self.inp.notify,
                "failed",
                f"Restore of backup {self.inp.backup_id} into {self.inp.env} {st.outcome.value}: "
                f"{st.error or st.abort_reason}. Left in: " + "; ".join(st.left_in),
            )
        elif self._replica_recreate_failed():
            # the restore succeeded, but someone must recreate a replica by hand
            await self._notify(
                self.inp.notify,
                "failed",
                f"Restore of backup {self.inp.backup_id} into {self.inp.env} succeeded, but "
                "not every read replica was recreated. Left in: " + "; ".join(st.left_in),
            )

    # ------------------------------------------------------------------ steps

    async def _check_backup(self) -> None:
        """The backup must exist and be SUCCESSFUL before anything is drained."""
        inp = self.inp
        source = inp.source_instance or inp.instance.instance
        self._progress(f"checking backup {inp.backup_id} of {source}")
        ref = inp.instance.model_copy(update={"instance": source})
        backups: list[BackupInfo] = await list_backups(ref)
        found = next((b for b in backups if b.id == inp.backup_id), None)
        if found is None:
            raise DrStop(
                Outcome.FAILED,
                f"backup {inp.backup_id} of {source} not found; list them with "
                f"`starter.py backups {inp.env}`",
            )
        if found.status != "SUCCESSFUL":
            raise DrStop(
                Outcome.FAILED,
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
        if not self._needs_approval():
            return
        who = " or ".join(policy.approvers)
        plan = self._replica_plan()
        await self._wait_for_approval(
            Phase.AWAITING_APPROVAL,
            f"awaiting approval by {who}",
            f"awaiting approval by {who}" + (f"; {plan}" if plan else ""),
            f"Restore of backup {inp.backup_id} into {inp.env} awaits approval ({who})"
            + (f"; {plan}" if plan else ""),
        )

    # ------------------------------------------------------------------ read replicas

    def _replica_primary(self) -> InstanceRef:
        return self.inp.instance

    def _replica_records(self) -> list[ReplicaRecreation]:
        return self.st.replicas

    def _configured_replicas(self) -> list[str] | None:
        return self.inp.configured_replicas

    async def _drain(self) -> None:
        """Record each service's scaling, then drain it (manual scaling, 0 instances)."""
        self._set_phase(Phase.DRAINING)
        for svc in self.st.services:
            self._check_abort()
            self._progress(f"recording the scaling of {svc.service}")
            live: ServiceState = await workflow.execute_activity_method(
                CloudRunActivities.get_service_state,
                svc.ref,
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
            await workflow.execute_activity_method(
                CloudRunActivities.set_scaling,
                _scaling_input(svc, drained=True),
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
        self._set_phase(Phase.RESTORING)
        self._progress(f"restoring backup {inp.backup_id} into {inp.instance.instance}")
        st.database_state = f"restore of backup {inp.backup_id} in progress"
        start = workflow.now()
        try:
            res, cancelled = await to_completion(
                workflow.execute_activity_method(
                    CloudSqlActivities.restore_backup,
                    RestoreBackupInput(
                        ref=inp.instance, backup_id=inp.backup_id, source_instance=source
                    ),
                    start_to_close_timeout=OPERATION,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=API_RETRY,
                    summary=f"restore {inp.backup_id} into {inp.instance.instance}",
                )
            )
        except ActivityError as err:
            st.restore_seconds = seconds(start, workflow.now())
            st.database_state = (
                f"restore of backup {inp.backup_id} FAILED ({error_message(err)}): the data "
                "may be unchanged or partly restored; check it before serving traffic"
            )
            self._event(f"restore failed: {error_message(err)}")
            raise
        st.restore_seconds = seconds(start, workflow.now())
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
        self._set_phase(Phase.VERIFYING)
        self._progress(f"validating {inp.verification.database} on {inp.instance.instance}")
        report: ValidationReport = await workflow.execute_activity_method(
            DatabaseActivities.validate_database,
            validate_input(inp.verification, inp.instance),
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
            raise DrStop(Outcome.FAILED, "validation failed: " + "; ".join(report.problems))
        st.database_state = f"restored from backup {inp.backup_id} and validated ({counts})"
        self._event(f"validation passed: {counts}")

    async def _resume_all(self) -> None:
        """Resume every service this restore drained at exactly its recorded scaling."""
        for svc in self.st.services:
            if svc.state not in ("draining", "drained"):
                continue
            self._set_phase(Phase.RESUMING)
            self._progress(
                f"resuming {svc.service} at min {svc.min_instances}, max {svc.max_instances}"
            )
            try:
                live: ServiceState = await workflow.execute_activity_method(
                    CloudRunActivities.set_scaling,
                    _scaling_input(svc, drained=False),
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
            self.st.downtime_seconds = seconds(self._drained_at, workflow.now())

    def _finish(self) -> None:
        st = self.st
        st.left_in = [f"instance {st.instance}: {st.database_state}"]
        st.left_in += [replica_left_in(rec, self.inp.instance) for rec in st.replicas]
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
        self._set_phase(Phase.DONE)
        summary = st.error or st.abort_reason or st.database_state
        self._progress(f"{st.outcome.value}: {summary}")
