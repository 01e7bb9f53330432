"""Activities: all of Stagecoach's I/O, typed in -> typed out.

Synchronous functions (the Google clients are synchronous): the worker runs them on a thread
pool (`Worker(..., activity_executor=ThreadPoolExecutor(...))`). Activity type names:

| name | input -> output |
|---|---|
| GetServiceState | ServiceRef -> ServiceState |
| ReadServing | ReadServingInput -> list[ServingRevision] (image, database binding) |
| CreateRevision | CreateRevisionInput -> CreateRevisionResult |
| SetTraffic | SetTrafficInput -> SetTrafficResult |
| SetScaling | SetScalingInput -> ServiceState |
| FindPreviousRevision | FindPreviousRevisionInput -> PreviousRevision (activities/revisions.py) |
| SmokeTest | SmokeTestInput -> SmokeTestResult |
| CheckRevisionHealth | RevisionHealthInput -> RevisionHealth (activities/revision_health.py) |
| ReadCanaryMetrics | ReadCanaryMetricsInput -> CanaryMetrics |
| CreateBackup | CreateBackupInput -> BackupInfo |
| ListBackups | ListBackupsInput -> list[BackupInfo] |
| RestoreBackup | RestoreBackupInput -> OperationResult |
| ReadRecoveryWindow | RecoveryWindowInput -> RecoveryWindow (PITR on, retention, window) |
| CloneInstance | CloneInstanceInput -> OperationResult |
| DeleteInstance | DeleteInstanceInput -> OperationResult |
| ValidateDatabase | ValidateDatabaseInput -> ValidationReport |
| Notify | NotifyInput -> None |
| LoadPolicy | LoadPolicyInput -> WorkerPolicy (activities/policy.py: the worker's own policy) |
| AcquireServiceLocks / ReleaseServiceLocks | LocksInput -> lock ids / None (activities/locks.py) |
| CreateInstance | CreateInstanceInput -> CreateInstanceResult (activities/regional.py) |
| PromoteReplica | PromoteReplicaInput -> PromoteReplicaResult (activities/replicas.py) |
| ListReplicas | InstanceRef -> list[ReplicaInfo] (a restore target's read replicas) |
| DeleteReplica / CreateReplica | ReplicaInput -> OperationResult / ReplicaInfo |
| WaitReplicaCaughtUp | WaitReplicaInput -> ReplicaLag (activities/replica_catchup.py) |
| DeployService | DeployServiceInput -> DeployServiceResult (activities/regional.py) |
| DeleteService | DeleteServiceInput -> bool (activities/regional.py) |
| ReadDns / MoveDns / VerifyDns | Cloud DNS v1 (activities/dns.py) |
| StartHook | StartHookInput -> HookExecution (activities/cloud_run_jobs.py) |
| ReadHookExecution | ExecutionRef -> HookExecution |
| CancelHookExecution | ExecutionRef -> HookExecution |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stagecoach.clients import Clients, clients_for
from stagecoach.payloads.common import Target

if TYPE_CHECKING:
    from activities.policy import PolicySource


def all_activities(
    target_factory: Callable[[Target], Clients] = clients_for,
    policy: PolicySource | None = None,
) -> list[Callable[..., Any]]:
    """Every activity callable, for `Worker(activities=...)`; `policy`: where the worker's own
    config and approver keys are (default: STAGECOACH_CONFIG or ./deploy.yaml, and
    STAGECOACH_APPROVER_KEYS)."""
    from activities.cloud_run import CloudRunActivities
    from activities.cloud_run_jobs import CloudRunJobsActivities
    from activities.cloud_sql import CloudSqlActivities
    from activities.db_verify import DatabaseActivities
    from activities.dns import DnsActivities
    from activities.locks import acquire_service_locks, release_service_locks
    from activities.monitoring import MonitoringActivities
    from activities.notify import notify
    from activities.policy import PolicyActivities
    from activities.regional import RegionalActivities
    from activities.replica_catchup import ReplicaCatchUpActivities
    from activities.replicas import ReplicaActivities
    from activities.revision_health import RevisionHealthActivities
    from activities.revisions import find_previous_revision
    from activities.smoke import smoke_test

    run = CloudRunActivities(target_factory)
    sql = CloudSqlActivities(target_factory)
    mon = MonitoringActivities(target_factory)
    db = DatabaseActivities(target_factory)
    regional = RegionalActivities(target_factory)
    dns = DnsActivities(target_factory)
    jobs = CloudRunJobsActivities(target_factory)
    replicas = ReplicaActivities(target_factory)
    return [
        run.get_service_state,
        run.read_serving,
        run.create_revision,
        run.set_traffic,
        run.set_scaling,
        find_previous_revision,
        smoke_test,
        RevisionHealthActivities(target_factory).check_revision_health,
        mon.read_canary_metrics,
        sql.create_backup,
        sql.list_backups,
        sql.restore_backup,
        sql.read_recovery_window,
        sql.clone_instance,
        sql.delete_instance,
        db.validate_database,
        notify,
        PolicyActivities(policy).load_policy,
        acquire_service_locks,
        release_service_locks,
        regional.create_instance,
        replicas.promote_replica,
        replicas.list_replicas,
        replicas.delete_replica,
        replicas.create_replica,
        ReplicaCatchUpActivities(target_factory).wait_replica_caught_up,
        regional.deploy_service,
        regional.delete_service,
        dns.read_dns,
        dns.move_dns,
        dns.verify_dns,
        jobs.start_hook,
        jobs.read_hook_execution,
        jobs.cancel_hook_execution,
    ]


__all__ = ["all_activities"]
