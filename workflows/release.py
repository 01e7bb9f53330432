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
- query `status`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.common import (
    API_RETRY,
    QUICK,
    TRAFFIC_RETRY,
    Visible,
    decode_abort,
    error_message,
    fail_with_status,
)

with workflow.unsafe.imports_passed_through():
    from stagecoach.bake import after_reading, metrics_timing
    from stagecoach.bindings import check_serving
    from stagecoach.bounds import MAX_ERROR, MAX_REJECTED, clip
    from stagecoach.config import ENV_NAME_RE, VERSION_RE
    from stagecoach.freeze import frozen_at
    from stagecoach.gates import evaluate
    from stagecoach.judge import Counts, Judge, Observation, Settings, settings_from_gates
    from stagecoach.locks import Holder, LocksInput
    from stagecoach.models import (
        RELEASE_NOT_PROMOTED,
        AbortInput,
        ApprovalRecord,
        ApproveInput,
        ApproveResult,
        BackupInfo,
        CanaryMetrics,
        CreateBackupInput,
        CreateRevisionResult,
        ExecutionRef,
        HookExecution,
        HookPlan,
        HookStatus,
        MetricWindow,
        NotifyInput,
        Outcome,
        Phase,
        ReadCanaryMetricsInput,
        Reading,
        ReadServingInput,
        RejectedApproval,
        ReleaseInput,
        ReleaseStatus,
        RevisionHealth,
        RevisionHealthInput,
        ServicePlan,
        ServiceState,
        ServiceStatus,
        ServingRevision,
        SetTrafficInput,
        SetTrafficResult,
        SmokeTestInput,
        SmokeTestResult,
        StartHookInput,
        TrafficTarget,
        Verdict,
    )
    from stagecoach.splits import canary_split, describe, pin_latest, serving_revisions
    from stagecoach.trust import LoadPolicyInput, TargetClaim, WorkerPolicy, judge_approval

CANARY_TAG = "canary"
SNAPSHOT_IN_CREATE = "snapshot-in-create-revision"  # workflow.patched id
SEQUENTIAL_JUDGE = "sequential-judge"  # workflow.patched id: stagecoach.judge and stagecoach.bake
POLICY_FROM_WORKER = "policy-from-worker"  # workflow.patched id: LoadPolicy at the start of a run
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


