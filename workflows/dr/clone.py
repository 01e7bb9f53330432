"""The runs that clone an instance into a new one: the DR drill (from a backup, into a scratch
instance it always deletes) and the point-in-time recovery (at a timestamp, into a recovery
instance it keeps once the clone completed). Their shared part: the clone, which waits for its
cancellation to complete, the delete, and `abort` cancelling the work at once.

Deterministic: a `DrRun` (workflows/dr/common.py).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType

from workflows.common import API_RETRY, error_message

with workflow.unsafe.imports_passed_through():
    from activities.cloud_sql import CloudSqlActivities
    from stagecoach.payloads.common import InstanceRef, Phase
    from stagecoach.payloads.dr import Verification
    from stagecoach.payloads.sql import (
        CloneInstanceInput,
        DeleteInstanceInput,
        OperationResult,
        ValidationReport,
    )

from workflows.dr.common import CLEANUP_RETRY, HEARTBEAT, OPERATION, DrRunAnyAbort


class CloneRun(DrRunAnyAbort):
    """Shared shape of the drill and the point-in-time recovery: the work runs as a task, which
    `abort` cancels; the instance this run creates is deleted in the skeleton's cleanup when the
    run does not keep it, whatever ended the work."""

    abort_cancels_work = True

    async def _delete(self, ref: InstanceRef, why: str) -> tuple[bool, str]:
        """Delete `ref` (a 404 counts as deleted). (deleted, error)."""
        self._set_phase(Phase.CLEANING_UP)
        self._progress(f"deleting {ref.instance} ({why})")
        try:
            await workflow.execute_activity_method(
                CloudSqlActivities.delete_instance,
                DeleteInstanceInput(ref=ref, created_by_stagecoach=True),
                start_to_close_timeout=OPERATION,
                schedule_to_close_timeout=OPERATION,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=CLEANUP_RETRY,
                summary=f"delete {ref.instance}",
            )
        except ActivityError as err:
            msg = error_message(err)
            self._event(f"{ref.instance} NOT deleted: {msg}")
            return False, msg
        self._event(f"{ref.instance} deleted ({why})")
        return True, ""

    async def _clone(self, inp: CloneInstanceInput, what: str) -> OperationResult:
        # Waiting for the cancellation to complete: when this run is cancelled mid-clone, the
        # delete that follows never races a clone activity still creating the instance.
        res: OperationResult = await workflow.execute_activity_method(
            CloudSqlActivities.clone_instance,
            inp,
            start_to_close_timeout=OPERATION,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=API_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=what,
        )
        return res

    async def _validate(self, v: Verification, ref: InstanceRef) -> ValidationReport:
        self._set_phase(Phase.VERIFYING)
        return await super()._validate(v, ref)
