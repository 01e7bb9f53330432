"""The status panel at 80 and 160 columns: no service or revision name broken mid-word, the Web
UI link whole on one line (clickable, copyable)."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from stagecoach.cli import render
from stagecoach.models import Outcome, Phase, ReleaseStatus, ServiceStatus

LINK = (
    "http://127.0.0.1:8233/namespaces/default/workflows/deploy-legal-forms-staging/"
    "01a22ae6-0a39-7274-b312-1a5067737d55"
)


def status() -> ReleaseStatus:
    return ReleaseStatus(
        app="legal-forms",
        env="staging",
        version="v1.3.0",
        phase=Phase.BAKING,
        outcome=Outcome.RUNNING,
        services=[
            ServiceStatus(
                name=name,
                run_service=f"{name}-staging",
                state="shifting",
                percent=10,
                stable_revisions=[f"{name}-staging-00001-abc"],
                canary_revision=f"{name}-staging-v1-3-0-5f1ca",
            )
            for name in ("python-pipeline", "node-server")
        ],
    )


@pytest.mark.parametrize("width", [80, 160])
def test_names_whole_and_link_on_one_line(width: int) -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, legacy_windows=False)
    ctx = render.ViewContext(
        env="staging", workflow_id="deploy-legal-forms-staging", link=LINK, approvers=[]
    )
    render.print_release(console, status(), ctx)
    lines = buf.getvalue().splitlines()
    for svc in status().services:
        for name in (svc.run_service, svc.canary_revision, *svc.stable_revisions):
            assert any(name in line for line in lines), (name, buf.getvalue())
    assert any(f"Web UI: {LINK}" in line for line in lines), buf.getvalue()


def test_json_times_are_iso_8601_and_events_structured() -> None:
    from datetime import UTC, datetime

    st = status().model_copy(
        update={
            "started_at": datetime(2026, 11, 30, 23, 59, 58, tzinfo=UTC),
            "events": ["23:59:59 release v1.3.0 to staging started by e2e", "00:00:01 next day"],
        }
    )
    data = json.loads(render.to_json(render.status_dict(st, "wid", "http://ui")))
    assert data["started_at"] == "2026-11-30T23:59:58Z"
    assert data["timeline"] == [
        {"at": "2026-11-30T23:59:59+00:00", "event": "release v1.3.0 to staging started by e2e"},
        {"at": "2026-12-01T00:00:01+00:00", "event": "next day"},
    ]
    row = render.HistoryRow("wid", "run", "v1", "done", "promoted", "completed",
                            datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC), None)  # fmt: skip
    assert json.loads(render.to_json([row.__dict__]))[0]["started"] == "2026-11-30T01:02:03+00:00"


@pytest.mark.parametrize("width", [80, 160])
def test_history_keeps_run_ids_whole(width: int) -> None:
    from datetime import UTC, datetime

    run_ids = ["01a22af0-b2fe-7f0b-8c14-4762d7ecd5df", "01a22af0-b2fe-7f0b-8c14-4762d7ecd5de"]
    at = datetime(2026, 11, 30, 5, 32, 27, tzinfo=UTC)
    rows = [
        render.HistoryRow("wid", run_ids[0], "v1.9.1", "done", "rolled_back", "failed", at, at),
        render.HistoryRow("wid", run_ids[1], "v1.10.0", "baking", "running", "running", at, None),
    ]
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(render.history_table(rows, "t"))
    text = buf.getvalue()
    assert all(run_id in text for run_id in run_ids), text
    assert "rolled back" in text and "running (baking)" in text and "rolled_back" not in text
