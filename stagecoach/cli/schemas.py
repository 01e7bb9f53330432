"""What `--json` prints: one schema per command, as pydantic models.

Every time is ISO 8601 with its zone (UTC, `Z`), as pydantic writes it; events are objects
(`at`, `text`), not preformatted lines. `python -m stagecoach.cli.schemas [DIR]` writes each
command's JSON Schema to docs/schemas/COMMAND.json (a test checks they are current and
validates real outputs against them).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from stagecoach.payloads.dr import BackupResult, DrillReport, PointInTimeResult, RestoreStatus
from stagecoach.payloads.failover import FailoverStatus
from stagecoach.payloads.release import ReleaseStatus, RollbackResult
from stagecoach.payloads.replica_drill import ReplicaDrillStatus
from stagecoach.payloads.sql import BackupInfo
from stagecoach.report import event_times

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"


class Output(BaseModel):
    """A top-level output object: a key not documented here is an error (tests)."""

    model_config = ConfigDict(extra="forbid")


class Event(Output):
    at: datetime | None = Field(description="when (ISO 8601, UTC); null if the line had no time")
    text: str


class ReleaseStatusOutput(ReleaseStatus):
    """`deploy --json` (once it ends), `status --json` of a release: the workflow's status,
    its events as objects, and where to see it. A service's `image` is left out while it is not
    known (a release that keeps the serving image, before it read it)."""

    model_config = ConfigDict(extra="forbid")

    events: list[Event] = []  # type: ignore[assignment]
    workflow_id: str
    web_ui: str


class DeployStarted(Output):
    """`deploy --detach --json`."""

    workflow_id: str
    run_id: str | None
    release_id: str
    version: str
    env: str
    web_ui: str


class Started(Output):
    """`--detach --json` of restore, dr-drill, failover, failback."""

    workflow_id: str
    run_id: str | None


class HistoryEntry(Output):
    """One release in `history --json` (newest first)."""

    workflow_id: str
    run_id: str
    version: str
    outcome: str = Field(
        description="promoted, rolled_back, aborted, failed, running; or how the execution "
        "ended otherwise (terminated, timed_out, canceled, continued_as_new)"
    )
    phase: str | None = Field(None, description="the phase, while it runs")
    status: str = Field(description="the Temporal execution status")
    started: datetime | None
    closed: datetime | None
    duration_seconds: float | None
    reason: str = Field("", description="why it was not promoted")
    approved_by: list[str] = []
    note: str = Field("", description="e.g. a freeze overridden to start it (who, why)")


class RollbackOutput(RollbackResult):
    """`rollback --json`."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: str
    migration_note: str = ""


class ScheduleEntry(Output):
    """One schedule in `schedule list --json`."""

    id: str
    workflow_type: str
    spec: str
    paused: bool
    next: list[datetime]
    last: datetime | None


class ComponentOutput(Output):
    """One component in `local status --json`."""

    name: str
    pid: int | None
    port: str
    healthy: bool
    detail: str


class Check(Output):
    """One check of `doctor` (activities.doctor.DoctorCheck)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


class DoctorReport(Output):
    """`doctor --json`."""

    env: str
    ok: bool
    unreachable: str
    checks: list[Check]


# command -> what its --json prints (a union where it depends on what runs or the flags)
COMMANDS: dict[str, Any] = {
    "deploy": ReleaseStatusOutput | DeployStarted,
    "status": ReleaseStatusOutput | RestoreStatus | PointInTimeResult | FailoverStatus,
    "history": list[HistoryEntry],
    "rollback": RollbackOutput,
    "backup": BackupResult,
    "backups": list[BackupInfo],
    "restore": RestoreStatus | PointInTimeResult | ReleaseStatusOutput | Started,
    "dr-drill": DrillReport | ReplicaDrillStatus | FailoverStatus | Started,
    "failover": FailoverStatus | Started,
    "failback": FailoverStatus | Started,
    "schedule-list": list[ScheduleEntry],
    "schedule-trigger": DrillReport | ReplicaDrillStatus | FailoverStatus,
    "local-status": list[ComponentOutput],
    "doctor": DoctorReport,
}


def adapter(command: str) -> TypeAdapter[Any]:
    return TypeAdapter(COMMANDS[command])


def validate(command: str, text: str) -> Any:
    """Parse `command`'s --json output against its schema (ValidationError if it does not fit)."""
    return adapter(command).validate_json(text)


def json_schema(command: str) -> dict[str, Any]:
    schema = adapter(command).json_schema(mode="serialization")
    schema["title"] = f"stagecoach {command.replace('-', ' ', 1)} --json"
    return schema


def dump(model: BaseModel) -> str:
    return model.model_dump_json(indent=2)


def status_output(
    st: ReleaseStatus, workflow_id: str, web_ui: str, images: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A release's `ReleaseStatusOutput` as JSON-ready data. `images`: each service's image
    from the release's input, for those the status does not name yet."""
    data: dict[str, Any] = st.model_dump(mode="json")
    data["events"] = [
        Event(at=at, text=text).model_dump(mode="json") for at, text in event_times(st)
    ]
    for svc in data["services"]:
        svc["image"] = svc.get("image") or (images or {}).get(svc["name"], "")
        if not svc["image"]:
            del svc["image"]
    data["workflow_id"] = workflow_id
    data["web_ui"] = web_ui
    return data


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2)


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for command in COMMANDS:
        path = directory / f"{command}.json"
        path.write_text(json.dumps(json_schema(command), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(p)
