"""The command line's foundation: the typer app, exit codes, errors, the Temporal client and the
handling of an id that is already running. Every command module (release, rollback, history,
report, dr, schedule, failover, doctor, keys, local) imports from here; nothing here imports them.

Exit codes, one set for every command (README "Exit codes"):
  0 promoted / ok, 1 rolled back, aborted or failed, 2 bad input or conflict (including approve,
  abort, promote when nothing waits for it), 3 Temporal or GCP (gcpsim) unreachable.
Every failure a user can cause prints one line that names the fix; never a traceback
(STAGECOACH_DEBUG=1 shows it for unexpected errors).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
import sys
import traceback
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import SearchAttributeKey, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from stagecoach import contract
from stagecoach.cli import render
from stagecoach.cli.render import STARTER
from stagecoach.config import Config, ConfigError, parse_duration
from stagecoach.config_file import config_path, load_config
from stagecoach.localstack import LOCAL_HOSTS, LocalStack, StackError, ui_url
from stagecoach.temporal import TemporalSettings, connect

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_UNREACHABLE = 3

POLL_SECONDS = 1.0
FOLLOW_OUTAGE_SECONDS = 300.0  # how long following outlasts a Temporal outage before exit 3
RETRYABLE_RPC = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)

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
DetachOpt = Annotated[
    bool, typer.Option("--detach", help="Start and return; the workflow goes on without you.")
]

T = TypeVar("T")

# The config file the last `load` read (the local stack seeds gcpsim and starts the worker with it).
_config_file: Path | None = None


# =============================================================================== errors


def fail(msg: str, code: int = EXIT_INPUT) -> NoReturn:
    """Print one line to stderr and exit with `code`."""
    err.print("error: " + " ".join(msg.split()), markup=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(text: str) -> None:
    """JSON to stdout as is (no wrapping, no colour), for scripts."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def say(text: str) -> None:
    """One line on stdout as written (no markup)."""
    out.print(text, markup=False, highlight=False)


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


def loaded_config_file() -> Path:
    """The config file the last `load` read (or the default one)."""
    return _config_file or config_path(None)


def check_env(cfg: Config, env: str) -> None:
    try:
        cfg.env(env)
    except ConfigError as e:
        fail(str(e), EXIT_INPUT)


def settings() -> TemporalSettings:
    """The Temporal client settings (`TemporalSettings.from_env`: Temporal's own environment
    variables and config-file profiles); a config file that cannot be used exits 2."""
    try:
        return TemporalSettings.from_env()
    except ValueError as e:
        fail(f"{e}; fix the file TEMPORAL_CONFIG_FILE names or TEMPORAL_PROFILE", EXIT_INPUT)


def ensure_stack(cfg: Config) -> None:
    """With `target: gcpsim` and a local Temporal address, start what of the embedded stack does
    not answer (Temporal -> the whole stack; only gcpsim -> gcpsim). Failing: exit 3."""
    s = settings()
    if cfg.target != "gcpsim" or not s.is_local:
        return
    stack = LocalStack(cfg, loaded_config_file(), s, say=note)
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


def watch(coro: Awaitable[int]) -> NoReturn:
    """Run a command that starts or follows a workflow and exit with its code; Ctrl-C stops
    watching (the workflow goes on)."""

    def stopped() -> NoReturn:
        note("\nStopped watching; the workflow goes on (see the Temporal Web UI).")
        raise typer.Exit(EXIT_OK)

    raise typer.Exit(run(coro, on_interrupt=stopped))


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
            f" register {', '.join(contract.SEARCH_ATTRIBUTES)} as Keyword with "
            "`temporal operator search-attribute create "
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


def duration_opt(flag: str, value: str | None, *, positive: bool = False) -> timedelta | None:
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


def services_opt(cfg: Config, value: str | None) -> list[str] | None:
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


def sa(desc: WorkflowExecutionDescription, key: SearchAttributeKey[str]) -> str:
    value = desc.typed_search_attributes.get(key)
    return str(value) if value else ""


def nothing_running(
    cfg: Config, env: str, desc: WorkflowExecutionDescription | None, what: str
) -> NoReturn:
    if desc is None:
        fail(
            f"no release of {cfg.app} to {env} has ever run; nothing to {what} "
            f"(start one with `{STARTER} deploy {env} VERSION`)"
        )
    version = sa(desc, contract.VERSION) or "the last release"
    ended = desc.status.name.lower() if desc.status else "closed"
    if desc.status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
        ended = sa(desc, contract.OUTCOME) or ended
    fail(
        f"no release to {env} is running ({version} ended {ended}); nothing to {what} "
        f"(see `{STARTER} status {env}`)"
    )


# =============================================================================== starting


