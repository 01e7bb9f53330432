"""`starter.py`: the Stagecoach command line (typer + rich).

Release commands: deploy, status, approve, abort, promote, rollback, history; the embedded stack:
local up|down|status; the simulator: sim ... (passed through to `python -m gcpsim`).
DR commands are registered from `stagecoach.cli_dr` when it exists.

Exit codes (also for the DR commands, which reuse the helpers below):
  0 promoted / ok, 1 rolled back, aborted or failed, 2 bad input or conflict (including approve,
  abort, promote when nothing waits for it), 3 Temporal or GCP (gcpsim) unreachable.
Every failure a user can cause prints one line that names the fix; never a traceback
(STAGECOACH_DEBUG=1 shows it for unexpected errors).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import secrets
import socket
import subprocess
import sys
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from stagecoach import render
from stagecoach.config import (
    Config,
    ConfigError,
    config_path,
    format_duration,
    load_config,
    parse_duration,
)
from stagecoach.local_stack import LOCAL_HOSTS, LocalStack, StackError, home, stop_all, ui_url
from stagecoach.models import (
    AbortInput,
    ApproveInput,
    ApproveResult,
    Outcome,
    Phase,
    ReleaseInput,
    ReleaseStatus,
    RollbackInput,
    RollbackResult,
    TrafficTarget,
)
from stagecoach.plan import build_release, check_freeze, release_workflow_id, service_ref
from stagecoach.temporal import TemporalSettings, connect, workflow_result

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_UNREACHABLE = 3

ENVIRONMENT = SearchAttributeKey.for_keyword("StagecoachEnvironment")
VERSION = SearchAttributeKey.for_keyword("StagecoachVersion")
PHASE = SearchAttributeKey.for_keyword("StagecoachPhase")
OUTCOME = SearchAttributeKey.for_keyword("StagecoachOutcome")

POLL_SECONDS = 1.0
FOLLOW_OUTAGE_SECONDS = 300.0  # how long following outlasts a Temporal outage before exit 3
_RETRYABLE_RPC = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)
STARTER = "python starter.py"

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class _App(typer.Typer):
    """The typer app; called as the program (`app()` in starter.py), it ends the process with
    `os._exit` after flushing: the Temporal client's native threads can crash a normal
    interpreter shutdown of a short-lived process (temporalio/sdk-python#300)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from typer._click import exceptions as click

        code = 0
        try:
            try:
                rv = super().__call__(*args, standalone_mode=False, **kwargs)
            except click.NoArgsIsHelpError:  # a bare command group: its help, as click shows it
                super().__call__(*args, **kwargs)
            code = rv if isinstance(rv, int) else 0
        except click.UsageError as e:  # a bad flag or value: one line, exit 2 (no usage box)
            hint = (
                f" (see `{STARTER} {e.ctx.command_path.split(' ', 1)[-1]} --help`)"
                if (e.ctx and " " in e.ctx.command_path)
                else f" (see `{STARTER} --help`)"
            )
            print("error: " + " ".join(e.format_message().split()) + hint, file=sys.stderr)
            code = EXIT_INPUT
        except click.ClickException as e:
            print("error: " + " ".join(e.format_message().split()), file=sys.stderr)
            code = e.exit_code
        except typer.Abort:
            code = 130
        except SystemExit as e:
            if isinstance(e.code, int) or e.code is None:
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


app = _App(
    name="starter.py",
    help="Stagecoach: durable canary releases for Cloud Run, orchestrated by Temporal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
local_app = typer.Typer(
    help="The embedded stack: Temporal dev server, gcpsim and a worker, in the background.",
    no_args_is_help=True,
)
app.add_typer(local_app, name="local")

ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="Release config (default: $STAGECOACH_CONFIG or ./deploy.yaml).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of the rich view.")]

T = TypeVar("T")

# The config file the last `load` read (the local stack seeds gcpsim and starts the worker with it).
_config_file: Path | None = None


# =============================================================================== helpers
# Reused by stagecoach.cli_dr: load, settings, async_client, ensure_stack, fail, run, describe.


