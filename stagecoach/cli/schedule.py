"""Temporal Schedules of DR drills.

    schedule dr-drill ENV --cron EXPR [--scenario regional [--from backup|replica]
                                       [--to-region R] [--version V]]
    schedule list [--json]
    schedule delete ID
    schedule trigger ID [--wait] [--json]

The cron expression is Temporal's to validate (it ANDs day-of-month and day-of-week); one it
refuses exits 2 naming the fix.

A scheduled regional drill (the `Failover` drill, or `ReplicaDrill` with `--from replica`) is
started again and again with the input built here, so every run names its scratch resources
after its own start and, without `--version`, deploys the images serving in the primary region
when it starts (workflows/dr/scheduled.py).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from stagecoach.cli.app import (
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_OK,
    STARTER,
    ConfigOpt,
    JsonOpt,
    app,
    async_client,
    fail,
    load,
    out,
    print_json,
    say,
    settings,
    watch,
)
from stagecoach.cli.dr import drill_exit, drill_input, replica_drill_exit, replica_drill_input
from stagecoach.cli.failover import failover_exit, regional_drill_input
from stagecoach.cli.follow import follow_events
from stagecoach.cli.render import iso
from stagecoach.cli.render_dr import utc_time
from stagecoach.cli.schemas import ScheduleEntry, to_json
from stagecoach.contract import (
    WorkflowType,
    drill_schedule_id,
    drill_workflow_id,
    regional_drill_schedule_id,
    regional_drill_workflow_id,
)
from stagecoach.payloads.dr import DrillReport
from stagecoach.payloads.failover import FailoverInput, FailoverStatus
from stagecoach.payloads.replica_drill import ReplicaDrillStatus

CLONE_RESTART_NOTE = (
    "a drill clones the instance, and Cloud SQL warns that instances.clone may restart the "
    "source instance: schedule drills in a quiet window (the default is Sunday 03:00 UTC)"
)

# Cloud SQL keeps transaction logs (point-in-time recovery) for 7 days (the brief's setting).
# The brief's monthly drill on the first Sunday at 03:00 UTC. Temporal ANDs day-of-month and
# day-of-week (unlike Vixie cron, which ORs them when both are restricted): "days 1-7 that are
# a Sunday" is exactly the first Sunday (tests/e2e/test_dr.py checks the next run times).
FIRST_SUNDAY_CRON = "0 3 1-7 * SUN"


def check_cron(expr: str) -> str:
    """Five fields (minute hour day-of-month month day-of-week), normalised; whether each field
    is valid is Temporal's to say (`_schedule_drill` maps its refusal to exit 2)."""
    fields = expr.split()
    if len(fields) != 5:
        _bad_cron(expr, "is not a 5-field cron expression")
    return " ".join(fields)


def _bad_cron(expr: str, why: str) -> NoReturn:
    fail(
        f"--cron {expr!r} {why} (minute hour day-of-month month day-of-week, UTC); "
        f"the brief's monthly first-Sunday drill is '{FIRST_SUNDAY_CRON}'",
        EXIT_INPUT,
    )


schedule_app = typer.Typer(help="Temporal Schedules of DR drills", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("dr-drill")
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
    scenario: Annotated[
        str,
        typer.Option("--scenario", help="backup (a restore), or regional (a failover rehearsal)"),
    ] = "backup",
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="regional: backup (default: the newest backup restored into a scratch "
            "instance) or replica (a scratch read replica promoted; the configured one is "
            "left alone)",
        ),
    ] = "backup",
    to_region: Annotated[
        str | None,
        typer.Option("--to-region", help="regional: where (default: first of failover.regions)"),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="regional: pin the images to this release (default: each run deploys what "
            "serves in the primary region when it starts)",
        ),
    ] = None,
) -> None:
    """Schedule a recurring DR drill of ENV (a Temporal Schedule `dr-drill-<app>-<env>`).

    --scenario regional schedules the regional drill instead (`dr-drill-regional-<app>-<env>`,
    --from backup or replica): each run names its scratch resources after its own start and,
    without --version, reads the images serving in the primary region when it starts and
    rehearses those (the primary down or a service missing there fails the run before
    anything is created)."""
    if source not in ("backup", "replica"):
        fail(f"--from {source!r}: choose backup or replica", EXIT_INPUT)
    if source == "replica" and scenario != "regional":
        fail("--from replica rehearses a regional failover: add --scenario regional", EXIT_INPUT)
    if scenario not in ("backup", "regional"):
        fail(f"--scenario {scenario!r}: choose backup or regional", EXIT_INPUT)
    if scenario == "regional":
        watch(_schedule_regional_drill(env, cron, config, to_region, version, source))
    if to_region or version:
        fail("--to-region and --version go with --scenario regional", EXIT_INPUT)
    watch(_schedule_drill(env, cron, config))


