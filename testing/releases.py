"""Releases as tests and benchmarks drive them: inputs, in-process workers, starting, waiting for
a status, signed approvals, and a release run to its end with every approval granted."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from stagecoach import contract
from stagecoach.config import Config, Step
from stagecoach.payloads.common import Outcome
from stagecoach.payloads.release import ReleaseInput, ReleaseStatus
from stagecoach.plan import build_release
from stagecoach.temporal import build_worker, workflow_result
from testing.paths import DEPLOY_YAML


def release_input(
    cfg: Config,
    env: str,
    version: str,
    *,
    services: list[str] | None = None,
    bake: timedelta | None = None,
    interval: timedelta | None = None,
    steps: list[tuple[int, float]] | None = None,
    release_id: str | None = None,
    requested_by: str = "bench",
    **gates: Any,
) -> ReleaseInput:
    """`build_release` plus overrides: `steps` as [(weight, bake seconds)], gate fields."""
    inp = build_release(
        cfg,
        env,
        version,
        release_id or secrets.token_hex(3)[:5],
        services=services,
        bake=bake,
        interval=interval,
        requested_by=requested_by,
    )
    update: dict[str, Any] = {}
    if steps is not None:
        update["steps"] = [Step(weight=w, bake=timedelta(seconds=b)) for w, b in steps]
    if gates:
        update["gates"] = inp.gates.model_copy(update=gates)
    return inp.model_copy(update=update) if update else inp


def prod_with_replica(data: dict[str, Any]) -> None:
    """A `worker_config` edit: prod's database gets a cross-region read replica in us-east1."""
    data["environments"]["prod"]["database"]["replicas"] = [{"region": "us-east1"}]


def worker_config(path: Path, edit: Any) -> Path:
    """deploy.yaml as a worker's own config, changed by `edit(data)`, written to `path`."""
    import yaml

    data = yaml.safe_load(DEPLOY_YAML.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@asynccontextmanager
async def worker(
    client: Client, task_queue: str, config: str | Path | None = None
) -> AsyncIterator[None]:
    """The production worker (every workflow and activity) in this process, its own config (its
    policy) `config` (default: deploy.yaml), running for the block."""
    w, executor = build_worker(client, task_queue, config=config)
    try:
        async with w:
            yield
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


async def start_release(
    client: Client, task_queue: str, inp: ReleaseInput, workflow_id: str | None = None
) -> WorkflowHandle[Any, ReleaseStatus]:
    """Start a Release under a fresh id (default), so runs of one environment never collide."""
    return await client.start_workflow(
        contract.WorkflowType.RELEASE,
        inp,
        id=workflow_id or f"deploy-{inp.app}-{inp.env}-{inp.release_id}-{secrets.token_hex(3)}",
        task_queue=task_queue,
        result_type=ReleaseStatus,
    )


async def status(handle: WorkflowHandle[Any, Any]) -> ReleaseStatus:
    st: ReleaseStatus = await handle.query(contract.Message.STATUS, result_type=ReleaseStatus)
    return st


async def wait_for(
    handle: WorkflowHandle[Any, Any],
    check: Callable[[Any], bool],
    timeout: float = 60.0,
    *,
    every: float = 0.1,
    result_type: type[Any] = ReleaseStatus,
) -> Any:
    """Query the status (`result_type`) until `check` holds; AssertionError after `timeout`
    seconds. A failing query (the worker or server down for a moment) is looked at again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        try:
            last = await handle.query(contract.Message.STATUS, result_type=result_type)
        except Exception as e:
            last = e
        else:
            if check(last):
                return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not reached in {timeout}s; last status {last}")


async def signed_approval(
    handle: Any, by: str = "release-manager", comment: str = "", step: int | None = None
) -> Any:
    """An `approve` input signed with `by`'s key for the run and step `handle` awaits."""
    from stagecoach.keys import sign
    from stagecoach.payloads.common import ApproveInput

    desc = await handle.describe()
    st = await handle.query(contract.Message.STATUS)
    if desc.workflow_type == contract.WorkflowType.RESTORE:
        version, step = f"restore:{st['backup_id']}", 0
    elif desc.workflow_type == contract.WorkflowType.FAILOVER:  # bound to <mode>:<to_region>
        version, step = f"{st['mode']}:{st['to_region']}", 0 if step is None else step
    else:
        version = st["version"]
        step = st["awaiting_approval_for"] if step is None else step
    inp = ApproveInput(by=by, comment=comment)
    inp.proof = sign(
        by, workflow_id=desc.id, run_id=desc.run_id, version=version, step=step,
        comment=inp.comment,
    )  # fmt: skip
    return inp


async def approve_when_asked(
    handle: WorkflowHandle[Any, ReleaseStatus], by: str = "release-manager"
) -> None:
    """Grant every approval the release asks for, signed with `by`'s key, until it ends (runs
    as a task)."""
    while True:
        try:
            st = await status(handle)
        except Exception:
            await asyncio.sleep(0.5)
            continue
        if st.outcome != Outcome.RUNNING:
            return
        if st.awaiting_approval_for is not None:
            # a lost race with another approval, or the worker is down: look again
            with contextlib.suppress(Exception):
                inp = await signed_approval(handle, by, "bench", st.awaiting_approval_for)
                await handle.execute_update(contract.Message.APPROVE, inp)
        await asyncio.sleep(0.1)


@dataclass
class ReleaseRun:
    """A release `run_release` saw to its end."""

    handle: WorkflowHandle[Any, ReleaseStatus]
    result: ReleaseStatus
    finished: float  # time.monotonic() when the result came (before the approver stopped)
    disturbed_during: str = ""  # the release's phase and progress when `disturb` began


async def run_release(
    client: Client,
    task_queue: str,
    inp: ReleaseInput,
    *,
    timeout: float | None = None,
    disturb: Callable[[], Awaitable[None]] | None = None,
    after: float = 0.0,
) -> ReleaseRun:
    """Start a release, grant every approval it asks for and wait for its result (`timeout`
    seconds at most). A fault drill passes `disturb`: it runs `after` seconds into the release,
    once the release's phase is noted."""
    handle = await start_release(client, task_queue, inp)
    approver = asyncio.create_task(approve_when_asked(handle))
    where = ""
    if disturb is not None:
        await asyncio.sleep(after)
        try:
            st = await asyncio.wait_for(status(handle), timeout=1.0)
            where = f"{st.phase.value} {st.progress[:60]}"
        except Exception:
            where = "(status unavailable)"
        await disturb()
    result = await asyncio.wait_for(workflow_result(handle), timeout=timeout)
    finished = time.monotonic()
    await approver
    return ReleaseRun(handle, result, finished, where)


async def undisturbed_span(client: Client, task_queue: str, inp: ReleaseInput) -> float:
    """Seconds one undisturbed release takes, start to end (approvals granted); it must promote.
    A fault drill strikes at points uniform over it."""
    t = time.monotonic()
    run = await run_release(client, task_queue, inp)
    span = time.monotonic() - t
    assert run.result.outcome == Outcome.PROMOTED, run.result
    return span
