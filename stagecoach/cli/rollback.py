"""`rollback ENV [--service NAME]`: 100% of the traffic back to the revision that served before
the current one, worked out from the recent releases' results."""

from __future__ import annotations

import asyncio
from typing import Annotated, NoReturn

import typer
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from stagecoach import contract
from stagecoach.cli import render
from stagecoach.cli.app import (
    EXIT_FAILED,
    EXIT_OK,
    STARTER,
    ConfigOpt,
    JsonOpt,
    app,
    async_client,
    check_env,
    describe,
    fail,
    is_running,
    load,
    note,
    out,
    print_json,
    run,
    sa,
    start,
    web_link,
    who,
)
from stagecoach.cli.schemas import RollbackOutput
from stagecoach.config import Config, ConfigError
from stagecoach.contract import WorkflowType, release_workflow_id, rollback_workflow_id
from stagecoach.payloads.common import Outcome, Phase, TrafficTarget
from stagecoach.payloads.release import ReleaseStatus, RollbackInput, RollbackResult
from stagecoach.plan import service_ref
from stagecoach.temporal import workflow_result


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
        f"WorkflowType='{WorkflowType.RELEASE}' AND WorkflowId='{wid}' "
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
    query = (
        f"WorkflowType='{WorkflowType.RELEASE}' AND WorkflowId='{wid}' "
        "AND ExecutionStatus='Completed'"
    )
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
            f"release {sa(desc, contract.VERSION)} to {env} is still running; abort it instead "
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
    wid = rollback_workflow_id(cfg.app, env)
    services = ", ".join(r.service for r in refs)
    handle = await start(
        client,
        WorkflowType.ROLLBACK,
        req,
        workflow_id=wid,
        env=env,
        what=f"a rollback of {services}",
        result_type=RollbackResult,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(contract.ENVIRONMENT, env),
                SearchAttributePair(contract.PHASE, Phase.ROLLING_BACK.value),
                SearchAttributePair(contract.OUTCOME, Outcome.RUNNING.value),
            ]
        ),
        static_summary=f"Rollback of {cfg.app} in {env}: {services}",
        static_details=(
            f"100% of the traffic of {services} back to the revision that served before the "
            f"current one (never LATEST). Requested by {by}."
        ),
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
    migration = await _migration_note(client, cfg, env)
    if json_out:
        output = RollbackOutput(**res.model_dump(), workflow_id=wid, migration_note=migration)
        print_json(output.model_dump_json(indent=2))
    else:
        out.print(
            render.rollback_table(res, f"Rollback in {env}: {render.words(res.outcome.value)}")
        )
        if migration:
            out.print(migration, markup=False, soft_wrap=True, style="bold yellow")
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
            + web_link(rollback_workflow_id(cfg.app, env))
        )
        raise typer.Exit(EXIT_OK)

    raise typer.Exit(run(_rollback(cfg, env, names, json_out), on_interrupt=detached))


# =============================================================================== history
