"""Release commands: deploy, status, approve, abort, promote (and `keys create`, for approvals)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NoReturn

import typer
from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from stagecoach import contract
from stagecoach.cli import render
from stagecoach.cli.app import (
    EXIT_INPUT,
    EXIT_OK,
    EXIT_UNREACHABLE,
    STARTER,
    ConfigOpt,
    JsonOpt,
    app,
    async_client,
    check_env,
    describe,
    detached,
    duration_opt,
    fail,
    is_running,
    load,
    note,
    nothing_running,
    out,
    print_json,
    run,
    sa,
    services_opt,
    start,
    started_input,
    web_link,
    who,
)
from stagecoach.cli.follow import Follower, query_status
from stagecoach.cli.schemas import DeployStarted, status_output, to_json
from stagecoach.config import Config, ConfigError, format_duration
from stagecoach.contract import Message, WorkflowType, release_workflow_id
from stagecoach.payloads.common import AbortInput, ApproveInput, ApproveResult, Outcome, Phase
from stagecoach.payloads.release import ReleaseInput, ReleaseStatus
from stagecoach.plan import build_release, check_freeze
from stagecoach.temporal import workflow_result

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


def _images(inp: ReleaseInput | None) -> dict[str, str]:
    """Each service's image as planned ("" for a release that keeps the serving image)."""
    return {p.name: p.image for p in inp.services if p.image} if inp is not None else {}


def _memo(inp: ReleaseInput) -> dict[str, str] | None:
    """What `history` shows beside a release: a freeze it was started through (who, why)."""
    ov = inp.freeze_override
    if ov is None:
        return None
    return {"note": f"freeze ({ov.window}) overridden by {ov.by}: {ov.reason}"}


async def _deploy(cfg: Config, inp: ReleaseInput, detach: bool, json_out: bool) -> int:
    client = await async_client(cfg)
    wid = release_workflow_id(cfg.app, inp.env)
    names = ", ".join(p.name for p in inp.services)
    handle = await start(
        client,
        WorkflowType.RELEASE,
        inp,
        workflow_id=wid,
        env=inp.env,
        what=f"release {inp.version}",
        result_type=ReleaseStatus,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(contract.ENVIRONMENT, inp.env),
                SearchAttributePair(contract.VERSION, inp.version),
                SearchAttributePair(contract.PHASE, Phase.VALIDATING.value),
                SearchAttributePair(contract.OUTCOME, Outcome.RUNNING.value),
            ]
        ),
        static_summary=f"Release {inp.version} to {inp.env}: {names}",
        static_details=_static_details(cfg, inp),
        memo=_memo(inp),
    )
    link = web_link(wid)
    if detach:
        if json_out:
            started = DeployStarted(
                workflow_id=wid,
                run_id=handle.result_run_id,
                release_id=inp.release_id,
                version=inp.version,
                env=inp.env,
                web_ui=link,
            )
            print_json(started.model_dump_json(indent=2))
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
        client,
        cfg,
        inp.env,
        json_out,
        note_="Ctrl-C detaches; the release goes on.",
        images=_images(inp),
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
    names = services_opt(cfg, services)
    bake_td = duration_opt("--bake", bake)
    interval_td = duration_opt("--interval", interval, positive=True)
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
    code = run(_deploy(cfg, inp, detach, json_out), on_interrupt=lambda: detached(env))
    raise typer.Exit(code)


# =============================================================================== status


def _closed_status(cfg: Config, env: str, desc: WorkflowExecutionDescription) -> ReleaseStatus:
    """What can be said of a release that did not complete normally (terminated, timed out...)."""
    status = desc.status.name.lower() if desc.status else "closed"
    return ReleaseStatus(
        app=cfg.app,
        env=env,
        version=sa(desc, contract.VERSION) or "?",
        phase=Phase.DONE,
        outcome=Outcome.FAILED,
        error=f"the release workflow was {status}",
        started_at=desc.start_time,
        ended_at=desc.close_time,
    )


