"""The rollback workflow (DR scenario 4, bad release): for each service, 100% of the traffic back
to the revision that served before the current one, as its own durable workflow.

Never "to LATEST": LATEST is the newest revision, usually the one being rolled back from. Which
revision served before is decided by the `FindPreviousRevision` activity, from the release
history the caller passes in (`RollbackInput.previous_of`: the revision each promoted release
replaced) and, failing that, from the service's revision list (the newest ready revision created
before the current one, skipping canaries of releases that were never promoted).

Deterministic: no I/O, no wall clock; every API call is an activity.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.common import API_RETRY, QUICK, TRAFFIC_RETRY, error_message

with workflow.unsafe.imports_passed_through():
    from activities.cloud_run import CloudRunActivities
    from activities.revisions import find_previous_revision
    from stagecoach.contract import ENVIRONMENT, OUTCOME, PHASE, Message, WorkflowType
    from stagecoach.payloads.common import Outcome, Phase, ServiceRef, TrafficTarget
    from stagecoach.payloads.release import RollbackInput, RollbackResult, RollbackServiceResult
    from stagecoach.payloads.run import (
        FindPreviousRevisionInput,
        PreviousRevision,
        ServiceState,
        SetTrafficInput,
        SetTrafficResult,
    )
    from stagecoach.splits import describe, pin_latest, serving_revisions

# --------------------------------------------------------------------------- pure helpers


def current_revision(traffic: list[TrafficTarget]) -> str:
    """The revision with the largest share (used only for the progress line)."""
    serving = [t for t in traffic if t.percent > 0]
    return max(serving, key=lambda t: t.percent).revision if serving else ""


def rollback_split(pinned: list[TrafficTarget], previous: str) -> list[TrafficTarget]:
    """100% to `previous`; every other tag is kept at 0% so tag URLs keep working."""
    own_tag = next((t.tag for t in pinned if t.revision == previous and t.tag), "")
    out = [TrafficTarget(type="REVISION", revision=previous, percent=100, tag=own_tag)]
    for t in pinned:
        if t.tag and t.tag != own_tag and t.revision and t.revision != previous:
            out.append(TrafficTarget(type="REVISION", revision=t.revision, percent=0, tag=t.tag))
    return out


# --------------------------------------------------------------------------- workflow


@workflow.defn(name=WorkflowType.ROLLBACK)
class RollbackWorkflow:
    def __init__(self) -> None:
        self.results: list[RollbackServiceResult] = []
        self.progress = "starting"

    @workflow.query(
        name=Message.STATUS,
        description="The services rolled back so far (JSON): {services: [...], outcome}.",
    )
    def status(self) -> RollbackResult:
        return RollbackResult(services=self.results, outcome=Outcome.RUNNING)

    @workflow.run
    async def run(self, inp: RollbackInput) -> RollbackResult:
        self._attributes(inp.env, Phase.ROLLING_BACK, Outcome.RUNNING)
        for ref in inp.services:
            self.results.append(await self._rollback_one(inp, ref))
        failed = any(r.error for r in self.results)
        outcome = Outcome.FAILED if failed else Outcome.ROLLED_BACK
        self._attributes(inp.env, Phase.DONE, outcome)
        done = ", ".join(
            f"{r.service}: {'error' if r.error else describe(r.to_traffic)}" for r in self.results
        )
        self._progress(inp, f"{outcome.value}: {done}")
        return RollbackResult(services=self.results, outcome=outcome)

    async def _rollback_one(self, inp: RollbackInput, ref: ServiceRef) -> RollbackServiceResult:
        name = ref.service
        self._progress(inp, f"{name}: reading live traffic")
        try:
            state: ServiceState = await workflow.execute_activity_method(
                CloudRunActivities.get_service_state,
                ref,
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary=f"read {name}",
            )
        except ActivityError as err:
            return RollbackServiceResult(
                service=name,
                from_traffic=[],
                to_traffic=[],
                changed=False,
                error=f"reading {name} failed: {error_message(err)}",
            )

        def unchanged(error: str) -> RollbackServiceResult:
            """This service left as it serves, with what went wrong."""
            return RollbackServiceResult(
                service=name,
                from_traffic=state.traffic,
                to_traffic=state.traffic,
                changed=False,
                error=error,
            )

        pinned = pin_latest(state.traffic, state.latest_ready_revision)
        try:
            prev: PreviousRevision = await workflow.execute_activity(
                find_previous_revision,
                FindPreviousRevisionInput(
                    ref=ref,
                    serving=serving_revisions(pinned),
                    previous_of=inp.previous_of.get(name, {}),
                    exclude=inp.exclude.get(name, []),
                ),
                start_to_close_timeout=QUICK,
                retry_policy=API_RETRY,
                summary=f"find the revision before {current_revision(pinned) or name}",
            )
        except ActivityError as err:
            return unchanged(error_message(err))
        split = rollback_split(pinned, prev.previous)
        self._progress(inp, f"{name}: {prev.current} -> {prev.previous} 100% ({prev.how})")
        try:
            res: SetTrafficResult = await workflow.execute_activity_method(
                CloudRunActivities.set_traffic,
                SetTrafficInput(ref=ref, traffic=split, reason=f"rollback: {prev.how}"),
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=TRAFFIC_RETRY,
                summary=f"{name}: 100% to {prev.previous}",
            )
        except ActivityError as err:
            return unchanged(f"setting traffic failed: {error_message(err)}")
        workflow.logger.info("%s rolled back to %s (%s)", name, prev.previous, prev.how)
        return RollbackServiceResult(
            service=name, from_traffic=state.traffic, to_traffic=res.traffic, changed=res.changed
        )

    def _progress(self, inp: RollbackInput, line: str) -> None:
        self.progress = line
        workflow.set_current_details(f"rollback of {inp.app} in {inp.env}: {line}")

    def _attributes(self, env: str, phase: Phase, outcome: Outcome) -> None:
        workflow.upsert_search_attributes(
            [
                ENVIRONMENT.value_set(env),
                PHASE.value_set(phase.value),
                OUTCOME.value_set(outcome.value),
            ]
        )
