"""The disaster-recovery workflows (backup, restore, point-in-time recovery, DR drill): inputs,
statuses (query `status`) and results.

Times are measured inside the workflows with `workflow.now()`, so a replay gives the same numbers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import field_validator

from stagecoach.bounds import Name
from stagecoach.payloads.base import Payload
from stagecoach.payloads.common import (
    ApprovalRecord,
    InstanceRef,
    Outcome,
    Phase,
    RejectedApproval,
    ServiceRef,
)
from stagecoach.payloads.release import ReleaseInput
from stagecoach.payloads.run import ScalingRecord
from stagecoach.payloads.sql import BackupInfo, ReplicaInfo, ValidationReport

DEFAULT_RPO = timedelta(minutes=5)


DEFAULT_RTO = timedelta(hours=1)


class Verification(Payload):
    """What the workflow reads from a deploy.yaml `database` block."""

    database: str
    tables: list[str]
    timestamp_column: str = "created_at"


# --------------------------------------------------------------------------- backup


class BackupInput(Payload):
    app: str
    env: str
    instance: InstanceRef
    requested_by: Name = ""


class BackupResult(Payload):
    app: str
    env: str
    instance: str
    backup: BackupInfo
    seconds: float  # workflow.now() delta around CreateBackup (request to SUCCESSFUL)


# --------------------------------------------------------------------------- restore (Scenario 1)


class ServiceScaling(Payload):
    """A service that uses the database: its scaling before the restore and what became of it."""

    service: str  # Cloud Run service name, e.g. node-server-staging
    ref: ServiceRef
    recorded: bool = False  # GetServiceState succeeded; min/max below are the real values
    min_instances: int = 0
    max_instances: int = 0
    record: ScalingRecord | None = None  # service-level scaling and tags as set before the drain
    was_drained: bool = False  # already drained before the restore touched it: left drained
    state: str = "untouched"  # untouched | drained | resumed | left_drained | resume_failed
    error: str = ""


class RestoreInput(Payload):
    app: str
    env: str
    instance: InstanceRef  # the instance overwritten
    backup_id: str
    source_instance: str = ""  # the instance the backup was taken from; default: `instance`
    services: list[ServiceRef]  # the services that use the database (drained, then resumed)
    verification: Verification
    approvers: list[str] = []  # non-empty: the `approve` update of one of them is awaited first
    requested_by: Name = ""
    notify: bool = False
    # the names of environments.<env>.database.replicas (events say which replicas the restore
    # deletes and recreates that the config does not name); the instance's real replicas are
    # read from the API either way
    configured_replicas: list[str] = []


class ReplicaRecreation(Payload):
    """A read replica of the restored instance: Cloud SQL restores no backup into an instance
    with replicas, so the restore deletes it first and recreates it (same name, region, tier)
    from the restored instance afterwards."""

    replica: ReplicaInfo
    configured: bool = False  # named in environments.<env>.database.replicas
    state: str = "found"  # found | deleting | deleted | recreating | recreated | recreate_failed
    error: str = ""


class RestoreStatus(Payload):
    """Status (query `status`) and result of a restore."""

    app: str
    env: str
    instance: str
    backup_id: str
    backup: BackupInfo | None = None  # the backup as listed (type, time, description)
    phase: Phase = Phase.VALIDATING
    outcome: Outcome = Outcome.RUNNING
    awaiting_approval: bool = False
    approvals: list[ApprovalRecord] = []
    rejected_approvals: list[RejectedApproval] = []  # newest MAX_REJECTED
    services: list[ServiceScaling] = []
    replicas: list[ReplicaRecreation] = []  # the instance's read replicas, deleted and recreated
    replicas_deleted_seconds: float | None = None  # workflow.now() delta around the deletes
    replicas_recreated_seconds: float | None = None  # ... around the recreations
    operation: str = ""
    restore_seconds: float | None = None  # workflow.now() delta around RestoreBackup
    operation_seconds: float | None = None  # request to DONE, as the activity measured it
    downtime_seconds: float | None = None  # first drain to last resume
    validation: ValidationReport | None = None
    database_state: str = "untouched"  # one sentence: what the instance's data is now
    left_in: list[str] = []  # one sentence per resource: the state things were left in
    error: str = ""
    abort_reason: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    events: list[str] = []
    progress: str = ""


# --------------------------------------------------------------------------- point in time


class PointInTimeInput(Payload):
    app: str
    env: str
    instance: InstanceRef  # the source instance
    point_in_time: datetime  # UTC
    verification: Verification
    # --switch: once the recovery instance is verified, this release (built by
    # `stagecoach.plan.build_switch_release`) takes over the workflow id and moves the services
    # to it; the recovery's result travels in its `recovery` field.
    switch_release: ReleaseInput | None = None
    requested_by: Name = ""
    notify: bool = False

    @field_validator("point_in_time")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        """A naive timestamp is read as UTC; every timestamp is kept in UTC."""
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


class PointInTimeResult(Payload):
    app: str
    env: str
    source_instance: str
    recovery_instance: str
    point_in_time: datetime
    phase: Phase = Phase.CLONING
    outcome: Outcome = Outcome.RUNNING
    operation: str = ""
    clone_seconds: float | None = None  # workflow.now() delta around CloneInstance
    validation: ValidationReport | None = None
    newest: datetime | None = None  # newest timestamp on the recovery instance
    recovery_deleted: bool = False  # a failed clone's leftovers are deleted
    switching: bool = False  # handed over to the switch release (continue-as-new)
    # --switch: the source instance's read replicas; they keep replicating from the source,
    # not from the recovery instance the services move to (next_steps says what to do)
    replicas: list[ReplicaInfo] = []
    left_in: list[str] = []
    next_steps: list[str] = []
    error: str = ""
    abort_reason: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    events: list[str] = []
    progress: str = ""


# --------------------------------------------------------------------------- DR drill


class DrillInput(Payload):
    app: str
    env: str
    instance: InstanceRef  # the source instance; its newest SUCCESSFUL backup is drilled
    verification: Verification
    rpo: timedelta = DEFAULT_RPO
    rto: timedelta = DEFAULT_RTO
    requested_by: Name = ""
    notify: bool = False


class DrillTable(Payload):
    table: str
    source_rows: int | None = None
    scratch_rows: int | None = None
    source_newest: datetime | None = None
    scratch_newest: datetime | None = None


class DrillReport(Payload):
    """The record of one drill (query `status` while it runs, result when it ends).

    - `restore_seconds`: workflow.now() delta around CloneInstance (the backup restored into the
      scratch instance, request to usable instance): the measured restore time, against `rto`.
    - `data_loss_seconds`: source newest `created_at` (read after the clone) minus scratch newest
      `created_at`: the rows a restore of this backup would lose if the source were lost at the
      moment of the drill; against `rpo`. Backups alone meet a 5-minute RPO only if they are
      that recent; point-in-time recovery is what closes the gap.
    """

    app: str
    env: str
    source_instance: str
    scratch_instance: str = ""
    backup: BackupInfo | None = None
    phase: Phase = Phase.CLONING
    outcome: Outcome = Outcome.RUNNING
    tables: list[DrillTable] = []
    source: ValidationReport | None = None
    scratch: ValidationReport | None = None
    verified: bool = False  # both validations ran and reported ok
    source_newest: datetime | None = None
    scratch_newest: datetime | None = None
    data_loss_seconds: float | None = None
    rpo_seconds: float = DEFAULT_RPO.total_seconds()
    rpo_met: bool | None = None
    restore_seconds: float | None = None
    rto_seconds: float = DEFAULT_RTO.total_seconds()
    rto_met: bool | None = None
    scratch_deleted: bool = False
    error: str = ""
    abort_reason: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    events: list[str] = []
    progress: str = ""
