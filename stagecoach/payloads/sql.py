"""Inputs and outputs of the Cloud SQL activities (activities/cloud_sql.py, db_verify.py)."""

from __future__ import annotations

from datetime import datetime

from stagecoach.payloads.base import Payload
from stagecoach.payloads.common import InstanceRef


class CreateBackupInput(Payload):
    ref: InstanceRef
    description: str  # unique per request: a retry finds and reuses the same backup


class BackupInfo(Payload):
    id: str
    status: str
    type: str = "ON_DEMAND"
    description: str = ""
    enqueued_time: datetime | None = None
    end_time: datetime | None = None
    instance: str = ""


class ListBackupsInput(Payload):
    ref: InstanceRef
    limit: int = 50


class RestoreBackupInput(Payload):
    ref: InstanceRef  # target instance (overwritten)
    backup_id: str
    source_instance: str  # instance the backup was taken from


class CloneInstanceInput(Payload):
    ref: InstanceRef  # source instance
    destination: str
    point_in_time: datetime | None = None
    backup_id: str | None = None


class RecoveryWindowInput(Payload):
    ref: InstanceRef
    point_in_time: datetime | None = None  # checked against the window when given


class RecoveryWindow(Payload):
    """Output of ReadRecoveryWindow: how far back point-in-time recovery of an instance reaches
    (`instances.getLatestRecoveryTime`, the backup configuration)."""

    instance: str
    pitr_enabled: bool
    retention_days: int = 0  # settings.backupConfiguration.transactionLogRetentionDays
    earliest: datetime | None = None
    latest: datetime | None = None
    problem: str = ""  # why `point_in_time` cannot be recovered (with the fix); "" when it can


class DeleteInstanceInput(Payload):
    ref: InstanceRef
    # Only for instances this Stagecoach run created itself (a drill's scratch instance, a
    # recovery clone that did not complete): clones inherit the source's deletion protection,
    # which is then turned off first. Never set for an instance Stagecoach did not create.
    created_by_stagecoach: bool = False


class ReplicaInfo(Payload):
    """A read replica of a primary instance as `instances.get` reports it: what ListReplicas
    returns and what CreateReplica recreates it from (same name, region, tier, availability,
    database version and labels)."""

    name: str
    project: str
    region: str = ""
    tier: str = ""
    availability: str = ""  # settings.availabilityType (ZONAL / REGIONAL)
    database_version: str = ""
    state: str = ""  # RUNNABLE, PENDING_CREATE, PENDING_DELETE, ...
    deletion_protection: bool = False
    labels: dict[str, str] = {}


class ReplicaInput(Payload):
    """DeleteReplica / CreateReplica: `replica` of the primary instance `primary`."""

    primary: InstanceRef
    replica: ReplicaInfo


class OperationResult(Payload):
    operation: str
    seconds: float  # measured from request to DONE


class ValidateDatabaseInput(Payload):
    ref: InstanceRef
    database: str
    tables: list[str]
    timestamp_column: str = "created_at"


class TableCount(Payload):
    table: str
    rows: int
    newest: datetime | None = None


class ValidationReport(Payload):
    instance: str
    tables: list[TableCount]
    ok: bool
    problems: list[str] = []

    @property
    def newest(self) -> datetime | None:
        stamps = [t.newest for t in self.tables if t.newest]
        return max(stamps) if stamps else None
