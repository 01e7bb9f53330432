"""Backup, restore and DR-drill commands of `starter.py` (`register(app)` adds them).

    starter.py backup ENV [--json]
    starter.py backups ENV [--limit N] [--json]
    starter.py restore ENV --backup-id ID [--yes] [--detach] [--json]
    starter.py restore ENV --point-in-time RFC3339 [--switch --yes [--bake D] [--interval D]]
                       [--detach] [--json]
    starter.py dr-drill ENV [--detach] [--json]
    starter.py schedule dr-drill ENV --cron EXPR
    starter.py schedule list [--json]
    starter.py schedule delete ID
    starter.py schedule trigger ID [--wait] [--json]

Exit codes: 0 ok, 1 failed (or aborted/cancelled), 2 bad input or conflict (nothing started),
3 Temporal or GCP unreachable.

Workflow ids: `backup-<app>-<env>`; restores (both kinds) use the release's `deploy-<app>-<env>`,
so a release and a restore of one environment exclude each other atomically (the server refuses
the second start) and `starter.py approve|abort ENV` reach a restore as they reach a release;
drills `dr-drill-<app>-<env>` (the schedule's runs: that id plus the scheduled time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from stagecoach.config import Config, ConfigError
from stagecoach.dr_models import (
    BackupInput,
    BackupResult,
    DrillInput,
    DrillReport,
    DrOutcome,
    PointInTimeInput,
    PointInTimeResult,
    RestoreInput,
    RestoreStatus,
    Verification,
)
from stagecoach.models import BackupInfo, InstanceRef, ListBackupsInput, ReleaseInput, ServiceRef
from stagecoach.plan import build_switch_release, instance_ref, release_workflow_id, service_ref
from stagecoach.temporal import workflow_result

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
# sqladmin v1 discovery, instances.clone: "might cause your instance to restart".
CLONE_RESTART_NOTE = (
    "a drill clones the instance, and Cloud SQL warns that instances.clone may restart the "
    "source instance: schedule drills in a quiet window (the default is Sunday 03:00 UTC)"
)

# Cloud SQL keeps transaction logs (point-in-time recovery) for 7 days (the brief's setting).
# The brief's monthly drill on the first Sunday at 03:00 UTC. Temporal ANDs day-of-month and
# day-of-week (unlike Vixie cron, which ORs them when both are restricted): "days 1-7 that are
# a Sunday" is exactly the first Sunday (tests/e2e/test_dr.py checks the next run times).
FIRST_SUNDAY_CRON = "0 3 1-7 * SUN"
POLL_SECONDS = 1.0
STARTER = "python starter.py"

console = Console(highlight=False)
T = TypeVar("T")

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


def backup_workflow_id(app: str, env: str) -> str:
    return f"backup-{app}-{env}"


def drill_workflow_id(app: str, env: str) -> str:
    return f"dr-drill-{app}-{env}"


def drill_schedule_id(app: str, env: str) -> str:
    return f"dr-drill-{app}-{env}"


# ----------------------------------------------------------------------------- plumbing
# The CLI's own helpers (stagecoach.cli): one config loader, one client factory (which brings
# the embedded stack up when needed), one way to fail. Imported late: stagecoach.cli imports
# this module while it is being loaded.


def _cli() -> Any:
    from stagecoach import cli

    return cli


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """One line on stderr (`error: ...`), exit `code`."""
    _cli().fail(message, code)
    raise AssertionError("unreachable")  # pragma: no cover


def load(config: str | None) -> Config:
    cfg: Config = _cli().load(config)
    return cfg


async def async_client(cfg: Config | None = None) -> Any:
    return await _cli().async_client(cfg)


def _settings() -> Any:
    return _cli().settings()


def _user() -> str:
    who: str = _cli().who()
    return who


def run(coro_fn: Callable[[], Awaitable[int]]) -> NoReturn:
    """Run an async command body and exit with its code (errors mapped by stagecoach.cli)."""

    def detached() -> NoReturn:
        _cli().note("\nStopped watching; the workflow goes on (see the Temporal Web UI).")
        raise typer.Exit(EXIT_OK)

    raise typer.Exit(_cli().run(coro_fn(), on_interrupt=detached))


def _print_json(text: str) -> None:
    _cli().print_json(text)


def _dump(model: BaseModel | list[Any] | dict[str, Any]) -> str:
    if isinstance(model, BaseModel):
        return model.model_dump_json(indent=2)
    return json.dumps(model, indent=2, default=str)


def _t(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "-"


def _secs(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 3600:
        return f"{x / 3600:.1f} h"
    if x >= 120:
        return f"{x / 60:.1f} min"
    return f"{x:.1f} s"


def _verification(cfg: Config) -> Verification:
    v = cfg.database.validation
    if not v.tables:
        fail(
            "database.validation.tables is empty in the config; list the tables to count",
            EXIT_BAD_INPUT,
        )
    return Verification(
        database=cfg.database.name, tables=list(v.tables), timestamp_column=v.timestamp_column
    )


def _instance(cfg: Config, env: str) -> InstanceRef:
    try:
        return instance_ref(cfg, env)
    except ConfigError as err:
        fail(str(err), EXIT_BAD_INPUT)


def _db_services(cfg: Config, env: str) -> list[ServiceRef]:
    return [service_ref(cfg, env, s.name) for s in cfg.ordered_services() if s.uses_database]


async def _conflict(client: Any, workflow_id: str, env: str, what: str) -> NoReturn:
    """Exit 2 naming what already runs under `workflow_id`."""
    kind = "workflow"
    with contextlib.suppress(Exception):
        desc = await client.get_workflow_handle(workflow_id).describe()
        kind = desc.workflow_type
    if kind == "Release":
        running = f"a release is running in {env}"
        hint = f"see `{STARTER} status {env}` or stop it with `{STARTER} abort {env}`"
    elif kind in ("Restore", "PointInTimeRecovery"):
        running = (
            f"a {'restore' if kind == 'Restore' else 'point-in-time recovery'} is running in {env}"
        )
        hint = f"wait for it or stop it with `{STARTER} abort {env}`"
    elif kind == "Failover":
        running = f"a regional failover or failback of {env} is running"
        hint = (
            f"see `{STARTER} status {env}`; wait for it or stop it (before its DNS move) with "
            f"`{STARTER} abort {env}`"
        )
    else:
        running = f"a {kind} is already running"
        hint = f"wait for it or cancel it with `temporal workflow cancel -w {workflow_id}`"
    fail(f"refused: {running} (workflow {workflow_id}), so {what} cannot start; {hint}", 2)


async def _start(
    client: Any,
    workflow: str,
    arg: BaseModel,
    workflow_id: str,
    env: str,
    what: str,
    result_type: type | None = None,
) -> Any:
    from temporalio.exceptions import WorkflowAlreadyStartedError

    settings = _settings()
    if await _cli().worker_pollers(client, settings.task_queue) == 0:
        _cli().note(
            f"warning: no worker is polling task queue {settings.task_queue!r}; the workflow "
            f"waits until one does (`python worker.py` or `{STARTER} local up`)"
        )
    try:
        return await client.start_workflow(
            workflow,
            arg,
            id=workflow_id,
            task_queue=settings.task_queue,
            result_type=result_type,
            static_summary=what,
        )
    except WorkflowAlreadyStartedError:
        await _conflict(client, workflow_id, env, what)


async def _follow(handle: Any, result_type: type[T], *, follow_runs: bool = True) -> T:
    """Print new events while the workflow runs; return its result or, when it ended
    cancelled or failed, its last status (query). With `follow_runs=False` a run that continued
    as new raises `WorkflowContinuedAsNewError`."""
    from temporalio.client import WorkflowContinuedAsNewError, WorkflowFailureError

    seen = 0
    result_task = asyncio.ensure_future(
        workflow_result(handle, result_type, follow_runs=follow_runs)
    )
    try:
        while not result_task.done():
            try:
                st = await handle.query("status", result_type=result_type)
            except Exception:
                st = None
            if st is not None:
                events = list(getattr(st, "events", []))
                for line in events[seen:]:
                    console.print(f"  {line}", markup=False, highlight=False)
                seen = max(seen, len(events))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(result_task), POLL_SECONDS)
        result: T = result_task.result()
    except WorkflowContinuedAsNewError:
        with contextlib.suppress(Exception):  # the run's last events (a closed run is queryable)
            last = await handle.query("status", result_type=result_type)
            for line in list(getattr(last, "events", []))[seen:]:
                console.print(f"  {line}", markup=False, highlight=False)
        raise
    except WorkflowFailureError as err:
        try:
            result = await handle.query("status", result_type=result_type)
        except Exception:
            fail(f"workflow {handle.id} ended: {err.cause or err}", EXIT_FAILED)
    events = list(getattr(result, "events", []))
    for line in events[seen:]:
        console.print(f"  {line}", markup=False, highlight=False)
    return result


# ----------------------------------------------------------------------------- views


def backups_table(backups: list[BackupInfo], title: str) -> Table:
    table = Table(title=title)
    for col in ("id", "type", "status", "time", "description"):
        table.add_column(col)
    for b in backups:
        table.add_row(b.id, b.type, b.status, _t(b.enqueued_time or b.end_time), b.description)
    return table


def restore_summary(st: RestoreStatus) -> list[str]:
    lines = [
        f"restore of backup {st.backup_id} into {st.instance} ({st.env}): {st.outcome.value}",
    ]
    if st.error or st.abort_reason:
        lines.append(f"  reason: {st.error or st.abort_reason}")
    lines.append(
        f"  restore time {_secs(st.restore_seconds)}, services drained for "
        f"{_secs(st.downtime_seconds)}"
    )
    if st.validation:
        counts = ", ".join(
            f"{t.table}={t.rows} (newest {_t(t.newest)})" for t in st.validation.tables
        )
        lines.append(f"  validation: {'ok' if st.validation.ok else 'PROBLEMS'}: {counts}")
    lines.append("  left in:")
    lines += [f"    - {s}" for s in st.left_in]
    return lines


def pitr_summary(st: PointInTimeResult) -> list[str]:
    lines = [
        f"point-in-time recovery of {st.source_instance} at {_t(st.point_in_time)} into "
        f"{st.recovery_instance}: {st.outcome.value}"
    ]
    if st.error or st.abort_reason:
        lines.append(f"  reason: {st.error or st.abort_reason}")
    lines.append(f"  clone time {_secs(st.clone_seconds)}, newest row {_t(st.newest)}")
    if st.validation:
        counts = ", ".join(f"{t.table}={t.rows}" for t in st.validation.tables)
        lines.append(f"  validation: {'ok' if st.validation.ok else 'PROBLEMS'}: {counts}")
    lines.append("  left in:")
    lines += [f"    - {s}" for s in st.left_in]
    return lines


async def show_recovery_status(
    client: Any, workflow_id: str, desc: Any, as_json: bool, wait: bool
) -> int:
    """`starter.py status ENV` while (or after) a restore holds the environment's workflow id."""
    from temporalio.client import WorkflowExecutionStatus

    result_type: type[RestoreStatus] | type[PointInTimeResult] = (
        RestoreStatus if desc.workflow_type == "Restore" else PointInTimeResult
    )
    handle = client.get_workflow_handle(workflow_id, result_type=result_type)
    if wait or desc.status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
        st = await workflow_result(handle, result_type)
    else:
        st = await handle.query("status", result_type=result_type)
    if as_json:
        _print_json(_dump(st))
    else:
        lines = restore_summary(st) if isinstance(st, RestoreStatus) else pitr_summary(st)
        _print_lines(list(lines))
    return 0 if st.outcome.value in ("succeeded", "running") else 1


