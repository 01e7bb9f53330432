"""Point-in-time recovery (DR Scenario 2): clone the instance at a timestamp into
`<instance>-recovery-<YYYYMMDDHHMM>`, validate the clone, and, with `restore --switch`, continue
as new into the release that moves the services onto it (same workflow id `deploy-<app>-<env>`,
so no other release or restore slips in between).

Read replicas: a switch moves the services, not the source instance's read replicas (e.g.
`database.replicas`): they keep replicating from the source, so after the switch they hold none
of the new writes, and a `failover --from replica` would promote the old data. A verified
recovery that switches lists them (ListReplicas, read-only; behind
`workflow.patched(PITR_SWITCH_REPLICAS)`) and its events, `left_in` and `next_steps` name each
one with the gcloud command that creates its counterpart for the recovery instance and the
config to change. It creates no replica itself: the release it hands over to may still be
rolled back or aborted (a replica of an instance that never serves), creating one takes as long
as the switch, and its name and the config are a person's choice.

Messages: query `status`; signal `abort` (stops at once and deletes the partial instance).

Deterministic: the clone time is a `workflow.now()` delta.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.common import API_RETRY, QUICK, error_message

with workflow.unsafe.imports_passed_through():
    from activities.cloud_sql import CloudSqlActivities
    from activities.replicas import ReplicaActivities, create_command
    from stagecoach.contract import Message, WorkflowType
    from stagecoach.payloads.common import InstanceRef, Outcome, Phase
    from stagecoach.payloads.dr import PointInTimeInput, PointInTimeResult
    from stagecoach.payloads.release import RecoveryInfo
    from stagecoach.payloads.sql import (
        CloneInstanceInput,
        RecoveryWindow,
        RecoveryWindowInput,
        ReplicaInfo,
    )
    from stagecoach.plan import recovery_instance_name

from workflows.dr.clone import CloneRun
from workflows.dr.common import DrStop, seconds, stamp

# Switches started after this list the source's read replicas and say they stay behind.
PITR_SWITCH_REPLICAS = "pitr-switch-replicas"


@workflow.defn(name=WorkflowType.POINT_IN_TIME_RECOVERY)
class PointInTimeWorkflow(CloneRun):
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
        name=Message.STATUS,
        description=(
            "The point-in-time recovery's status (JSON): {source_instance, recovery_instance, "
            "point_in_time, phase, outcome, clone_seconds, validation, left_in, events}. No "
            "input."
        ),
    )
    def status(self) -> PointInTimeResult:
        return self.st

    def _title(self) -> str:
        return f"point-in-time recovery of {self.st.source_instance}"

    @workflow.run
    async def run(self, inp: PointInTimeInput) -> PointInTimeResult:
        st = self.st
        self._begin(
            Phase.CLONING,
            f"point-in-time recovery of {st.source_instance} at {stamp(inp.point_in_time)} "
            f"into {st.recovery_instance} requested by {inp.requested_by or 'unknown'}",
        )
        await self._run_to_end()
        switch = inp.switch_release
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
                workflow=WorkflowType.RELEASE,
                args=[switch.model_copy(update={"recovery": recovery_info})],
            )
        return st

    def _needs_cleanup(self) -> bool:
        return self._clone_requested and not self._clone_done

    async def _clean_up(self) -> None:
        st = self.st
        st.recovery_deleted, err = await self._delete(
            self._recovery_ref(), "the clone did not complete"
        )
        if err:
            st.error = f"{st.error}; {st.recovery_instance} not deleted: {err}"

    async def _report(self, cancelled: bool) -> None:
        inp, st = self.inp, self.st
        if self._clone_done:
            recovery = f"kept, data as of {stamp(inp.point_in_time)}"
        elif st.recovery_deleted or not self._clone_requested:
            recovery = "not created (or deleted after the failed clone)"
        else:
            recovery = "NOT deleted after the failed clone: delete it by hand"
        switch = inp.switch_release
        st.switching = switch is not None and st.outcome == Outcome.SUCCEEDED and not cancelled
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
        if st.switching:
            st.left_in += [
                f"read replica {r.name} ({r.region}): still replicating from "
                f"{st.source_instance}, NOT from {st.recovery_instance}"
                for r in st.replicas
            ]
            st.next_steps = self._replica_steps()
        st.ended_at = workflow.now()
        self._set_phase(Phase.DONE)
        self._progress(f"{st.outcome.value}: {st.error or st.abort_reason or st.recovery_instance}")

    def _recovery_ref(self) -> InstanceRef:
        return self.inp.instance.model_copy(update={"instance": self.st.recovery_instance})

    async def _work(self) -> None:
        inp, st = self.inp, self.st
        switch = inp.switch_release
        if switch is not None and any(
            p.database is None or p.database.instance != st.recovery_instance
            for p in switch.services
        ):
            raise DrStop(
                Outcome.FAILED, f"the switch release does not target {st.recovery_instance}"
            )
        if inp.point_in_time > workflow.now():
            raise DrStop(Outcome.FAILED, f"{stamp(inp.point_in_time)} is in the future")
        if workflow.patched("pitr-recovery-window"):
            # Before anything is created: PITR on, and the time inside the recoverable window
            # (the API's own getLatestRecoveryTime and transaction-log retention).
            self._progress(f"reading the recoverable window of {st.source_instance}")
            window: RecoveryWindow = await workflow.execute_activity_method(
                CloudSqlActivities.read_recovery_window,
                RecoveryWindowInput(ref=inp.instance, point_in_time=inp.point_in_time),
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary=f"recoverable window of {st.source_instance}",
            )
            if window.problem:
                raise DrStop(Outcome.FAILED, window.problem)
        self._progress(f"cloning {st.source_instance} at {stamp(inp.point_in_time)}")
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
        st.clone_seconds = seconds(start, workflow.now())
        st.operation = res.operation
        self._event(f"{st.recovery_instance} created in {st.clone_seconds:g}s")
        report = await self._validate(inp.verification, self._recovery_ref())
        st.validation = report
        st.newest = report.newest
        if not report.ok:
            raise DrStop(Outcome.FAILED, "validation failed: " + "; ".join(report.problems))
        if switch is not None and workflow.patched(PITR_SWITCH_REPLICAS):
            await self._replicas_left_behind()
        if st.newest is not None and st.newest > inp.point_in_time:
            # Nothing should write to a fresh recovery instance; worth a look, not a failure.
            self._event(
                f"note: {st.recovery_instance} holds rows newer than the recovery point "
                f"(newest {st.newest.isoformat()}); something wrote to it after the clone"
            )

    # ------------------------------------------------------------------ read replicas

    def _counterpart(self, r: ReplicaInfo) -> ReplicaInfo:
        """The replica of the recovery instance that takes `r`'s place (the name the config's
        default gives it once database.instance is the recovery instance)."""
        return r.model_copy(update={"name": f"{self.st.recovery_instance}-replica-{r.region}"})

    def _replica_steps(self) -> list[str]:
        st, env = self.st, self.env
        steps: list[str] = []
        for r in st.replicas:
            new = self._counterpart(r)
            steps += [
                f"replace read replica {r.name} ({r.region}) with one of "
                f"{st.recovery_instance}: " + create_command(self._recovery_ref(), new),
                f"then set environments.{env}.database.instance: {st.recovery_instance} (its "
                f"replica in {r.region} is then {new.name}; an explicit "
                f"database.replicas[].instance must name it), and delete {r.name} once "
                f"nothing reads it: gcloud sql instances delete {r.name} --project={r.project}",
            ]
        return steps

    async def _replicas_left_behind(self) -> None:
        """--switch: the source's read replicas stay with the source; say so, by name."""
        st = self.st
        self._progress(f"looking for read replicas of {st.source_instance}")
        try:
            found: list[ReplicaInfo] = await workflow.execute_activity_method(
                ReplicaActivities.list_replicas,
                self.inp.instance,
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary=f"list read replicas of {st.source_instance}",
            )
        except ActivityError as err:  # read-only and advisory: never fails the recovery
            self._event(
                f"could not list the read replicas of {st.source_instance} "
                f"({error_message(err)}): any it has keeps replicating from it, not from "
                f"{st.recovery_instance}, after the switch"
            )
            return
        st.replicas = found
        for r in found:
            self._event(
                f"read replica {r.name} ({r.region}) keeps replicating from "
                f"{st.source_instance}, not from {st.recovery_instance}: after the switch it "
                "gets none of the new writes, and failover --from replica would promote the "
                "old data"
            )
        for step in self._replica_steps():
            self._event(f"next: {step}")
