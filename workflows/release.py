"""The release workflow: backup, then a canary rollout per service in dependency order, then a
saga rollback of the services this release already promoted if a later one fails.

Deterministic: no I/O, no wall clock, no randomness; timers via `workflow.wait_condition`.
All state lives in one `ReleaseStatus` object, which is also what `status` returns, what the
workflow returns, and what it carries across continue-as-new during a long bake.

Messages (usable from starter.py, `temporal workflow signal/update` and the Web UI):
- update `approve` {by, comment}: an update, not a signal, so the caller learns at once whether
  the approval was accepted (validator: only while awaiting approval, only listed approvers);
- signal `abort` {reason}: acts at once, also mid-bake; restores the previous traffic. Any
  payload aborts (a string, a number, a list, nothing): it arrives through the dynamic signal
  handler, which never drops a signal it cannot decode; the reason is capped;
- signal `promote`: skip the remaining bake windows and steps once the gates pass;
- query `status` (the full object, for programs) and `summary` (a few lines, for people).

This module holds the workflow (messages, run, set-up before any traffic moves, compensation);
its parts are mixins of `ReleaseRun` (release_run.py): the canary rollout of a service
(release_canary.py), the bake and its judgement (release_bake.py), the release hooks
(release_hooks.py); the summary is release_summary.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError

from workflows.common import (
    API_RETRY,
    QUICK,
    TRAFFIC_RETRY,
    error_message,
    fail_with_status,
    on_signal,
    refuse_input,
)

with workflow.unsafe.imports_passed_through():
    from activities.cloud_run import CloudRunActivities
    from activities.cloud_sql import CloudSqlActivities
    from activities.locks import acquire_service_locks, release_service_locks
    from stagecoach.bindings import check_serving
    from stagecoach.bounds import clip
    from stagecoach.config import ENV_NAME_RE, VERSION_RE
    from stagecoach.contract import RELEASE_NOT_PROMOTED, Message, WorkflowType
    from stagecoach.locks import Holder, LocksInput
    from stagecoach.payloads.common import AbortInput, ApproveInput, ApproveResult, Outcome, Phase
    from stagecoach.payloads.policy import TargetClaim, WorkerPolicy
    from stagecoach.payloads.release import ReleaseInput, ReleaseStatus, ServiceStatus
    from stagecoach.payloads.run import ReadServingInput, ServingRevision
    from stagecoach.payloads.sql import BackupInfo, CreateBackupInput
    from stagecoach.splits import describe

from workflows.policy import POLICY_FROM_WORKER, accept_approval, load_policy
from workflows.release_canary import CanaryRollout
from workflows.release_hooks import ReleaseHooks
from workflows.release_run import (
    CANARY_TAG,
    HEARTBEAT,
    LONG,
    RECOVERY_VERSION_RE,
    SERVICE_LOCK,
    ContinueAsNew,
    ReleaseStop,
)
from workflows.release_summary import release_summary

__all__ = ["CANARY_TAG", "ReleaseWorkflow"]


@workflow.defn(name=WorkflowType.RELEASE)
class ReleaseWorkflow(CanaryRollout, ReleaseHooks):
    @workflow.init
    def __init__(self, inp: ReleaseInput) -> None:
        self.inp = inp
        # `resume` is state this workflow carried over itself: accepted only on a continued run
        # (a client starting a run cannot pre-fill approvals or progress)
        self._resume_refused = inp.resume is not None and not workflow.info().continued_run_id
        resume = None if self._resume_refused else inp.resume
        self.policy: WorkerPolicy | None = None  # the worker's, loaded at the start of the run
        self._legacy_policy = False  # histories from before POLICY_FROM_WORKER
        self.st: ReleaseStatus = resume or ReleaseStatus(
            app=inp.app,
            env=inp.env,
            version=inp.version,
            services=[ServiceStatus(name=s.name, run_service=s.ref.service) for s in inp.services],
            recovery=inp.recovery,
        )
        # an abort that arrived just before a continue-as-new carries over in the state
        self.abort_requested: AbortInput | None = (
            AbortInput(reason=self.st.abort_reason)
            if self.st.abort_reason and self.st.outcome == Outcome.RUNNING
            else None
        )
        self.promote_requested = self.st.promote_requested
        self._promote_seen = False  # a promote wakes a bake wait once, then reads decide
        self.env = inp.env
        self.version = inp.version

    # ------------------------------------------------------------------ messages

    @workflow.query(
        name=Message.STATUS,
        description=(
            "The full release status (JSON, for programs): {app, env, version, phase, outcome, "
            "progress, backup_id, error, abort_reason, awaiting_approval_for, approvals: [{by, at, "
            "comment, before_weight}], services: [{name, run_service, state, percent, "
            "stable_revisions, canary_revision, snapshot, readings: [{at, weight, verdict, "
            "reasons, ...}]}], events: [...]}. No input."
        ),
    )
    def status(self) -> ReleaseStatus:
        return self.st

    @workflow.query(
        name=Message.SUMMARY,
        description=(
            "The release in a few lines for people: phase, each service's percent, what it is "
            "doing (baking, awaiting approval, frozen, paused) and its last verdict, what is "
            "awaited and how to answer. No input."
        ),
    )
    def summary(self) -> str:
        approval = self.policy.approval if self.policy is not None else None
        return release_summary(self.st, approval.approvers if approval is not None else [])

    @workflow.signal(
        dynamic=True,
        description=(
            'abort: roll back at once, also mid-bake; input {"reason": "bad logs", "by": "NAME"} '
            "(any payload aborts). Other signal names are ignored."
        ),
    )
    def _signal(self, name: str, args: Sequence[RawValue]) -> None:
        """`abort` (and any signal no named handler takes). A typed handler would drop a payload
        that does not decode; the emergency brake must never be dropped."""
        on_signal(name, args, self.abort)

    def abort(self, inp: AbortInput) -> None:
        if self.abort_requested is None and self.st.outcome == Outcome.RUNNING:
            self.abort_requested = inp
            self.st.abort_reason = inp.reason
            by = f" by {inp.by}" if inp.by else ""
            self._event(f"abort requested{by}: {inp.reason}")

    @workflow.signal(
        name=Message.PROMOTE,
        description=(
            "Skip the remaining bake windows and steps once the gates pass (approval still "
            "holds); on a paused release, the person's override: go on. No input."
        ),
    )
    def promote(self) -> None:
        if not self.promote_requested and self.st.outcome == Outcome.RUNNING:
            self.promote_requested = True
            self.st.promote_requested = True
            self._event("promote requested: remaining bake windows skipped once gates pass")

    @workflow.update(
        name=Message.APPROVE,
        description=(
            "Approve the step the release awaits (only then, only by a listed approver with "
            'proof). Input {"by": "release-manager", "comment": "canary looks good", "proof": '
            "{workflow_id, run_id, version, step, key, signature}} (`python starter.py approve "
            "ENV --by NAME --print-payload` prints it). Returns {approved_weight, by}."
        ),
    )
    async def approve(self, inp: ApproveInput) -> ApproveResult:
        """Counts only with proof of who sent it (see stagecoach.trust), verified here against
        the worker's policy. A refused attempt is recorded (status, event, log) with the claimed
        and the authenticated identity, then the update fails with the reason."""
        weight = self.st.awaiting_approval_for
        assert weight is not None  # guaranteed by the validator
        policy = self.policy
        assert policy is not None  # awaiting approval implies a loaded policy
        authenticated = accept_approval(
            self,
            self.st,
            policy,
            inp,
            version=self.inp.version,
            step=weight,
            requested_by=self.inp.requested_by,
            already=self._approved(weight),
        )
        self._event(
            f"approved by {inp.by} ({authenticated}) before {weight}%: "
            f"{inp.comment or 'no comment'}"
        )
        return ApproveResult(approved_weight=weight, by=inp.by)

    @approve.validator
    def _validate_approve(self, inp: ApproveInput) -> None:
        # only what needs no record: everything about who sent it is judged (and recorded) in
        # the handler
        if self.st.awaiting_approval_for is None or self.policy is None:
            raise ValueError(
                f"release {self.st.version} to {self.st.env} is not awaiting approval "
                f"(phase {self.st.phase.value})"
            )
        if self._approved(self.st.awaiting_approval_for):
            raise ValueError("already approved")

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, inp: ReleaseInput) -> ReleaseStatus:
        _check_input(inp)
        st = self.st
        if self._resume_refused:
            self._event("resume state in the input ignored: only a continued run carries state")
        if workflow.patched(POLICY_FROM_WORKER):
            self.policy = await self._load_policy()
        else:
            self._legacy_policy = True
            self.policy = WorkerPolicy(
                env=inp.env, source="workflow input (legacy)", approval=inp.approval, proof="none"
            )
        if st.started_at is None:
            st.started_at = workflow.now()
            self._event(f"release {inp.version} to {inp.env} started by {inp.requested_by}")
            self._record_freeze_override()
            await self._notify("started", f"Release {inp.version} to {inp.env} started")
        self._set_phase(st.phase)
        try:
            if self.abort_requested:
                raise ReleaseStop(Outcome.ABORTED, self.abort_requested.reason)
            if self.policy is None:
                raise ReleaseStop(Outcome.FAILED, self._policy_error)
            if workflow.patched(SERVICE_LOCK):
                await self._lock()
            if not st.serving_checked:
                await self._check_serving()
            if inp.backup and not st.backup_id:
                await self._backup()
            await self._run_hooks("pre_deploy")
            for plan, svc in zip(inp.services, st.services, strict=True):
                if svc.state == "promoted":
                    continue
                st.current_service = svc.name
                await self._rollout(plan, svc)
            await self._run_hooks("post_deploy")
            st.outcome = Outcome.PROMOTED
            self._event(f"release {inp.version} promoted")
            await self._notify("promoted", f"Release {inp.version} promoted in {inp.env}")
        except ReleaseStop as stop:
            st.outcome = stop.outcome
            if stop.outcome == Outcome.ABORTED:
                st.abort_reason = str(stop)
            else:
                st.error = str(stop)
            self._note_migration()
            await self._compensate()
            if st.migration_note:
                await self._notify("rolled_back", st.migration_note)
        except ContinueAsNew:
            await workflow.wait_condition(workflow.all_handlers_finished)
            next_input = inp.model_copy(update={"resume": st})
            workflow.continue_as_new(next_input)
        if self._locks is not None:
            await self._unlock()
        st.phase = Phase.DONE
        st.awaiting_approval_for = None
        st.ended_at = workflow.now()
        self._set_phase(Phase.DONE)
        self._progress(f"{st.outcome.value}: {st.error or st.abort_reason or inp.version}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        if st.outcome != Outcome.PROMOTED:
            why = st.error or st.abort_reason or "no reason recorded"
            fail_with_status(
                st,
                f"release {inp.version} to {inp.env} {st.outcome.value.replace('_', ' ')}: {why}",
                RELEASE_NOT_PROMOTED,
            )
        return st

    # ------------------------------------------------------------------ steps

    _policy_error = ""

    async def _load_policy(self) -> WorkerPolicy | None:
        """The worker's policy for this environment; it also refuses targets (projects,
        regions, a simulator off loopback) the worker's config does not allow. On refusal the
        run stops before anything is touched (None; the reason in `_policy_error`)."""
        inp = self.inp
        claims = [
            TargetClaim(
                what=f"service {p.ref.service}",
                kind=p.ref.target.kind,
                host=p.ref.target.host,
                project=p.ref.project,
                region=p.ref.region,
            )
            for p in inp.services
        ]
        if inp.backup:
            claims.append(
                TargetClaim(
                    what=f"instance {inp.backup.instance}",
                    kind=inp.backup.target.kind,
                    host=inp.backup.target.host,
                    project=inp.backup.project,
                )
            )
        try:
            policy = await load_policy(inp.env, claims)
        except ActivityError as err:
            self._policy_error = f"refused by the worker's policy: {error_message(err)}"
            return None
        return policy

    _locks: LocksInput | None = None

    async def _lock(self) -> None:
        """Hold the Cloud Run services of this release (stagecoach.locks): a second release of
        one of them, from any config or app, is refused here, before anything is touched."""
        info = workflow.info()
        self._locks = LocksInput(
            holder=Holder(
                workflow_id=info.workflow_id,
                app=self.inp.app,
                env=self.inp.env,
                version=self.inp.version,
                since=workflow.now(),
            ),
            services=[p.ref for p in self.inp.services],
        )
        try:
            await workflow.execute_activity(
                acquire_service_locks,
                self._locks,
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary="hold " + ", ".join(p.ref.service for p in self.inp.services),
            )
        except ActivityError as err:
            raise ReleaseStop(Outcome.FAILED, error_message(err)) from err

    async def _unlock(self) -> None:
        assert self._locks is not None
        try:
            await workflow.execute_activity(
                release_service_locks,
                self._locks,
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary="release " + ", ".join(p.ref.service for p in self.inp.services),
            )
        except ActivityError as err:  # the locks notice a holder that ended by themselves
            self._event(f"releasing the service locks failed: {error_message(err)}")

    async def _check_serving(self) -> None:
        """Before anything is touched: read what serves now where it matters (services bound to
        a database, plans that keep the serving image) and stop on database drift."""
        for plan, svc in zip(self.inp.services, self.st.services, strict=True):
            if svc.state != "pending" or (plan.database is None and plan.image):
                continue
            self._progress(f"{svc.run_service}: reading the serving revisions")
            try:
                serving: list[ServingRevision] = await workflow.execute_activity_method(
                    CloudRunActivities.read_serving,
                    ReadServingInput(
                        ref=plan.ref, env_var=plan.database.env_var if plan.database else ""
                    ),
                    start_to_close_timeout=QUICK,
                    retry_policy=API_RETRY,
                    summary=f"serving {svc.run_service}",
                )
            except ActivityError as err:
                raise ReleaseStop(
                    Outcome.FAILED, f"{svc.run_service}: {error_message(err)}"
                ) from err
            check = check_serving(plan, serving, self.inp.env, self.inp.switch_database)
            if check.problem:
                svc.state = "failed"
                svc.error = check.problem
                raise ReleaseStop(Outcome.FAILED, check.problem)
            svc.image = check.image or plan.image
            svc.database_before = check.before
            svc.database = plan.database.instance if plan.database else ""
            if not plan.image:
                self._event(f"{svc.run_service}: keeps image {svc.image}")
            if plan.database and check.before != svc.database:
                self._event(
                    f"{svc.run_service}: database {check.before or '(none)'} -> {svc.database}"
                )
        self.st.serving_checked = True

    async def _backup(self) -> None:
        assert self.inp.backup is not None
        self._set_phase(Phase.BACKING_UP)
        stamp = workflow.now().strftime("%Y-%m-%d %H:%M:%S UTC")
        desc = f"Pre-deployment backup {self.inp.version} {stamp}"
        self._progress(f"backing up {self.inp.backup.instance}")
        try:
            info: BackupInfo = await workflow.execute_activity_method(
                CloudSqlActivities.create_backup,
                CreateBackupInput(ref=self.inp.backup, description=desc),
                start_to_close_timeout=LONG,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=API_RETRY,
                summary=f"backup {self.inp.backup.instance}",
            )
        except ActivityError as err:
            raise ReleaseStop(
                Outcome.FAILED, f"pre-deploy backup failed: {error_message(err)}"
            ) from err
        self.st.backup_id = info.id
        self._event(f"backup {info.id} of {self.inp.backup.instance} {info.status}")

    # ------------------------------------------------------------------ compensation

    async def _compensate(self) -> None:
        """Restore the failing service's traffic exactly, then earlier services, newest first."""
        self._set_phase(Phase.ROLLING_BACK)
        self.st.awaiting_approval_for = None
        touched = [
            (p, s) for p, s in zip(self.inp.services, self.st.services, strict=True) if s.snapshot
        ]
        for plan, svc in reversed(touched):
            self._progress(f"{svc.run_service}: restoring {describe(svc.snapshot)}")
            try:
                await self._set_traffic(
                    plan,
                    svc.snapshot,
                    "rollback",
                    TRAFFIC_RETRY,
                    summary=_rollback_summary(
                        plan.ref.service,
                        self.st.error or f"aborted: {self.st.abort_reason}",
                        describe(svc.snapshot),
                    ),
                )
            except ActivityError as err:
                svc.error = f"rollback failed: {error_message(err)}"
                self.st.outcome = Outcome.FAILED
                self._event(f"{svc.run_service}: {svc.error}")
                continue
            svc.percent = 0
            if svc.state == "promoted":
                svc.state = "rolled_back"
            self._event(f"{svc.run_service}: traffic restored to {describe(svc.snapshot)}")
        kind = "rolled_back" if self.st.outcome != Outcome.FAILED else "failed"
        await self._notify(
            kind,
            f"Release {self.inp.version} to {self.inp.env} {self.st.outcome.value}: "
            f"{self.st.error or self.st.abort_reason}",
        )


def _rollback_summary(service: str, why: str, split: str) -> str:
    """The rollback's SetTraffic summary: the reason first (the Web UI's history list shows a
    summary's start), then the split it restores."""
    why = why.removeprefix(f"{service}: ")
    return f"{service}: rollback, {clip(why, 150)} -> {split}"


def _check_input(inp: ReleaseInput) -> None:
    """Refuse an input starter.py would never build (see `refuse_input`)."""
    problems = []
    if not (VERSION_RE.fullmatch(inp.version) or RECOVERY_VERSION_RE.fullmatch(inp.version)):
        problems.append(f"version {inp.version[:40]!r} is not vMAJOR.MINOR.PATCH")
    if not ENV_NAME_RE.fullmatch(inp.env) or len(inp.env) > 40:
        problems.append(f"environment {inp.env[:40]!r} is not a valid name")
    weights = [s.weight for s in inp.steps]
    if not weights or weights != sorted(set(weights)) or weights[-1] != 100:
        problems.append(f"step weights {weights[:10]} must rise strictly to 100")
    if not inp.services:
        problems.append("no services")
    refuse_input("release", problems)
