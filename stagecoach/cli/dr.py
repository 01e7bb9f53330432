"""Backup, restore and DR-drill commands.

    backup ENV [--json]
    backups ENV [--limit N] [--json]
    restore ENV --backup-id ID [--yes] [--detach] [--json]
    restore ENV --point-in-time RFC3339 [--switch --yes [--bake D] [--interval D]]
                [--detach] [--json]
    dr-drill ENV [--scenario backup|regional [--to-region R] [--version V]
                 [--from backup|replica]] [--detach] [--json]

Exit codes as every command (stagecoach.cli.app): 0 ok, 1 failed (or aborted/cancelled), 2 bad
input or conflict (nothing started), 3 Temporal or GCP unreachable.

Workflow ids (stagecoach.contract): `backup-<app>-<env>`; restores (both kinds) use the release's
`deploy-<app>-<env>`, so a release and a restore of one environment exclude each other atomically
(the server refuses the second start) and `approve|abort ENV` reach a restore as they reach a
release; drills `dr-drill-<app>-<env>` (the schedule's runs: that id plus the scheduled time).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated

import typer
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.exceptions import ApplicationError

from stagecoach.cli.app import (
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_UNREACHABLE,
    STARTER,
    ConfigOpt,
    DetachOpt,
    JsonOpt,
    app,
    async_client,
    check_env,
    detach_exit,
    ensure_stack,
    fail,
    load,
    out,
    print_json,
    say,
    start,
    watch,
    who,
)
from stagecoach.cli.follow import follow_events
from stagecoach.cli.pitr import SwitchRollout, parse_rfc3339, pitr, release_for_switch
from stagecoach.cli.render_dr import (
    backups_table,
    drill_view,
    dump,
    pitr_summary,
    print_lines,
    replica_drill_lines,
    restore_summary,
    seconds,
)
from stagecoach.config import Config, ConfigError
from stagecoach.contract import (
    Message,
    WorkflowType,
    backup_workflow_id,
    drill_workflow_id,
    regional_drill_workflow_id,
    release_workflow_id,
)
from stagecoach.payloads.common import InstanceRef, Outcome, ServiceRef
from stagecoach.payloads.dr import (
    BackupInput,
    BackupResult,
    DrillInput,
    DrillReport,
    PointInTimeResult,
    RestoreInput,
    RestoreStatus,
    Verification,
)
from stagecoach.payloads.replica_drill import ReplicaDrillInput, ReplicaDrillStatus
from stagecoach.payloads.sql import ListBackupsInput
from stagecoach.plan import instance_ref, service_ref
from stagecoach.temporal import workflow_result

# ----------------------------------------------------------------------------- commands


@app.command("backup")
def backup_cmd(env: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """On-demand backup of ENV's instance, waited for until SUCCESSFUL; prints its id."""
    watch(_backup(env, config, as_json))


