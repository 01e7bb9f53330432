"""On-demand backup of an environment's Cloud SQL instance (`starter.py backup ENV`).

Deterministic: the duration is a `workflow.now()` delta.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.common import API_RETRY, error_message

with workflow.unsafe.imports_passed_through():
    from activities.cloud_sql import CloudSqlActivities
    from stagecoach.contract import (
        BACKUP_FAILED,
        ENVIRONMENT,
        OUTCOME,
        PHASE,
        VERSION,
        WorkflowType,
    )
    from stagecoach.payloads.common import Outcome, Phase
    from stagecoach.payloads.dr import BackupInput, BackupResult
    from stagecoach.payloads.sql import BackupInfo, CreateBackupInput

from workflows.dr.common import HEARTBEAT, OPERATION, seconds, stamp


@workflow.defn(name=WorkflowType.BACKUP)
class BackupWorkflow:
    """On-demand backup of an environment's instance, described `On-demand backup <UTC time>`,
    waited for until SUCCESSFUL. Id `backup-<app>-<env>`."""

    @workflow.run
    async def run(self, inp: BackupInput) -> BackupResult:
        start = workflow.now()
        desc = f"On-demand backup {stamp(start)}"
        workflow.upsert_search_attributes(
            [
                ENVIRONMENT.value_set(inp.env),
                VERSION.value_set("backup"),
                PHASE.value_set(Phase.BACKING_UP.value),
                OUTCOME.value_set(Outcome.RUNNING.value),
            ]
        )
        workflow.set_current_details(f"backing up {inp.instance.instance}: {desc}")
        try:
            info: BackupInfo = await workflow.execute_activity_method(
                CloudSqlActivities.create_backup,
                CreateBackupInput(ref=inp.instance, description=desc),
                start_to_close_timeout=OPERATION,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=API_RETRY,
                summary=f"backup {inp.instance.instance}",
            )
        except ActivityError as err:
            workflow.upsert_search_attributes(
                [PHASE.value_set(Phase.DONE.value), OUTCOME.value_set(Outcome.FAILED.value)]
            )
            raise ApplicationError(
                f"backup of {inp.instance.instance} failed: {error_message(err)}",
                type=BACKUP_FAILED,
                non_retryable=True,
            ) from err
        workflow.upsert_search_attributes(
            [PHASE.value_set(Phase.DONE.value), OUTCOME.value_set(Outcome.SUCCEEDED.value)]
        )
        workflow.set_current_details(f"backup {info.id} of {inp.instance.instance} {info.status}")
        return BackupResult(
            app=inp.app,
            env=inp.env,
            instance=inp.instance.instance,
            backup=info,
            seconds=seconds(start, workflow.now()),
        )
