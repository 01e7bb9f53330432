"""The terminal views at 80 and 160 columns, as snapshots (status, history, a finished deploy):
no service or revision name broken mid-word, the Web UI link whole on one line, times ISO 8601
with their zone, no enum names as prose; and the --json outputs against their schemas.

A deliberate change of a view: `STAGECOACH_SNAPSHOTS=print pytest tests/unit/test_render_width.py`
prints the new snapshots to paste below.
"""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from rich.console import Console

from stagecoach.cli import render, schemas
from stagecoach.cli.schemas import HistoryEntry
from stagecoach.payloads.common import ApprovalRecord, Outcome, Phase, Verdict
from stagecoach.payloads.dr import RestoreStatus
from stagecoach.payloads.monitoring import Reading
from stagecoach.payloads.release import ReleaseStatus, ServiceStatus

T0 = datetime(2026, 11, 30, 23, 58, 1, tzinfo=UTC)  # the release crosses midnight
LINK = (
    "http://127.0.0.1:8233/namespaces/default/workflows/deploy-legal-forms-staging/"
    "01a22ae6-0a39-7274-b312-1a5067737d55"
)
RUN_IDS = ["01a22af0-b2fe-7f0b-8c14-4762d7ecd5df", "01a22af0-b2fe-7f0b-8c14-4762d7ecd5de"]


def running() -> ReleaseStatus:
    return ReleaseStatus(
        app="legal-forms",
        env="staging",
        version="v1.3.0",
        phase=Phase.BAKING,
        outcome=Outcome.RUNNING,
        started_at=T0,
        current_service="node-server",
        progress="node-server-staging: baking at 10% until 2026-12-01T00:03:00Z",
        services=[
            ServiceStatus(
                name=name,
                run_service=f"{name}-staging",
                state=state,
                percent=percent,
                stable_revisions=[f"{name}-staging-00001-abc"],
                canary_revision=f"{name}-staging-v1-3-0-5f1ca",
            )
            for name, state, percent in (
                ("python-pipeline", "promoted", 100),
                ("node-server", "shifting", 10),
            )
        ],
        events=[
            "23:58:01 release v1.3.0 of legal-forms to staging started by e2e-tester",
            "23:59:30 python-pipeline-staging promoted",
            "00:00:02 node-server-staging traffic 10%",
        ],
    )


def rolled_back() -> ReleaseStatus:
    st = running()
    reading = Reading(
        at=datetime(2026, 12, 1, 0, 1, 2, tzinfo=UTC),
        service="node-server-staging",
        weight=10,
        canary_requests=412,
        canary_error_rate=0.121,
        canary_p95_ms=230.0,
        stable_requests=3710,
        stable_error_rate=0.004,
        stable_p95_ms=180.0,
        verdict=Verdict.FAIL,
        reasons=["error rate 12.10% > 5.00%"],
        evidence=["error rate: canary 12.1% vs stable 0.4% FAILS (bar 5%)"],
    )
    svc = st.services[1].model_copy(
        update={
            "state": "rolled_back",
            "percent": 0,
            "readings": [reading],
            "reading_count": 3,
            "error": "error rate 12.10% > 5.00% at 10%",  # said by the release's error too
        }
    )
    return st.model_copy(
        update={
            "phase": Phase.DONE,
            "outcome": Outcome.ROLLED_BACK,
            "progress": "node-server-staging: traffic restored",  # stale once it ended
            "services": [st.services[0], svc],
            "error": "node-server-staging: error rate 12.10% > 5.00% at 10%",
            "ended_at": datetime(2026, 12, 1, 0, 1, 10, tzinfo=UTC),
            "approvals": [
                ApprovalRecord(
                    by="release-manager",
                    at=datetime(2026, 11, 30, 23, 59, tzinfo=UTC),
                    before_weight=50,
                    comment="go",
                )
            ],
            "events": [
                *st.events,
                "00:01:02 node-server-staging gate failed: error rate 12.10% > 5.00%",
                "00:01:09 node-server-staging traffic restored to node-server-staging-00001-abc",
            ],
        }
    )


