"""Temporal histories: event times, activity inputs, local-activity markers, the runs of a
workflow across continue-as-new; recording a run's history for tests/replay and replaying one."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowHistory

from stagecoach import contract
from stagecoach.payloads.release import ReleaseStatus
from testing.paths import HISTORIES


def event_time(e: HistoryEvent) -> float:
    return e.event_time.seconds + e.event_time.nanos / 1e9


def payload_json(payloads: Any) -> Any:
    """The first payload of a Payloads message as JSON (the pydantic converter writes JSON)."""
    items = list(payloads.payloads)
    if not items:
        return None
    return json.loads(items[0].data)


async def run_histories(client: Client, workflow_id: str, first_run_id: str) -> list[Any]:
    """Histories of every run of a workflow, following continue-as-new from the first run."""
    out = []
    run_id: str | None = first_run_id
    while run_id:
        hist = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        out.append(hist)
        run_id = None
        for e in hist.events:
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                run_id = e.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return out


async def release_events(
    client: Client, handle: WorkflowHandle[Any, ReleaseStatus]
) -> list[HistoryEvent]:
    """Every history event of a finished release, across its continue-as-new runs."""
    hists = await run_histories(client, handle.id, handle.result_run_id or "")
    return [e for h in hists for e in h.events]


@dataclass
class ActivityCall:
    type: str
    input: Any
    scheduled: float
    started: float | None = None
    closed: float | None = None
    result: str = ""  # completed / failed / timed_out / canceled


CLOSED_ACTIVITY = {
    "activity_task_completed_event_attributes": "completed",
    "activity_task_failed_event_attributes": "failed",
    "activity_task_timed_out_event_attributes": "timed_out",
    "activity_task_canceled_event_attributes": "canceled",
}


def activity_calls(events: Iterable[HistoryEvent]) -> list[ActivityCall]:
    """Regular activities of a history in scheduling order, with their event times."""
    by_id: dict[int, ActivityCall] = {}
    for e in events:
        t = e.event_type
        if t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            by_id[e.event_id] = ActivityCall(
                a.activity_type.name, payload_json(a.input), event_time(e)
            )
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            by_id[e.activity_task_started_event_attributes.scheduled_event_id].started = event_time(
                e
            )
        else:
            attr = e.WhichOneof("attributes") or ""
            kind = CLOSED_ACTIVITY.get(attr)
            if kind:
                call = by_id[getattr(e, attr).scheduled_event_id]
                call.closed, call.result = event_time(e), kind
    return list(by_id.values())


def rollback_calls(events: Iterable[HistoryEvent]) -> list[ActivityCall]:
    """The SetTraffic activities of a history that moved traffic back (reason "rollback")."""
    return [
        a
        for a in activity_calls(events)
        if a.type == contract.Activity.SET_TRAFFIC and (a.input or {}).get("reason") == "rollback"
    ]


@dataclass
class LocalActivity:
    type: str
    recorded: float  # MarkerRecorded event time (the workflow task completion)
    completed: float | None  # when the local activity finished on the worker (marker data)
    attempt: int
    failed: bool


def _ts_seconds(value: Any) -> float | None:
    """A protobuf-JSON Timestamp (RFC 3339 string or {seconds, nanos}) -> epoch seconds."""
    if isinstance(value, str):
        dt = datetime.fromisoformat(value)
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, dict):
        return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
    return None


def local_activities(events: Iterable[HistoryEvent]) -> list[LocalActivity]:
    """Local-activity markers: type, marker time and the worker-side completion time."""
    out = []
    for e in events:
        if e.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        a = e.marker_recorded_event_attributes
        if a.marker_name != "core_local_activity":
            continue
        data = payload_json(a.details["data"]) if "data" in a.details else {}
        out.append(
            LocalActivity(
                type=str(data.get("activity_type", data.get("activityType", ""))),
                recorded=event_time(e),
                completed=_ts_seconds(data.get("complete_time", data.get("completeTime"))),
                attempt=int(data.get("attempt", 1)),
                failed=a.HasField("failure"),
            )
        )
    return out


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With STAGECOACH_RECORD_HISTORY set: the run's history into tests/replay/histories."""
    if os.environ.get("STAGECOACH_RECORD_HISTORY"):
        history = await handle.fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())
        # the replay needs the workflow id: signed approvals are bound to it
        ids_file = HISTORIES / "workflow_ids.json"
        ids = json.loads(ids_file.read_text()) if ids_file.exists() else {}
        ids[name] = handle.id
        ids_file.write_text(json.dumps(ids, indent=2, sort_keys=True) + "\n")


async def replays(
    handle: WorkflowHandle[Any, Any], workflows: Sequence[type] | None = None
) -> WorkflowHistory:
    """The run's history replays on today's `workflows` (default: every workflow the worker
    registers) without non-determinism; returns that history."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    from stagecoach.temporal import workflows as registered

    history = await handle.fetch_history()
    replayer = Replayer(
        workflows=list(workflows or registered()), data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{handle.id} does not replay: {result.replay_failure}"
    return history
