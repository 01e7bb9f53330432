"""The release's story in a real browser: the Temporal Web UI of a dev server started here (with
its UI port) and the `report` page, in Debian's Chromium driven by Playwright.

Skipped, saying why, only where Chromium or Playwright is missing locally; CI installs both
(.ci/run)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from stagecoach import report
from stagecoach.cli.report import write_report
from stagecoach.config_file import load_config
from stagecoach.contract import release_workflow_id
from stagecoach.payloads.common import AbortInput, Outcome, Phase
from stagecoach.payloads.release import ReleaseStatus, ServiceStatus
from stagecoach.temporal import (
    TemporalSettings,
    build_worker,
    connect,
    free_port,
    start_dev_server,
    workflow_result,
)
from testing.gcpsim import GcpsimProcess, config_for
from testing.paths import ROOT
from testing.releases import start_release as start
from testing.releases import wait_for
from tests.e2e.test_release import release_input

pytestmark = pytest.mark.asyncio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A dev server of its own, with the Web UI: (frontend address, UI base URL)."""
    port, ui_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("temporal-ui") / "server.log"
    proc = start_dev_server(port, ui_port=ui_port, log=log)
    ui = f"http://127.0.0.1:{ui_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(ui, timeout=2).close()
            break
        except OSError:
            time.sleep(0.3)
    yield f"127.0.0.1:{port}", ui
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
async def ui_client(ui_server: tuple[str, str]) -> Client:
    return await connect(TemporalSettings(address=ui_server[0]))


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; CI installs it)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield b
        finally:
            await b.close()


async def _text_appears(page: Any, text: str, timeout: float = 30.0) -> str:
    """The page's visible text once it contains `text` (the UI loads its data after the page)."""
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        body = await page.inner_text("body")
        if text.lower() in body.lower():
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"{text!r} not on {page.url} within {timeout}s; page text:\n{body}")


async def shot(page: Any, name: str, full_page: bool = False, at: str = "") -> None:
    """With STAGECOACH_SCREENSHOTS=DIR: a full-page screenshot there (the README's come from
    here: `STAGECOACH_SCREENSHOTS=docs python -m pytest tests/e2e/test_story.py`)."""
    where = os.environ.get("STAGECOACH_SCREENSHOTS")
    if where:
        if at:  # the part of the page the picture is about
            await page.get_by_text(at).first.scroll_into_view_if_needed()
            await page.evaluate(  # keep the row's start (event type) in the picture
                "() => document.querySelectorAll('*').forEach(e => { e.scrollLeft = 0 })"
            )
        Path(where).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(where) / name), full_page=full_page)


