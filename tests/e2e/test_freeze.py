"""Freeze windows end to end: `deploy` inside a window exits 2 and starts nothing; with
`--override-freeze --reason` it runs and records who and why; a running release that reaches a
traffic step inside a window waits (phase `frozen`) and goes on when it ends (windows of seconds).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from stagecoach.freeze import FreezeWindow
from stagecoach.payloads.common import AbortInput, Outcome, Phase
from stagecoach.payloads.release import ReleaseStatus
from stagecoach.temporal import workflow_result
from testing.cli import show, starter
from testing.gcpsim import GcpsimProcess
from testing.gcpsim import served_percents as canary_history
from testing.releases import start_release as start
from testing.releases import wait_for, worker
from tests.e2e.test_cli import (
    assert_one_line_error,
    create_service,
    small_app_config,
    workflow_exists,
    write_config,
)
from tests.e2e.test_release import release_input

pytestmark = pytest.mark.asyncio

FMT = "%Y-%m-%d %H:%M:%S"


def _window(start: datetime, end: datetime, reason: str) -> dict[str, str]:
    return {"start": start.strftime(FMT), "end": end.strftime(FMT), "reason": reason}


async def test_deploy_inside_a_window_exits_2_then_override_runs_and_records(
    cli_env: dict[str, str],
    client: Client,
    task_queue: str,
    gcpsim: GcpsimProcess,
    tmp_path: Path,
) -> None:
    app = f"fz{uuid.uuid4().hex[:6]}"
    project = f"{app}-proj"
    create_service(gcpsim, project, "web-prod")
    cfg = small_app_config(app, project, "prod", [{"weight": 50, "bake": "1s"}, {"weight": 100}])
    now = datetime.now(UTC)
    cfg["environments"]["prod"]["release"]["interval"] = "1s"
    cfg["environments"]["prod"]["release"]["freeze"] = [
        _window(now - timedelta(minutes=1), now + timedelta(hours=2), "quarter-end close")
    ]
    path = write_config(tmp_path / "deploy.yaml", cfg)
    wid = f"deploy-{app}-prod"

    res = await starter(cli_env, "deploy", "prod", "v1.0.1", "--config", str(path))
    line = assert_one_line_error(res, 2, "frozen until", "quarter-end close", "--override-freeze")
    assert (now + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M") in line
    assert not await workflow_exists(client, wid)

    res = await starter(
        cli_env, "deploy", "prod", "v1.0.1", "--config", str(path), "--override-freeze"
    )
    assert_one_line_error(res, 2, "--reason")
    assert not await workflow_exists(client, wid)

    async with worker(client, task_queue, path):
        res = await starter(
            cli_env,
            "deploy",
            "prod",
            "v1.0.1",
            "--config",
            str(path),
            "--override-freeze",
            "--reason",
            "security fix CVE-1",
            "--json",
        )
    assert res.returncode == 0, show(res)
    final = json.loads(res.stdout)
    assert final["outcome"] == "promoted", show(res)
    ov = final["freeze_override"]
    assert (ov["by"], ov["reason"], ov["window"]) == (
        "e2e-tester",
        "security fix CVE-1",
        "quarter-end close",
    )
    assert any("overridden by e2e-tester: security fix CVE-1" in e["text"] for e in final["events"])
    desc = await client.get_workflow_handle(wid).describe()
    assert "Freeze overridden (quarter-end close" in (await desc.static_details() or "")
    res = await starter(cli_env, "status", "prod", "--config", str(path))
    assert "by e2e-tester: security fix CVE-1" in res.stdout, show(res)
    for _ in range(50):  # history reads visibility, which may lag the close by a moment
        res = await starter(cli_env, "history", "prod", "--config", str(path), "--json")
        rows = json.loads(res.stdout)
        if rows and rows[0]["outcome"] == "promoted":
            break
        await asyncio.sleep(0.2)
    assert rows[0]["note"] == (
        "freeze (quarter-end close) overridden by e2e-tester: security fix CVE-1"
    ), rows
    res = await starter(cli_env, "history", "prod", "--config", str(path))
    assert "overridden by e2e-tester" in res.stdout, show(res)


async def test_running_release_waits_out_a_window_and_goes_on(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    inp = release_input(gcpsim, "staging", "v1.4.0", services=["python-pipeline"])
    now = datetime.now(UTC)
    # a window that began after the release was started (the CLI check passed), 15 s long: the
    # release must reach its first step (canary created and smoke-tested) inside it, ~3.5 s on
    # a busy 2-core machine (8 s left too little room on a loaded CI machine)
    end = now + timedelta(seconds=15)
    window = FreezeWindow(start=now.strftime(FMT), end=end.strftime(FMT), reason="game day")
    inp = inp.model_copy(update={"freeze": [window]})
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        st = await wait_for(handle, lambda s: s.phase == Phase.FROZEN)
        svc = st.services[0]
        assert st.frozen_reason == "game day" and st.frozen_until is not None
        assert svc.percent == 0 and svc.canary_revision  # created and smoke-tested, no traffic
        assert "frozen before 10%" in st.progress
        result: ReleaseStatus = await workflow_result(handle)
    assert result.outcome == Outcome.PROMOTED, result.error
    svc = result.services[0]
    assert canary_history(gcpsim, "legal-forms-staging", svc.run_service, svc.canary_revision) == [
        10,
        50,
        100,
    ]
    # the first traffic step came after the window's end
    state = json.loads((gcpsim.state_dir / "state.json").read_text())
    timeline = state["sim"]["traffic"][f"legal-forms-staging/us-central1/{svc.run_service}"]
    first = min(
        at for at, split in timeline if any(r == svc.canary_revision and p for r, p, _ in split)
    )
    # the window's end is written to the second; the timer fires at or after it
    assert first >= end.replace(microsecond=0).timestamp(), (first, end)
    assert any("freeze over, going on to 10%" in e for e in result.events)
    assert result.frozen_until is None


async def test_abort_while_frozen_is_not_frozen(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    inp = release_input(gcpsim, "staging", "v1.4.1", services=["python-pipeline"])
    now = datetime.now(UTC)
    window = FreezeWindow(
        start=now.strftime(FMT), end=(now + timedelta(hours=1)).strftime(FMT), reason="holiday"
    )
    inp = inp.model_copy(update={"freeze": [window]})
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        await wait_for(handle, lambda s: s.phase == Phase.FROZEN)
        t0 = asyncio.get_running_loop().time()
        await handle.signal("abort", AbortInput(reason="not today"))
        result: ReleaseStatus = await workflow_result(handle)
        assert asyncio.get_running_loop().time() - t0 < 20
    assert result.outcome == Outcome.ABORTED and result.abort_reason == "not today"


async def test_window_opening_mid_release_holds_the_next_step_until_it_ends(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    inp = release_input(gcpsim, "staging", "v1.4.2", services=["python-pipeline"])
    now = datetime.now(UTC)
    start_at = (now + timedelta(seconds=4)).replace(microsecond=0)
    end = start_at + timedelta(seconds=7)
    window = FreezeWindow(start=start_at.strftime(FMT), end=end.strftime(FMT), reason="launch")
    inp = inp.model_copy(update={"freeze": [window]})
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp)
        st = await wait_for(handle, lambda s: s.phase == Phase.FROZEN, timeout=30)
        assert st.frozen_reason == "launch"
        result: ReleaseStatus = await workflow_result(handle)
    assert result.outcome == Outcome.PROMOTED, result.error
    svc = result.services[0]
    state = json.loads((gcpsim.state_dir / "state.json").read_text())
    timeline = state["sim"]["traffic"][f"legal-forms-staging/us-central1/{svc.run_service}"]
    changes = [
        at for at, split in timeline if any(r == svc.canary_revision and p for r, p, _ in split)
    ]
    # no traffic step inside the window (1 s for an operation requested just before it began)
    inside = [at for at in changes if start_at.timestamp() + 1 <= at < end.timestamp()]
    assert not inside, (changes, start_at, end)
    assert any(at >= end.timestamp() for at in changes)
    assert canary_history(gcpsim, "legal-forms-staging", svc.run_service, svc.canary_revision) == [
        10,
        50,
        100,
    ]