def fail(msg: str, code: int = EXIT_INPUT) -> NoReturn:
    """Print one line to stderr and exit with `code`."""
    err.print("error: " + " ".join(msg.split()), markup=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(text: str) -> None:
    """JSON to stdout as is (no wrapping, no colour), for scripts."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(msg: str) -> None:
    """A one-line remark on stderr (keeps stdout clean for --json)."""
    err.print(msg, markup=False, soft_wrap=True)


def load(config_opt: str | None = None) -> Config:
    """Load and validate the config; a bad one exits 2 with a one-line message."""
    global _config_file
    try:
        cfg = load_config(config_opt)
    except ConfigError as e:
        fail(str(e), EXIT_INPUT)
    _config_file = config_path(config_opt)
    return cfg


def check_env(cfg: Config, env: str) -> None:
    try:
        cfg.env(env)
    except ConfigError as e:
        fail(str(e), EXIT_INPUT)


def settings() -> TemporalSettings:
    return TemporalSettings.from_env()


def ensure_stack(cfg: Config) -> None:
    """With `target: gcpsim` and a local Temporal address, start what of the embedded stack does
    not answer (Temporal -> the whole stack; only gcpsim -> gcpsim). Failing: exit 3."""
    s = settings()
    if cfg.target != "gcpsim" or not s.is_local:
        return
    stack = LocalStack(cfg, _config_file or config_path(None), s, say=note)
    try:
        from stagecoach.keys import keys_dir, provision_local

        for name in provision_local(cfg):  # the embedded stack: this user's approver keys
            note(f"approver key for {name} created in {keys_dir()} (private to you)")
        if not stack.temporal_up():
            note(
                f"Temporal is not answering at {s.address}: starting the embedded stack "
                f"(`{STARTER} local up`; stop it with `{STARTER} local down`)"
            )
            stack.up()
        elif cfg.gcpsim.host in LOCAL_HOSTS and not stack.gcpsim_up():
            note(f"gcpsim is not answering on {cfg.gcpsim.host}:{cfg.gcpsim.port}: starting it")
            stack.up(only=("gcpsim",))
    except StackError as e:
        fail(f"{e}; fix it and run `{STARTER} local up`", EXIT_UNREACHABLE)


async def async_client(cfg: Config | None = None) -> Client:
    """A Temporal client (pydantic converter). Brings the embedded stack up first when `cfg`
    targets gcpsim and the address is local; unreachable: exit 3 naming the fix."""
    if cfg is not None:
        ensure_stack(cfg)
    s = settings()
    try:
        return await connect(s)
    except OSError as e:  # a TLS file that is not there
        fail(f"cannot read a Temporal TLS file: {e}; check TEMPORAL_TLS_* paths", EXIT_INPUT)
    except (RuntimeError, RPCError) as e:
        reason = str(e).split("(", 1)[0].removeprefix("Failed client connect: ").strip(" :")
        hint = (
            f"start it with `{STARTER} local up`"
            if s.is_local
            else "check TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and the TLS/API key settings"
        )
        fail(f"Temporal is not reachable at {s.address} ({reason}); {hint}", EXIT_UNREACHABLE)


def run(coro: Awaitable[T], on_interrupt: Callable[[], NoReturn] | None = None) -> T:
    """Run a command's coroutine; map what can go wrong to one line and an exit code."""

    async def main() -> T:
        return await coro

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        if on_interrupt:
            on_interrupt()
        fail("interrupted", EXIT_FAILED)
    except typer.Exit:
        raise
    except RPCError as e:
        _rpc_failure(e)
    except ConfigError as e:
        fail(str(e), EXIT_INPUT)
    except Exception as e:
        _unexpected(e)


def _rpc_failure(e: RPCError) -> NoReturn:
    s = settings()
    if e.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        fail(
            f"Temporal at {s.address} stopped answering ({e.message}); check it and retry",
            EXIT_UNREACHABLE,
        )
    if e.status == RPCStatusCode.INVALID_ARGUMENT and "Stagecoach" in e.message:
        fail(
            f"Temporal at {s.address} does not know Stagecoach's search attributes ({e.message});"
            " register StagecoachEnvironment, StagecoachVersion, StagecoachPhase and "
            "StagecoachOutcome as Keyword with `temporal operator search-attribute create "
            "--name NAME --type Keyword` (docker-compose.temporal.yml and `local up` do it)",
            EXIT_INPUT,
        )
    if e.status == RPCStatusCode.NOT_FOUND and "namespace" in e.message.lower():
        fail(
            f"Temporal namespace {s.namespace!r} does not exist at {s.address} ({e.message}); "
            "set TEMPORAL_NAMESPACE",
            EXIT_INPUT,
        )
    if e.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNAUTHENTICATED):
        fail(
            f"Temporal at {s.address} refused the request ({e.message}); check "
            "TEMPORAL_API_KEY / the TLS client certificate and its namespace permissions",
            EXIT_UNREACHABLE,
        )
    _unexpected(e)


def _unexpected(e: BaseException) -> NoReturn:
    if os.environ.get("STAGECOACH_DEBUG"):
        traceback.print_exception(e)
    fail(f"{type(e).__name__}: {e} (STAGECOACH_DEBUG=1 shows the traceback)", EXIT_FAILED)