def drill_view(r: DrillReport) -> list[Any]:
    """The drill report as printed (a table and summary lines)."""
    b = r.backup
    head = (
        f"DR drill {r.env}: {r.outcome.value} -- backup {b.id if b else '-'} "
        f"({b.type if b else '-'}, {_t(b.enqueued_time) if b else '-'}) of {r.source_instance} "
        f"restored into {r.scratch_instance}"
    )
    table = Table(title=None)
    for col in ("table", "source rows", "scratch rows", "source newest", "scratch newest"):
        table.add_column(col)
    for t in r.tables:
        table.add_row(
            t.table,
            "-" if t.source_rows is None else str(t.source_rows),
            "-" if t.scratch_rows is None else str(t.scratch_rows),
            _t(t.source_newest),
            _t(t.scratch_newest),
        )

    def verdict(met: bool | None) -> str:
        return "not measured" if met is None else ("met" if met else "MISSED")

    lines = [
        f"restore time      {_secs(r.restore_seconds)}  vs RTO {_secs(r.rto_seconds)}: "
        f"{verdict(r.rto_met)}",
        f"data-loss window  {_secs(r.data_loss_seconds)}  vs RPO {_secs(r.rpo_seconds)}: "
        f"{verdict(r.rpo_met)}  (source newest {_t(r.source_newest)} - scratch newest "
        f"{_t(r.scratch_newest)})",
        f"verification      {'passed' if r.verified else 'FAILED'}",
        f"scratch instance  {'deleted' if r.scratch_deleted else 'NOT DELETED: delete it by hand'}",
    ]
    if r.error or r.abort_reason:
        lines.append(f"reason            {r.error or r.abort_reason}")
    return [head, table, *lines]


