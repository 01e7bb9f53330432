"""Regional failover commands (DR Scenario 3).

    failover ENV --to-region REGION --yes [--from backup|replica] [--version V]
             [--cleanup] [--detach] [--json]
    failback ENV --yes [--detach] [--json]
    dr-drill ENV --scenario regional [--to-region REGION] [--version V]   (the command: dr.py)

`regional_drill_input` builds the regional drill's input for `dr-drill` and for `schedule
dr-drill --scenario regional` (stagecoach/cli/schedule.py).

Exit codes as every command: 0 done, 1 failed / aborted / cancelled, 2 bad input or a conflict
(nothing started), 3 Temporal or the simulator unreachable.

Failover and failback run under the environment's workflow id `deploy-<app>-<env>`, so no
release or restore can start meanwhile (and `approve` / `abort ENV` reach them); the regional
drill runs as `dr-drill-regional-<app>-<env>`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus

from stagecoach.cli.app import (
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_OK,
    STARTER,
    ConfigOpt,
    DetachOpt,
    JsonOpt,
    app,
    async_client,
    detach_exit,
    fail,
    load,
    print_json,
    say,
    start,
    watch,
    who,
)
from stagecoach.cli.follow import follow_events
from stagecoach.cli.render import iso, words
from stagecoach.cli.render_dr import dump, print_lines
from stagecoach.config import Config, check_version
from stagecoach.contract import (
    OUTCOME,
    VERSION,
    Message,
    WorkflowType,
    environment_workflow_id,
    regional_drill_workflow_id,
)
from stagecoach.failover import (
    SERVING,
    build_failback,
    build_failover,
    build_regional_drill,
    check_failover_region,
    check_failover_request,
)
from stagecoach.payloads.common import Outcome
from stagecoach.payloads.failover import FailoverInput, FailoverStatus
from stagecoach.temporal import workflow_result

DEFAULT_DRILL_REGION = "us-east1"


# ----------------------------------------------------------------------------- what to run


async def last_promoted_version(client: Client, cfg: Config, env: str) -> tuple[str, str] | None:
    """(version, description) of the newest promoted release of ENV recorded in Temporal."""
    wid = environment_workflow_id(cfg.app, env)
    query = (
        f"WorkflowType='{WorkflowType.RELEASE}' AND WorkflowId='{wid}' "
        f"AND {OUTCOME.name}='promoted' "
        "AND ExecutionStatus='Completed'"
    )
    newest: tuple[datetime, str] | None = None
    async for wf in client.list_workflows(query, limit=50):
        sa = wf.typed_search_attributes
        version = str(sa.get(VERSION) or "")
        if str(sa.get(OUTCOME) or "") != "promoted" or not version.startswith("v"):
            continue
        started = wf.start_time or datetime.min.replace(tzinfo=UTC)
        if newest is None or started > newest[0]:
            newest = (started, version)
    if newest is None:
        return None
    return newest[1], f"release {newest[1]} promoted {iso(newest[0])}"


async def _version(client: Client, cfg: Config, env: str, given: str | None) -> tuple[str, str]:
    if given:
        return check_version(given), "--version"
    found = await last_promoted_version(client, cfg, env)
    if found is None:
        fail(
            f"no promoted release of {env} is recorded in Temporal, so the images to run are "
            "unknown; pass --version vX.Y.Z (the version that served before the outage)",
            EXIT_INPUT,
        )
    return found


async def last_failover(client: Client, cfg: Config, env: str) -> FailoverStatus | None:
    """The newest failover of ENV that succeeded, unless a failback followed it."""
    wid = environment_workflow_id(cfg.app, env)
    query = (
        f"WorkflowType='{WorkflowType.FAILOVER}' AND WorkflowId='{wid}' "
        "AND ExecutionStatus='Completed'"
    )
    newest: FailoverStatus | None = None
    async for wf in client.list_workflows(query, limit=50):
        handle = client.get_workflow_handle(wid, run_id=wf.run_id, result_type=FailoverStatus)
        try:
            st: FailoverStatus = await handle.result(follow_runs=False)
        except Exception:
            continue
        if st.outcome != Outcome.SUCCEEDED or st.mode == "drill" or st.started_at is None:
            continue
        if newest is None or (newest.started_at and st.started_at > newest.started_at):
            newest = st
    if newest is None or newest.mode == "failback":
        return None
    return newest


# ----------------------------------------------------------------------------- views


def _s(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 3600:
        return f"{x / 3600:.1f} h"
    if x >= 60:
        return f"{x / 60:.1f} min"
    return f"{x:.1f} s"


def report_lines(st: FailoverStatus) -> list[str]:
    what = {"failover": "Failover", "failback": "Failback", "drill": "Regional DR drill"}[st.mode]
    images = st.version
    if st.images_from == "serving":  # a scheduled drill: what served when it started
        where = f"serving in {st.from_region}"
        images = where if st.version == SERVING else f"{st.version} ({where})"
    lines = [
        f"{what} of {st.app} {st.env}: {st.from_region} -> {st.to_region}   "
        f"{words(st.outcome.value)}   images {images}"
    ]
    if st.backup is not None:
        when = iso(st.backup.enqueued_time) if st.backup.enqueued_time else ""
        lines.append(
            f"database   {st.instance} ({st.to_region}) <- backup {st.backup.id} "
            f"({st.backup.type} {when}) of {st.source_instance}"
        )
    elif st.source == "replica":
        lag = (
            f", replication lag {_s(st.replica_lag_seconds)} before promotion"
            if st.replica_lag_seconds is not None
            else ""
        )
        lines.append(
            f"database   {st.instance} ({st.to_region}) <- read replica of "
            f"{st.source_instance}, promoted{lag}"
        )
    if st.validation is not None:
        counts = ", ".join(f"{t.table}={t.rows}" for t in st.validation.tables)
        lines.append(f"validated  {counts or 'no tables'}")
    for svc in st.services:
        lines.append(f"service    {svc.service} ({svc.region}) {svc.revision}  {svc.uri}")
    if st.images_from == "serving" or st.mode == "drill":
        for img in st.images:
            lines.append(f"image      {img.service}  {img.image}  <- {img.source}")
    for rec in st.replicas:
        r = rec.replica
        lines.append(
            f"replica    {r.name} ({r.region}) of {st.instance}: "
            + {"recreated": "deleted for the restore, recreated"}.get(
                rec.state, rec.state.replace("_", " ")
            )
        )
    if st.dns_moved:
        lines.append(
            f"DNS        {', '.join(st.dns_before) or '(none)'} -> {', '.join(st.dns_after)}"
            f"  {'verified' if st.dns_verified else 'NOT verified'}"
        )
    for p in st.phases:
        lines.append(f"phase      {p.phase:<12} {_s(p.seconds)}")
    if st.total_seconds is not None:
        verdict = "met" if st.rto_met else "MISSED" if st.outcome == Outcome.SUCCEEDED else "-"
        total, rto = _s(st.total_seconds), _s(st.rto_seconds)
        recovery = st.recovery_seconds if st.recovery_seconds is not None else st.total_seconds
        if recovery != st.total_seconds:  # replicas recreated after users were back
            lines.append(f"total      {total}")
            lines.append(
                f"users back {_s(recovery)}  vs RTO {rto}: {verdict} (the read replicas were "
                "recreated after the DNS move)"
            )
        else:
            lines.append(f"total      {total}  vs RTO {rto}: {verdict}")
    if st.data_loss_seconds is not None:
        label = "data-loss window" if st.mode != "failback" else "not carried back"
        bound = "at most " if st.mode != "failback" and not st.data_loss_exact else ""
        lines.append(
            f"{label}  {bound}{_s(st.data_loss_seconds)}  vs RPO {_s(st.rpo_seconds)}: "
            f"{'met' if st.rpo_met else 'MISSED'}"
        )
    if st.error or st.abort_reason:
        lines.append(f"error      {st.error or st.abort_reason}")
    lines += [f"left       {x}" for x in st.left_in]
    lines += [f"next       {x}" for x in st.next_steps]
    return lines


def failover_exit(st: FailoverStatus, as_json: bool) -> int:
    if as_json:
        print_json(dump(st))
    else:
        print_lines(list(report_lines(st)))
    return EXIT_OK if st.outcome == Outcome.SUCCEEDED else EXIT_FAILED


async def show_status(
    client: Client, workflow_id: str, desc: WorkflowExecutionDescription, as_json: bool, wait: bool
) -> int:
    """`starter.py status ENV` while (or after) a failover holds the environment's id."""
    handle = client.get_workflow_handle(workflow_id, result_type=FailoverStatus)
    if wait or desc.status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
        try:  # a failover that did not succeed ends FAILED, its status in the failure
            st = await workflow_result(handle, FailoverStatus)
        except Exception:
            st = await handle.query(Message.STATUS, result_type=FailoverStatus)
    else:
        st = await handle.query(Message.STATUS, result_type=FailoverStatus)
    if st.outcome == Outcome.RUNNING:
        if as_json:
            print_json(dump(st))
        else:
            print_lines([*report_lines(st), f"now        {st.progress}"])
        return EXIT_OK
    return failover_exit(st, as_json)