def history() -> list[HistoryEntry]:
    return [
        HistoryEntry(
            workflow_id="deploy-legal-forms-staging",
            run_id=RUN_IDS[0],
            version="v1.9.1",
            outcome="rolled_back",
            status="failed",
            started=T0,
            closed=datetime(2026, 12, 1, 0, 1, 10, tzinfo=UTC),
            duration_seconds=189.0,
            reason="node-server-staging: error rate 12.10% > 5.00% at 10%",
            approved_by=["release-manager"],
        ),
        HistoryEntry(
            workflow_id="deploy-legal-forms-staging",
            run_id=RUN_IDS[1],
            version="v1.10.0",
            outcome="running",
            phase="awaiting_approval",
            status="running",
            started=T0,
            closed=None,
            duration_seconds=None,
        ),
    ]


def view(kind: str, width: int) -> str:
    """What the terminal shows: `status ENV`, `history ENV`, the end of a followed `deploy`."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, legacy_windows=False)
    ctx = render.ViewContext(
        env="staging",
        workflow_id="deploy-legal-forms-staging",
        link=LINK,
        approvers=["release-manager"],
    )
    if kind == "status":
        render.print_release(console, running(), ctx)
    elif kind == "finished":  # the events as they arrived, then the end
        st = rolled_back()
        for line in render.event_lines(st):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        render.print_finished(console, st, ctx)
    else:
        console.print(
            render.history_table(history(), "Releases of legal-forms to staging, newest first")
        )
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())


SNAPSHOTS = {
    ("status", 80): """\
╭─ deploy-legal-forms-staging ─────────────────────────────────────────────────╮
│ Release v1.3.0 of legal-forms to staging: baking                             │
│ node-server-staging: baking at 10% until 2026-12-01T00:03:00Z                │
│ python-pipeline-staging  promoted  100%                                      │
│   stable  python-pipeline-staging-00001-abc                                  │
│   canary  python-pipeline-staging-v1-3-0-5f1ca                               │
│ node-server-staging  baking  10%                                             │
│   stable  node-server-staging-00001-abc                                      │
│   canary  node-server-staging-v1-3-0-5f1ca                                   │
│ events                                                                       │
│   2026-11-30T23:58:01Z  release v1.3.0 of legal-forms to staging started by  │
│ e2e-tester                                                                   │
│   2026-11-30T23:59:30Z  python-pipeline-staging promoted                     │
│   2026-12-01T00:00:02Z  node-server-staging traffic 10%                      │
╰──────────────────────────────────────────────────────────────────────────────╯
Web UI: http://127.0.0.1:8233/namespaces/default/workflows/deploy-legal-forms-staging/01a22ae6-0a39-7274-b312-1a5067737d55
""",
    ("status", 160): """\
╭─ deploy-legal-forms-staging ─────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────╮
│ Release v1.3.0 of legal-forms to staging: baking                                                                                                             │
│ node-server-staging: baking at 10% until 2026-12-01T00:03:00Z                                                                                                │
│                                                                                                                                                              │
│  service                            state          stable                                          canary                                                 %  │
│  ──────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────  │
│  python-pipeline-staging            promoted       python-pipeline-staging-00001-abc               python-pipeline-staging-v1-3-0-5f1ca                 100  │
│  node-server-staging                baking         node-server-staging-00001-abc                   node-server-staging-v1-3-0-5f1ca                      10  │
│                                                                                                                                                              │
│ events                                                                                                                                                       │
│   2026-11-30T23:58:01Z  release v1.3.0 of legal-forms to staging started by e2e-tester                                                                       │
│   2026-11-30T23:59:30Z  python-pipeline-staging promoted                                                                                                     │
│   2026-12-01T00:00:02Z  node-server-staging traffic 10%                                                                                                      │
╰──────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────╯
Web UI: http://127.0.0.1:8233/namespaces/default/workflows/deploy-legal-forms-staging/01a22ae6-0a39-7274-b312-1a5067737d55
""",
    ("finished", 80): """\
