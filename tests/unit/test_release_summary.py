"""The `summary` query's text (workflows/release_summary.py): a service baking and one awaiting
approval read apart (the status says `shifting` for both), with what to do next."""

from __future__ import annotations

from datetime import UTC, datetime

from stagecoach.payloads.common import Outcome, Phase
from stagecoach.payloads.release import ReleaseStatus, ServiceStatus
from workflows.release_summary import release_summary, service_activity


def status(phase: Phase, **fields: object) -> ReleaseStatus:
    api = ServiceStatus(
        name="node-server", run_service="node-server-prod", percent=50, state="shifting",
        bake_until=datetime(2026, 11, 30, 9, 15, tzinfo=UTC),
    )  # fmt: skip
    done = ServiceStatus(
        name="python-pipeline", run_service="python-pipeline-prod", percent=100, state="promoted"
    )
    return ReleaseStatus(
        app="legal-forms", env="prod", version="v1.2.0", phase=phase,
        current_service="node-server", services=[done, api], **fields,
    )  # fmt: skip


def test_baking_and_awaiting_approval_read_apart() -> None:
    baking = status(Phase.BAKING)
    waiting = status(Phase.AWAITING_APPROVAL, awaiting_approval_for=100)
    assert service_activity(baking, baking.services[1]) == "baking at 50% until 09:15:00 UTC"
    assert service_activity(waiting, waiting.services[1]) == "awaiting approval before 100%"
    assert service_activity(waiting, waiting.services[0]) == "promoted"
    text = release_summary(waiting, ["release-manager"])
    assert text.splitlines()[0] == "Release v1.2.0 to prod: awaiting approval"
    assert "node-server-prod: 50%, awaiting approval before 100%" in text
    assert (
        "Awaiting approval by release-manager before 100%: python starter.py approve prod" in text
    )
    assert "Awaiting approval" not in release_summary(baking, ["release-manager"])


def test_an_ended_release_says_why() -> None:
    st = status(Phase.DONE, outcome=Outcome.ROLLED_BACK, error="gate failed at 10%: error rate")
    text = release_summary(st, [])
    assert text.splitlines()[0] == "Release v1.2.0 to prod: rolled back"
    assert "Why: gate failed at 10%: error rate" in text