async def describe(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """The latest run of a workflow id, or None when there never was one."""
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND and "namespace" not in e.message.lower():
            return None
        raise


def is_running(desc: WorkflowExecutionDescription | None) -> bool:
    return desc is not None and desc.status == WorkflowExecutionStatus.RUNNING


def who() -> str:
    """Who asks (recorded in workflow inputs and signals): $STAGECOACH_USER or user@host."""
    given = os.environ.get("STAGECOACH_USER")
    if given:
        return given
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def web_link(workflow_id: str) -> str:
    s = settings()
    return render.workflow_link(ui_url(s), s.namespace, workflow_id)


def _duration(flag: str, value: str | None, *, positive: bool = False) -> timedelta | None:
    if value is None:
        return None
    try:
        td = parse_duration(value)
    except ValueError as e:
        fail(f"{flag} {e}", EXIT_INPUT)
    if not isinstance(td, timedelta):
        fail(f"{flag} {value!r} is not a duration; write e.g. 30s, 5m, 4h", EXIT_INPUT)
    if td < timedelta(0) or (positive and td == timedelta(0)):
        fail(f"{flag} must be {'positive' if positive else 'zero or more'}, got {value}")
    return td


def _services_opt(cfg: Config, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        fail("--services needs service names separated by commas, e.g. --services node-server")
    for n in names:
        try:
            cfg.service(n)
        except ConfigError as e:
            fail(f"--services: {e}")
    return names


def _sa(desc: WorkflowExecutionDescription, key: SearchAttributeKey[str]) -> str:
    value = desc.typed_search_attributes.get(key)
    return str(value) if value else ""


def _nothing_running(
    cfg: Config, env: str, desc: WorkflowExecutionDescription | None, what: str
) -> NoReturn:
    if desc is None:
        fail(
            f"no release of {cfg.app} to {env} has ever run; nothing to {what} "
            f"(start one with `{STARTER} deploy {env} VERSION`)"
        )
    version = _sa(desc, VERSION) or "the last release"
    ended = desc.status.name.lower() if desc.status else "closed"
    if desc.status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
        ended = _sa(desc, OUTCOME) or ended
    fail(
        f"no release to {env} is running ({version} ended {ended}); nothing to {what} "
        f"(see `{STARTER} status {env}`)"
    )


# =============================================================================== following


class Follower:
    """Poll the `status` query every second and show it (live panel on a terminal, new events as
    plain lines otherwise, nothing with --json) until the workflow result arrives."""

    def __init__(self, client: Client, cfg: Config, env: str, json_out: bool, note_: str = ""):
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
        self._events: list[str] = []  # the events already printed (plain output)
        self._approval_shown = False

    async def follow(self) -> tuple[ReleaseStatus, int]:
        handle: WorkflowHandle[Any, ReleaseStatus] = self.client.get_workflow_handle(
            self.wid, result_type=ReleaseStatus
        )
        result = asyncio.ensure_future(workflow_result(handle))
        live: Live | None = None
        if not self.json_out and out.is_terminal:
            live = Live(console=out, refresh_per_second=4, transient=False)
            live.start()
        outage = 0.0  # seconds Temporal has not answered (a server restart: keep following)
        try:
            while True:
                if result.done():
                    exc = result.exception()
                    if not (isinstance(exc, RPCError) and exc.status in _RETRYABLE_RPC):
                        break
                    if outage > FOLLOW_OUTAGE_SECONDS:
                        raise exc
                    if outage == 0:
                        note(f"Temporal is not answering ({exc.message}); still following...")
                    outage += POLL_SECONDS
                    await asyncio.sleep(POLL_SECONDS)
                    result = asyncio.ensure_future(workflow_result(handle))
                    continue
                st = await self._query(handle)
                if st is not None:
                    outage = 0.0
                    self.last = st
                    self._show(st, live)
                await asyncio.wait({result}, timeout=POLL_SECONDS)
            try:
                final = result.result()
            except WorkflowFailureError as e:
                final = self._failed(e)
            self.last = final
            if live is not None:
                live.update(render.release_view(final, self._final_ctx()))
        finally:
            if live is not None:
                live.stop()
            if not result.done():
                result.cancel()
        self._finish(final, live is not None)
        return final, EXIT_OK if final.outcome == Outcome.PROMOTED else EXIT_FAILED

    async def _query(self, handle: WorkflowHandle[Any, ReleaseStatus]) -> ReleaseStatus | None:
        try:
            st: ReleaseStatus = await handle.query(
                "status", result_type=ReleaseStatus, rpc_timeout=timedelta(seconds=5)
            )
            return st
        except Exception:  # not yet picked up by a worker, or the run just rolled over
            return None

    def _final_ctx(self) -> render.ViewContext:
        return render.ViewContext(
            env=self.ctx.env,
            workflow_id=self.ctx.workflow_id,
            link=self.ctx.link,
            approvers=self.ctx.approvers,
        )

    def _show(self, st: ReleaseStatus, live: Live | None) -> None:
        if self.json_out:
            return
        if live is not None:
            live.update(render.release_view(st, self.ctx))
            return
        for e in render.new_events(self._events, st.events):
            out.print(e, markup=False, soft_wrap=True)
        self._events = list(st.events)
        if st.awaiting_approval_for is None:
            self._approval_shown = False
        elif not self._approval_shown:
            self._approval_shown = True
            out.print(
                f"awaiting approval: run `{render.approve_command(self.env, self.ctx.approvers)}`",
                markup=False,
                soft_wrap=True,
            )

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

    def _finish(self, final: ReleaseStatus, was_live: bool) -> None:
        if self.json_out:
            print_json(render.to_json(render.status_dict(final, self.wid, self.ctx.link)))
            return
        if not was_live:
            self._show(final, None)
            ctx = self._final_ctx()
            ctx.show_events = False  # already printed line by line
            render.print_release(out, final, ctx)
        else:
            out.print(f"Web UI: {self.ctx.link}", style="blue", soft_wrap=True, markup=False)
        style = render.OUTCOME_STYLE.get(final.outcome, "")
        out.print(f"[bold {style}]{render.summary_line(final)}[/]")


def _detached(env: str, what: str = "release") -> NoReturn:
    note(
        f"\nDetached: the {what} goes on in Temporal. Follow it with "
        f"`{STARTER} status {env} --wait`; stop it with `{STARTER} abort {env}`."
    )
    raise typer.Exit(EXIT_OK)


# =============================================================================== deploy


def _static_details(cfg: Config, inp: ReleaseInput) -> str:
    e = cfg.env(inp.env)
    steps = " -> ".join(
        f"{s.weight}%" + (f" (bake {format_duration(s.bake)})" if s.bake else "") for s in inp.steps
    )
    lines = [
        f"Release {inp.version} of {inp.app} to {inp.env} "
        f"(project {e.project}, region {e.region}); release id {inp.release_id}",
        f"Services, in order: {' -> '.join(p.ref.service for p in inp.services)}",
        f"Steps: {steps}; metric poll every {format_duration(inp.interval)}",
        f"Gates: roll back above {inp.gates.max_error_rate:.0%} errors or p95 "
        f"{format_duration(inp.gates.max_p95_latency)}",
    ]
    if inp.approval:
        lines.append(
            f"Approval before {inp.approval.before_weight}% by {', '.join(inp.approval.approvers)}"
        )
    if inp.backup:
        lines.append(f"Pre-deployment backup of {inp.backup.instance}")
    bound = sorted({p.database.instance for p in inp.services if p.database})
    if bound:
        move = "moved to" if inp.switch_database else "bound to"
        lines.append(f"Database: services using it {move} {', '.join(bound)}")
    if inp.recovery:
        lines.append(
            f"Switch to {inp.recovery.recovery_instance}, the point-in-time recovery of "
            f"{inp.recovery.source_instance} as of {inp.recovery.point_in_time.isoformat()}"
        )
    for h in inp.pre_deploy_hooks + inp.post_deploy_hooks:
        db = ", bound to the database" if h.database else ""
        lines.append(f"Hook {h.stage} {h.name}: Cloud Run job {h.ref.job}, image {h.image}{db}")
    if inp.freeze_override:
        ov = inp.freeze_override
        lines.append(
            f"Freeze overridden ({ov.window}, until {ov.until:%Y-%m-%d %H:%M:%S} UTC) "
            f"by {ov.by}: {ov.reason}"
        )
    lines.append(f"Requested by {inp.requested_by}")
    return "\n".join(lines)


def _memo(inp: ReleaseInput) -> dict[str, str] | None:
    """What `history` shows beside a release: a freeze it was started through (who, why)."""
    ov = inp.freeze_override
    if ov is None:
        return None
    return {"note": f"freeze ({ov.window}) overridden by {ov.by}: {ov.reason}"}


async def worker_pollers(client: Client, task_queue: str) -> int | None:
    """How many workers polled the task queue recently (None when that cannot be told)."""
    from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    try:
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=timedelta(seconds=5),
        )
    except Exception:
        return None
    return len(resp.pollers)


async def _warn_if_no_worker(client: Client) -> None:
    tq = settings().task_queue
    for _ in range(6):  # a worker that has just started may not have polled yet
        if await worker_pollers(client, tq) != 0:
            return
        await asyncio.sleep(0.5)
    if await worker_pollers(client, tq) == 0:
        note(
            f"warning: no worker is polling task queue {tq!r}; the release waits until one does "
            f"(`python worker.py` or `{STARTER} local up`)"
        )


async def _conflict(client: Client, env: str, wid: str) -> NoReturn:
    desc = await describe(client, wid)
    if desc is not None and desc.workflow_type != "Release":
        kind = {
            "Restore": f"a restore of {env}'s database",
            "Failover": f"a regional failover or failback of {env}",
        }.get(desc.workflow_type, f"a point-in-time recovery of {env}'s database")
        fail(
            f"{kind} is running ({wid}); releases and restores of one "
            f"environment never overlap: see `{STARTER} status {env}`, wait for it or stop it "
            f"with `{STARTER} abort {env}`, then deploy again"
        )
    version = _sa(desc, VERSION) if desc else ""
    phase = _sa(desc, PHASE) if desc else ""
    what = f"{version} " if version else ""
    fail(
        f"release {what}to {env} is already running ({wid}"
        + (f", phase {phase}" if phase else "")
        + f"); see it with `{STARTER} status {env}` or stop it with `{STARTER} abort {env}`, "
        "then deploy again"
    )


async def _deploy(cfg: Config, inp: ReleaseInput, detach: bool, json_out: bool) -> int:
    client = await async_client(cfg)
    s = settings()
    wid = release_workflow_id(cfg.app, inp.env)
    await _warn_if_no_worker(client)
    names = ", ".join(p.name for p in inp.services)
    try:
        handle = await client.start_workflow(
            "Release",
            inp,
            id=wid,
            task_queue=s.task_queue,
            result_type=ReleaseStatus,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ENVIRONMENT, inp.env),
                    SearchAttributePair(VERSION, inp.version),
                    SearchAttributePair(PHASE, Phase.VALIDATING.value),
                    SearchAttributePair(OUTCOME, Outcome.RUNNING.value),
                ]
            ),
            static_summary=f"Release {inp.version} to {inp.env}: {names}",
            static_details=_static_details(cfg, inp),
            memo=_memo(inp),
        )
    except WorkflowAlreadyStartedError:
        await _conflict(client, inp.env, wid)
    link = web_link(wid)
    if detach:
        if json_out:
            print_json(
                render.to_json(
                    {
                        "workflow_id": wid,
                        "run_id": handle.result_run_id,
                        "release_id": inp.release_id,
                        "version": inp.version,
                        "env": inp.env,
                        "web_ui": link,
                    }
                )
            )
        else:
            out.print(
                f"Started release {inp.version} to {inp.env} as {wid} "
                f"(release id {inp.release_id}).",
                markup=False,
                soft_wrap=True,
            )
            out.print(f"Web UI: {link}", markup=False, soft_wrap=True)
            out.print(
                f"Follow it with `{STARTER} status {inp.env} --wait`.", markup=False, soft_wrap=True
            )
        return EXIT_OK
    if not json_out:
        out.print(
            f"Started release {inp.version} to {inp.env} as {wid}; Web UI: {link}",
            markup=False,
            soft_wrap=True,
        )
    follower = Follower(
        client, cfg, inp.env, json_out, note_="Ctrl-C detaches; the release goes on."
    )
    _final, code = await follower.follow()
    return code