2026-11-30T23:58:01Z  release v1.3.0 of legal-forms to staging started by e2e-tester
2026-11-30T23:59:30Z  python-pipeline-staging promoted
2026-12-01T00:00:02Z  node-server-staging traffic 10%
2026-12-01T00:01:02Z  node-server-staging gate failed: error rate 12.10% > 5.00%
2026-12-01T00:01:09Z  node-server-staging traffic restored to node-server-staging-00001-abc
╭─ deploy-legal-forms-staging ─────────────────────────────────────────────────╮
│ Release v1.3.0 of legal-forms to staging: rolled back                        │
│ python-pipeline-staging  promoted  100%                                      │
│   stable  python-pipeline-staging-00001-abc                                  │
│   canary  python-pipeline-staging-v1-3-0-5f1ca                               │
│ node-server-staging  rolled back  0%                                         │
│   stable  node-server-staging-00001-abc                                      │
│   canary  node-server-staging-v1-3-0-5f1ca                                   │
│ node-server-staging latest reading (3 so far): 10%: canary 412 req, 12.10%   │
│ err, p95 230 ms | stable 3710 req, 0.40% err, p95 180 ms -> fail (error rate │
│ 12.10% > 5.00%)                                                              │
│   error rate: canary 12.1% vs stable 0.4% FAILS (bar 5%)                     │
│ node-server-staging: error rate 12.10% > 5.00% at 10%                        │
│ approved by release-manager at 2026-11-30T23:59:00Z before 50%: go           │
╰──────────────────────────────────────────────────────────────────────────────╯
Web UI: http://127.0.0.1:8233/namespaces/default/workflows/deploy-legal-forms-staging/01a22ae6-0a39-7274-b312-1a5067737d55
Release v1.3.0 to staging: rolled back
""",
    ("finished", 160): """\
2026-11-30T23:58:01Z  release v1.3.0 of legal-forms to staging started by e2e-tester
2026-11-30T23:59:30Z  python-pipeline-staging promoted
2026-12-01T00:00:02Z  node-server-staging traffic 10%
2026-12-01T00:01:02Z  node-server-staging gate failed: error rate 12.10% > 5.00%
2026-12-01T00:01:09Z  node-server-staging traffic restored to node-server-staging-00001-abc
╭─ deploy-legal-forms-staging ─────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────╮
│ Release v1.3.0 of legal-forms to staging: rolled back                                                                                                        │
│                                                                                                                                                              │
│  service                           state              stable                                         canary                                               %  │
│  ──────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────  │
│  python-pipeline-staging           promoted           python-pipeline-staging-00001-abc              python-pipeline-staging-v1-3-0-5f1ca               100  │
│  node-server-staging               rolled back        node-server-staging-00001-abc                  node-server-staging-v1-3-0-5f1ca                     0  │
│                                                                                                                                                              │
│ node-server-staging latest reading (3 so far): 10%: canary 412 req, 12.10% err, p95 230 ms | stable 3710 req, 0.40% err, p95 180 ms -> fail (error rate      │
│ 12.10% > 5.00%)                                                                                                                                              │
│   error rate: canary 12.1% vs stable 0.4% FAILS (bar 5%)                                                                                                     │
│ node-server-staging: error rate 12.10% > 5.00% at 10%                                                                                                        │
│ approved by release-manager at 2026-11-30T23:59:00Z before 50%: go                                                                                           │
╰──────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────╯
Web UI: http://127.0.0.1:8233/namespaces/default/workflows/deploy-legal-forms-staging/01a22ae6-0a39-7274-b312-1a5067737d55
Release v1.3.0 to staging: rolled back
""",
    ("history", 80): """\
Releases of legal-forms to staging, newest first
v1.9.1  rolled back  2026-11-30T23:58:01Z  took 3m09s
  why: node-server-staging: error rate 12.10% > 5.00% at 10%
  approved by release-manager
  run 01a22af0-b2fe-7f0b-8c14-4762d7ecd5df
v1.10.0  running (awaiting approval)  2026-11-30T23:58:01Z
  run 01a22af0-b2fe-7f0b-8c14-4762d7ecd5de
""",
    ("history", 160): """\
Releases of legal-forms to staging, newest first

  version   outcome                       started                took      approved by       run id                                 why / note
 ──────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────
  v1.9.1    rolled back                   2026-11-30T23:58:01Z   3m09s     release-manager   01a22af0-b2fe-7f0b-8c14-4762d7ecd5df   node-server-staging: error
                                                                                                                                    rate 12.10% > 5.00% at 10%
  v1.10.0   running (awaiting approval)   2026-11-30T23:58:01Z   running   -                 01a22af0-b2fe-7f0b-8c14-4762d7ecd5de