async def started_input(
    client: Client, workflow_id: str, run_id: str, input_type: type[T]
) -> T | None:
    """The input a run was started with (its first history event), or None when it is not an
    `input_type` (a recovery's input that continued as new into a release, ...)."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    async for event in handle.fetch_history_events():
        attrs = event.workflow_execution_started_event_attributes
        if not attrs.input.payloads:
            return None
        try:
            [inp] = await client.data_converter.decode(attrs.input.payloads, [input_type])
        except Exception:
            return None
        return inp if isinstance(inp, input_type) else None
    return None


def detached(env: str, what: str = "release") -> NoReturn:
    note(
        f"\nDetached: the {what} goes on in Temporal. Follow it with "
        f"`{STARTER} status {env} --wait`; stop it with `{STARTER} abort {env}`."
    )
    raise typer.Exit(EXIT_OK)


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


async def warn_if_no_worker(client: Client, what: str = "workflow") -> None:
    tq = settings().task_queue
    for _ in range(6):  # a worker that has just started may not have polled yet
        if await worker_pollers(client, tq) != 0:
            return
        await asyncio.sleep(0.5)
    if await worker_pollers(client, tq) == 0:
        note(
            f"warning: no worker is polling task queue {tq!r}; the {what} waits until one does "
            f"(`python worker.py` or `{STARTER} local up`)"
        )


# What runs under an id, in words; the environment's id (`contract.environment_workflow_id`) is
# held by a release, a restore, a point-in-time recovery, a failover or a failback.
_HOLDING = {
    contract.WorkflowType.RESTORE: "a restore of {env}'s database",
    contract.WorkflowType.POINT_IN_TIME_RECOVERY: "a point-in-time recovery of {env}'s database",
    contract.WorkflowType.FAILOVER: "a regional failover or failback of {env}",
}
_RUNNING = {
    contract.WorkflowType.RELEASE: "a release is running in {env}",
    contract.WorkflowType.RESTORE: "a restore is running in {env}",
    contract.WorkflowType.POINT_IN_TIME_RECOVERY: "a point-in-time recovery is running in {env}",
    contract.WorkflowType.FAILOVER: "a regional failover or failback of {env} is running",
}


async def conflict(client: Client, env: str, wid: str, what: str) -> NoReturn:
    """Exit 2: `what` ("release v1.2.0", "restore backup 17 into ...") cannot start because `wid`
    is running; name what runs there and how to see or stop it."""
    desc = await describe(client, wid)
    kind = desc.workflow_type if desc is not None else ""
    see = f"see it with `{STARTER} status {env}` or stop it with `{STARTER} abort {env}`"
    if what.startswith("release "):  # a deploy
        if desc is not None and kind in _HOLDING:
            fail(
                f"{_HOLDING[kind].format(env=env)} is running ({wid}); releases and restores of "
                f"one environment never overlap: see `{STARTER} status {env}`, wait for it or "
                f"stop it with `{STARTER} abort {env}`, then deploy again"
            )
        version = sa(desc, contract.VERSION) if desc else ""
        phase = sa(desc, contract.PHASE) if desc else ""
        fail(
            f"release {version + ' ' if version else ''}to {env} is already running ({wid}"
            + (f", phase {phase}" if phase else "")
            + f"); {see}, then deploy again"
        )
    if kind in _RUNNING:
        running = _RUNNING[kind].format(env=env)
        hint = (
            see
            if kind != contract.WorkflowType.FAILOVER
            else (
                f"see `{STARTER} status {env}`; wait for it or stop it (before its DNS move) with "
                f"`{STARTER} abort {env}`"
            )
        )
    else:
        name = {
            contract.WorkflowType.ROLLBACK: "rollback",
            contract.WorkflowType.DR_DRILL: "DR drill",
            contract.WorkflowType.BACKUP: "backup",
        }.get(kind, kind or "workflow")
        running = f"a {name} is already running in {env}"
        hint = (
            f"wait for it (Web UI: {web_link(wid)}) or cancel it with "
            f"`temporal workflow cancel -w {wid}`"
        )
    fail(f"refused: {running} (workflow {wid}), so {what} cannot start; {hint}")


async def start(
    client: Client,
    workflow: str,
    arg: Any,
    workflow_id: str,
    env: str,
    what: str,
    result_type: type[T],
    **options: Any,
) -> WorkflowHandle[Any, T]:
    """Start `workflow` under `workflow_id` on the task queue (warning when no worker polls it);
    an id that is already running: `conflict` (exit 2). `options`: summary, search attributes..."""
    await warn_if_no_worker(client, what.split(" ", 1)[0] if what else "workflow")
    try:
        return await client.start_workflow(
            workflow,
            arg,
            id=workflow_id,
            task_queue=settings().task_queue,
            result_type=result_type,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            **options,
        )
    except WorkflowAlreadyStartedError:
        await conflict(client, env, workflow_id, what)


def detach_exit(handle: WorkflowHandle[Any, Any], as_json: bool) -> int:
    """A run left going: with --json its workflow and run ids on stdout; exit 0."""
    if as_json:
        print_json(json.dumps({"workflow_id": handle.id, "run_id": handle.result_run_id}))
    return EXIT_OK
