"""Replay recorded release histories against the current workflow code.

A change to workflow code that alters the command order breaks these replays; such a change
goes behind `workflow.patched(...)`. Record a new history with
`STAGECOACH_RECORD_HISTORY=1 python -m pytest tests/e2e/test_release.py -k 'happy or bad_canary or
approval_is_awaited'` (promoted, rolled back: ends failed, approved through the approval timer).

The restore, point-in-time, drill, backup, failover-abort and release-hook histories were
recorded from the e2e runs of tests/e2e/test_dr.py, test_failover.py and test_hooks.py before
workflows/ was split into modules (issue 13): they pin the command order of every branch of the
DR run skeleton (success, failure with cleanup, abort, Temporal cancellation, continue-as-new
into a release) and of the hooks. workflow_ids.json names the id each ran under.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from stagecoach.temporal import workflows

HERE = Path(__file__).parent / "histories"
# the workflow id each history ran under (signed approvals are bound to it); else its file name
IDS: dict[str, str] = (
    json.loads((HERE / "workflow_ids.json").read_text())
    if (HERE / "workflow_ids.json").exists()
    else {}
)
HISTORIES = sorted(p for p in HERE.glob("*.json") if p.name != "workflow_ids.json")


def test_histories_are_recorded() -> None:
    assert HISTORIES, "no recorded histories in tests/replay/histories"


@pytest.mark.asyncio
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(IDS.get(path.stem, path.stem), path.read_text())
    replayer = Replayer(workflows=workflows(), data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