""",
}


@pytest.mark.parametrize("width", [80, 160])
@pytest.mark.parametrize("kind", ["status", "finished", "history"])
def test_view_snapshot(kind: str, width: int) -> None:
    got = view(kind, width)
    if os.environ.get("STAGECOACH_SNAPSHOTS") == "print":
        print(f'    ("{kind}", {width}): """\\\n{got}\n""",')
    assert got + "\n" == SNAPSHOTS[(kind, width)]


@pytest.mark.parametrize("width", [80, 160])
@pytest.mark.parametrize("kind", ["status", "finished", "history"])
def test_names_whole_links_on_one_line_iso_times_no_enum_names(kind: str, width: int) -> None:
    text = view(kind, width)
    lines = text.splitlines()
    names = [r.run_id for r in history()] if kind == "history" else []
    for svc in running().services:
        if kind != "history":
            names += [svc.run_service, svc.canary_revision, *svc.stable_revisions]
    for name in names:
        assert any(name in line for line in lines), (name, text)
    if kind != "history":
        assert any(f"Web UI: {LINK}" in line for line in lines), text
        assert "2026-12-01T00:00:02Z" in text  # the event after midnight: its own date
    assert "2026-11-30T23:58:01Z" in text
    for enum_name in ("rolled_back", "awaiting_approval", "smoke_tested"):
        assert enum_name not in text, text


def test_dr_events_get_their_full_times_too() -> None:
    """A restore's events ("HH:MM:SS text", as every workflow writes them) print like a
    release's: with the date from its start, the next day after midnight."""
    st = RestoreStatus(
        app="legal-forms",
        env="dev",
        instance="legal-forms-dev",
        backup_id="17",
        started_at=T0,
        events=["23:58:30 draining node-server-dev", "00:02:00 restore done"],
    )
    assert render.event_lines(st) == [
        "2026-11-30T23:58:30Z  draining node-server-dev",
        "2026-12-01T00:02:00Z  restore done",
    ]
    assert render.new_event_lines(st.events[:1], st) == ["2026-12-01T00:02:00Z  restore done"]


def test_a_reason_is_printed_once_at_the_end_of_a_deploy() -> None:
    text = view("finished", 160)
    summary = text.splitlines()[-1]
    assert summary == "Release v1.3.0 to staging: rolled back"
    assert text.count("error rate 12.10% > 5.00% at 10%") == 1


# ----------------------------------------------------------------------------- JSON


def test_status_json_fits_its_schema_events_structured_times_iso() -> None:
    st = rolled_back()
    st.services[0].image = "example.com/python-pipeline:v1.3.0"
    text = schemas.to_json(schemas.status_output(st, "deploy-legal-forms-staging", LINK))
    schemas.validate("status", text)
    schemas.validate("deploy", text)
    data = json.loads(text)
    assert data["started_at"] == "2026-11-30T23:58:01Z"
    assert data["events"][0] == {
        "at": "2026-11-30T23:58:01Z",
        "text": "release v1.3.0 of legal-forms to staging started by e2e-tester",
    }
    assert data["events"][2]["at"] == "2026-12-01T00:00:02Z"  # after midnight
    assert data["services"][0]["image"] == "example.com/python-pipeline:v1.3.0"
    assert "image" not in data["services"][1]  # not known: left out, not ""
    assert data["approvals"][0]["at"] == "2026-11-30T23:59:00Z"


def test_history_json_fits_its_schema_with_the_same_times() -> None:
    text = schemas.to_json([r.model_dump(mode="json") for r in history()])
    [first, second] = schemas.validate("history", text)
    data = json.loads(text)
    assert data[0]["started"] == "2026-11-30T23:58:01Z" == data[1]["started"]
    assert data[0]["reason"] and data[0]["approved_by"] == ["release-manager"]
    assert (data[1]["phase"], data[1]["closed"]) == ("awaiting_approval", None)
    assert first.duration_seconds == 189.0 and second.duration_seconds is None


def test_an_undocumented_key_does_not_fit() -> None:
    data = schemas.status_output(running(), "wid", LINK)
    with pytest.raises(ValidationError):
        schemas.validate("status", json.dumps(data | {"surprise": 1}))
    row = history()[0].model_dump(mode="json")
    with pytest.raises(ValidationError):
        schemas.validate("history", json.dumps([row | {"phase done": "done"}]))


@pytest.mark.parametrize("command", sorted(schemas.COMMANDS))
def test_the_documented_schemas_are_current(command: str) -> None:
    """docs/schemas/COMMAND.json is what the models say (`python -m stagecoach.cli.schemas`)."""
    path = Path(schemas.SCHEMA_DIR) / f"{command}.json"
    assert path.exists(), f"{path} missing: run python -m stagecoach.cli.schemas"
    assert json.loads(path.read_text()) == schemas.json_schema(command), (
        f"{path} is stale: run python -m stagecoach.cli.schemas"
    )