def _print_lines(lines: list[Any]) -> None:
    for line in lines:
        if isinstance(line, str):
            console.print(line, markup=False, highlight=False)
        else:
            console.print(line)


# ----------------------------------------------------------------------------- commands


def register(app: typer.Typer) -> None:
    """Add the backup, restore, DR-drill, schedule and doctor commands to `app`."""
    from stagecoach import cli_doctor

    cli_doctor.register(app)

    @app.command("backup")
    def backup_cmd(env: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
        """On-demand backup of ENV's instance, waited for until SUCCESSFUL; prints its id."""
        run(lambda: _backup(env, config, as_json))

    @app.command("backups")
    def backups_cmd(
        env: str,
        config: ConfigOpt = None,
        limit: Annotated[int, typer.Option(help="newest N backups")] = 50,
        as_json: JsonOpt = False,
    ) -> None:
        """List ENV's backups: id, type, status, time, description (newest first)."""
        run(lambda: _backups(env, config, limit, as_json))

    @app.command("restore")
    def restore_cmd(
        env: str,
        backup_id: Annotated[
            str | None, typer.Option("--backup-id", help="restore this backup (Scenario 1)")
        ] = None,
        point_in_time: Annotated[
            str | None,
            typer.Option(
                "--point-in-time",
                help="clone the instance as of this RFC 3339 time (Scenario 2), "
                "e.g. 2025-05-02T09:59:00Z",
            ),
        ] = None,
        switch: Annotated[
            bool, typer.Option("--switch", help="point the services at the recovery instance")
        ] = False,
        yes: Annotated[
            bool, typer.Option("--yes", help="confirm a destructive restore (required)")
        ] = False,
        bake: Annotated[
            str | None,
            typer.Option(help="with --switch: override every step's bake window, e.g. 30s"),
        ] = None,
        interval: Annotated[
            str | None, typer.Option(help="with --switch: override the metric poll interval")
        ] = None,
        config: ConfigOpt = None,
        detach: DetachOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Restore ENV's database from a backup in place, or recover it as of a point in time.

        --backup-id: drains the services that use the database, restores, validates, resumes
        them at their recorded scaling (needs --yes; waits for approval where the environment
        asks). --point-in-time: clones the instance as of that time into
        <instance>-recovery-<YYYYMMDDHHMM> and validates it; the source is untouched. With
        --switch (needs --yes) the services that use the database are then pointed at the
        recovery instance through new revisions rolled out like a release."""
        rollout = _SwitchRollout(bake, interval)
        run(
            lambda: _restore(
                env, backup_id, point_in_time, switch, yes, config, detach, as_json, rollout
            )
        )

    @app.command("dr-drill")
    def drill_cmd(
        env: str,
        config: ConfigOpt = None,
        detach: DetachOpt = False,
        as_json: JsonOpt = False,
        scenario: Annotated[
            str, typer.Option("--scenario", help="backup (a restore) or regional (a failover)")
        ] = "backup",
        to_region: Annotated[
            str | None, typer.Option("--to-region", help="regional: where (default us-east1)")
        ] = None,
        version: Annotated[
            str | None, typer.Option("--version", help="regional: images (default: last release)")
        ] = None,
    ) -> None:
        """Rehearse a restore: newest backup into a scratch instance, verified, then deleted.

        Reports row counts and newest created_at on the source and the scratch, the data-loss
        window against the RPO and the restore time against the RTO. Exit 0 when verified and
        the scratch instance is deleted. Cloud SQL warns that cloning may restart the source
        instance: run drills in a quiet window. --scenario regional rehearses a regional failover
        (everything but the DNS move) into scratch resources in --to-region, always deleted."""
        if scenario == "regional":
            from stagecoach.cli_failover import regional_drill

            run(lambda: regional_drill(env, to_region, version, config, detach, as_json))
        if scenario != "backup":
            fail(f"--scenario {scenario!r}: choose backup or regional", EXIT_BAD_INPUT)
        run(lambda: _drill(env, config, detach, as_json))

    schedule = typer.Typer(help="Temporal Schedules of DR drills", no_args_is_help=True)

    @schedule.command("dr-drill")
    def schedule_drill_cmd(
        env: str,
        cron: Annotated[
            str,
            typer.Option(
                "--cron",
                help=f"5-field cron, UTC; day-of-month AND day-of-week both apply, so "
                f"'{FIRST_SUNDAY_CRON}' is the first Sunday of each month at 03:00",
            ),
        ],
        config: ConfigOpt = None,
    ) -> None:
        """Schedule a recurring DR drill of ENV (a Temporal Schedule `dr-drill-<app>-<env>`)."""
        run(lambda: _schedule_drill(env, cron, config))

    @schedule.command("list")
    def schedule_list_cmd(as_json: JsonOpt = False) -> None:
        """List the Temporal Schedules."""
        run(lambda: _schedule_list(as_json))

    @schedule.command("delete")
    def schedule_delete_cmd(schedule_id: str) -> None:
        """Delete a schedule (runs already started go on)."""
        run(lambda: _schedule_delete(schedule_id))

    @schedule.command("trigger")
    def schedule_trigger_cmd(
        schedule_id: str,
        wait: Annotated[bool, typer.Option("--wait", help="wait for the run and print it")] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Run a schedule's action once, now."""
        run(lambda: _schedule_trigger(schedule_id, wait, as_json))

    app.add_typer(schedule, name="schedule")


# ----------------------------------------------------------------------------- backup


async def _backup(env: str, config: str | None, as_json: bool) -> int:
    from temporalio.client import WorkflowFailureError

    cfg = load(config)
    ref = _instance(cfg, env)
    client = await async_client(cfg)
    wf_id = backup_workflow_id(cfg.app, env)
    handle = await _start(
        client,
        "Backup",
        BackupInput(app=cfg.app, env=env, instance=ref, requested_by=_user()),
        wf_id,
        env,
        f"backup {ref.instance}",
        BackupResult,
    )
    if not as_json:
        console.print(f"backing up {ref.instance} ({env}), workflow {wf_id} ...")
    try:
        res: BackupResult = await handle.result()
    except WorkflowFailureError as err:
        cause = err.cause
        msg = str(getattr(cause, "cause", None) or cause or err)
        fail(f"backup of {ref.instance} failed: {msg}", EXIT_FAILED)
    if as_json:
        _print_json(_dump(res))
    else:
        b = res.backup
        console.print(
            f"backup {b.id} of {res.instance}: {b.status} ({b.description}) "
            f"in {_secs(res.seconds)}",
            markup=False,
            highlight=False,
        )
    return EXIT_OK


async def _backups(env: str, config: str | None, limit: int, as_json: bool) -> int:
    """Read-only listing, straight from the Cloud SQL Admin API through the same code (and
    client factory) as the ListBackups activity: no workflow needed to read a list."""
    from temporalio.exceptions import ApplicationError

    from activities.cloud_sql import CloudSqlActivities

    cfg = load(config)
    ref = _instance(cfg, env)
    if limit < 1:
        fail("--limit must be at least 1", EXIT_BAD_INPUT)
    _cli().ensure_stack(cfg)  # gcpsim: start it when it does not answer
    try:
        backups = await asyncio.to_thread(
            CloudSqlActivities().list_backups, ListBackupsInput(ref=ref, limit=limit)
        )
    except ApplicationError as err:
        transient = not err.non_retryable
        where = f"{cfg.target} ({ref.target.host}:{ref.target.port})"
        code = EXIT_UNREACHABLE if transient else EXIT_FAILED
        fail(f"cannot list backups of {ref.instance} on {where}: {err}", code)
    if as_json:
        _print_json(json.dumps([b.model_dump(mode="json") for b in backups]))
    else:
        console.print(backups_table(backups, f"backups of {ref.instance} ({env})"))
    return EXIT_OK


# ----------------------------------------------------------------------------- restore

BACKUP_ID_RE = re.compile(r"[0-9]{1,20}")  # Cloud SQL backupRuns ids are int64


async def _check_backup_exists(cfg: Config, env: str, ref: InstanceRef, backup_id: str) -> None:
    """Before anything starts: the backup must be one of the instance's (the workflow checks
    again, and that it is SUCCESSFUL, before it drains anything)."""
    from temporalio.exceptions import ApplicationError

    from activities.cloud_sql import CloudSqlActivities

    _cli().ensure_stack(cfg)
    try:
        backups = await asyncio.to_thread(
            CloudSqlActivities().list_backups, ListBackupsInput(ref=ref, limit=500)
        )
    except ApplicationError as err:
        code = EXIT_FAILED if err.non_retryable else EXIT_UNREACHABLE
        fail(f"cannot list the backups of {ref.instance} to check --backup-id: {err}", code)
    if not any(b.id == backup_id for b in backups):
        fail(
            f"backup {backup_id} is not one of {ref.instance}'s backups; list them with "
            f"`python starter.py backups {env}`. Nothing was started.",
            EXIT_BAD_INPUT,
        )


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 timestamp with an offset (`Z` or `+hh:mm`) -> aware UTC datetime."""
    try:
        dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        fail(
            f"--point-in-time {value!r} is not an RFC 3339 time; write e.g. 2025-05-02T09:59:00Z",
            EXIT_BAD_INPUT,
        )
    if dt.tzinfo is None:
        fail(f"--point-in-time {value!r} has no offset; add Z (UTC) or +hh:mm", EXIT_BAD_INPUT)
    return dt.astimezone(UTC)


@dataclass(frozen=True)
class _SwitchRollout:
    """`restore --switch`'s release overrides, as given on the command line."""

    bake: str | None = None
    interval: str | None = None


async def _restore(
    env: str,
    backup_id: str | None,
    point_in_time: str | None,
    switch: bool,
    yes: bool,
    config: str | None,
    detach: bool,
    as_json: bool,
    rollout: _SwitchRollout | None = None,
) -> int:
    cfg = load(config)
    _cli().check_env(cfg, env)
    e = cfg.env(env)
    rollout = rollout or _SwitchRollout()
    if (backup_id is None) == (point_in_time is None):
        fail("give exactly one of --backup-id ID or --point-in-time RFC3339", EXIT_BAD_INPUT)
    if not switch and (rollout.bake or rollout.interval):
        fail("--bake and --interval go with --switch (they shape its rollout)", EXIT_BAD_INPUT)
    ref = _instance(cfg, env)
    verification = _verification(cfg)
    if point_in_time is not None:
        at = parse_rfc3339(point_in_time)
        switch_release = _switch_release(cfg, env, ref, at, yes, rollout) if switch else None
        return await _pitr(cfg, env, ref, verification, at, switch_release, detach, as_json)
    assert backup_id is not None
    if switch:
        fail("--switch goes with --point-in-time, not with --backup-id", EXIT_BAD_INPUT)
    if not backup_id.strip():
        fail("--backup-id is empty; list the backups with `{STARTER} backups ENV`", 2)
    if not BACKUP_ID_RE.fullmatch(backup_id.strip()):
        fail(
            f"--backup-id {backup_id[:40]!r} is not a Cloud SQL backup id (digits); list them "
            f"with `python starter.py backups {env}`",
            EXIT_BAD_INPUT,
        )
    if not yes:
        fail(
            f"refused: restoring backup {backup_id} overwrites {ref.instance} in {env} (every "
            "row written after the backup is lost) and drains its services meanwhile; rerun "
            "with --yes to confirm. Nothing was started.",
            EXIT_BAD_INPUT,
        )
    await _check_backup_exists(cfg, env, ref, backup_id.strip())
    approvers: list[str] = []
    if e.release.restore_requires_approval and e.release.approval:  # the config ensures both
        approvers = list(e.release.approval.approvers)
    inp = RestoreInput(
        app=cfg.app,
        env=env,
        instance=ref,
        backup_id=backup_id.strip(),
        services=_db_services(cfg, env),
        verification=verification,
        approvers=approvers,
        requested_by=_user(),
        notify=bool(cfg.notifications.webhook_url),
    )
    client = await async_client(cfg)
    wf_id = release_workflow_id(cfg.app, env)
    handle = await _start(
        client,
        "Restore",
        inp,
        wf_id,
        env,
        f"restore backup {inp.backup_id} into {ref.instance}",
        RestoreStatus,
    )
    if not as_json:
        names = ", ".join(s.service for s in inp.services) or "none"
        console.print(
            f"restoring backup {inp.backup_id} into {ref.instance} ({env}), workflow {wf_id}; "
            f"services drained meanwhile: {names}",
            markup=False,
            highlight=False,
        )
        if approvers:
            console.print(
                f"{env} requires approval before a restore: "
                f"python starter.py approve {env} --by NAME  (approvers: {', '.join(approvers)})",
                markup=False,
                highlight=False,
            )
    if detach:
        if as_json:
            _print_json(json.dumps({"workflow_id": wf_id, "run_id": handle.result_run_id}))
        return EXIT_OK
    st = (
        await _follow(handle, RestoreStatus) if not as_json else await _quiet(handle, RestoreStatus)
    )
    if as_json:
        _print_json(_dump(st))
    else:
        _print_lines(list(restore_summary(st)))
    return EXIT_OK if st.outcome == DrOutcome.SUCCEEDED else EXIT_FAILED


async def _quiet(handle: Any, result_type: type[T], *, follow_runs: bool = True) -> T:
    from temporalio.client import WorkflowFailureError

    try:
        result: T = await workflow_result(handle, result_type, follow_runs=follow_runs)
        return result
    except WorkflowFailureError as err:
        try:
            status: T = await handle.query("status", result_type=result_type)
            return status
        except Exception:
            fail(f"workflow {handle.id} ended: {err.cause or err}", EXIT_FAILED)


def _switch_release(
    cfg: Config,
    env: str,
    ref: InstanceRef,
    at: datetime,
    yes: bool,
    rollout: _SwitchRollout,
) -> ReleaseInput:
    """The release `--switch` hands over to; exits 2 on anything wrong with the request."""
    cli = _cli()
    try:
        release = build_switch_release(
            cfg,
            env,
            at,
            secrets.token_hex(3)[:5],
            bake=cli._duration("--bake", rollout.bake),
            interval=cli._duration("--interval", rollout.interval, positive=True),
            requested_by=_user(),
        )
    except ConfigError as err:
        fail(str(err), EXIT_BAD_INPUT)
    assert release.recovery is not None
    if not yes:
        names = ", ".join(p.ref.service for p in release.services)
        fail(
            f"refused: --switch moves {names} in {env} to {release.recovery.recovery_instance} "
            f"(what was written to {ref.instance} after {_t(at)} is not there); rerun with "
            "--yes to confirm. Nothing was started.",
            EXIT_BAD_INPUT,
        )
    return release


async def _recovery_window(cfg: Config, ref: InstanceRef, at: datetime) -> Any:
    """The instance's recoverable window, read before anything starts (the same code as the
    ReadRecoveryWindow activity, which the workflow runs again before it clones)."""
    from temporalio.exceptions import ApplicationError

    from activities.cloud_sql import CloudSqlActivities
    from stagecoach.models import RecoveryWindowInput

    _cli().ensure_stack(cfg)  # gcpsim: start it when it does not answer
    try:
        return await asyncio.to_thread(
            CloudSqlActivities().read_recovery_window,
            RecoveryWindowInput(ref=ref, point_in_time=at),
        )
    except ApplicationError as err:
        where = f"{cfg.target} ({ref.target.host}:{ref.target.port})"
        code = EXIT_FAILED if err.non_retryable else EXIT_UNREACHABLE
        fail(f"cannot read the recoverable window of {ref.instance} on {where}: {err}", code)


async def _pitr(
    cfg: Config,
    env: str,
    ref: InstanceRef,
    verification: Verification,
    at: datetime,
    switch_release: ReleaseInput | None,
    detach: bool,
    as_json: bool,
) -> int:
    now = datetime.now(UTC)
    if at > now:
        fail(f"--point-in-time {_t(at)} is in the future", EXIT_BAD_INPUT)
    window = await _recovery_window(cfg, ref, at)
    if window.problem:
        fail(f"--point-in-time: {window.problem}", EXIT_BAD_INPUT)
    inp = PointInTimeInput(
        app=cfg.app,
        env=env,
        instance=ref,
        point_in_time=at,
        verification=verification,
        switch_release=switch_release,
        requested_by=_user(),
        notify=bool(cfg.notifications.webhook_url),
    )
    client = await async_client(cfg)
    wf_id = release_workflow_id(cfg.app, env)
    handle = await _start(
        client,
        "PointInTimeRecovery",
        inp,
        wf_id,
        env,
        f"recover {ref.instance} at {_t(at)}"
        + (" and switch the services" if switch_release else ""),
        PointInTimeResult,
    )
    if not as_json:
        console.print(
            f"recovering {ref.instance} ({env}) as of {_t(at)}, workflow {wf_id}",
            markup=False,
            highlight=False,
        )
        if switch_release is not None:
            names = ", ".join(p.ref.service for p in switch_release.services)
            console.print(
                f"once verified, release {switch_release.version} points {names} at the "
                "recovery instance (same workflow id: status/approve/abort/promote work as for "
                "any release)",
                markup=False,
                highlight=False,
            )
    if detach:
        if as_json:
            _print_json(json.dumps({"workflow_id": wf_id, "run_id": handle.result_run_id}))
        return EXIT_OK
    follow = _quiet if as_json else _follow
    from temporalio.client import WorkflowContinuedAsNewError

    if switch_release is not None:  # this run only: it continues as new into the release
        handle = client.get_workflow_handle(wf_id, run_id=handle.result_run_id)
    try:
        st = await follow(handle, PointInTimeResult, follow_runs=switch_release is None)
    except WorkflowContinuedAsNewError:
        assert switch_release is not None
        if not as_json:
            console.print(
                f"recovery instance verified; release {switch_release.version} switches the "
                "services (Ctrl-C detaches; it goes on)",
                markup=False,
                highlight=False,
            )
        follower = _cli().Follower(client, cfg, env, as_json)
        _final, code = await follower.follow()
        return int(code)
    if as_json:
        _print_json(_dump(st))
    else:
        _print_lines(list(pitr_summary(st)))
    return EXIT_OK if st.outcome == DrOutcome.SUCCEEDED else EXIT_FAILED


# ----------------------------------------------------------------------------- drill


def drill_input(cfg: Config, env: str, requested_by: str = "") -> DrillInput:
    return DrillInput(
        app=cfg.app,
        env=env,
        instance=_instance(cfg, env),
        verification=_verification(cfg),
        requested_by=requested_by,
        notify=bool(cfg.notifications.webhook_url),
    )


async def _drill(env: str, config: str | None, detach: bool, as_json: bool) -> int:
    cfg = load(config)
    inp = drill_input(cfg, env, _user())
    client = await async_client(cfg)
    wf_id = drill_workflow_id(cfg.app, env)
    handle = await _start(
        client, "DrDrill", inp, wf_id, env, f"DR drill of {inp.instance.instance}", DrillReport
    )
    if not as_json:
        console.print(
            f"DR drill of {inp.instance.instance} ({env}), workflow {wf_id}",
            markup=False,
            highlight=False,
        )
    if detach:
        if as_json:
            _print_json(json.dumps({"workflow_id": wf_id, "run_id": handle.result_run_id}))
        return EXIT_OK
    follow = _quiet if as_json else _follow
    report = await follow(handle, DrillReport)
    return _drill_exit(report, as_json)


def _drill_exit(report: DrillReport, as_json: bool) -> int:
    if as_json:
        _print_json(_dump(report))
    else:
        _print_lines(drill_view(report))
    ok = report.outcome == DrOutcome.SUCCEEDED and report.scratch_deleted
    return EXIT_OK if ok else EXIT_FAILED


# ----------------------------------------------------------------------------- schedules


def check_cron(expr: str) -> str:
    """A 5-field cron expression (minute hour day-of-month month day-of-week), validated."""
    from croniter import croniter

    fields = expr.split()
    if len(fields) != 5 or not croniter.is_valid(expr):
        fail(
            f"--cron {expr!r} is not a 5-field cron expression (minute hour day-of-month month "
            f"day-of-week); the brief's monthly first-Sunday drill is '{FIRST_SUNDAY_CRON}'",
            EXIT_BAD_INPUT,
        )
    return " ".join(fields)


async def _schedule_drill(env: str, cron: str, config: str | None) -> int:
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
        ScheduleState,
    )

    cfg = load(config)
    expr = check_cron(cron)
    inp = drill_input(cfg, env, "schedule")
    client = await async_client(cfg)
    settings = _settings()
    sched_id = drill_schedule_id(cfg.app, env)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            "DrDrill",
            inp,
            id=drill_workflow_id(cfg.app, env),
            task_queue=settings.task_queue,
            static_summary=f"scheduled DR drill of {inp.instance.instance}",
        ),
        spec=ScheduleSpec(cron_expressions=[expr]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note=CLONE_RESTART_NOTE),
    )
    try:
        handle = await client.create_schedule(sched_id, schedule)
    except ScheduleAlreadyRunningError:
        fail(
            f"schedule {sched_id} already exists; delete it first with "
            f"`{STARTER} schedule delete {sched_id}`",
            EXIT_BAD_INPUT,
        )
    desc = await handle.describe()
    nxt = ", ".join(_t(t) for t in desc.info.next_action_times[:3]) or "none"
    console.print(
        f"schedule {sched_id}: DR drill of {inp.instance.instance} ({env}) on cron '{expr}' "
        f"(UTC); next: {nxt}",
        markup=False,
        highlight=False,
    )
    console.print(f"note: {CLONE_RESTART_NOTE}", markup=False, highlight=False)
    return EXIT_OK