@schedule_app.command("list")
def schedule_list_cmd(as_json: JsonOpt = False) -> None:
    """List the Temporal Schedules."""
    watch(_schedule_list(as_json))


@schedule_app.command("delete")
def schedule_delete_cmd(schedule_id: str) -> None:
    """Delete a schedule (runs already started go on)."""
    watch(_schedule_delete(schedule_id))


@schedule_app.command("trigger")
def schedule_trigger_cmd(
    schedule_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the run and print it")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a schedule's action once, now."""
    watch(_schedule_trigger(schedule_id, wait, as_json))


async def _schedule_drill(env: str, cron: str, config: str | None) -> int:
    cfg = load(config)
    expr = check_cron(cron)
    inp = drill_input(cfg, env, "schedule")
    client = await async_client(cfg)
    sched_id = drill_schedule_id(cfg.app, env)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            WorkflowType.DR_DRILL,
            inp,
            id=drill_workflow_id(cfg.app, env),
            task_queue=settings().task_queue,
            static_summary=f"scheduled DR drill of {inp.instance.instance}",
        ),
        spec=ScheduleSpec(cron_expressions=[expr]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note=CLONE_RESTART_NOTE),
    )
    what = f"DR drill of {inp.instance.instance} ({env})"
    return await _create_schedule(client, sched_id, schedule, expr, what, CLONE_RESTART_NOTE)


async def _schedule_regional_drill(
    env: str,
    cron: str,
    config: str | None,
    to_region: str | None,
    version: str | None,
    source: str,
) -> int:
    cfg = load(config)
    expr = check_cron(cron)
    inp: FailoverInput
    if source == "replica":
        client, inp, where = await replica_drill_input(
            cfg, env, to_region, version, "schedule", scheduled=True
        )
        workflow_type = WorkflowType.REPLICA_DRILL
        how = f"a scratch read replica of {inp.source_instance.instance}"
        does = (
            f"creates a scratch read replica of {inp.source_instance.instance} in "
            f"{inp.to_region}, promotes it and deletes it (the configured replica is left alone)"
        )
    else:
        client, inp, where = await regional_drill_input(
            cfg, env, to_region, version, "schedule", scheduled=True
        )
        workflow_type = WorkflowType.FAILOVER
        how = f"the newest backup of {inp.source_instance.instance}"
        does = (
            f"restores the newest backup of {inp.source_instance.instance} into a scratch "
            f"instance in {inp.to_region} and deletes it"
        )
    images = (
        f"images: what each service serves in {inp.from_region} when the run starts (the "
        "primary down or a service missing there: the run fails, nothing created)"
        if inp.images_from == "serving"
        else f"images {inp.version} ({where}), fixed: recreate the schedule to drill others"
    )
    note = f"each run {does}, with scratch services named after the run's start; {images}"
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            workflow_type,
            inp,
            id=regional_drill_workflow_id(cfg.app, env),
            task_queue=settings().task_queue,
            static_summary=f"scheduled regional DR drill of {env} from {source}",
        ),
        spec=ScheduleSpec(cron_expressions=[expr]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note=note),
    )
    sched_id = regional_drill_schedule_id(cfg.app, env)
    what = f"regional DR drill of {env} into {inp.to_region} from {how}"
    return await _create_schedule(client, sched_id, schedule, expr, what, note)