# ----------------------------------------------------------------------------- commands


async def _go(
    client: Client, inp: FailoverInput, wid: str, what: str, detach: bool, as_json: bool
) -> int:
    handle = await start(
        client, WorkflowType.FAILOVER, inp, wid, inp.env, what, FailoverStatus, static_summary=what
    )
    if not as_json:
        say(f"{what}, workflow {wid}")
        if inp.approvers and inp.mode != "drill":
            say(
                f"  the DNS move waits for approval: {STARTER} approve {inp.env} --by NAME "
                f"({', '.join(inp.approvers)})"
            )
    if detach:
        return detach_exit(handle, as_json)
    st = await follow_events(handle, FailoverStatus, quiet=as_json)
    return failover_exit(st, as_json)


async def _failover(
    env: str,
    to_region: str | None,
    yes: bool,
    source: str,
    version: str | None,
    cleanup: bool,
    config: str | None,
    detach: bool,
    as_json: bool,
) -> int:
    cfg = load(config)
    cfg.env(env)
    if not to_region:
        fail("failover needs --to-region REGION (the region to bring ENV up in)", EXIT_INPUT)
    if source not in ("backup", "replica"):
        fail(f"--from {source!r}: choose backup or replica", EXIT_INPUT)
    if not yes:
        fail(f"failover moves {env}'s users to {to_region}; add --yes to confirm", EXIT_INPUT)
    # everything the command line alone decides is checked before the stack is touched (a user
    # error is one line on stderr: nothing started, no stack notes)
    if version:
        check_version(version)
    check_failover_request(cfg, env, to_region, "replica" if source == "replica" else "backup")
    check_failover_region(cfg, env, to_region)
    client = await async_client(cfg)
    ver, where = await _version(client, cfg, env, version)
    inp = build_failover(
        cfg, env, to_region, ver, where,
        source="replica" if source == "replica" else "backup",
        cleanup_on_failure=cleanup, requested_by=who(),
    )  # fmt: skip
    what = f"failover of {env} to {to_region} (images {ver}: {where})"
    return await _go(client, inp, environment_workflow_id(cfg.app, env), what, detach, as_json)


