"""The names that bind the CLI, workflows, activities, tests and bench together.

One place for the task queue, workflow types and ids, message names, search attributes, failure
types and activity names. Renaming one here renames it everywhere; a name that is recorded in
histories (every string below) must never change once released, or in-flight and recorded runs
stop replaying. Deterministic and import-light: importable from workflow code.
"""

from __future__ import annotations

from typing import Final

from temporalio.common import SearchAttributeKey

TASK_QUEUE: Final = "stagecoach"


class WorkflowType:
    """`@workflow.defn(name=...)` of each workflow."""

    RELEASE: Final = "Release"
    ROLLBACK: Final = "Rollback"
    BACKUP: Final = "Backup"
    RESTORE: Final = "Restore"
    POINT_IN_TIME_RECOVERY: Final = "PointInTimeRecovery"
    DR_DRILL: Final = "DrDrill"
    FAILOVER: Final = "Failover"
    REPLICA_DRILL: Final = "ReplicaDrill"  # `dr-drill --scenario regional --from replica`
    SERVICE_LOCK: Final = "ServiceLock"


class Message:
    """Query, signal and update names (starter.py, `temporal workflow ...` and the Web UI)."""

    STATUS: Final = "status"  # query: the full status object
    SUMMARY: Final = "summary"  # query: a few lines for people (Release)
    ABORT: Final = "abort"  # signal: stop and restore
    PROMOTE: Final = "promote"  # signal: end the current bake early
    APPROVE: Final = "approve"  # update: a signed approval
    HOLDER: Final = "holder"  # ServiceLock query
    RELEASE_LOCK: Final = "release"  # ServiceLock signal


class Activity:
    """`@activity.defn(name=...)` of each activity (see activities/__init__.py for the types)."""

    GET_SERVICE_STATE: Final = "GetServiceState"
    READ_SERVING: Final = "ReadServing"
    CREATE_REVISION: Final = "CreateRevision"
    SET_TRAFFIC: Final = "SetTraffic"
    SET_SCALING: Final = "SetScaling"
    FIND_PREVIOUS_REVISION: Final = "FindPreviousRevision"
    SMOKE_TEST: Final = "SmokeTest"
    CHECK_REVISION_HEALTH: Final = "CheckRevisionHealth"
    READ_CANARY_METRICS: Final = "ReadCanaryMetrics"
    CREATE_BACKUP: Final = "CreateBackup"
    LIST_BACKUPS: Final = "ListBackups"
    RESTORE_BACKUP: Final = "RestoreBackup"
    READ_RECOVERY_WINDOW: Final = "ReadRecoveryWindow"
    CLONE_INSTANCE: Final = "CloneInstance"
    DELETE_INSTANCE: Final = "DeleteInstance"
    VALIDATE_DATABASE: Final = "ValidateDatabase"
    NOTIFY: Final = "Notify"
    LOAD_POLICY: Final = "LoadPolicy"
    ACQUIRE_SERVICE_LOCKS: Final = "AcquireServiceLocks"
    RELEASE_SERVICE_LOCKS: Final = "ReleaseServiceLocks"
    CREATE_INSTANCE: Final = "CreateInstance"
    PROMOTE_REPLICA: Final = "PromoteReplica"
    LIST_REPLICAS: Final = "ListReplicas"
    DELETE_REPLICA: Final = "DeleteReplica"
    CREATE_REPLICA: Final = "CreateReplica"
    WAIT_REPLICA_CAUGHT_UP: Final = "WaitReplicaCaughtUp"
    DEPLOY_SERVICE: Final = "DeployService"
    DELETE_SERVICE: Final = "DeleteService"
    READ_DNS: Final = "ReadDns"
    MOVE_DNS: Final = "MoveDns"
    VERIFY_DNS: Final = "VerifyDns"
    START_HOOK: Final = "StartHook"
    READ_HOOK_EXECUTION: Final = "ReadHookExecution"
    CANCEL_HOOK_EXECUTION: Final = "CancelHookExecution"


# Custom search attributes: registered by the dev server start-up, `local up` and the
# docker-compose setup job (all from SEARCH_ATTRIBUTES), set by every workflow.
ENVIRONMENT: Final = SearchAttributeKey.for_keyword("StagecoachEnvironment")
VERSION: Final = SearchAttributeKey.for_keyword("StagecoachVersion")
PHASE: Final = SearchAttributeKey.for_keyword("StagecoachPhase")
OUTCOME: Final = SearchAttributeKey.for_keyword("StagecoachOutcome")
SEARCH_ATTRIBUTES: Final = {key.name: "Keyword" for key in (ENVIRONMENT, VERSION, PHASE, OUTCOME)}

# A release that did not promote (and a DR workflow that did not succeed) ends as a *failed*
# execution whose ApplicationError has one of these types and the full status as first detail.
RELEASE_NOT_PROMOTED: Final = "ReleaseNotPromoted"
DR_NOT_SUCCEEDED: Final = "DrNotSucceeded"
STATUS_FAILURE_TYPES: Final = frozenset({RELEASE_NOT_PROMOTED, DR_NOT_SUCCEEDED})

# Other ApplicationError types the workflows raise and callers check.
INVALID_INPUT: Final = "InvalidInput"  # an input starter.py never builds
APPROVAL_REJECTED: Final = "ApprovalRejected"  # a refused `approve` update
BACKUP_FAILED: Final = "BackupFailed"  # an on-demand backup Cloud SQL did not complete


# Workflow ids. A release, a restore, a point-in-time recovery, a failover and a failback of one
# environment all hold the environment's id, so only one of them runs at a time.
def environment_workflow_id(app: str, env: str) -> str:
    return f"deploy-{app}-{env}"


def release_workflow_id(app: str, env: str) -> str:
    return environment_workflow_id(app, env)


def rollback_workflow_id(app: str, env: str) -> str:
    return f"rollback-{app}-{env}"


def backup_workflow_id(app: str, env: str) -> str:
    return f"backup-{app}-{env}"


def drill_workflow_id(app: str, env: str) -> str:
    return f"dr-drill-{app}-{env}"


def drill_schedule_id(app: str, env: str) -> str:
    return f"dr-drill-{app}-{env}"


def regional_drill_workflow_id(app: str, env: str) -> str:
    return f"dr-drill-regional-{app}-{env}"


def regional_drill_schedule_id(app: str, env: str) -> str:
    return f"dr-drill-regional-{app}-{env}"


def service_lock_workflow_id(project: str, region: str, service: str) -> str:
    """The ServiceLock workflow that serialises every run touching one Cloud Run service."""
    return f"lock-run-{project}-{region}-{service}"
