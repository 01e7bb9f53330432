"""Release hooks: the `pre_deploy` and `post_deploy` Cloud Run jobs of a release, each run once
per release (resumable after continue-as-new or a worker crash), cancelled on `abort`, and what a
failed one means (no traffic moved; a database possibly changed; how to restore).

Deterministic: a mixin of `ReleaseRun` (workflows/release_run.py).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.common import API_RETRY, QUICK, error_message

with workflow.unsafe.imports_passed_through():
    from activities.cloud_run_jobs import CloudRunJobsActivities
    from stagecoach.payloads.common import Outcome, Phase
    from stagecoach.payloads.hooks import (
        ExecutionRef,
        HookExecution,
        HookPlan,
        HookStatus,
        StartHookInput,
    )

from workflows.release_run import HOOK_POLL, RELEASE_HOOKS, ContinueAsNew, ReleaseRun, ReleaseStop


class ReleaseHooks(ReleaseRun):
    """Run the hooks of a stage and report them."""

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
                ex: HookExecution = await workflow.execute_activity_method(
                    CloudRunJobsActivities.start_hook,
                    StartHookInput(hook=plan, release_id=self.inp.release_id, version=self.version),
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
                raise ContinueAsNew()
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
                ex = await workflow.execute_local_activity_method(
                    CloudRunJobsActivities.read_hook_execution,
                    ref,
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
            ex: HookExecution = await workflow.execute_activity_method(
                CloudRunJobsActivities.cancel_hook_execution,
                ref,
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
            raise ReleaseStop(
                Outcome.FAILED, f"{what}; no traffic moved. {db}{self._restore_hint()}"
            )
        if self.inp.on_post_deploy_failure == "rollback":
            raise ReleaseStop(Outcome.ROLLED_BACK, f"{what}; rolling every service back")
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