@app.command("backups")
def backups_cmd(
    env: str,
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(help="newest N backups")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List ENV's backups: id, type, status, time, description (newest first)."""
    watch(_backups(env, config, limit, as_json))


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
    rollout = SwitchRollout(bake, interval)
    watch(_restore(env, backup_id, point_in_time, switch, yes, config, detach, as_json, rollout))


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
        str | None,
        typer.Option(
            "--to-region",
            help="regional: where (default: the first of failover.regions, else us-east1)",
        ),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="regional: images (default: last release)")
    ] = None,
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="regional: rehearse failover --from backup (default) or --from replica (a "
            "scratch read replica of its own, promoted; the configured replica is left alone)",
        ),
    ] = "backup",
) -> None:
    """Rehearse a restore: newest backup into a scratch instance, verified, then deleted.

    Reports row counts and newest created_at on the source and the scratch, the data-loss
    window against the RPO and the restore time against the RTO. Exit 0 when verified and
    the scratch instance is deleted. Cloud SQL warns that cloning may restart the source
    instance: run drills in a quiet window. --scenario regional rehearses a regional failover
    (everything but the DNS move) into scratch resources in --to-region, always deleted;
    with --from replica it creates a scratch read replica of the primary there, waits until
    it has caught up, promotes it and binds the scratch services to it (the configured
    replica is never touched)."""
    if source not in ("backup", "replica"):
        fail(f"--from {source!r}: choose backup or replica", EXIT_INPUT)
    if source == "replica" and scenario != "regional":
        fail(
            "--from replica rehearses a regional failover: add --scenario regional",
            EXIT_INPUT,
        )
    if scenario == "regional":
        if source == "replica":
            watch(_replica_drill(env, to_region, version, config, detach, as_json))
        from stagecoach.cli.failover import regional_drill  # here: `--help` lists dr-drill first

        watch(regional_drill(env, to_region, version, config, detach, as_json))
    if scenario != "backup":
        fail(f"--scenario {scenario!r}: choose backup or regional", EXIT_INPUT)
    watch(_drill(env, config, detach, as_json))


def _verification(cfg: Config) -> Verification:
    v = cfg.database.validation
    if not v.tables:
        fail(
            "database.validation.tables is empty in the config; list the tables to count",
            EXIT_INPUT,
        )
    return Verification(
        database=cfg.database.name, tables=list(v.tables), timestamp_column=v.timestamp_column
    )


def _instance(cfg: Config, env: str) -> InstanceRef:
    try:
        return instance_ref(cfg, env)
    except ConfigError as err:
        fail(str(err), EXIT_INPUT)


def _db_services(cfg: Config, env: str) -> list[ServiceRef]:
    return [service_ref(cfg, env, s.name) for s in cfg.ordered_services() if s.uses_database]


async def show_recovery_status(
    client: Client, workflow_id: str, desc: WorkflowExecutionDescription, as_json: bool, wait: bool
) -> int:
    """`starter.py status ENV` while (or after) a restore holds the environment's workflow id."""
    result_type: type[RestoreStatus] | type[PointInTimeResult] = (
        RestoreStatus if desc.workflow_type == WorkflowType.RESTORE else PointInTimeResult
    )
    handle = client.get_workflow_handle(workflow_id, result_type=result_type)
    if wait or desc.status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
        st = await workflow_result(handle, result_type)
    else:
        st = await handle.query(Message.STATUS, result_type=result_type)
    if as_json:
        print_json(dump(st))
    else:
        lines = restore_summary(st) if isinstance(st, RestoreStatus) else pitr_summary(st)
        print_lines(list(lines))
    return 0 if st.outcome.value in ("succeeded", "running") else 1


# ----------------------------------------------------------------------------- backup


async def _backup(env: str, config: str | None, as_json: bool) -> int:
    cfg = load(config)
    ref = _instance(cfg, env)
    client = await async_client(cfg)
    wf_id = backup_workflow_id(cfg.app, env)
    what = f"backup {ref.instance}"
    inp = BackupInput(app=cfg.app, env=env, instance=ref, requested_by=who())
    handle = await start(
        client, WorkflowType.BACKUP, inp, wf_id, env, what, BackupResult, static_summary=what
    )
    if not as_json:
        out.print(f"backing up {ref.instance} ({env}), workflow {wf_id} ...")
    try:
        res: BackupResult = await handle.result()
    except WorkflowFailureError as err:
        cause = err.cause
        msg = str(getattr(cause, "cause", None) or cause or err)
        fail(f"backup of {ref.instance} failed: {msg}", EXIT_FAILED)
    if as_json:
        print_json(dump(res))
    else:
        b = res.backup
        say(
            f"backup {b.id} of {res.instance}: {b.status} ({b.description}) "
            f"in {seconds(res.seconds)}"
        )
    return EXIT_OK


