"""Read replicas around a restore into their primary, shared by `restore` and `failback`.

Cloud SQL restores no backup into an instance that has read replicas: they are listed
(ListReplicas), deleted (DeleteReplica, waited until gone) before the restore, and recreated
(CreateReplica: same name, region, tier) from the restored instance afterwards, whatever ended
the run; a replica that cannot be recreated leaves the run's outcome as it was and says how to
recreate it (`create_command`). The state of each replica is a `ReplicaRecreation` in the run's
status (`replicas`, `replicas_deleted_seconds`, `replicas_recreated_seconds`).

`ReplicaSteps` is a mixin of `DrRun`: the workflow says which instance is the primary, where
its records live and which names the config lists; the command sequence (activities, and the
phase upserts a caller asks for) is exactly what `RestoreWorkflow` recorded before this module
existed, so its histories replay.

Deterministic: no I/O, durations are `workflow.now()` deltas.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.common import API_RETRY, QUICK, error_message

with workflow.unsafe.imports_passed_through():
    from activities.replicas import ReplicaActivities, create_command
    from stagecoach.payloads.common import InstanceRef, Outcome, Phase
    from stagecoach.payloads.dr import ReplicaRecreation
    from stagecoach.payloads.sql import OperationResult, ReplicaInfo, ReplicaInput

from workflows.dr.common import CLEANUP_RETRY, HEARTBEAT, OPERATION, DrRun, DrStop, seconds

# states in which the run deleted (or may have deleted) the replica: it must be recreated
TO_RECREATE = ("deleting", "deleted")


def replica_left_in(rec: ReplicaRecreation, primary: InstanceRef, run: str = "the restore") -> str:
    """One `left_in` sentence: what became of the read replica `rec` of `primary`."""
    r = rec.replica
    return f"read replica {r.name} ({r.region}): " + {
        "found": "untouched (the run ended before replicas were deleted)"
        + (f": {rec.error}" if rec.error else ""),
        "recreated": f"deleted for {run} and recreated from {primary.instance} "
        "(RUNNABLE, replicating)",
        "recreate_failed": (
            f"deleted for {run} and NOT recreated ({rec.error}); the "
            f"{run.removeprefix('the ')} itself is as said above. Recreate it: "
            + create_command(primary, r)
        ),
    }.get(rec.state, rec.state)


class ReplicaSteps(DrRun):
    """List, delete and recreate the read replicas of `_replica_primary()` (see the module
    docstring). A subclass implements the three accessors below."""

    def _replica_primary(self) -> InstanceRef:
        raise NotImplementedError

    def _replica_records(self) -> list[ReplicaRecreation]:
        """The run status's `replicas` list (appended to in place)."""
        raise NotImplementedError

    def _configured_replicas(self) -> list[str] | None:
        """The names in environments.<env>.database.replicas (None: not known; the events then
        say nothing about which replicas the config names)."""
        return None

    # ------------------------------------------------------------------ steps

    def _replica_plan(self) -> str:
        """What the run does to the instance's read replicas, in one sentence ("" if none)."""
        names = ", ".join(f"{r.replica.name} ({r.replica.region})" for r in self._replica_records())
        if not names:
            return ""
        return (
            f"read replicas {names} will be deleted before the restore (Cloud SQL restores no "
            "backup into an instance with replicas) and recreated from the restored instance"
        )

    async def _list_replicas(self) -> list[ReplicaInfo]:
        ref = self._replica_primary()
        return await workflow.execute_activity_method(
            ReplicaActivities.list_replicas,
            ref,
            start_to_close_timeout=QUICK,
            retry_policy=API_RETRY,
            summary=f"list read replicas of {ref.instance}",
        )

    def _note_replicas(self, found: list[ReplicaInfo]) -> None:
        """Record replicas not seen yet; refuse (before anything changed) a protected one."""
        records = self._replica_records()
        primary = self._replica_primary()
        known = {(r.replica.project, r.replica.name) for r in records}
        names = self._configured_replicas()
        configured = set(names or [])
        for info in found:
            if (info.project, info.name) in known:
                continue
            rec = ReplicaRecreation(replica=info, configured=info.name in configured)
            records.append(rec)
            where = f"{info.region}, tier {info.tier or 'as before'}"
            extra = (
                ""
                if rec.configured or names is None
                else f"; not in environments.{self.env}.database.replicas, deleted and "
                "recreated all the same"
            )
            self._event(f"read replica {info.name} ({where}) of {primary.instance}{extra}")
        protected = [r.replica.name for r in records if r.replica.deletion_protection]
        if protected and not any(r.state != "found" for r in records):
            raise DrStop(
                Outcome.FAILED,
                f"read replica {protected[0]} has deletion protection, and Cloud SQL restores "
                "no backup into an instance with replicas: turn it off (gcloud sql instances "
                f"patch {protected[0]} --no-deletion-protection) and rerun; nothing was changed",
            )

    async def _find_replicas(self) -> None:
        """The instance's read replicas, recorded; the plan for them as an event."""
        self._progress(f"looking for read replicas of {self._replica_primary().instance}")
        self._note_replicas(await self._list_replicas())
        plan = self._replica_plan()
        if plan:
            self._event(plan)

    async def _delete_replicas(self, *, read_again: bool, phase: Phase | None) -> None:
        """Delete every recorded read replica (`read_again`: read the instance's replicas again
        first, e.g. after an approval that took hours), waited until gone; `phase` is set
        first when there is anything to delete. The status's `replicas_deleted_seconds` says
        how long it took."""
        if read_again:
            self._note_replicas(await self._list_replicas())
        todo = [r for r in self._replica_records() if r.state == "found"]
        if not todo:
            return
        if phase is not None:
            self._set_phase(phase)
        self._progress("deleting read replicas " + ", ".join(r.replica.name for r in todo))
        start = workflow.now()
        results = await asyncio.gather(
            *(self._delete_replica(r) for r in todo), return_exceptions=True
        )
        self._state().replicas_deleted_seconds = seconds(start, workflow.now())
        for res in results:
            if isinstance(res, BaseException):
                raise res

    async def _delete_replica(self, rec: ReplicaRecreation) -> None:
        rec.state = "deleting"  # from here on the cleanup recreates it, whatever happens
        try:
            res: OperationResult = await workflow.execute_activity_method(
                ReplicaActivities.delete_replica,
                ReplicaInput(primary=self._replica_primary(), replica=rec.replica),
                start_to_close_timeout=OPERATION,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=API_RETRY,
                summary=f"delete read replica {rec.replica.name}",
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == "NotAReplica":
                rec.state = "found"  # not ours to delete, nor to recreate
            rec.error = error_message(err)
            self._event(f"read replica {rec.replica.name}: delete FAILED: {rec.error}")
            raise
        rec.state = "deleted"
        took = f" in {res.seconds:g}s" if res.operation else " (it was gone already)"
        self._event(f"read replica {rec.replica.name} deleted{took}, to be recreated")

    def _replicas_to_recreate(self) -> list[ReplicaRecreation]:
        return [r for r in self._replica_records() if r.state in TO_RECREATE]

    async def _recreate_replicas(self, *, phase: Phase | None) -> None:
        """Recreate every replica this run deleted (or may have), from the instance as it is
        now; waited until RUNNABLE. A failure is recorded, never raised. `phase` is set first
        when there is anything to recreate; `replicas_recreated_seconds` says how long it
        took."""
        todo = self._replicas_to_recreate()
        if not todo:
            return
        if phase is not None:
            self._set_phase(phase)
        self._progress("recreating read replicas " + ", ".join(r.replica.name for r in todo))
        start = workflow.now()
        await asyncio.gather(*(self._recreate_replica(r) for r in todo))
        self._state().replicas_recreated_seconds = seconds(start, workflow.now())

    async def _recreate_replica(self, rec: ReplicaRecreation) -> None:
        r = rec.replica
        primary = self._replica_primary()
        rec.state = "recreating"
        try:
            made: ReplicaInfo = await workflow.execute_activity_method(
                ReplicaActivities.create_replica,
                ReplicaInput(primary=primary, replica=r),
                start_to_close_timeout=OPERATION,
                schedule_to_close_timeout=OPERATION,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=CLEANUP_RETRY,
                summary=f"recreate read replica {r.name}",
            )
        except ActivityError as err:
            rec.state = "recreate_failed"
            rec.error = error_message(err)
            self._event(
                f"read replica {r.name}: recreate FAILED ({rec.error}); recreate it: "
                + create_command(primary, r)
            )
            return
        rec.state = "recreated"
        self._event(
            f"read replica {made.name} recreated in {made.region} (tier {made.tier}) from "
            f"{primary.instance}: {made.state}"
        )

    def _replica_recreate_failed(self) -> bool:
        return any(r.state == "recreate_failed" for r in self._replica_records())