_CRON_FIELDS = {
    "minute": (0, 59),
    "hour": (0, 23),
    "day_of_month": (1, 31),
    "month": (1, 12),
    "day_of_week": (0, 6),
}


def _range_text(r: Any, full: tuple[int, int]) -> str:
    end = max(r.end, r.start)
    step = r.step or 1
    if (r.start, end) == full:
        base = "*"
    elif r.start == end:
        base = str(r.start)
    else:
        base = f"{r.start}-{end}"
    return base if step == 1 else f"{base}/{step}"


def calendar_text(cal: Any) -> str:
    """A Temporal calendar spec (what a cron string becomes on the server) as cron fields."""
    return " ".join(
        ",".join(_range_text(r, full) for r in getattr(cal, name)) or "*"
        for name, full in _CRON_FIELDS.items()
    )


def _spec_text(spec: Any) -> str:
    parts = list(getattr(spec, "cron_expressions", []) or [])
    parts += [calendar_text(c) for c in getattr(spec, "calendars", []) or []]
    parts += [f"every {i.every}" for i in getattr(spec, "intervals", []) or []]
    return "; ".join(parts) or "-"


async def _schedule_list(as_json: bool) -> int:
    client = await async_client()
    rows: list[dict[str, Any]] = []
    async for entry in await client.list_schedules():
        info = entry.info
        sched = entry.schedule
        recent = info.recent_actions[-1] if info and info.recent_actions else None
        rows.append(
            {
                "id": entry.id,
                "workflow_type": getattr(getattr(sched, "action", None), "workflow", "")
                if sched
                else "",
                "spec": _spec_text(sched.spec) if sched else "",
                "paused": bool(sched and sched.state.paused),
                "next": [t.isoformat() for t in (info.next_action_times[:3] if info else [])],
                "last": recent.started_at.isoformat() if recent else None,
            }
        )
    rows.sort(key=lambda r: str(r["id"]))
    if as_json:
        _print_json(json.dumps(rows))
        return EXIT_OK
    table = Table(title="schedules")
    for col in ("id", "workflow", "spec (UTC)", "paused", "next run", "last run"):
        table.add_column(col)
    for r in rows:
        nxt = r["next"][0] if r["next"] else "-"
        table.add_row(
            str(r["id"]),
            str(r["workflow_type"]),
            str(r["spec"]),
            "yes" if r["paused"] else "no",
            str(nxt),
            str(r["last"] or "-"),
        )
    console.print(table)
    return EXIT_OK