@app.command()
def deploy(
    env: Annotated[
        str, typer.Argument(metavar="ENV", help="Environment from the config, e.g. prod.")
    ],
    version: Annotated[
        str, typer.Argument(metavar="VERSION", help="Version tag vMAJOR.MINOR.PATCH.")
    ],
    services: Annotated[
        str | None, typer.Option(help="Only these services (comma-separated), e.g. a,b.")
    ] = None,
    bake: Annotated[
        str | None, typer.Option(help="Override every step's bake window, e.g. 30s (rehearsals).")
    ] = None,
    interval: Annotated[
        str | None, typer.Option(help="Override the metric poll interval, e.g. 10s.")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Start the release and return at once.")
    ] = False,
    switch_database: Annotated[
        bool,
        typer.Option(
            "--switch-database",
            help="Move services that serve from another instance to the configured one.",
        ),
    ] = False,
    override_freeze: Annotated[
        bool,
        typer.Option("--override-freeze", help="Start inside a freeze window (needs --reason)."),
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why the freeze is overridden (recorded).")
    ] = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Release VERSION to ENV and follow it live (Ctrl-C detaches; the release goes on)."""
    cfg = load(config)
    names = _services_opt(cfg, services)
    bake_td = _duration("--bake", bake)
    interval_td = _duration("--interval", interval, positive=True)
    release_id = secrets.token_hex(3)[:5]
    try:
        inp = build_release(
            cfg,
            env,
            version,
            release_id,
            services=names,
            bake=bake_td,
            interval=interval_td,
            requested_by=who(),
            switch_database=switch_database,
        )
        inp = check_freeze(
            inp, datetime.now(UTC), override=override_freeze, reason=reason, by=who()
        )
    except ConfigError as e:
        fail(str(e), EXIT_INPUT)
    except ValueError as e:
        fail(f"{str(e).splitlines()[0]}; fix the arguments and run again", EXIT_INPUT)
    code = run(_deploy(cfg, inp, detach, json_out), on_interrupt=lambda: _detached(env))
    raise typer.Exit(code)


# =============================================================================== status


def _closed_status(cfg: Config, env: str, desc: WorkflowExecutionDescription) -> ReleaseStatus:
    """What can be said of a release that did not complete normally (terminated, timed out...)."""
    status = desc.status.name.lower() if desc.status else "closed"
    return ReleaseStatus(
        app=cfg.app,
        env=env,
        version=_sa(desc, VERSION) or "?",
        phase=Phase.DONE,
        outcome=Outcome.FAILED,
        error=f"the release workflow was {status}",
        started_at=desc.start_time,
        ended_at=desc.close_time,
    )


async def _status(cfg: Config, env: str, json_out: bool, wait: bool) -> int:
    client = await async_client(cfg)
    wid = release_workflow_id(cfg.app, env)
    desc = await describe(client, wid)
    if desc is None:
        fail(
            f"no release of {cfg.app} to {env} yet; start one with `{STARTER} deploy {env} VERSION`"
        )
    if desc.workflow_type == "Failover":  # a failover or failback holds it
        from stagecoach import cli_failover

        return await cli_failover.show_status(client, wid, desc, json_out, wait)
    if desc.workflow_type != "Release":  # a restore holds the environment's workflow id
        from stagecoach import cli_dr

        return await cli_dr.show_recovery_status(client, wid, desc, json_out, wait)
    follower = Follower(
        client, cfg, env, json_out, note_="Ctrl-C stops watching; the release goes on."
    )
    if wait:
        _final, code = await follower.follow()
        return code
    handle: WorkflowHandle[Any, ReleaseStatus] = client.get_workflow_handle(
        wid, result_type=ReleaseStatus
    )
    st: ReleaseStatus | None
    if desc.status == WorkflowExecutionStatus.RUNNING:
        st = await follower._query(handle)
        if st is None:
            fail(
                f"release {_sa(desc, VERSION)} to {env} is running but no worker answered its "
                f"status query; start one (`python worker.py` or `{STARTER} local up`)",
                EXIT_UNREACHABLE,
            )
    elif desc.status == WorkflowExecutionStatus.COMPLETED:
        st = await workflow_result(handle)
    elif desc.status == WorkflowExecutionStatus.FAILED:
        try:  # a release that did not promote ends failed, its status in the failure
            st = await workflow_result(handle)
        except WorkflowFailureError:
            st = _closed_status(cfg, env, desc)
    else:
        st = _closed_status(cfg, env, desc)
    if json_out:
        print_json(render.to_json(render.status_dict(st, wid, follower.ctx.link)))
    else:
        render.print_release(out, st, follower._final_ctx())
    return EXIT_OK


@app.command()
def status(
    env: Annotated[str, typer.Argument(metavar="ENV", help="Environment.")],
    json_out: JsonOpt = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the release until it ends.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Show the latest release to ENV (running or ended). With --wait, exit 0 promoted / 1 not."""
    cfg = load(config)
    check_env(cfg, env)

    def stop_watching() -> NoReturn:
        note(
            f"\nStopped watching; the release goes on. Resume with `{STARTER} status {env} --wait`."
        )
        raise typer.Exit(EXIT_OK)

    raise typer.Exit(run(_status(cfg, env, json_out, wait), on_interrupt=stop_watching))


# ========================================================================= approve/abort/promote


async def _approve(cfg: Config, env: str, by: str, comment: str, print_payload: bool) -> int:
    from stagecoach.keys import keys_dir, sign

    client = await async_client(cfg)
    wid = release_workflow_id(cfg.app, env)
    desc = await describe(client, wid)
    if not is_running(desc):
        _nothing_running(cfg, env, desc, "approve")
    assert desc is not None
    handle = client.get_workflow_handle(wid, run_id=desc.run_id)
    inp = ApproveInput(by=by, comment=comment)  # capped here, so the signature covers it
    # what the proof is bound to: this run, its version, the step awaiting approval
    st: dict[str, Any] = await handle.query("status")
    step: int | None = 0
    if desc.workflow_type == "Restore":
        version = f"restore:{st.get('backup_id', '')}"
    elif desc.workflow_type == "Failover":  # the DNS move to a region
        version = f"{st.get('mode', '')}:{st.get('to_region', '')}"
    else:
        version, step = str(st.get("version", "")), st.get("awaiting_approval_for")
    approval = cfg.env(env).release.approval
    needs_proof = approval is None or approval.proof == "signature"
    if step is None and not st.get("awaiting_approval"):
        fail(
            f"the {desc.workflow_type.lower()} in {env} is not awaiting approval "
            f"(phase {st.get('phase', '?')}); see `{STARTER} status {env}`"
        )
    proof = sign(
        by, workflow_id=wid, run_id=desc.run_id, version=version, step=int(step or 0),
        comment=inp.comment,
    )  # fmt: skip
    if proof is None and needs_proof:
        fail(
            f"no approver key for {by} in {keys_dir()}: create it with `{STARTER} keys create "
            f"{by}` and have the worker operator add its public half to approver_keys"
        )
    inp.proof = proof
    if print_payload:
        print_json(inp.model_dump_json(exclude_none=True))
        note(
            "paste it into the Web UI's Update dialog (name: approve) or run: temporal workflow "
            f"update execute --workflow-id {wid} --run-id {desc.run_id} --name approve "
            "--input '<the JSON>'. It is valid for this run and step only."
        )
        return EXIT_OK
    try:
        res: ApproveResult = await handle.execute_update("approve", inp, result_type=ApproveResult)
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or e)
        fail(f"approval rejected: {reason}", EXIT_INPUT)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            fail(
                f"the release to {env} ended before the approval arrived (see "
                f"`{STARTER} status {env}`)"
            )
        raise
    what = f"goes on to {res.approved_weight}%" if desc.workflow_type == "Release" else "goes on"
    out.print(
        f"Approved by {res.by}: {desc.workflow_type.lower()} {_sa(desc, VERSION)} in {env} {what}.",
        markup=False,
        soft_wrap=True,
    )
    return EXIT_OK