async def _backups(env: str, config: str | None, limit: int, as_json: bool) -> int:
    """Read-only listing, straight from the Cloud SQL Admin API through the same code (and
    client factory) as the ListBackups activity: no workflow needed to read a list."""
    from activities.cloud_sql import CloudSqlActivities

    cfg = load(config)
    ref = _instance(cfg, env)
    if limit < 1:
        fail("--limit must be at least 1", EXIT_INPUT)
    ensure_stack(cfg)  # gcpsim: start it when it does not answer
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
        print_json(json.dumps([b.model_dump(mode="json") for b in backups]))
    else:
        out.print(backups_table(backups, f"backups of {ref.instance} ({env})"))
    return EXIT_OK


# ----------------------------------------------------------------------------- restore

BACKUP_ID_RE = re.compile(r"[0-9]{1,20}")  # Cloud SQL backupRuns ids are int64


async def _check_backup_exists(cfg: Config, env: str, ref: InstanceRef, backup_id: str) -> None:
    """Before anything starts: the backup must be one of the instance's (the workflow checks
    again, and that it is SUCCESSFUL, before it drains anything)."""
    from activities.cloud_sql import CloudSqlActivities

    ensure_stack(cfg)
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
            f"`{STARTER} backups {env}`. Nothing was started.",
            EXIT_INPUT,
        )


async def _restore(
    env: str,
    backup_id: str | None,
    point_in_time: str | None,
    switch: bool,
    yes: bool,
    config: str | None,
    detach: bool,
    as_json: bool,
    rollout: SwitchRollout | None = None,
) -> int:
    cfg = load(config)
    check_env(cfg, env)
    e = cfg.env(env)
    rollout = rollout or SwitchRollout()
    if (backup_id is None) == (point_in_time is None):
        fail("give exactly one of --backup-id ID or --point-in-time RFC3339", EXIT_INPUT)
    if not switch and (rollout.bake or rollout.interval):
        fail("--bake and --interval go with --switch (they shape its rollout)", EXIT_INPUT)
    ref = _instance(cfg, env)
    verification = _verification(cfg)
    if point_in_time is not None:
        at = parse_rfc3339(point_in_time)
        switch_release = release_for_switch(cfg, env, ref, at, yes, rollout) if switch else None
        return await pitr(cfg, env, ref, verification, at, switch_release, detach, as_json)
    assert backup_id is not None
    if switch:
        fail("--switch goes with --point-in-time, not with --backup-id", EXIT_INPUT)
    if not backup_id.strip():
        fail(f"--backup-id is empty; list the backups with `{STARTER} backups {env}`")
    if not BACKUP_ID_RE.fullmatch(backup_id.strip()):
        fail(
            f"--backup-id {backup_id[:40]!r} is not a Cloud SQL backup id (digits); list them "
            f"with `{STARTER} backups {env}`",
            EXIT_INPUT,
        )
    configured_replicas = e.database.replica_names() if e.database else []
    if not yes:
        replicas = (
            ", deletes its read replicas and recreates them afterwards"
            if configured_replicas
            else ""
        )
        fail(
            f"refused: restoring backup {backup_id} overwrites {ref.instance} in {env} (every "
            f"row written after the backup is lost){replicas} and drains its services meanwhile;"
            " rerun with --yes to confirm. Nothing was started.",
            EXIT_INPUT,
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
        requested_by=who(),
        notify=bool(cfg.notifications.webhook_url),
        configured_replicas=configured_replicas,
    )
    client = await async_client(cfg)
    wf_id = release_workflow_id(cfg.app, env)
    what = f"restore backup {inp.backup_id} into {ref.instance}"
    handle = await start(
        client, WorkflowType.RESTORE, inp, wf_id, env, what, RestoreStatus, static_summary=what
    )
    if not as_json:
        names = ", ".join(s.service for s in inp.services) or "none"
        say(
            f"restoring backup {inp.backup_id} into {ref.instance} ({env}), workflow {wf_id}; "
            f"services drained meanwhile: {names}"
        )
        if approvers:
            say(
                f"{env} requires approval before a restore: "
                f"{STARTER} approve {env} --by NAME  (approvers: {', '.join(approvers)})"
            )
    if detach:
        return detach_exit(handle, as_json)
    st = await follow_events(handle, RestoreStatus, quiet=as_json)
    if as_json:
        print_json(dump(st))
    else:
        print_lines(list(restore_summary(st)))
    return EXIT_OK if st.outcome == Outcome.SUCCEEDED else EXIT_FAILED


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
    inp = drill_input(cfg, env, who())
    client = await async_client(cfg)
    wf_id = drill_workflow_id(cfg.app, env)
    what = f"DR drill of {inp.instance.instance}"
    handle = await start(
        client, WorkflowType.DR_DRILL, inp, wf_id, env, what, DrillReport, static_summary=what
    )
    if not as_json:
        say(f"DR drill of {inp.instance.instance} ({env}), workflow {wf_id}")
    if detach:
        return detach_exit(handle, as_json)
    report = await follow_events(handle, DrillReport, quiet=as_json)
    return drill_exit(report, as_json)


