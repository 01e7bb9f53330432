"""The one status follower: poll a workflow's `status` query every second and hand each answer
to a view until its result arrives, outlasting a Temporal restart. `deploy`, `status --wait`,
`restore`, `dr-drill`, `failover`, `failback` and `schedule trigger --wait` all follow with it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from rich.live import Live
from temporalio.client import (
    Client,
    WorkflowContinuedAsNewError,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.service import RPCError

from stagecoach.cli import render
from stagecoach.cli.app import (
    EXIT_FAILED,
    EXIT_OK,
    FOLLOW_OUTAGE_SECONDS,
    POLL_SECONDS,
    RETRYABLE_RPC,
    fail,
    note,
    out,
    print_json,
    web_link,
)
from stagecoach.cli.schemas import status_output, to_json
from stagecoach.config import Config
from stagecoach.contract import Message, release_workflow_id
from stagecoach.payloads.common import Outcome, Phase
from stagecoach.payloads.release import ReleaseStatus
from stagecoach.temporal import workflow_result

T = TypeVar("T")


async def query_status(handle: WorkflowHandle[Any, Any], result_type: type[T]) -> T | None:
    """The `status` query's answer, or None (not yet picked up by a worker, a run that just
    rolled over, Temporal not answering)."""
    try:
        st: T = await handle.query(
            Message.STATUS, result_type=result_type, rpc_timeout=timedelta(seconds=5)
        )
        return st
    except Exception:
        return None


async def follow(
    handle: WorkflowHandle[Any, Any],
    result_type: type[T],
    on_status: Callable[[T], None],
    *,
    follow_runs: bool = True,
) -> T:
    """Query `status` every POLL_SECONDS, passing each answer to `on_status`, until the workflow
    ends; return its final status (`workflow_result`: what it returned, or the status its
    not-succeeded failure carries). Temporal not answering is waited out for up to
    FOLLOW_OUTAGE_SECONDS. Raises WorkflowFailureError for any other failure and, with
    `follow_runs=False`, WorkflowContinuedAsNewError."""

    def result_task() -> asyncio.Future[T]:
        return asyncio.ensure_future(workflow_result(handle, result_type, follow_runs=follow_runs))

    result = result_task()
    outage = 0.0  # seconds Temporal has not answered (a server restart: keep following)
    try:
        while True:
            if result.done():
                exc = result.exception()
                if not (isinstance(exc, RPCError) and exc.status in RETRYABLE_RPC):
                    break
                if outage > FOLLOW_OUTAGE_SECONDS:
                    raise exc
                if outage == 0:
                    note(f"Temporal is not answering ({exc.message}); still following...")
                outage += POLL_SECONDS
                await asyncio.sleep(POLL_SECONDS)
                result = result_task()
                continue
            st = await query_status(handle, result_type)
            if st is not None:
                outage = 0.0
                on_status(st)
            await asyncio.wait({result}, timeout=POLL_SECONDS)
        return result.result()
    finally:
        if not result.done():
            result.cancel()


class EventPrinter:
    """Print each event of a status once, as it arrives (the workflow keeps only its newest
    events, so the list may slide: `render.new_events`)."""

    def __init__(self, indent: str = "") -> None:
        self.indent = indent
        self.seen: list[str] = []

    def show(self, st: Any) -> None:
        for line in render.new_event_lines(self.seen, st):
            out.print(f"{self.indent}{line}", markup=False, highlight=False, soft_wrap=True)
        self.seen = list(st.events)


async def follow_events(
    handle: WorkflowHandle[Any, Any], result_type: type[T], *, quiet: bool, follow_runs: bool = True
) -> T:
    """`follow` for the DR workflows: their events as indented lines (none when `quiet`, for
    --json); a run that failed otherwise than with its status: its last status (query) or exit 1."""
    printer = EventPrinter("  ")

    def show(st: T) -> None:
        if not quiet:
            printer.show(st)

    try:
        final = await follow(handle, result_type, show, follow_runs=follow_runs)
    except WorkflowContinuedAsNewError:
        last = await query_status(handle, result_type)  # a closed run is still queryable
        if last is not None:
            show(last)
        raise
    except WorkflowFailureError as err:
        last = await query_status(handle, result_type)
        if last is None:
            fail(f"workflow {handle.id} ended: {err.cause or err}", EXIT_FAILED)
        final = last
    show(final)
    return final


class Follower:
    """Follow a release until it ends. Each event is printed once, as it arrives, with its full
    time (the whole story stays in the scrollback); on a terminal one compact live line below
    them says what happens now. At the end: the release's panel and a one-line summary. With
    --json: nothing until the end, then the final status."""

    def __init__(
        self,
        client: Client,
        cfg: Config,
        env: str,
        json_out: bool,
        note_: str = "",
        images: dict[str, str] | None = None,
    ):
        self.client = client
        self.cfg = cfg
        self.env = env
        self.json_out = json_out
        self.wid = release_workflow_id(cfg.app, env)
        approval = cfg.env(env).release.approval
        self.ctx = render.ViewContext(
            env=env,
            workflow_id=self.wid,
            link=web_link(self.wid),
            approvers=list(approval.approvers) if approval else [],
            note=note_,
        )
        self.last: ReleaseStatus | None = None
        self.images = images or {}  # each service's image from the release's input (--json)
        self._printer = EventPrinter()
        self._approval_shown = False

    async def follow(self) -> tuple[ReleaseStatus, int]:
        handle: WorkflowHandle[Any, ReleaseStatus] = self.client.get_workflow_handle(
            self.wid, result_type=ReleaseStatus
        )
        live: Live | None = None
        if not self.json_out and out.is_terminal:
            live = Live(console=out, refresh_per_second=4, transient=True)
            live.start()
        try:
            try:
                final = await follow(handle, ReleaseStatus, lambda st: self._show(st, live))
            except WorkflowFailureError as e:
                final = self._failed(e)
            self.last = final
        finally:
            if live is not None:
                live.stop()
        self._finish(final)
        return final, EXIT_OK if final.outcome == Outcome.PROMOTED else EXIT_FAILED

    def _final_ctx(self) -> render.ViewContext:
        return render.ViewContext(
            env=self.ctx.env,
            workflow_id=self.ctx.workflow_id,
            link=self.ctx.link,
            approvers=self.ctx.approvers,
        )

    def _show(self, st: ReleaseStatus, live: Live | None) -> None:
        self.last = st
        if self.json_out:
            return
        self._printer.show(st)
        if st.awaiting_approval_for is None:
            self._approval_shown = False
        elif not self._approval_shown:
            self._approval_shown = True
            out.print(
                f"awaiting approval: run `{render.approve_command(self.env, self.ctx.approvers)}`",
                markup=False,
                soft_wrap=True,
            )
        if live is not None:
            live.update(render.live_line(st, self.ctx.note))

    def _failed(self, e: WorkflowFailureError) -> ReleaseStatus:
        cause = e.cause
        message = getattr(cause, "message", None) or str(cause or e)
        base = self.last or ReleaseStatus(app=self.cfg.app, env=self.env, version="?")
        return base.model_copy(
            update={
                "phase": Phase.DONE,
                "outcome": Outcome.FAILED,
                "error": f"workflow {type(cause).__name__ if cause else 'failed'}: {message}",
            }
        )

    def _finish(self, final: ReleaseStatus) -> None:
        if self.json_out:
            print_json(to_json(status_output(final, self.wid, self.ctx.link, self.images)))
            return
        self._show(final, None)  # the last events
        render.print_finished(out, final, self.ctx)
