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
| ReadCanaryMetrics | ReadCanaryMetricsInput -> CanaryMetrics |
| CreateBackup | CreateBackupInput -> BackupInfo |
| ListBackups | ListBackupsInput -> list[BackupInfo] |
| RestoreBackup | RestoreBackupInput -> OperationResult |
| CloneInstance | CloneInstanceInput -> OperationResult |
| DeleteInstance | DeleteInstanceInput -> OperationResult |
| ValidateDatabase | ValidateDatabaseInput -> ValidationReport |
| Notify | NotifyInput -> None |
| StartHook | StartHookInput -> HookExecution (activities/cloud_run_jobs.py) |
| ReadHookExecution | ExecutionRef -> HookExecution |
| CancelHookExecution | ExecutionRef -> HookExecution |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stagecoach.clients import Clients, clients_for
from stagecoach.models import Target


def all_activities(
    target_factory: Callable[[Target], Clients] = clients_for,
) -> list[Callable[..., Any]]:
    """Every activity callable, for `Worker(activities=...)`."""
    from activities.cloud_run import CloudRunActivities
    from activities.cloud_run_jobs import CloudRunJobsActivities
    from activities.cloud_sql import CloudSqlActivities
    from activities.db_verify import DatabaseActivities
    from activities.monitoring import MonitoringActivities
    from activities.notify import notify
    from activities.revisions import find_previous_revision
    from activities.smoke import smoke_test

    run = CloudRunActivities(target_factory)
    sql = CloudSqlActivities(target_factory)
    mon = MonitoringActivities(target_factory)
    db = DatabaseActivities(target_factory)
    jobs = CloudRunJobsActivities(target_factory)
    return [
        run.get_service_state,
        run.read_serving,
        run.create_revision,
        run.set_traffic,
        run.set_scaling,
        find_previous_revision,
        smoke_test,
        mon.read_canary_metrics,
        sql.create_backup,
        sql.list_backups,
        sql.restore_backup,
        sql.clone_instance,
        sql.delete_instance,
        db.validate_database,
        notify,
        jobs.start_hook,
        jobs.read_hook_execution,
        jobs.cancel_hook_execution,
    ]


__all__ = ["all_activities"]