@app.command()
def approve(
    env: Annotated[str, typer.Argument(metavar="ENV", help="Environment.")],
    by: Annotated[str, typer.Option("--by", help="Who approves (one of the approvers).")],
    comment: Annotated[str, typer.Option(help="Why (kept in the status and history).")] = "",
    print_payload: Annotated[
        bool,
        typer.Option(
            "--print-payload",
            help="Print the signed JSON for the Web UI's Update dialog or `temporal workflow "
            "update execute --name approve --input` instead of sending it.",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Approve the release to ENV that awaits approval, signed with your approver key (an
    update: rejected with a reason, and the rejection is recorded)."""
    cfg = load(config)
    check_env(cfg, env)
    if not by.strip():
        fail("--by must name who approves, e.g. --by release-manager")
    raise typer.Exit(run(_approve(cfg, env, by.strip(), comment, print_payload)))


keys_app = typer.Typer(
    help="Approver keys: an approval is signed with its approver's Ed25519 key.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Approver name.")],
) -> None:
    """Create NAME's key on this machine (kept if it exists) and print its public half for the
    worker's config (`approver_keys`)."""
    from stagecoach.keys import create_key

    try:
        public, path, created = create_key(name)
    except ConfigError as e:
        fail(str(e))
    note(
        f"{'created' if created else 'kept the existing'} private key {path} (0600; never share it)"
    )
    note("add this to the worker's config (deploy.yaml), then approve with --by " + name + ":")
    print_json(f"approver_keys:\n  {name}: {public}")


async def _signal(cfg: Config, env: str, name: str, arg: Any | None, what: str) -> str:
    client = await async_client(cfg)
    wid = release_workflow_id(cfg.app, env)
    desc = await describe(client, wid)
    if not is_running(desc):
        _nothing_running(cfg, env, desc, what)
    handle = client.get_workflow_handle(wid)
    try:
        if arg is None:
            await handle.signal(name)
        else:
            await handle.signal(name, arg)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            _nothing_running(cfg, env, await describe(client, wid), what)
        raise
    assert desc is not None
    return _sa(desc, VERSION)


@app.command()
def abort(
    env: Annotated[str, typer.Argument(metavar="ENV", help="Environment.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the status).")] = "aborted by operator",
    config: ConfigOpt = None,
) -> None:
    """Abort the running release to ENV: it restores the previous traffic at once."""
    cfg = load(config)
    check_env(cfg, env)
    version = run(_signal(cfg, env, "abort", AbortInput(reason=reason, by=who()), "abort"))
    out.print(
        f"Abort sent to release {version} to {env}: it restores the previous traffic. "
        f"Follow it with `{STARTER} status {env} --wait`.",
        markup=False,
        soft_wrap=True,
    )


@app.command()
def promote(
    env: Annotated[str, typer.Argument(metavar="ENV", help="Environment.")],
    config: ConfigOpt = None,
) -> None:
    """Skip the remaining bake windows of the release to ENV once its gates pass."""
    cfg = load(config)
    check_env(cfg, env)
    version = run(_signal(cfg, env, "promote", None, "promote"))
    out.print(
        f"Promote sent to release {version} to {env}: remaining bake windows are skipped "
        "once the gates pass (approval still applies).",
        markup=False,
        soft_wrap=True,
    )


# =============================================================================== rollback


def _top(traffic: list[TrafficTarget]) -> str:
    serving = [t for t in traffic if t.percent > 0 and t.revision]
    return max(serving, key=lambda t: t.percent).revision if serving else ""


async def release_history_hints(
    client: Client, cfg: Config, env: str, limit: int = 30
) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """From the recent completed releases: for each Cloud Run service, which revision each
    promoted canary replaced, and the canaries of releases that were not promoted."""
    wid = release_workflow_id(cfg.app, env)
    query = (
        f"WorkflowType='Release' AND WorkflowId='{wid}' "
        "AND ExecutionStatus IN ('Completed', 'Failed')"
    )
    runs = [wf.run_id async for wf in client.list_workflows(query, limit=limit)]

    async def result(run_id: str) -> ReleaseStatus | None:
        h = client.get_workflow_handle(wid, run_id=run_id, result_type=ReleaseStatus)
        try:
            st: ReleaseStatus = await workflow_result(h, follow_runs=False)
            return st
        except Exception:
            return None

    found = [st for st in await asyncio.gather(*(result(r) for r in runs)) if st is not None]
    found.sort(key=lambda st: st.started_at.timestamp() if st.started_at else 0.0)
    previous_of: dict[str, dict[str, str]] = {}
    exclude: dict[str, list[str]] = {}
    for st in found:  # oldest first: newer releases win
        for svc in st.services:
            if not svc.canary_revision:
                continue
            if st.outcome == Outcome.PROMOTED and svc.state == "promoted":
                before = _top(svc.snapshot)
                if before and before != svc.canary_revision:
                    previous_of.setdefault(svc.run_service, {})[svc.canary_revision] = before
            else:
                exclude.setdefault(svc.run_service, []).append(svc.canary_revision)
    return previous_of, exclude


async def _migration_note(client: Client, cfg: Config, env: str) -> str:
    """When the release being rolled back (the newest promoted one) ran a database hook: its
    schema changes stay; name its pre-deploy backup and the restore command."""
    wid = release_workflow_id(cfg.app, env)
    query = f"WorkflowType='Release' AND WorkflowId='{wid}' AND ExecutionStatus='Completed'"
    async for wf in client.list_workflows(query, limit=10):
        h = client.get_workflow_handle(wid, run_id=wf.run_id, result_type=ReleaseStatus)
        try:
            st: ReleaseStatus = await h.result(follow_runs=False)
        except Exception:
            continue
        if st.outcome != Outcome.PROMOTED:
            continue
        ran = [
            x.name
            for x in st.hooks
            if x.stage == "pre_deploy" and x.uses_database and x.state == "succeeded"
        ]
        if not ran:
            return ""
        restore = (
            f"restore its pre-deploy backup {st.backup_id}: "
            f"`{STARTER} restore {env} --backup-id {st.backup_id} --yes`"
            if st.backup_id
            else f"no pre-deploy backup was taken; pick one with `{STARTER} backups {env}`"
        )
        return (
            f"release {st.version} ran database hook(s) {', '.join(ran)}; rolling traffic back "
            "does not undo their schema changes. If the previous revisions cannot work with "
            f"the new schema, {restore}"
        )
    return ""


async def _rollback(cfg: Config, env: str, names: list[str], json_out: bool) -> int:

    client = await async_client(cfg)
    desc = await describe(client, release_workflow_id(cfg.app, env))
    if is_running(desc):
        assert desc is not None
        fail(
            f"release {_sa(desc, VERSION)} to {env} is still running; abort it instead "
            f"(`{STARTER} abort {env}` restores the previous traffic)"
        )
    previous_of, exclude = await release_history_hints(client, cfg, env)
    refs = [service_ref(cfg, env, n) for n in names]
    by = who()
    req = RollbackInput(
        app=cfg.app,
        env=env,
        services=refs,
        reason=f"rollback requested by {by}",
        previous_of=previous_of,
        exclude=exclude,
        requested_by=by,
    )
    wid = f"rollback-{cfg.app}-{env}"
    s = settings()
    services = ", ".join(r.service for r in refs)
    try:
        handle = await client.start_workflow(
            "Rollback",
            req,
            id=wid,
            task_queue=s.task_queue,
            result_type=RollbackResult,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ENVIRONMENT, env),
                    SearchAttributePair(PHASE, Phase.ROLLING_BACK.value),
                    SearchAttributePair(OUTCOME, Outcome.RUNNING.value),
                ]
            ),
            static_summary=f"Rollback of {cfg.app} in {env}: {services}",
            static_details=(
                f"100% of the traffic of {services} back to the revision that served before the "
                f"current one (never LATEST). Requested by {by}."
            ),
        )
    except WorkflowAlreadyStartedError:
        fail(
            f"a rollback in {env} is already running ({wid}); wait for it (Web UI: {web_link(wid)})"
        )
    if not json_out:
        out.print(
            f"Rolling back {services} ({wid}); Web UI: {web_link(wid)}",
            markup=False,
            soft_wrap=True,
        )
    try:
        if json_out:
            res = await handle.result()
        else:
            with out.status("rolling back..."):
                res = await handle.result()
    except WorkflowFailureError as e:
        fail(f"rollback workflow failed: {getattr(e.cause, 'message', None) or e}", EXIT_FAILED)
    note = await _migration_note(client, cfg, env)
    if json_out:
        extra = {"workflow_id": wid} | ({"migration_note": note} if note else {})
        print_json(render.to_json(res.model_dump(mode="json") | extra))
    else:
        out.print(render.rollback_table(res, f"Rollback in {env}: {res.outcome.value}"))
        if note:
            out.print(note, markup=False, soft_wrap=True, style="bold yellow")
    return EXIT_OK if res.outcome == Outcome.ROLLED_BACK else EXIT_FAILED


