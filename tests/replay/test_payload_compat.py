"""Recorded payloads decode into the payload models (stagecoach.payloads), and keep decoding when
the config schema moves on.

Every workflow input, continue-as-new input, activity input and result, update and signal
argument, workflow result and failure status recorded in tests/replay/histories/*.json is decoded
with the pydantic data converter into the model the workflow or activity declares for it; it must
come back as the same JSON (the shape is the recorded one). Then: an input with fields a newer
Stagecoach added, and values a stricter deploy.yaml schema refuses, still decodes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.api.common.v1 import Payload as ApiPayload
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from activities import all_activities
from stagecoach import config, freeze
from stagecoach.contract import STATUS_FAILURE_TYPES, Activity, Message, WorkflowType
from stagecoach.payloads import (
    common,
    dr,
    failover,
    hooks,
    locks,
    monitoring,
    policy,
    release,
    replica_drill,
    run,
    sql,
)
from stagecoach.payloads.base import Payload

HERE = Path(__file__).parent / "histories"
HISTORIES = sorted(p for p in HERE.glob("*.json") if p.name != "workflow_ids.json")
CONVERTER = pydantic_data_converter.payload_converter

# workflow type -> (input, result or failure status)
WORKFLOWS: dict[str, tuple[type, Any]] = {
    WorkflowType.RELEASE: (release.ReleaseInput, release.ReleaseStatus),
    WorkflowType.ROLLBACK: (release.RollbackInput, release.RollbackResult),
    WorkflowType.BACKUP: (dr.BackupInput, dr.BackupResult),
    WorkflowType.RESTORE: (dr.RestoreInput, dr.RestoreStatus),
    WorkflowType.POINT_IN_TIME_RECOVERY: (dr.PointInTimeInput, dr.PointInTimeResult),
    WorkflowType.DR_DRILL: (dr.DrillInput, dr.DrillReport),
    WorkflowType.FAILOVER: (failover.FailoverInput, failover.FailoverStatus),
    WorkflowType.REPLICA_DRILL: (replica_drill.ReplicaDrillInput, replica_drill.ReplicaDrillStatus),
    WorkflowType.SERVICE_LOCK: (locks.ServiceLockInput, str),
}
# activity type -> (input, result)
ACTIVITIES: dict[str, tuple[type, Any]] = {
    Activity.GET_SERVICE_STATE: (common.ServiceRef, run.ServiceState),
    Activity.READ_SERVING: (run.ReadServingInput, list[run.ServingRevision]),
    Activity.CREATE_REVISION: (run.CreateRevisionInput, run.CreateRevisionResult),
    Activity.SET_TRAFFIC: (run.SetTrafficInput, run.SetTrafficResult),
    Activity.SET_SCALING: (run.SetScalingInput, run.ServiceState),
    Activity.FIND_PREVIOUS_REVISION: (run.FindPreviousRevisionInput, run.PreviousRevision),
    Activity.SMOKE_TEST: (run.SmokeTestInput, run.SmokeTestResult),
    Activity.CHECK_REVISION_HEALTH: (run.RevisionHealthInput, run.RevisionHealth),
    Activity.READ_CANARY_METRICS: (monitoring.ReadCanaryMetricsInput, monitoring.CanaryMetrics),
    Activity.CREATE_BACKUP: (sql.CreateBackupInput, sql.BackupInfo),
    Activity.LIST_BACKUPS: (sql.ListBackupsInput, list[sql.BackupInfo]),
    Activity.RESTORE_BACKUP: (sql.RestoreBackupInput, sql.OperationResult),
    Activity.READ_RECOVERY_WINDOW: (sql.RecoveryWindowInput, sql.RecoveryWindow),
    Activity.CLONE_INSTANCE: (sql.CloneInstanceInput, sql.OperationResult),
    Activity.DELETE_INSTANCE: (sql.DeleteInstanceInput, sql.OperationResult),
    Activity.VALIDATE_DATABASE: (sql.ValidateDatabaseInput, sql.ValidationReport),
    Activity.NOTIFY: (common.NotifyInput, type(None)),
    Activity.LOAD_POLICY: (policy.LoadPolicyInput, policy.WorkerPolicy),
    Activity.ACQUIRE_SERVICE_LOCKS: (locks.LocksInput, list[str]),
    Activity.RELEASE_SERVICE_LOCKS: (locks.LocksInput, type(None)),
    Activity.CREATE_INSTANCE: (failover.CreateInstanceInput, failover.CreateInstanceResult),
    Activity.PROMOTE_REPLICA: (failover.PromoteReplicaInput, failover.PromoteReplicaResult),
    Activity.LIST_REPLICAS: (common.InstanceRef, list[sql.ReplicaInfo]),
    Activity.DELETE_REPLICA: (sql.ReplicaInput, sql.OperationResult),
    Activity.CREATE_REPLICA: (sql.ReplicaInput, sql.ReplicaInfo),
    Activity.WAIT_REPLICA_CAUGHT_UP: (replica_drill.WaitReplicaInput, replica_drill.ReplicaLag),
    Activity.DEPLOY_SERVICE: (failover.DeployServiceInput, failover.DeployServiceResult),
    Activity.DELETE_SERVICE: (failover.DeleteServiceInput, bool),
    Activity.READ_DNS: (failover.ReadDnsInput, list[str]),
    Activity.MOVE_DNS: (failover.MoveDnsInput, failover.MoveDnsResult),
    Activity.VERIFY_DNS: (failover.VerifyDnsInput, failover.VerifyDnsResult),
    Activity.START_HOOK: (hooks.StartHookInput, hooks.HookExecution),
    Activity.READ_HOOK_EXECUTION: (hooks.ExecutionRef, hooks.HookExecution),
    Activity.CANCEL_HOOK_EXECUTION: (hooks.ExecutionRef, hooks.HookExecution),
}
# update / signal name -> argument type (and the update's result type)
UPDATES: dict[str, tuple[type, type]] = {
    Message.APPROVE: (common.ApproveInput, common.ApproveResult)
}
SIGNALS: dict[str, type] = {Message.ABORT: common.AbortInput}


@dataclass
class Recorded:
    what: str  # e.g. "event 12 CreateRevision input"
    payload: ApiPayload
    type: Any


def _recorded(history: WorkflowHistory) -> Iterator[Recorded]:
    """Every payload of `history` with the type it is decoded into."""
    activity_of: dict[int, str] = {}
    workflow_type = ""
    for e in history.events:
        at = f"event {e.event_id}"
        if e.HasField("workflow_execution_started_event_attributes"):
            a = e.workflow_execution_started_event_attributes
            workflow_type = a.workflow_type.name
            for p in a.input.payloads:
                yield Recorded(f"{at} {workflow_type} input", p, WORKFLOWS[workflow_type][0])
        elif e.HasField("workflow_execution_continued_as_new_event_attributes"):
            c = e.workflow_execution_continued_as_new_event_attributes
            for p in c.input.payloads:
                yield Recorded(f"{at} continue-as-new input", p, WORKFLOWS[c.workflow_type.name][0])
        elif e.HasField("activity_task_scheduled_event_attributes"):
            s = e.activity_task_scheduled_event_attributes
            name = activity_of[e.event_id] = s.activity_type.name
            for p in s.input.payloads:
                yield Recorded(
                    f"{at} {s.activity_type.name} input", p, ACTIVITIES[s.activity_type.name][0]
                )
        elif e.HasField("activity_task_completed_event_attributes"):
            d = e.activity_task_completed_event_attributes
            name = activity_of[d.scheduled_event_id]
            for p in d.result.payloads:
                yield Recorded(f"{at} {name} result", p, ACTIVITIES[name][1])
        elif e.HasField("workflow_execution_update_accepted_event_attributes"):
            u = e.workflow_execution_update_accepted_event_attributes.accepted_request.input
            for p in u.args.payloads:
                yield Recorded(f"{at} update {u.name}", p, UPDATES[u.name][0])
        elif e.HasField("workflow_execution_update_completed_event_attributes"):
            o = e.workflow_execution_update_completed_event_attributes.outcome
            for p in o.success.payloads:
                yield Recorded(f"{at} update result", p, common.ApproveResult)
        elif e.HasField("workflow_execution_signaled_event_attributes"):
            g = e.workflow_execution_signaled_event_attributes
            if g.signal_name in SIGNALS:
                for p in g.input.payloads:
                    yield Recorded(f"{at} signal {g.signal_name}", p, SIGNALS[g.signal_name])
        elif e.HasField("workflow_execution_completed_event_attributes"):
            for p in e.workflow_execution_completed_event_attributes.result.payloads:
                yield Recorded(f"{at} {workflow_type} result", p, WORKFLOWS[workflow_type][1])
        elif e.HasField("workflow_execution_failed_event_attributes"):
            f = e.workflow_execution_failed_event_attributes.failure
            if f.application_failure_info.type in STATUS_FAILURE_TYPES:
                for p in f.application_failure_info.details.payloads:
                    yield Recorded(f"{at} {workflow_type} status", p, WORKFLOWS[workflow_type][1])


def _decode(payload: ApiPayload, type_: Any) -> Any:
    [value] = CONVERTER.from_payloads([payload], [type_])
    return value


def _models(value: Any) -> list[BaseModel]:
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, BaseModel)]


def _kept(recorded: Any, again: Any) -> bool:
    """Every field and value of `recorded` is in `again` (which may have more fields)."""
    if isinstance(recorded, dict):
        return isinstance(again, dict) and all(
            k in again and _kept(v, again[k]) for k, v in recorded.items()
        )
    if isinstance(recorded, list):
        return (
            isinstance(again, list)
            and len(again) == len(recorded)
            and all(_kept(a, b) for a, b in zip(recorded, again, strict=True))
        )
    return bool(recorded == again)


def _with_unknown(value: Any, data: Any) -> Any:
    """`data` (the JSON of `value`) with an unknown field added to every object that is a model
    (a newer Stagecoach's fields), maps such as `env` left as they are."""
    if isinstance(value, BaseModel) and isinstance(data, dict):
        out = {k: _with_unknown(getattr(value, k, None), v) for k, v in data.items()}
        return out | {"added_later": {"x": [1]}}
    if isinstance(value, list) and isinstance(data, list):
        return [_with_unknown(a, b) for a, b in zip(value, data, strict=True)]
    if isinstance(value, dict) and isinstance(data, dict):
        return {k: _with_unknown(value.get(k), v) for k, v in data.items()}
    return data


def _json(payload: ApiPayload) -> Any:
    """The JSON a payload holds (None for `binary/null`, which has no data)."""
    return json.loads(payload.data) if payload.data else None


def _payload(data: Any) -> ApiPayload:
    [p] = CONVERTER.to_payloads([data])
    return p


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_recorded_payloads_decode_into_payload_models(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    recorded = list(_recorded(history))
    kinds = {r.what.split(" ", 2)[2] for r in recorded}
    assert any(k.endswith(" input") for k in kinds) and len(recorded) >= 4, kinds
    for r in recorded:
        value = _decode(r.payload, r.type)
        for model in _models(value):
            if type(model).__module__.startswith("stagecoach.payloads"):
                assert isinstance(model, Payload), r.what
        # the recorded JSON back (plus defaults of fields added since): the recorded shape
        again = _json(CONVERTER.to_payloads([value])[0])
        assert _kept(_json(r.payload), again), r.what
        # and fields a newer Stagecoach adds anywhere in it are ignored
        tolerant = _decode(_payload(_with_unknown(value, _json(r.payload))), r.type)
        assert _json(CONVERTER.to_payloads([tolerant])[0]) == again, r.what


def test_every_workflow_input_and_result_is_a_payload_model() -> None:
    for name, (inp, result) in WORKFLOWS.items():
        assert issubclass(inp, Payload), name
        assert result is str or issubclass(result, Payload), name


def test_table_matches_the_activities_the_worker_registers() -> None:
    """The types above are what the activities declare (so the worker decodes the same)."""
    declared = {}
    for fn in all_activities():
        d = activity._Definition.must_from_callable(fn)
        declared[d.name] = (d.arg_types[0] if d.arg_types else None, d.ret_type)
    assert declared == ACTIVITIES


def _release_input() -> dict[str, Any]:
    path = HERE / "release_staging_promoted.json"
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    started = history.events[0].workflow_execution_started_event_attributes
    data: dict[str, Any] = json.loads(started.input.payloads[0].data)
    return data


def test_an_input_a_stricter_config_refuses_still_decodes() -> None:
    """Values deploy.yaml's validators refuse (today's or a newer, stricter schema's) in a
    recorded release input: the release still decodes it on continue-as-new, query or replay."""
    data = _release_input()
    data["steps"] = [{"weight": 50, "bake": "PT1M"}, {"weight": 20, "bake": "PT0S"}]  # falls
    data["gates"] |= {"healthy_error_rate": 0.5, "max_error_rate": 0.1, "min_requests": -1}
    data["approval"] = {"before_weight": 30, "approvers": ["not a valid name!"]}
    data["freeze"] = [
        {"start": "Fri 15:00", "end": "Mon 08:00", "timezone": "Mars/Base", "reason": ""}
    ]
    data["services"][0]["sizing"] |= {"min_instances": 9, "max_instances": 2}
    # the config refuses each of these ...
    release_policy = {"steps": data["steps"], "approval": data["approval"]}
    for model, value in (
        (config.ReleasePolicy, release_policy),
        (config.Gates, data["gates"]),
        (config.Approval, data["approval"]),
        (freeze.FreezeWindow, data["freeze"][0]),
        (config.Sizing, data["services"][0]["sizing"]),
    ):
        with pytest.raises(ValidationError):
            model.model_validate(value)
    # ... the payload takes them as recorded
    inp = _decode(_payload(data), release.ReleaseInput)
    assert [s.weight for s in inp.steps] == [50, 20]
    assert inp.steps[0].bake == timedelta(minutes=1)
    assert (inp.gates.healthy_error_rate, inp.gates.min_requests) == (0.5, -1)
    assert inp.approval is not None and inp.approval.approvers == ["not a valid name!"]
    assert inp.freeze[0].timezone == "Mars/Base"
    assert inp.services[0].sizing.min_instances == 9


def test_a_config_key_renamed_or_dropped_does_not_matter_to_a_recorded_input() -> None:
    """A payload carries what it was given: a gate the config no longer knows, and one it has
    since added (missing from the recorded input: its payload default applies)."""
    data = _release_input()
    data["gates"]["retired_gate"] = 3
    del data["gates"]["max_extensions"]
    inp = _decode(_payload(data), release.ReleaseInput)
    assert inp.gates.max_extensions == 3
    assert not hasattr(inp.gates, "retired_gate")


def test_durations_written_as_in_deploy_yaml_decode() -> None:
    """An input written by hand (Web UI, `temporal workflow start --input`) may spell a
    duration as deploy.yaml does."""
    data = _release_input()
    data["steps"] = [{"weight": 10, "bake": "90s"}, {"weight": 100}]
    data["interval"] = "PT30S"
    data["gates"]["max_p95_latency"] = "250ms"
    inp = _decode(_payload(data), release.ReleaseInput)
    assert inp.steps[0].bake == timedelta(seconds=90)
    assert inp.gates.max_p95_latency == timedelta(milliseconds=250)


def test_a_config_model_converts_to_its_payload_twin() -> None:
    """stagecoach.plan converts config to payload; the twins share field names and defaults."""
    from stagecoach import plan

    for cfg_model, twin in (
        (config.Gates(), policy.Gates),
        (config.Sizing(), policy.Sizing),
        (config.Step(weight=10, bake="5m"), policy.Step),
        (config.Approval(approvers=["ana"]), policy.Approval),
        (freeze.FreezeWindow(start="22:00", end="06:00", reason="night"), policy.FreezeWindow),
    ):
        converted = plan.as_payload(twin, cfg_model)
        assert type(converted) is twin
        assert converted.model_dump() == cfg_model.model_dump()
        assert set(twin.model_fields) == set(type(cfg_model).model_fields)
