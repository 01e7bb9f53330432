"""The regional drill from a replica (`dr-drill ENV --scenario regional --from replica`), workflow
type `ReplicaDrill`, id `dr-drill-regional-<app>-<env>` (the regional drill's: one at a time).

`failover --from replica` promotes the environment's configured cross-region read replica, and a
promotion cannot be undone: rehearsing it on the configured replica would spend it. This drill
rehearses the same path on a replica of its own, and never touches the configured ones:

1. replica (not part of a real failover, whose replica exists already): the primary's read
   replicas are listed (ListReplicas); a SCRATCH read replica `<instance>-dr-<MMDDhhmmss>` of the
   primary is created in the target region (CreateReplica: `instances.insert` with
   `masterInstanceName`, waited until RUNNABLE) and waited for until replication has caught up
   (WaitReplicaCaughtUp: the `replica_lag` metric from Cloud Monitoring, as PromoteReplica reads
   it, at or below the RPO);
2. database: the scratch replica is promoted (PromoteReplica, the failover's own activity: the lag
   it reports just before is the measured window), validated with the validation queries, and
   the exact data-loss window (the source's newest row minus the promoted replica's) is
   reported against the RPO;
3. services: the scratch services `<name>-<env>-dr-<MMDDhhmmss>` bound to it, smoke-tested;
4. always (success, failure, abort, cancellation; shielded from cancellation): the scratch
   services and the scratch replica (promoted or not) are deleted, then the primary's read
   replicas are listed again: the same ones must still be RUNNABLE replicas of it.

`failover_seconds` (database + services: what a failover --from replica takes before its DNS
move) is reported against the RTO; the replica phase separately.

It is the `Failover` workflow (workflows/dr/failover.py) in drill mode with the database step
replaced; its other steps, messages (`status`, `abort`) and report are the failover's.
Deterministic: no I/O, durations are `workflow.now()` deltas.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.common import API_RETRY, QUICK, error_message

with workflow.unsafe.imports_passed_through():
    from activities.cloud_sql import CloudSqlActivities
    from activities.replica_catchup import ReplicaCatchUpActivities
    from activities.replicas import ReplicaActivities
    from stagecoach.contract import WorkflowType
    from stagecoach.payloads.common import Outcome, Phase
    from stagecoach.payloads.failover import PhaseTime
    from stagecoach.payloads.replica_drill import (
        ReplicaDrillInput,
        ReplicaDrillStatus,
        ReplicaLag,
        WaitReplicaInput,
    )
    from stagecoach.payloads.sql import (
        DeleteInstanceInput,
        ReplicaInfo,
        ReplicaInput,
    )

from workflows.dr.common import (
    CLEANUP_DEADLINE,
    CLEANUP_RETRY,
    HEARTBEAT,
    OPERATION,
    seconds,
)
from workflows.dr.failover import FailoverWorkflow

REPLICA_PHASE = "replica"  # PhaseTime name of step 1
DRILL_LABELS = {"stagecoach": "dr-drill"}


def failure_type(err: ActivityError) -> str:
    cause = err.cause
    return cause.type or "" if isinstance(cause, ApplicationError) else ""


@workflow.defn(name=WorkflowType.REPLICA_DRILL)
class ReplicaDrillWorkflow(FailoverWorkflow):
    @workflow.init
    def __init__(self, inp: ReplicaDrillInput) -> None:
        super().__init__(inp)  # a scheduled run: renamed there (workflows/dr/scheduled.py)
        assert isinstance(self.inp, ReplicaDrillInput)
        self.rinp = inp = self.inp  # the scratch names of this run
        self.rst = ReplicaDrillStatus.model_validate(
            {
                **self.st.model_dump(),
                "scratch_replica": inp.instance.instance,
                "configured_replica": inp.configured_replica,
            }
        )
        self.st = self.rst
        self._replica_requested = False  # CreateReplica scheduled: the replica may exist
        self._before: dict[str, ReplicaInfo] | None = None  # the primary's replicas, before

    @workflow.run
    async def run(self, inp: ReplicaDrillInput) -> ReplicaDrillStatus:  # type: ignore[override]
        inp = self.rinp  # the scratch names of this run
        self._begin(
            Phase.PLANNING,
            f"regional drill of {inp.env} from a replica: scratch read replica "
            f"{inp.instance.instance} of {inp.source_instance.instance} in {inp.to_region}, "
            f"promoted, services with {self._images_said()}; requested by "
            f"{inp.requested_by or 'unknown'}",
        )
        await self._run_to_end()
        return self.rst

    def _replica_info(self) -> ReplicaInfo:
        inp = self.rinp
        ci = inp.create_instance
        return ReplicaInfo(
            name=inp.instance.instance,
            project=inp.instance.project,
            region=inp.to_region,
            tier=ci.tier if ci else "",
            availability=ci.availability if ci else "",
            labels=DRILL_LABELS,
        )

    def _label(self) -> str:
        return f"replica {self.rinp.instance.instance} ({self.rinp.to_region})"

    # ------------------------------------------------------------------ work

    async def _work(self) -> None:
        await self._load_policy(self._claims(), self.rinp.approvers)
        await self._resolve_images()
        await self._timed_as(REPLICA_PHASE, self._prepare_replica)
        self._check_abort()
        await self._timed(Phase.DATABASE, self._database)
        self._check_abort()
        await self._timed(Phase.SERVICES, self._services)

    async def _timed_as(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        self._set_phase(Phase.DATABASE)
        start = workflow.now()
        try:
            await step()
        finally:
            self.st.phases.append(PhaseTime(phase=name, seconds=seconds(start, workflow.now())))

    async def _list_replicas(self) -> list[ReplicaInfo]:
        primary = self.rinp.source_instance
        found: list[ReplicaInfo] = await workflow.execute_activity_method(
            ReplicaActivities.list_replicas,
            primary,
            start_to_close_timeout=QUICK,
            retry_policy=API_RETRY,
            summary=f"list the read replicas of {primary.instance}",
        )
        return [r for r in found if r.name != self.rinp.instance.instance]

    async def _prepare_replica(self) -> None:
        inp, st = self.rinp, self.rst
        primary, scratch = inp.source_instance, inp.instance.instance
        start = workflow.now()
        self._progress(f"listing the read replicas of {primary.instance}")
        before = await self._list_replicas()
        self._before = {r.name: r for r in before}
        st.primary_replicas = sorted(self._before)
        listed = ", ".join(f"{r.name} ({r.region})" for r in before) or "none"
        self._event(f"read replicas of {primary.instance}: {listed}; the drill leaves them alone")
        if inp.configured_replica:
            self._event(
                f"configured read replica {inp.configured_replica} in {inp.to_region}: left "
                f"alone (promoting it would spend it); the rehearsal promotes {scratch} instead"
                + ("" if inp.configured_replica in self._before else " (it does not exist now)")
            )
        self._progress(f"creating the scratch read replica {scratch} in {inp.to_region}")
        self._replica_requested = True
        st.created.append(self._label())
        try:
            await workflow.execute_activity_method(
                ReplicaActivities.create_replica,
                ReplicaInput(primary=primary, replica=self._replica_info()),
                start_to_close_timeout=OPERATION,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=API_RETRY,
                summary=f"create scratch replica {scratch} in {inp.to_region}",
            )
        except ActivityError as err:
            if failure_type(err) == "NameTaken":  # not ours: never deleted by the cleanup
                self._replica_requested = False
                st.created.remove(self._label())
            raise
        st.replica_created = True
        ready = workflow.now()
        self._event(
            f"scratch read replica {scratch} of {primary.instance} RUNNABLE in {inp.to_region} "
            f"after {seconds(start, ready):g}s"
        )
        max_lag = (inp.max_lag or inp.rpo).total_seconds()
        self._progress(f"waiting for {scratch} to catch up (replication lag <= {max_lag:g}s)")
        waiting = asyncio.ensure_future(
            workflow.execute_activity_method(
                ReplicaCatchUpActivities.wait_replica_caught_up,
                WaitReplicaInput(
                    ref=inp.instance,
                    max_lag_seconds=max_lag,
                    not_before=ready,
                    timeout_seconds=inp.catch_up_timeout.total_seconds(),
                ),
                start_to_close_timeout=inp.catch_up_timeout + QUICK,
                # Monitoring failing throughout: retried, but not beyond the catch-up timeout
                schedule_to_close_timeout=inp.catch_up_timeout + QUICK,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=API_RETRY,
                summary=f"wait for {scratch} to catch up",
            )
        )
        # the wait may take minutes: an `abort` ends it (the cleanup deletes the replica)
        await workflow.wait_condition(lambda: waiting.done() or self.abort_requested is not None)
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, ActivityError):
                await waiting
            self._check_abort()
        lag: ReplicaLag = await waiting
        st.caught_up_lag_seconds, st.caught_up_at = lag.lag_seconds, lag.at
        st.replica_ready_seconds = seconds(start, workflow.now())
        self._event(
            f"{scratch} caught up: replication lag {lag.lag_seconds:g}s at {lag.at.isoformat()} "
            f"(<= {max_lag:g}s), ready {st.replica_ready_seconds:g}s after the request (not "
            "part of a failover's time: its replica exists already)"
        )

    async def _database(self) -> None:
        await self._promote_replica()
        self.rst.replica_promoted = True
        await self._measure_loss()

    # ------------------------------------------------------------------ cleanup and report

    async def _clean(self) -> None:
        await super()._clean()  # the scratch services (no instance was created by CreateInstance)
        await self._delete_scratch_replica()
        await self._check_replicas_untouched()

    async def _delete_scratch_replica(self) -> None:
        inp, st = self.rinp, self.rst
        if not self._replica_requested:
            return
        name = inp.instance.instance
        self._progress(f"deleting the scratch replica {name}")
        try:
            if self._replica_promoting:  # promoted (or being promoted): a standalone instance
                await workflow.execute_activity_method(
                    CloudSqlActivities.delete_instance,
                    DeleteInstanceInput(ref=inp.instance),
                    start_to_close_timeout=OPERATION,
                    schedule_to_close_timeout=CLEANUP_DEADLINE,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=CLEANUP_RETRY,
                    summary=f"delete {name}",
                )
            else:  # still a read replica of the primary (only then deleted)
                await workflow.execute_activity_method(
                    ReplicaActivities.delete_replica,
                    ReplicaInput(primary=inp.source_instance, replica=self._replica_info()),
                    start_to_close_timeout=OPERATION,
                    schedule_to_close_timeout=CLEANUP_DEADLINE,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=CLEANUP_RETRY,
                    summary=f"delete scratch replica {name}",
                )
        except ActivityError as err:
            self._event(f"{name} NOT deleted: {error_message(err)}")
            return
        st.replica_deleted = True
        st.deleted.append(self._label())
        self._event(f"scratch replica {name} deleted")

    async def _check_replicas_untouched(self) -> None:
        inp, st = self.rinp, self.rst
        if self._before is None:
            return
        try:
            after = {r.name: r for r in await self._list_replicas()}
        except ActivityError as err:
            self._event(f"could not list the read replicas afterwards: {error_message(err)}")
            return
        lost = [n for n in self._before if n not in after]
        unwell = [f"{n} ({after[n].state})" for n in self._before if n in after and
                  after[n].state != "RUNNABLE"]  # fmt: skip
        st.replicas_untouched = not lost and not unwell
        if st.replicas_untouched:
            if self._before:
                self._event(
                    f"read replicas of {inp.source_instance.instance} still replicating: "
                    + ", ".join(sorted(self._before))
                )
            return
        problem = "; ".join(
            [f"{n} is no longer a read replica of {inp.source_instance.instance}" for n in lost]
            + [f"{u} is not RUNNABLE" for u in unwell]
        )
        self._event(f"read replicas after the drill: {problem}")
        if st.outcome == Outcome.SUCCEEDED:
            st.outcome = Outcome.FAILED
            st.error = f"read replicas after the drill: {problem}"

    def _finish(self) -> None:
        super()._finish()
        inp, st = self.rinp, self.rst
        times = {p.phase: p.seconds for p in st.phases}
        if Phase.DATABASE.value in times and Phase.SERVICES.value in times:
            st.failover_seconds = round(
                times[Phase.DATABASE.value] + times[Phase.SERVICES.value], 3
            )
            st.failover_rto_met = (
                st.outcome == Outcome.SUCCEEDED and st.failover_seconds <= st.rto_seconds
            )
        if inp.configured_replica:
            st.left_in.append(
                f"configured read replica {inp.configured_replica} ({inp.to_region}): left "
                f"alone; the rehearsal used the scratch replica {inp.instance.instance}"
            )
        elif st.primary_replicas:
            st.left_in.append(
                f"read replicas of {inp.source_instance.instance} "
                f"({', '.join(st.primary_replicas)}): left alone"
            )
        if st.failover_seconds is not None:
            self._progress(
                f"{st.outcome.value}: promote + services {st.failover_seconds:g}s (RTO "
                f"{st.rto_seconds:g}s), total {st.total_seconds:g}s"
                + (f": {st.error or st.abort_reason}" if st.error or st.abort_reason else "")
            )
