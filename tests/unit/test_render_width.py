"""The status panel at 80 and 160 columns: no service or revision name broken mid-word, the Web
UI link whole on one line (clickable, copyable)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from stagecoach import render
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
