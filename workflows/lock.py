"""ServiceLock: held while a release touches one Cloud Run service (see stagecoach.locks).

It only waits: the lock is its workflow id being taken. Its holder is in its memo (readable with
no worker running); the holder ends it when done (ReleaseServiceLocks), and a release that finds
a lock whose holder is no longer running takes it over (AcquireServiceLocks). Deterministic.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from stagecoach.contract import Message, WorkflowType
    from stagecoach.locks import Holder, ServiceLockInput


@workflow.defn(name=WorkflowType.SERVICE_LOCK)
class ServiceLockWorkflow:
    @workflow.init
    def __init__(self, inp: ServiceLockInput) -> None:
        self.inp = inp
        self.released = False

    @workflow.query(
        name=Message.HOLDER, description="Who holds the service (JSON): the holding workflow's id."
    )
    def holder(self) -> Holder:
        return self.inp.holder

    @workflow.signal(
        name=Message.RELEASE_LOCK,
        description="Let the service go (sent by its holder when it ends).",
    )
    def release(self, workflow_id: str) -> None:
        if workflow_id == self.inp.holder.workflow_id:
            self.released = True

    @workflow.run
    async def run(self, inp: ServiceLockInput) -> str:
        workflow.set_current_details(f"{inp.service} held by {inp.holder.describe()}")
        await workflow.wait_condition(lambda: self.released)
        return f"released by {inp.holder.workflow_id}"