async def _status(cfg: Config, env: str, json_out: bool, wait: bool, summary: bool = False) -> int:
    client = await async_client(cfg)
    wid = release_workflow_id(cfg.app, env)
    desc = await describe(client, wid)
    if desc is None:
        fail(
            f"no release of {cfg.app} to {env} yet; start one with `{STARTER} deploy {env} VERSION`"
        )
    # the command modules of the other workflows that hold the id (imported here, not at the top,
    # so `--help` lists the release commands first)
    from stagecoach.cli import dr, failover

    if desc.workflow_type == WorkflowType.FAILOVER:  # a failover or failback holds it
        return await failover.show_status(client, wid, desc, json_out, wait)
    if desc.workflow_type != WorkflowType.RELEASE:  # a restore holds the environment's workflow id
        return await dr.show_recovery_status(client, wid, desc, json_out, wait)
    images: dict[str, str] = {}
    if json_out:  # the images the status does not name yet: from the release's input
        images = _images(await started_input(client, wid, desc.run_id, ReleaseInput))
    follower = Follower(
        client,
        cfg,
        env,
        json_out,
        note_="Ctrl-C stops watching; the release goes on.",
        images=images,
    )
    if wait:
        _final, code = await follower.follow()
        return code
    handle: WorkflowHandle[Any, ReleaseStatus] = client.get_workflow_handle(
        wid, result_type=ReleaseStatus
    )
    st: ReleaseStatus | None
    if desc.status == WorkflowExecutionStatus.RUNNING:
        st = await query_status(handle, ReleaseStatus)
        if st is None:
            fail(
                f"release {sa(desc, contract.VERSION)} to {env} is running but no worker "
                "answered its status query; start one "
                f"(`python worker.py` or `{STARTER} local up`)",
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
    if summary:
        out.print(await _summary(handle, cfg, env, st, desc), markup=False, highlight=False)
        return EXIT_OK
    if json_out:
        print_json(to_json(status_output(st, wid, follower.ctx.link, images)))
    else:
        render.print_release(out, st, follower._final_ctx())
    return EXIT_OK


async def _summary(
    handle: WorkflowHandle[Any, ReleaseStatus],
    cfg: Config,
    env: str,
    st: ReleaseStatus,
    desc: WorkflowExecutionDescription,
) -> str:
    """The release's `summary` query: a running release answers it (with the approvers of the
    worker's policy); an ended one is summarised here from its final status."""
    from workflows.release_summary import release_summary

    if desc.status == WorkflowExecutionStatus.RUNNING:
        try:
            text: str = await handle.query(
                Message.SUMMARY, result_type=str, rpc_timeout=timedelta(seconds=5)
            )
            return text
        except Exception:  # an older run without the query: summarise its status here
            pass
    approval = cfg.env(env).release.approval
    return release_summary(st, approval.approvers if approval is not None else [])


@app.command()
def status(
    env: Annotated[str, typer.Argument(metavar="ENV", help="Environment.")],
    json_out: JsonOpt = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the release until it ends.")] = False,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="A few lines for people: each service's percent, what it is doing, what is "
            "awaited and how to answer.",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Show the latest release to ENV (running or ended). With --wait, exit 0 promoted / 1 not."""
    cfg = load(config)
    check_env(cfg, env)
    if summary and (json_out or wait):
        fail("--summary is for people: use it without --json and --wait")

    def stop_watching() -> NoReturn:
        note(
            f"\nStopped watching; the release goes on. Resume with `{STARTER} status {env} --wait`."
        )
        raise typer.Exit(EXIT_OK)

    raise typer.Exit(run(_status(cfg, env, json_out, wait, summary), on_interrupt=stop_watching))


# ========================================================================= approve/abort/promote


async def _approve(cfg: Config, env: str, by: str, comment: str, print_payload: bool) -> int:
    from stagecoach.keys import keys_dir, sign

    client = await async_client(cfg)
    wid = release_workflow_id(cfg.app, env)
    desc = await describe(client, wid)
    if not is_running(desc):
        nothing_running(cfg, env, desc, "approve")
    assert desc is not None
    handle = client.get_workflow_handle(wid, run_id=desc.run_id)
    inp = ApproveInput(by=by, comment=comment)  # capped here, so the signature covers it
    # what the proof is bound to: this run, its version, the step awaiting approval
    st: dict[str, Any] = await handle.query(Message.STATUS)
    step: int | None = 0
    if desc.workflow_type == WorkflowType.RESTORE:
        version = f"restore:{st.get('backup_id', '')}"
    elif desc.workflow_type == WorkflowType.FAILOVER:  # the DNS move to a region
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
        res: ApproveResult = await handle.execute_update(
            Message.APPROVE, inp, result_type=ApproveResult
        )
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
    what = (
        f"goes on to {res.approved_weight}%"
        if desc.workflow_type == WorkflowType.RELEASE
        else "goes on"
    )
    out.print(
        f"Approved by {res.by}: {desc.workflow_type.lower()} {sa(desc, contract.VERSION)} "
        f"in {env} {what}.",
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


async def _signal(cfg: Config, env: str, name: str, arg: Any | None, what: str) -> str:
    client = await async_client(cfg)
    wid = release_workflow_id(cfg.app, env)
    desc = await describe(client, wid)
    if not is_running(desc):
        nothing_running(cfg, env, desc, what)
    handle = client.get_workflow_handle(wid)
    try:
        if arg is None:
            await handle.signal(name)
        else:
            await handle.signal(name, arg)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            nothing_running(cfg, env, await describe(client, wid), what)
        raise
    assert desc is not None
    return sa(desc, contract.VERSION)


@app.command()
def abort(
    env: Annotated[str, typer.Argument(metavar="ENV", help="Environment.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the status).")] = "aborted by operator",
    config: ConfigOpt = None,
) -> None:
    """Abort the running release to ENV: it restores the previous traffic at once."""
    cfg = load(config)
    check_env(cfg, env)
    version = run(_signal(cfg, env, Message.ABORT, AbortInput(reason=reason, by=who()), "abort"))
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
    version = run(_signal(cfg, env, Message.PROMOTE, None, "promote"))
    out.print(
        f"Promote sent to release {version} to {env}: remaining bake windows are skipped "
        "once the gates pass (approval still applies).",
        markup=False,
        soft_wrap=True,
    )


# =============================================================================== rollback