async def test_web_ui_and_report_tell_a_rolled_back_release(
    ui_client: Client,
    ui_server: tuple[str, str],
    task_queue: str,
    gcpsim: GcpsimProcess,
    browser: Any,
    tmp_path: Path,
) -> None:
    r = gcpsim.cli("behavior", "node-server-staging", "v1.9.1", "--error-rate", "0.4")
    assert r.returncode == 0, r.stderr
    inp = release_input(gcpsim, "staging", "v1.9.1", ["node-server"])
    w, executor = build_worker(ui_client, task_queue)
    async with w:
        handle = await ui_client.start_workflow(
            "Release",
            inp,
            id=release_workflow_id(inp.app, inp.env),  # this server's own: the CLI's id
            task_queue=task_queue,
            result_type=ReleaseStatus,
        )
        st: ReleaseStatus = await workflow_result(handle)
        assert st.outcome == Outcome.ROLLED_BACK
        desc = await handle.describe()
        assert desc.status == WorkflowExecutionStatus.FAILED
        wid, run_id = handle.id, desc.run_id
        # the report, through the CLI's own path (its run found by version)
        cfg = config_for(gcpsim)
        for _ in range(20):  # visibility (search attributes) follows the close shortly
            try:
                path, what = await write_report(
                    ui_client, cfg, "staging", "v1.9.1", False, tmp_path / "r.html", "http://ui"
                )
                break
            except ValueError:
                await asyncio.sleep(0.5)
    executor.shutdown(wait=False)
    assert what == "release v1.9.1 to staging: rolled back"
    ui = ui_server[1]
    page = await browser.new_page(viewport={"width": 1920, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    # the list: Failed, not Completed
    await page.goto(f"{ui}/namespaces/default/workflows")
    body = await _text_appears(page, wid)
    failed_row = await page.locator("tr", has_text=wid).first.inner_text()
    await shot(page, "webui-list.png")
    assert "failed" in failed_row.lower() and "completed" not in failed_row.lower(), failed_row

    # its page: Failed, the reason, the rollback's summary with the split and why
    await page.goto(f"{ui}/namespaces/default/workflows/{wid}/{run_id}/history")
    body = await _text_appears(page, "rolled back")
    assert "failed" in body.lower()
    assert "error rate" in body
    body = await _text_appears(page, "rollback, gate failed at 10%: error rate")
    assert "-> node-server-staging-" in body  # the split it restores
    await shot(page, "webui-rolled-back.png", at="rollback, gate failed")
    assert "at 10%: reading 1" in body  # the reading that failed, by its summary

    # the report page: plots drawn, the outcome and why, no console errors, no network
    errors.clear()
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    await page.goto(path.resolve().as_uri())
    assert (await page.inner_text("#outcome")) == "rolled back"
    assert "error rate" in await page.inner_text("#why")
    assert await page.locator("svg.plot").count() >= 4  # error rate, latency, traffic, timeline
    assert await page.locator("svg.plot polyline.series").count() >= 3
    assert await page.locator("svg.plot line.limit").count() >= 2  # the gate limits
    assert await page.locator("tr.fail").count() >= 1  # the failing reading in the table
    box = await page.locator("svg.plot").first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    assert errors == []
    assert all(u.startswith("file:") for u in requests), requests
    await shot(page, "report.png", full_page=True)


async def test_web_ui_shows_the_approval_wait_and_message_descriptions(
    ui_client: Client,
    ui_server: tuple[str, str],
    task_queue: str,
    gcpsim: GcpsimProcess,
    browser: Any,
) -> None:
    inp = release_input(gcpsim, "prod", "v1.9.2", ["python-pipeline"])
    w, executor = build_worker(ui_client, task_queue)
    async with w:
        handle = await start(ui_client, task_queue, inp)
        await wait_for(handle, lambda st: st.phase == Phase.AWAITING_APPROVAL, timeout=120)
        desc = await handle.describe()
        page = await browser.new_page(viewport={"width": 1920, "height": 1000})
        ui = ui_server[1]
        await page.goto(f"{ui}/namespaces/default/workflows/{handle.id}/{desc.run_id}/history")
        body = await _text_appears(page, "WAITING FOR APPROVAL")
        assert "python-pipeline-prod before 100%" in body
        await shot(page, "webui-awaiting-approval.png", at="WAITING FOR APPROVAL")
        assert "python starter.py approve prod --by NAME" in body
        # the handlers' descriptions (the UI reads them from __temporal_workflow_metadata)
        meta = str(await handle.query("__temporal_workflow_metadata"))
        for text in (
            "Approve the step",
            "canary looks good",
            "Skip the remaining bake",
            "abort: roll back at once",
            "The full release status",
        ):
            assert text in meta, meta
        await handle.signal("abort", AbortInput(reason="story test done"))
        st = await workflow_result(handle)
    executor.shutdown(wait=False)
    assert st.outcome == Outcome.ABORTED


async def test_report_of_a_status_without_readings_renders() -> None:
    cfg = load_config(ROOT / "deploy.yaml")
    page = report.release_report(
        ReleaseStatus(
            app=cfg.app,
            env="dev",
            version="v1.0.0",
            services=[ServiceStatus(name="node-server", run_service="node-server-dev")],
        ),
        cfg.gates_for("dev"),
    )
    assert page.startswith("<!DOCTYPE html>") and "no data" in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


async def test_drill_report_draws_objectives(browser: Any, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from stagecoach.payloads.common import Outcome
    from stagecoach.payloads.dr import DrillReport, DrillTable

    at = datetime(2026, 11, 23, 14, 56, 41, tzinfo=UTC)
    r = DrillReport(
        app="legal-forms",
        env="prod",
        source_instance="legal-forms-db-prod",
        scratch_instance="legal-forms-db-prod-drill-20261123145641",
        outcome=Outcome.SUCCEEDED,
        tables=[DrillTable(table="cases", source_rows=674, scratch_rows=24)],
        restore_seconds=2.8,
        data_loss_seconds=43200.0,
        scratch_deleted=True,
        started_at=at,
        ended_at=at,
        events=["14:56:41 DR drill started", "14:56:44 scratch deleted"],
    )
    path = tmp_path / "drill.html"
    path.write_text(report.drill_report(r, workflow_id="dr-drill-legal-forms-prod"))
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(path.as_uri())
    assert await page.inner_text("#outcome") == "succeeded"
    body = await page.inner_text("body")
    assert "2.8 s vs 60.0 min: met" in body and "12.0 h vs 5.0 min: MISSED" in body
    assert await page.locator("svg.plot rect").count() == 2
    assert errors == []