async def replica_drill_input(
    cfg: Config,
    env: str,
    to_region: str | None,
    version: str | None,
    requested_by: str,
    *,
    scheduled: bool = False,
) -> tuple[Client, ReplicaDrillInput, str]:
    """The `ReplicaDrill` input (the regional drill's, stagecoach.cli.failover), the client,
    and where the images come from (`scheduled`: as the scheduled regional drill's)."""
    from stagecoach.cli.failover import regional_drill_input

    client, plan, where = await regional_drill_input(
        cfg, env, to_region, version, requested_by, scheduled=scheduled
    )
    e = cfg.env(env)
    region = plan.to_region
    configured = (e.database.replica_in(region) if e.database else None) or ""
    inp = ReplicaDrillInput.model_validate(
        {**plan.model_dump(), "source": "replica", "configured_replica": configured}
    )
    return client, inp, where


async def _replica_drill(
    env: str,
    to_region: str | None,
    version: str | None,
    config: str | None,
    detach: bool,
    as_json: bool,
) -> int:
    """`dr-drill ENV --scenario regional --from replica` (workflows/dr/drill_replica.py)."""
    cfg = load(config)
    client, inp, _ = await replica_drill_input(cfg, env, to_region, version, who())
    wid = regional_drill_workflow_id(cfg.app, env)
    what = (
        f"regional DR drill of {env} into {inp.to_region} from a scratch read replica "
        f"{inp.instance.instance} (scratch, always deleted)"
    )
    handle = await start(
        client, WorkflowType.REPLICA_DRILL, inp, wid, env, what, ReplicaDrillStatus,
        static_summary=what,
    )  # fmt: skip
    if not as_json:
        say(f"{what}, workflow {wid}")
        if inp.configured_replica:
            say(
                f"  the configured read replica {inp.configured_replica} in {inp.to_region} "
                "is left alone"
            )
    if detach:
        return detach_exit(handle, as_json)
    st = await follow_events(handle, ReplicaDrillStatus, quiet=as_json)
    return replica_drill_exit(st, as_json)


def replica_drill_exit(st: ReplicaDrillStatus, as_json: bool) -> int:
    from stagecoach.cli.failover import report_lines

    if as_json:
        print_json(dump(st))
    else:
        print_lines([*report_lines(st), *replica_drill_lines(st)])
    return EXIT_OK if st.outcome == Outcome.SUCCEEDED else EXIT_FAILED


def drill_exit(report: DrillReport, as_json: bool) -> int:
    if as_json:
        print_json(dump(report))
    else:
        print_lines(drill_view(report))
    ok = report.outcome == Outcome.SUCCEEDED and report.scratch_deleted
    return EXIT_OK if ok else EXIT_FAILED