async def _schedule_handle(schedule_id: str) -> tuple[Any, Any]:
    from temporalio.service import RPCError, RPCStatusCode

    client = await async_client()
    handle = client.get_schedule_handle(schedule_id)
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            fail(
                f"no schedule {schedule_id!r}; see `{STARTER} schedule list`",
                EXIT_BAD_INPUT,
            )
        raise
    return handle, desc


async def _schedule_delete(schedule_id: str) -> int:
    handle, _ = await _schedule_handle(schedule_id)
    await handle.delete()
    console.print(f"schedule {schedule_id} deleted", markup=False, highlight=False)
    return EXIT_OK


async def _schedule_trigger(schedule_id: str, wait: bool, as_json: bool) -> int:
    handle, desc = await _schedule_handle(schedule_id)
    before = {a.action.workflow_id for a in desc.info.recent_actions}
    before |= {r.workflow_id for r in desc.info.running_actions}
    await handle.trigger()
    if not wait:
        console.print(f"schedule {schedule_id} triggered", markup=False, highlight=False)
        return EXIT_OK
    # The schedule starts the run asynchronously: wait (bounded) until it shows up.
    started = ""
    for _ in range(120):
        desc = await handle.describe()
        ids = [a.action.workflow_id for a in desc.info.recent_actions]
        ids += [r.workflow_id for r in desc.info.running_actions]
        new = [i for i in ids if i not in before]
        if new:
            started = new[-1]
            break
        await asyncio.sleep(0.5)
    if not started:
        fail(f"schedule {schedule_id} was triggered but no run appeared within 60 s", 1)
    if not as_json:
        console.print(
            f"schedule {schedule_id} triggered: workflow {started}", markup=False, highlight=False
        )
    client = await async_client()
    wf = client.get_workflow_handle(started, result_type=DrillReport)
    desc_wf = await wf.describe()
    if desc_wf.workflow_type != "DrDrill":
        result = await wf.result()
        console.print(str(result), markup=False)
        return EXIT_OK
    follow = _quiet if as_json else _follow
    report = await follow(wf, DrillReport)
    return _drill_exit(report, as_json)