async def _create_schedule(
    client: Client, sched_id: str, schedule: Schedule, expr: str, what: str, note: str
) -> int:
    try:
        handle = await client.create_schedule(sched_id, schedule)
    except RPCError as err:
        if err.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
        _bad_cron(expr, f"is refused by Temporal ({err.message})")
    except ScheduleAlreadyRunningError:
        fail(
            f"schedule {sched_id} already exists; delete it first with "
            f"`{STARTER} schedule delete {sched_id}`",
            EXIT_INPUT,
        )
    desc = await handle.describe()
    nxt = ", ".join(utc_time(t) for t in desc.info.next_action_times[:3]) or "none"
    say(f"schedule {sched_id}: {what} on cron '{expr}' (UTC); next: {nxt}")
    say(f"note: {note}")
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
    rows: list[ScheduleEntry] = []
    async for entry in await client.list_schedules():
        info = entry.info
        sched = entry.schedule
        recent = info.recent_actions[-1] if info and info.recent_actions else None
        rows.append(
            ScheduleEntry(
                id=entry.id,
                workflow_type=str(getattr(getattr(sched, "action", None), "workflow", "") or ""),
                spec=_spec_text(sched.spec) if sched else "",
                paused=bool(sched and sched.state.paused),
                next=list(info.next_action_times[:3]) if info else [],
                last=recent.started_at if recent else None,
            )
        )
    rows.sort(key=lambda r: r.id)
    if as_json:
        print_json(to_json([r.model_dump(mode="json") for r in rows]))
        return EXIT_OK
    table = Table(title="schedules")
    for col in ("id", "workflow", "spec (UTC)", "paused", "next run", "last run"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.id,
            r.workflow_type,
            r.spec,
            "yes" if r.paused else "no",
            iso(r.next[0] if r.next else None),
            iso(r.last),
        )
    out.print(table)
    return EXIT_OK


async def _schedule_handle(schedule_id: str) -> tuple[ScheduleHandle, ScheduleDescription]:
    client = await async_client()
    handle = client.get_schedule_handle(schedule_id)
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            fail(
                f"no schedule {schedule_id!r}; see `{STARTER} schedule list`",
                EXIT_INPUT,
            )
        raise
    return handle, desc


async def _schedule_delete(schedule_id: str) -> int:
    handle, _ = await _schedule_handle(schedule_id)
    await handle.delete()
    say(f"schedule {schedule_id} deleted")
    return EXIT_OK


def _started_ids(desc: ScheduleDescription) -> list[str]:
    """The workflow ids a schedule started (recent and running), oldest first."""
    actions = [a.action for a in desc.info.recent_actions] + list(desc.info.running_actions)
    return [a.workflow_id for a in actions if isinstance(a, ScheduleActionExecutionStartWorkflow)]


async def _schedule_trigger(schedule_id: str, wait: bool, as_json: bool) -> int:
    handle, desc = await _schedule_handle(schedule_id)
    before = set(_started_ids(desc))
    await handle.trigger()
    if not wait:
        say(f"schedule {schedule_id} triggered")
        return EXIT_OK
    # The schedule starts the run asynchronously: wait (bounded) until it shows up.
    started = ""
    for _ in range(120):
        desc = await handle.describe()
        new = [i for i in _started_ids(desc) if i not in before]
        if new:
            started = new[-1]
            break
        await asyncio.sleep(0.5)
    if not started:
        fail(f"schedule {schedule_id} was triggered but no run appeared within 60 s", EXIT_FAILED)
    if not as_json:
        say(f"schedule {schedule_id} triggered: workflow {started}")
    client = await async_client()
    wf = client.get_workflow_handle(started, result_type=DrillReport)
    desc_wf = await wf.describe()
    if desc_wf.workflow_type == WorkflowType.REPLICA_DRILL:
        regional = client.get_workflow_handle(started, result_type=ReplicaDrillStatus)
        st = await follow_events(regional, ReplicaDrillStatus, quiet=as_json)
        return replica_drill_exit(st, as_json)
    if desc_wf.workflow_type == WorkflowType.FAILOVER:
        drill = client.get_workflow_handle(started, result_type=FailoverStatus)
        fst = await follow_events(drill, FailoverStatus, quiet=as_json)
        return failover_exit(fst, as_json)
    if desc_wf.workflow_type != WorkflowType.DR_DRILL:
        result = await wf.result()
        out.print(str(result), markup=False)
        return EXIT_OK
    report = await follow_events(wf, DrillReport, quiet=as_json)
    return drill_exit(report, as_json)