@app.command()
def rollback(
    env: Annotated[str, typer.Argument(metavar="ENV", help="Environment.")],
    service: Annotated[
        str | None, typer.Option(help="Only this service (default: every service).")
    ] = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Send 100% of ENV's traffic back to the revision that served before the current one."""
    cfg = load(config)
    check_env(cfg, env)
    if service:
        name = service.removesuffix(f"-{env}") if service.endswith(f"-{env}") else service
        try:
            cfg.service(name)
        except ConfigError as e:
            fail(f"--service: {e}")
        names = [name]
    else:
        names = [s.name for s in reversed(cfg.ordered_services())]  # dependents first

    def detached() -> NoReturn:
        note(
            "\nDetached: the rollback goes on in Temporal; see "
            + web_link(f"rollback-{cfg.app}-{env}")
        )
        raise typer.Exit(EXIT_OK)

    raise typer.Exit(run(_rollback(cfg, env, names, json_out), on_interrupt=detached))


# =============================================================================== history


async def _history(cfg: Config, env: str, limit: int, json_out: bool) -> int:
    client = await async_client(cfg)
    wid = release_workflow_id(cfg.app, env)
    safe_env = env.replace("'", "\\'")
    query = f"WorkflowType='Release' AND StagecoachEnvironment='{safe_env}' AND WorkflowId='{wid}'"
    rows: list[render.HistoryRow] = []
    async for wf in client.list_workflows(query, limit=limit):
        sa = wf.typed_search_attributes
        status = wf.status.name.lower() if wf.status else ""
        outcome = str(sa.get(OUTCOME) or "")
        ended_by_outcome = (
            WorkflowExecutionStatus.RUNNING,
            WorkflowExecutionStatus.COMPLETED,
            WorkflowExecutionStatus.FAILED,  # not promoted: its outcome says how
        )
        if wf.status not in ended_by_outcome or (
            wf.status == WorkflowExecutionStatus.FAILED and outcome in ("", "running")
        ):
            outcome = status  # terminated, failed before it recorded an outcome, continued...
        rows.append(
            render.HistoryRow(
                workflow_id=wf.id,
                run_id=wf.run_id,
                version=str(sa.get(VERSION) or ""),
                phase=str(sa.get(PHASE) or ""),
                outcome=outcome,
                status=status,
                started=wf.start_time,
                closed=wf.close_time,
                note=str((await wf.memo()).get("note") or ""),
            )
        )
    if json_out:
        print_json(render.to_json([r.__dict__ for r in rows]))
    elif not rows:
        out.print(f"No releases of {cfg.app} to {env} yet.", markup=False, soft_wrap=True)
    else:
        title = f"Releases of {cfg.app} to {env} ({wid}), newest first"
        out.print(render.history_table(rows, title))
    return EXIT_OK


@app.command()
def history(
    env: Annotated[str, typer.Argument(metavar="ENV", help="Environment.")],
    limit: Annotated[int, typer.Option(min=1, help="How many releases to list.")] = 20,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """List the releases to ENV (newest first): id, version, outcome, start and close times."""
    cfg = load(config)
    check_env(cfg, env)
    raise typer.Exit(run(_history(cfg, env, limit, json_out)))


# =============================================================================== report


@app.command()
def report(
    env: Annotated[str, typer.Argument(metavar="ENV", help="Environment.")],
    release: Annotated[
        str | None,
        typer.Option(
            "--release",
            metavar="RUN_ID|VERSION",
            help="Which release: a run id or a version (default: the latest run).",
        ),
    ] = None,
    drill: Annotated[
        bool, typer.Option("--drill", help="Report the latest DR drill of ENV instead.")
    ] = False,
    html_file: Annotated[
        Path | None,
        typer.Option(
            "--html", metavar="FILE", help="Where to write the page (default report-...html)."
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Write a self-contained HTML report (inline SVG plots, no network needed to open it) of a
    release: canary vs stable error rate and latency per reading, the traffic steps, the gate
    limits, decisions and approvals on the timeline, the outcome and why; or of a DR drill,
    restore or point-in-time recovery (durations vs RTO, data-loss window vs RPO)."""
    cfg = load(config)
    check_env(cfg, env)

    async def _go() -> int:
        from stagecoach.cli_report import write_report

        client = await async_client(cfg)
        wid = release_workflow_id(cfg.app, env)
        try:
            path, what = await write_report(
                client, cfg, env, release, drill, html_file, web_link(wid)
            )
        except ValueError as e:
            fail(str(e))
        out.print(f"{what}: report written to {path}", markup=False, soft_wrap=True)
        return EXIT_OK

    raise typer.Exit(run(_go()))


# =============================================================================== local stack


@local_app.command("up")
def local_up(config: ConfigOpt = None) -> None:
    """Start the Temporal dev server (7233, Web UI 8233), gcpsim and a worker in the background."""
    cfg = load(config)
    assert _config_file is not None
    stack = LocalStack(
        cfg, _config_file, settings(), say=lambda m: out.print(m, markup=False, soft_wrap=True)
    )
    try:
        stack.up()
    except StackError as e:
        fail(str(e), EXIT_UNREACHABLE)
    env = "prod" if "prod" in cfg.environments else next(iter(cfg.environments))
    out.print(
        f"Up. Web UI: {ui_url(settings())}. Try: {STARTER} deploy {env} v1.2.0",
        markup=False,
        soft_wrap=True,
    )


@local_app.command("down")
def local_down() -> None:
    """Stop what `local up` started (SIGTERM, then SIGKILL)."""
    stop_all(say=lambda m: out.print(m, markup=False, soft_wrap=True))


@local_app.command("status")
def local_status(json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show each component of the embedded stack: pid, port, health. Exit 3 if one is down."""
    cfg = load(config)
    assert _config_file is not None
    rows = LocalStack(cfg, _config_file, settings()).status()
    if json_out:
        print_json(render.to_json([r.__dict__ for r in rows]))
    else:
        out.print(render.stack_table(rows))
    raise typer.Exit(EXIT_OK if all(r.healthy for r in rows) else EXIT_UNREACHABLE)


# =============================================================================== sim


@app.command(
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
    add_help_option=False,
)
def sim(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Pass ARGS through to gcpsim's CLI (`python -m gcpsim ARGS`) on the config's ports."""
    cfg = load(config)
    env = {
        **os.environ,
        "GCPSIM_PORT": str(cfg.gcpsim.port),
        "GCPSIM_GRPC_PORT": str(cfg.gcpsim.grpc_port),
        "GCPSIM_STATE_DIR": os.environ.get("GCPSIM_STATE_DIR") or str(home() / "gcpsim"),
    }
    try:
        code = subprocess.call([sys.executable, "-m", "gcpsim", *ctx.args], env=env)
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)


# =============================================================================== DR commands


def _register_dr_commands() -> None:
    """backup, backups, restore, dr-drill, schedule: from stagecoach/cli_dr.py when present."""
    import importlib

    try:
        cli_dr = importlib.import_module("stagecoach.cli_dr")
    except ModuleNotFoundError as e:
        if e.name != "stagecoach.cli_dr":
            raise
        return
    cli_dr.register(app)
    from stagecoach import cli_failover  # failover, failback (DR Scenario 3)

    cli_failover.register(app)


_register_dr_commands()

__all__ = [
    "EXIT_FAILED",
    "EXIT_INPUT",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "app",
    "async_client",
    "check_env",
    "describe",
    "ensure_stack",
    "fail",
    "is_running",
    "load",
    "note",
    "run",
    "settings",
    "web_link",
    "who",
]