class _Stop(Exception):
    """Ends the rollout of a service: the outcome says how, the message says why."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(clip(message, MAX_ERROR))
        self.outcome = outcome


@workflow.defn(name="Release")
class ReleaseWorkflow(Visible):
    details_joiner = "to"

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
        name="status",
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
        if name == "abort":
            self.abort(decode_abort(args))
        else:
            workflow.logger.warning("ignoring unknown signal %r", name[:100])

    def abort(self, inp: AbortInput) -> None:
        if self.abort_requested is None and self.st.outcome == Outcome.RUNNING:
            self.abort_requested = inp
            self.st.abort_reason = inp.reason
            by = f" by {inp.by}" if inp.by else ""
            self._event(f"abort requested{by}: {inp.reason}")

    @workflow.signal(
        name="promote",
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
        name="approve",
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
        info = workflow.info()
        verdict = judge_approval(
            policy,
            by=inp.by,
            comment=inp.comment,
            proof=inp.proof,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            version=self.inp.version,
            step=weight,
            requested_by=self.inp.requested_by,
        )
        if self._approved(weight):
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
                before_weight=weight,
                authenticated=verdict.authenticated,
            )
        )
        self._event(
            f"approved by {inp.by} ({verdict.authenticated}) before {weight}%: "
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
                raise _Stop(Outcome.ABORTED, self.abort_requested.reason)
            if self.policy is None:
                raise _Stop(Outcome.FAILED, self._policy_error)
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
        except _Stop as stop:
            st.outcome = stop.outcome
            if stop.outcome == Outcome.ABORTED:
                st.abort_reason = str(stop)
            else:
                st.error = str(stop)
            self._note_migration()
            await self._compensate()
            if st.migration_note:
                await self._notify("rolled_back", st.migration_note)
        except _ContinueAsNew:
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
            policy: WorkerPolicy = await workflow.execute_activity(
                "LoadPolicy",
                LoadPolicyInput(env=inp.env, claims=claims),
                result_type=WorkerPolicy,
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary=f"policy for {inp.env}",
            )
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
                "AcquireServiceLocks",
                self._locks,
                result_type=list[str],
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary="hold " + ", ".join(p.ref.service for p in self.inp.services),
            )
        except ActivityError as err:
            raise _Stop(Outcome.FAILED, error_message(err)) from err

    async def _unlock(self) -> None:
        assert self._locks is not None
        try:
            await workflow.execute_activity(
                "ReleaseServiceLocks",
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
                serving: list[ServingRevision] = await workflow.execute_activity(
                    "ReadServing",
                    ReadServingInput(
                        ref=plan.ref, env_var=plan.database.env_var if plan.database else ""
                    ),
                    result_type=list[ServingRevision],
                    start_to_close_timeout=QUICK,
                    retry_policy=API_RETRY,
                    summary=f"serving {svc.run_service}",
                )
            except ActivityError as err:
                raise _Stop(Outcome.FAILED, f"{svc.run_service}: {error_message(err)}") from err
            check = check_serving(plan, serving, self.inp.env, self.inp.switch_database)
            if check.problem:
                svc.state = "failed"
                svc.error = check.problem
                raise _Stop(Outcome.FAILED, check.problem)
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
            info: BackupInfo = await workflow.execute_activity(
                "CreateBackup",
                CreateBackupInput(ref=self.inp.backup, description=desc),
                result_type=BackupInfo,
                start_to_close_timeout=LONG,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=API_RETRY,
                summary=f"backup {self.inp.backup.instance}",
            )
        except ActivityError as err:
            raise _Stop(Outcome.FAILED, f"pre-deploy backup failed: {error_message(err)}") from err
        self.st.backup_id = info.id
        self._event(f"backup {info.id} of {self.inp.backup.instance} {info.status}")

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
        except _Stop as stop:
            svc.state = "failed" if stop.outcome == Outcome.FAILED else "rolled_back"
            svc.error = str(stop)
            raise
        except (ActivityError, ApplicationError) as err:
            # a local activity's (ReadCanaryMetrics) non-retryable failure arrives as a bare
            # ApplicationError: it must stop the service and roll back like any other failure
            svc.state = "failed"
            svc.error = error_message(err)
            raise _Stop(Outcome.FAILED, f"{svc.run_service}: {svc.error}") from err

    async def _snapshot_and_create(self, plan: ServicePlan, svc: ServiceStatus) -> None:
        self._set_phase(Phase.DEPLOYING)
        # CreateRevision reports the traffic it found (one read fewer per service); histories
        # from before that still replay the separate GetServiceState read.
        folded = workflow.patched(SNAPSHOT_IN_CREATE)
        if not folded:
            self._progress(f"{svc.run_service}: reading live traffic")
            live: ServiceState = await workflow.execute_activity(
                "GetServiceState",
                plan.ref,
                result_type=ServiceState,
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary=f"snapshot {svc.run_service}",
            )
            self._keep_snapshot(svc, pin_latest(live.traffic, live.latest_ready_revision))
        self._progress(f"{svc.run_service}: creating {plan.revision} (no traffic, tag canary)")
        created: CreateRevisionResult = await workflow.execute_activity(
            "CreateRevision",
            plan.create_input(CANARY_TAG, image=svc.image),
            result_type=CreateRevisionResult,
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
            "SmokeTest",
            SmokeTestInput(url=svc.tag_url, path=plan.health_path),
            result_type=SmokeTestResult,
            start_to_close_timeout=QUICK,
            retry_policy=API_RETRY,
            summary=f"smoke {svc.canary_revision}",
        )
        if not res.ok:
            raise _Stop(
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

    # ------------------------------------------------------------------ release hooks

    def _hook_plans(self, stage: str) -> list[HookPlan]:
        if stage == "pre_deploy":
            return self.inp.pre_deploy_hooks
        return self.inp.post_deploy_hooks

    async def _run_hooks(self, stage: str) -> None:
        """Run the hooks of `stage` one after another, each once per release (resumable from
        `st.hooks` after continue-as-new or a worker crash)."""
        plans = self._hook_plans(stage)
        if not plans or not workflow.patched(RELEASE_HOOKS):
            return
        for plan in plans:
            hs = next(
                (h for h in self.st.hooks if h.stage == plan.stage and h.name == plan.name), None
            )
            if hs is None:
                hs = HookStatus(
                    name=plan.name,
                    stage=plan.stage,
                    job=plan.ref.job,
                    image=plan.image,
                    uses_database=plan.database is not None,
                )
                self.st.hooks.append(hs)
            if hs.state == "succeeded":
                continue
            await self._run_hook(plan, hs)
            if hs.state != "succeeded":
                await self._hook_failed(plan, hs)

    def _keep_execution(self, hs: HookStatus, ex: HookExecution) -> None:
        hs.execution = ex.execution
        hs.state = ex.state
        for k in ("task_count", "running", "succeeded", "failed", "cancelled", "retried"):
            setattr(hs, k, getattr(ex, k))
        hs.log_uri = ex.log_uri or hs.log_uri
        hs.message = ex.message
        hs.started_at = ex.started_at or hs.started_at
        hs.completed_at = ex.completed_at

    async def _run_hook(self, plan: HookPlan, hs: HookStatus) -> None:
        what = f"{plan.stage} hook {plan.name}"
        self._set_phase(Phase.RUNNING_HOOK)
        self._check_abort()
        ref = ExecutionRef(ref=plan.ref, execution=hs.execution)
        if not hs.execution:
            self._progress(f"{what}: running job {plan.ref.job} ({plan.image})")
            try:
                ex: HookExecution = await workflow.execute_activity(
                    "StartHook",
                    StartHookInput(hook=plan, release_id=self.inp.release_id, version=self.version),
                    result_type=HookExecution,
                    start_to_close_timeout=timedelta(minutes=5),
                    # a worker lost mid-call is noticed in seconds; the retry finds the
                    # execution the lost attempt started (labelled with the release id)
                    heartbeat_timeout=timedelta(seconds=20),
                    retry_policy=API_RETRY,
                    summary=f"{what}: run job {plan.ref.job}",
                )
            except ActivityError as err:
                hs.state = "failed"
                hs.message = f"could not run job {plan.ref.job}: {error_message(err)}"
                return
            self._keep_execution(hs, ex)
            again = " (found the execution this release had started)" if ex.reused else ""
            self._event(
                f"{what}: job {plan.ref.job} execution {ex.execution} started, "
                f"{ex.task_count} task(s){again}; logs: {ex.log_uri}"
            )
            ref = ExecutionRef(ref=plan.ref, execution=hs.execution)
        poll = min(self.inp.interval, HOOK_POLL)
        while hs.state == "running":
            if workflow.info().get_current_history_length() > self.inp.continue_as_new_after:
                raise _ContinueAsNew()
            self._progress(
                f"{what}: execution {hs.execution} running, {hs.succeeded}/{hs.task_count} "
                f"task(s) done, {hs.failed} failed"
            )
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self.abort_requested is not None,
                    timeout=poll,
                    timeout_summary=f"{what}: next read of {hs.execution}",
                )
            if self.abort_requested is not None:
                await self._cancel_hook(plan, hs, ref)
                self._check_abort()
            try:
                ex = await workflow.execute_local_activity(
                    "ReadHookExecution",
                    ref,
                    result_type=HookExecution,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=API_RETRY,
                    summary=f"{what}: read {hs.execution}",
                )
            # e.g. the execution was deleted: the hook failed. (A local activity's
            # non-retryable failure can surface as its ApplicationError, unwrapped.)
            except (ActivityError, ApplicationError) as err:
                hs.state = "failed"
                hs.message = f"could not read execution {hs.execution}: {error_message(err)}"
                break
            self._keep_execution(hs, ex)
        self._event(
            f"{what}: execution {hs.execution} {hs.state}: {hs.succeeded}/{hs.task_count} "
            f"task(s) succeeded, {hs.failed} failed, {hs.cancelled} cancelled"
            + (f" ({hs.message})" if hs.message else "")
        )

    async def _cancel_hook(self, plan: HookPlan, hs: HookStatus, ref: ExecutionRef) -> None:
        """`abort` during a hook: cancel its execution (and say so) before the rollback."""
        self._progress(f"{plan.stage} hook {plan.name}: cancelling {hs.execution}")
        try:
            ex: HookExecution = await workflow.execute_activity(
                "CancelHookExecution",
                ref,
                result_type=HookExecution,
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary=f"{plan.stage} hook {plan.name}: cancel {hs.execution}",
            )
            self._keep_execution(hs, ex)
            self._event(f"{plan.stage} hook {plan.name}: execution {hs.execution} {ex.state}")
        except ActivityError as err:
            self._event(
                f"{plan.stage} hook {plan.name}: cancelling {hs.execution} failed: "
                f"{error_message(err)}"
            )

    def _restore_hint(self) -> str:
        if self.st.backup_id and self.inp.backup is not None:
            return (
                f"its pre-deploy backup is {self.st.backup_id} of {self.inp.backup.instance}: "
                f"`python starter.py restore {self.inp.env} --backup-id {self.st.backup_id} --yes`"
            )
        return (
            f"no pre-deploy backup was taken (environments.{self.inp.env}.release.backup is "
            "false): find a backup with `python starter.py backups "
            f"{self.inp.env}` and restore it with `python starter.py restore {self.inp.env} "
            "--backup-id ID --yes`"
        )

    async def _hook_failed(self, plan: HookPlan, hs: HookStatus) -> None:
        why = hs.message or hs.state
        head = f"{plan.stage} hook {plan.name} {hs.state}"
        if hs.execution:
            detail = f"job {plan.ref.job}, execution {hs.execution}: {why}; logs: {hs.log_uri}"
        else:
            detail = why
        what = f"{head} ({detail})"
        if plan.stage == "pre_deploy":
            db = (
                "It uses the database, which may be partly changed; "
                if plan.database is not None
                else ""
            )
            raise _Stop(Outcome.FAILED, f"{what}; no traffic moved. {db}{self._restore_hint()}")
        if self.inp.on_post_deploy_failure == "rollback":
            raise _Stop(Outcome.ROLLED_BACK, f"{what}; rolling every service back")
        # the decision before the details: an event line is clipped to MAX_LINE and the logs
        # URL alone is ~300 characters
        self._event(f"{head}, reported only (hooks.on_post_deploy_failure: report): {detail}")
        await self._notify("failed", f"Release {self.version} to {self.env}: {what}")

    def _note_migration(self) -> None:
        """A release not promoted after a pre_deploy hook changed the database: the traffic goes
        back, the schema does not. Say so, and how to restore (a person decides)."""
        done = [
            h.name
            for h in self.st.hooks
            if h.stage == "pre_deploy" and h.uses_database and h.state == "succeeded"
        ]
        if not done:
            return
        self.st.migration_note = (
            f"Release {self.version} to {self.env} ran database hook(s) {', '.join(done)}; "
            "rolling traffic back does not undo their schema changes. If the previous revisions "
            f"cannot work with the new schema, restore the database: {self._restore_hint()}"
        )
        self._event(self.st.migration_note)

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

    def _approved(self, weight: int) -> bool:
        if self._legacy_policy:
            return any(a.before_weight == weight for a in self.st.approvals)
        return bool(self.st.approvals)  # one approval covers the release

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
                raise _ContinueAsNew()
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
                    raise _Stop(
                        Outcome.ROLLED_BACK,
                        f"{svc.run_service}: gates inconclusive at the end of the {weight}% bake",
                    )
                if gates.on_inconclusive == "extend":
                    if svc.extensions >= gates.max_extensions:
                        raise _Stop(
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
        health: RevisionHealth = await workflow.execute_activity(
            "CheckRevisionHealth",
            RevisionHealthInput(ref=plan.ref, revision=svc.canary_revision),
            result_type=RevisionHealth,
            start_to_close_timeout=QUICK,
            retry_policy=API_RETRY,
            summary=f"can {svc.canary_revision} serve at {weight}%?",
        )
        if not health.can_serve:
            raise _Stop(
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
            raise _Stop(
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
        return await workflow.execute_local_activity(
            "ReadCanaryMetrics",
            inp,
            result_type=CanaryMetrics,
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
            raise _Stop(Outcome.ROLLED_BACK, message)
        await self._pause(svc, message)
        svc.breaches = 0
        svc.bake_until = workflow.now()
        self._event(f"{svc.run_service}: gate failure overridden by promote")

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
            raise _Stop(Outcome.ABORTED, self.abort_requested.reason)

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

    # ------------------------------------------------------------------ helpers

    async def _set_traffic(
        self,
        plan: ServicePlan,
        split: list[TrafficTarget],
        reason: str,
        retry: RetryPolicy,
        summary: str = "",
    ) -> SetTrafficResult:
        return await workflow.execute_activity(
            "SetTraffic",
            SetTrafficInput(ref=plan.ref, traffic=split, reason=reason),
            result_type=SetTrafficResult,
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=retry,
            summary=summary or f"{plan.ref.service}: {reason} ({describe(split)})",
        )

    async def _notify(self, event: str, text: str) -> None:
        if not self.inp.notify:
            return
        await workflow.execute_activity(
            "Notify",
            NotifyInput(event=event, text=text),
            start_to_close_timeout=QUICK,
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary=f"notify {event}",
        )

    def _state(self) -> ReleaseStatus:
        return self.st


def _rollback_summary(service: str, why: str, split: str) -> str:
    """The rollback's SetTraffic summary: the reason first (the Web UI's history list shows a
    summary's start), then the split it restores."""
    why = why.removeprefix(f"{service}: ")
    return f"{service}: rollback, {clip(why, 150)} -> {split}"


class _ContinueAsNew(Exception):
    """Raised at a poll boundary when the history is long; the state object carries on."""


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


def _check_input(inp: ReleaseInput) -> None:
    """A workflow can be started by any Temporal client, not only starter.py: refuse an input
    that starter.py would never build before anything (search attributes included) uses it."""
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
    if problems:
        raise ApplicationError(
            "invalid release input: " + "; ".join(problems), type="InvalidInput", non_retryable=True
        )