async def _failback(env: str, yes: bool, config: str | None, detach: bool, as_json: bool) -> int:
    cfg = load(config)
    cfg.env(env)
    if not yes:
        fail(f"failback moves {env}'s users back; add --yes to confirm", EXIT_INPUT)
    client = await async_client(cfg)
    last = await last_failover(client, cfg, env)
    if last is None:
        fail(
            f"no completed failover of {env} to fail back from (the newest is a failback, or "
            f"none succeeded); see `{STARTER} status {env}`",
            EXIT_INPUT,
        )
    inp = build_failback(cfg, env, last, requested_by=who())
    what = f"failback of {env} from {last.to_region} to {last.from_region}"
    return await _go(client, inp, environment_workflow_id(cfg.app, env), what, detach, as_json)


async def regional_drill_input(
    cfg: Config,
    env: str,
    to_region: str | None,
    version: str | None,
    requested_by: str,
    *,
    scheduled: bool = False,
) -> tuple[Client, FailoverInput, str]:
    """The regional drill's input (checked before anything starts), the client, and where
    its images come from. By hand: `--version`, else the last promoted release. Scheduled:
    every run names its scratch resources after its own start, and without `--version` reads
    the images serving in the primary region when it starts (nothing looked up now)."""
    e = cfg.env(env)
    listed = [r for r in e.failover.regions if r != e.region]
    region = to_region or (listed[0] if listed else DEFAULT_DRILL_REGION)
    if region == e.region:
        fail(f"--to-region must name a region other than {e.region}", EXIT_INPUT)
    if version:
        check_version(version)
    check_failover_region(cfg, env, region)
    client = await async_client(cfg)
    if scheduled and not version:
        ver, where = SERVING, f"what serves in {e.region} when each run starts"
    else:
        ver, where = await _version(client, cfg, env, version)
    inp = build_regional_drill(
        cfg, env, region, ver, where, datetime.now(UTC), requested_by=requested_by,
        scheduled=scheduled,
    )  # fmt: skip
    return client, inp, where


