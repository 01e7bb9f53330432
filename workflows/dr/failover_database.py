"""The database side of the `Failover` workflow (workflows/dr/failover.py): step 2 of a failover,
failback or regional drill, the failback's read replicas, and the data-loss windows.

- failover `--from replica`: the read replica in the target region is promoted (the replication
  lag Monitoring reported just before is the window of writes it had not received);
- failover `--from backup` and the drill: the newest SUCCESSFUL backup of the source instance is
  restored into `<instance>-<region>` (or the drill's scratch instance), created first;
- failback: a fresh backup of the secondary instance is restored into the primary's instance;
  the primary's read replicas are listed before the backup, deleted just before the restore
  (workflows/dr/replica_steps.py) and recreated in the cleanup (`FAILBACK_REPLICAS`);
- then the restored instance is validated and the data-loss window reported against the RPO
  (after a failback's DNS move: the rows that did not travel back).

`FailoverDatabase` is a mixin of the workflow, as `ReplicaSteps` is of it: the workflow sets up
`inp`, `st` and the two flags below in its `@workflow.init`. Moved here unchanged from
failover.py: the command sequence is the one its recorded histories hold.

Deterministic: no I/O, durations are `workflow.now()` deltas.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.common import API_RETRY, error_message

with workflow.unsafe.imports_passed_through():
    from activities.cloud_sql import CloudSqlActivities
    from activities.regional import RegionalActivities
    from activities.replicas import ReplicaActivities
    from stagecoach.payloads.common import InstanceRef, Outcome, Phase
    from stagecoach.payloads.dr import ReplicaRecreation
    from stagecoach.payloads.failover import (
        CreateInstanceResult,
        FailoverInput,
        FailoverStatus,
        PhaseTime,
        PromoteReplicaInput,
        PromoteReplicaResult,
    )
    from stagecoach.payloads.sql import BackupInfo, CreateBackupInput, RestoreBackupInput

from workflows.dr.common import (
    HEARTBEAT,
    OPERATION,
    DrStop,
    list_backups,
    newest_successful,
    seconds,
)
from workflows.dr.replica_steps import ReplicaSteps

# Failbacks started after this delete the primary's read replicas before the restore into it
# and recreate them afterwards (recorded histories from before never look for replicas).
FAILBACK_REPLICAS = "failback-replicas"


class FailoverDatabase(ReplicaSteps):
    """Step 2 (`_database`), the failback's read replicas and the data-loss windows (see the
    module docstring)."""

    inp: FailoverInput
    st: FailoverStatus
    _instance_requested: bool  # CreateInstance scheduled: the instance may exist
    _replica_promoting: bool  # promotion requested (it cannot be undone)

    # ------------------------------------------------------------------ database

    async def _database(self) -> None:
        inp = self.inp
        if inp.mode == "failover" and inp.source == "replica":
            await self._promote_replica()
        else:
            await self._restore()
        await self._measure_loss()

    async def _promote_replica(self) -> None:
        """`--from replica`: the replica in to_region becomes the primary (the lag Monitoring
        reported just before is the window of writes it had not received)."""
        inp, st = self.inp, self.st
        self._progress(f"promoting read replica {inp.instance.instance} in {inp.to_region}")
        self._replica_promoting = True
        res: PromoteReplicaResult = await workflow.execute_activity_method(
            ReplicaActivities.promote_replica,
            PromoteReplicaInput(
                ref=inp.instance, region=inp.to_region, primary=inp.source_instance.instance
            ),
            start_to_close_timeout=OPERATION,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=API_RETRY,
            summary=f"promote replica {inp.instance.instance} in {inp.to_region}",
        )
        st.replica_lag_seconds = res.lag_seconds
        lag = (
            f"replication lag {res.lag_seconds:g}s at {res.lag_at.isoformat()}"
            if res.lag_seconds is not None and res.lag_at is not None
            else "no replication lag reported"
        )
        self._event(
            f"read replica {res.instance} promoted in {res.seconds:g}s ({lag})"
            if res.promoted
            else f"{res.instance} is a standalone primary already (promoted earlier): adopted"
        )

    async def _restore(self) -> None:
        inp = self.inp
        if inp.mode == "failback":
            replicas = workflow.patched(FAILBACK_REPLICAS)
            if replicas:  # before anything changed: a protected replica stops it here
                await self._find_replicas()
            backup = await self._fresh_backup()
            if replicas:  # read again: one made during the backup would fail the restore
                await self._delete_replicas(read_again=True, phase=None)
                self._check_abort()
        else:
            backup = await self._newest_backup()
            await self._create_instance()
        self.st.backup = backup
        self._progress(f"restoring backup {backup.id} into {inp.instance.instance}")
        start = workflow.now()
        await workflow.execute_activity_method(
            CloudSqlActivities.restore_backup,
            RestoreBackupInput(
                ref=inp.instance, backup_id=backup.id, source_instance=inp.source_instance.instance
            ),
            start_to_close_timeout=OPERATION,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=API_RETRY,
            summary=f"restore {backup.id} into {inp.instance.instance}",
        )
        self._event(
            f"backup {backup.id} of {inp.source_instance.instance} restored into "
            f"{inp.instance.instance} in {seconds(start, workflow.now()):g}s"
        )

    async def _measure_loss(self) -> None:
        inp = self.inp
        report = await self._validate(inp.verification, inp.instance)
        self.st.validation = report
        if not report.ok:
            raise DrStop(Outcome.FAILED, "validation failed: " + "; ".join(report.problems))
        st = self.st
        st.restored_newest = report.newest
        if inp.mode == "failback" or report.newest is None or st.started_at is None:
            return
        # A failover cannot read the failed region: the loss is at most the start of the
        # failover minus the newest restored row. A drill reads the (healthy) source instead.
        upto, how = st.started_at, "at most"
        if inp.mode == "drill":
            try:
                source = await self._validate(inp.verification, inp.source_instance)
            except ActivityError as err:
                self._event(f"source not readable ({error_message(err)}): upper bound only")
            else:
                if source.newest is not None:
                    upto, how = source.newest, "exactly"
        st.data_loss_seconds = max(0.0, seconds(report.newest, upto))
        st.data_loss_exact = how == "exactly"
        st.rpo_met = st.data_loss_seconds <= st.rpo_seconds
        self._event(
            f"data-loss window {how} {st.data_loss_seconds:g}s (newest row in "
            f"{inp.instance.instance} {report.newest.isoformat()}) vs RPO {st.rpo_seconds:g}s: "
            f"{'met' if st.rpo_met else 'MISSED'}"
        )

    async def _newest_backup(self) -> BackupInfo:
        src = self.inp.source_instance
        self._progress(f"finding the newest successful backup of {src.instance}")
        backups: list[BackupInfo] = await list_backups(src)
        backup = newest_successful(backups)
        if backup is None:
            raise DrStop(Outcome.FAILED, f"{src.instance} has no SUCCESSFUL backup to restore")
        when = backup.enqueued_time.isoformat() if backup.enqueued_time else "no time"
        self._event(f"restoring backup {backup.id} ({backup.type}, {when})")
        return backup

    async def _fresh_backup(self) -> BackupInfo:
        src = self.inp.source_instance
        desc = f"Failback backup {self.st.started_at:%Y-%m-%d %H:%M:%S} UTC"
        self._progress(f"backing up {src.instance} ({desc})")
        info: BackupInfo = await workflow.execute_activity_method(
            CloudSqlActivities.create_backup,
            CreateBackupInput(ref=src, description=desc),
            start_to_close_timeout=OPERATION,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=API_RETRY,
            summary=f"backup {src.instance}",
        )
        self._event(f"fresh backup {info.id} of {src.instance} taken ({desc})")
        return info

    async def _create_instance(self) -> None:
        inp = self.inp
        ci = inp.create_instance
        if ci is None:
            return
        self._progress(f"creating {ci.ref.instance} in {ci.region} ({ci.tier}, {ci.availability})")
        self._instance_requested = True
        res: CreateInstanceResult = await workflow.execute_activity_method(
            RegionalActivities.create_instance,
            ci,
            start_to_close_timeout=OPERATION,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=API_RETRY,
            summary=f"create {ci.ref.instance} in {ci.region}",
        )
        self.st.instance_created = True
        label = f"instance {ci.ref.instance} ({ci.region})"
        if label not in self.st.created:
            self.st.created.append(label)
        self._event(
            f"{ci.ref.instance} created in {ci.region} in {res.seconds:g}s"
            if res.created
            else f"{ci.ref.instance} already exists in {ci.region}: adopted"
        )

    async def _carried_back(self) -> None:
        """After failback: rows the secondary took after its fresh backup did not travel."""
        st = self.st
        try:
            after = await self._validate(self.inp.verification, self.inp.source_instance)
        except ActivityError as err:
            self._event(f"could not read {self.inp.source_instance.instance}: {error_message(err)}")
            return
        if after.newest is not None and st.restored_newest is not None:
            st.data_loss_seconds = max(0.0, seconds(st.restored_newest, after.newest))
            st.rpo_met = st.data_loss_seconds <= st.rpo_seconds
            self._event(
                f"rows written in {self.inp.from_region} after the failback backup: "
                f"{st.data_loss_seconds:g}s of writes not carried back (RPO {st.rpo_seconds:g}s)"
            )

    # ------------------------------------------------------------------ read replicas (failback)

    def _replica_primary(self) -> InstanceRef:
        return self.inp.instance

    def _replica_records(self) -> list[ReplicaRecreation]:
        return self.st.replicas

    def _configured_replicas(self) -> list[str] | None:
        return self.inp.configured_replicas

    async def _recreate_primary_replicas(self) -> None:
        """Recreate the read replicas the failback deleted, from the primary as it is now
        (after the DNS move, or whatever ended the run); timed as phase `replicas`."""
        start = workflow.now()
        try:
            await self._recreate_replicas(phase=Phase.RESUMING)
        finally:
            took = seconds(start, workflow.now())
            self.st.phases.append(PhaseTime(phase="replicas", seconds=took))
