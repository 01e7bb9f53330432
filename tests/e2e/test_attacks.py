"""Attacks on the trust boundaries (issue 15), end to end: the real Temporal dev server, a real
worker, gcpsim, and the plain `temporal` CLI where an attacker would use it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from stagecoach.bounds import MAX_TEXT
from stagecoach.models import Outcome, Phase, ReleaseInput, ReleaseStatus
from stagecoach.temporal import temporal_binary
from tests.conftest import GcpsimProcess
from tests.e2e.test_release import live_traffic, release_input, start, wait_for, worker

pytestmark = pytest.mark.asyncio

MB = 1_000_000


async def temporal_cli(address: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        temporal_binary(), *args, "--address", address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def long_bake(inp: ReleaseInput) -> ReleaseInput:
    steps = [
        s.model_copy(update={"bake": timedelta(minutes=10)}) if s.weight < 100 else s
        for s in inp.steps
    ]
    return inp.model_copy(update={"steps": steps})


async def baking(client: Client, task_queue: str, inp: ReleaseInput) -> WorkflowHandle:
    handle = await start(client, task_queue, inp)
    await wait_for(handle, lambda st: st.phase == Phase.BAKING)
    return handle


@pytest.mark.parametrize("payload", ["123", "[1, 2]", '"stop it"', None])
async def test_malformed_abort_still_aborts(
    client: Client, task_queue: str, gcpsim: GcpsimProcess, temporal_address: str,
    payload: str | None,
) -> None:  # fmt: skip
    """A number, a list, a bare string or no payload at all: the emergency brake still acts."""
    before = live_traffic(gcpsim, "legal-forms-staging", "node-server-staging")
    inp = long_bake(release_input(gcpsim, "staging", "v1.5.1", ["node-server"]))
    async with worker(client, task_queue):
        handle = await baking(client, task_queue, inp)
        extra = ["--input", payload] if payload is not None else []
        await temporal_cli(
            temporal_address, "workflow", "signal", "--workflow-id", handle.id,
            "--name", "abort", *extra,
        )  # fmt: skip
        result: ReleaseStatus = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome == Outcome.ABORTED
    assert result.abort_reason
    if payload == '"stop it"':
        assert result.abort_reason == "stop it"
    assert live_traffic(gcpsim, "legal-forms-staging", "node-server-staging") == before


async def test_a_1mb_abort_reason_ends_the_release_cleanly(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    before = live_traffic(gcpsim, "legal-forms-staging", "node-server-staging")
    inp = long_bake(release_input(gcpsim, "staging", "v1.5.2", ["node-server"]))
    async with worker(client, task_queue):
        handle = await baking(client, task_queue, inp)
        huge: dict[str, Any] = {"reason": "r" * MB, "by": "b" * MB}
        await handle.signal("abort", huge)
        result: ReleaseStatus = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome == Outcome.ABORTED
    assert 0 < len(result.abort_reason) <= MAX_TEXT
    assert len(result.model_dump_json()) < 100_000
    assert live_traffic(gcpsim, "legal-forms-staging", "node-server-staging") == before