async def regional_drill(
    env: str,
    to_region: str | None,
    version: str | None,
    config: str | None,
    detach: bool,
    as_json: bool,
) -> int:
    """`dr-drill ENV --scenario regional`: scratch copies in another region, always deleted."""
    cfg = load(config)
    client, inp, _ = await regional_drill_input(cfg, env, to_region, version, who())
    what = f"regional DR drill of {env} into {inp.to_region} (scratch, always deleted)"
    return await _go(client, inp, regional_drill_workflow_id(cfg.app, env), what, detach, as_json)


@app.command("failover")
def failover_cmd(
    env: str,
    to_region: Annotated[
        str | None, typer.Option("--to-region", help="region to bring ENV up in")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="confirm (required)")] = False,
    source: Annotated[
        str, typer.Option("--from", help="backup (newest successful) or replica")
    ] = "backup",
    version: Annotated[
        str | None,
        typer.Option("--version", help="images to run (default: the last promoted release of ENV)"),
    ] = None,
    cleanup: Annotated[
        bool,
        typer.Option(
            "--cleanup",
            help="if it fails before the DNS move, delete what it created (default: keep "
            "them for a retry, which adopts them)",
        ),
    ] = False,
    config: ConfigOpt = None,
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Scenario 3: bring ENV up in another region and move its DNS record there.

    Restores the newest backup into <instance>-<region> (--from replica: promotes the
    environment's read replica there instead), creates the services there with
    the last promoted release's images bound to it, smoke-tests them, then (after approval
    where restores need it) moves environments.ENV.dns and checks it answers from there."""
    watch(_failover(env, to_region, yes, source, version, cleanup, config, detach, as_json))


@app.command("failback")
def failback_cmd(
    env: str,
    yes: Annotated[bool, typer.Option("--yes", help="confirm (required)")] = False,
    config: ConfigOpt = None,
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Return ENV to its primary region after a failover, with the data written since.

    A fresh backup of the secondary instance is restored into the primary's instance, the
    primary region's services serve the same images bound to it, then DNS moves back."""
    watch(_failback(env, yes, config, detach, as_json))
