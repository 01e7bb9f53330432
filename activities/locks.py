"""AcquireServiceLocks / ReleaseServiceLocks: the service lock's I/O (see stagecoach.locks),
through the worker's own Temporal client. Everything here works with no worker polling the
lock's task queue: the holder is read from the lock's memo, a release terminates the lock."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from stagecoach.contract import Activity, WorkflowType
from stagecoach.locks import lock_id
from stagecoach.payloads.locks import Holder, LocksInput, ServiceLockInput

MEMO_KEY = "holder"


async def _holder(lid: str) -> Holder | None:
    """The holder of a running lock; None when the lock is not running."""
    try:
        desc = await activity.client().get_workflow_handle(lid).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return None
    memo = await desc.memo()
    try:
        return Holder.model_validate(memo.get(MEMO_KEY) or {})
    except ValueError:
        return Holder(workflow_id="(unknown)")


async def _running(workflow_id: str) -> bool:
    try:
        desc = await activity.client().get_workflow_handle(workflow_id).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return desc.status == WorkflowExecutionStatus.RUNNING


async def _end(lid: str, why: str) -> None:
    try:
        await activity.client().get_workflow_handle(lid).terminate(reason=why)
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise


@activity.defn(name=Activity.ACQUIRE_SERVICE_LOCKS)
async def acquire_service_locks(inp: LocksInput) -> list[str]:
    """Hold every service of the release, or none: a service held by another running release
    refuses the whole request, naming the holder. Held already by this holder (a retry, a
    continued run): kept. Held by a release that is no longer running: taken over."""
    client = activity.client()
    me = inp.holder.workflow_id
    got: list[str] = []
    for ref in inp.services:
        lid = lock_id(ref)
        for _ in range(3):
            try:
                await client.start_workflow(
                    WorkflowType.SERVICE_LOCK,
                    ServiceLockInput(service=ref.name, holder=inp.holder),
                    id=lid,
                    task_queue=activity.info().task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    memo={MEMO_KEY: inp.holder.model_dump(mode="json")},
                    static_summary=f"{ref.service} held by {inp.holder.describe()}",
                )
                got.append(lid)
                break
            except WorkflowAlreadyStartedError:
                pass
            holder = await _holder(lid)
            if holder is None:
                continue  # ended meanwhile: try again
            if holder.workflow_id == me:
                got.append(lid)
                break
            if not await _running(holder.workflow_id):
                await _end(lid, f"stale: holder {holder.workflow_id} is no longer running")
                continue
            for taken in got:
                await _end(taken, f"released by {me} (could not hold {ref.service})")
            raise ApplicationError(
                f"{ref.service} is being released by {holder.describe()}; wait for it to end "
                f"or abort it (lock workflow {lid})",
                type="ServiceLocked",
                non_retryable=True,
            )
        else:
            raise ApplicationError(f"{ref.service}: its lock {lid} keeps changing; retrying")
    return got


@activity.defn(name=Activity.RELEASE_SERVICE_LOCKS)
async def release_service_locks(inp: LocksInput) -> None:
    """End this holder's locks (a lock held by anyone else is left alone)."""
    for ref in inp.services:
        lid = lock_id(ref)
        holder = await _holder(lid)
        if holder is not None and holder.workflow_id == inp.holder.workflow_id:
            await _end(lid, f"released by {inp.holder.workflow_id}")
