"""`report ENV [--release RUN_ID|VERSION] [--drill] [--html FILE]`: find the run, read its final
(or live) status and the gates it ran with, and write the page `stagecoach.report` renders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from stagecoach import report as pages
from stagecoach.bake import Gates
from stagecoach.cli.app import (
    EXIT_OK,
    ConfigOpt,
    app,
    async_client,
    check_env,
    fail,
    load,
    out,
    run,
    started_input,
    web_link,
)
from stagecoach.cli.render import words
from stagecoach.config import VERSION_RE, Config
from stagecoach.contract import (
    ENVIRONMENT,
    VERSION,
    Message,
    WorkflowType,
    release_workflow_id,
)
from stagecoach.payloads.dr import DrillReport, PointInTimeResult, RestoreStatus
from stagecoach.payloads.release import ReleaseInput, ReleaseStatus
from stagecoach.temporal import workflow_result


async def final_status(client: Client, workflow_id: str, run_id: str, result_type: Any) -> Any:
    """The run's status: its result (or the status its failure carries) once it ended, the
    `status` query while it runs or when it ended otherwise (continued as new, terminated)."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id, result_type=result_type)
    desc = await handle.describe()
    if desc.status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
        try:
            return await workflow_result(handle, result_type, follow_runs=False)
        except WorkflowFailureError:
            pass
    return await handle.query(Message.STATUS, result_type=result_type)


async def release_gates(client: Client, workflow_id: str, run_id: str) -> Gates | None:
    """The gates the run was started with (its input in the first history event)."""
    inp = await started_input(client, workflow_id, run_id, ReleaseInput)
    return inp.gates if inp is not None else None


async def find_run(client: Client, query: str) -> tuple[str, str, str] | None:
    """(workflow id, run id, workflow type) of the newest run matching a visibility query."""
    async for wf in client.list_workflows(query, limit=1):
        return wf.id, wf.run_id, wf.workflow_type
    return None


async def write_report(
    client: Client,
    cfg: Config,
    env: str,
    release: str | None,
    drill: bool,
    out: Path | None,
    link: str,
) -> tuple[Path, str]:
    """Write the page; (its path, a one-line description). ValueError: nothing to report."""
    safe_env = env.replace("'", "\\'")
    if drill:
        found = await find_run(
            client, f"WorkflowType='{WorkflowType.DR_DRILL}' AND {ENVIRONMENT.name}='{safe_env}'"
        )
        if found is None:
            raise ValueError(f"no DR drill of {env} has run yet (run `dr-drill {env}`)")
        wid, run_id, _ = found
        r: DrillReport = await final_status(client, wid, run_id, DrillReport)
        path = out or Path(f"report-{cfg.app}-{env}-drill.html")
        path.write_text(pages.drill_report(r, workflow_id=wid), encoding="utf-8")
        return path, f"DR drill of {r.source_instance}: {words(r.outcome.value)}"
    wid = release_workflow_id(cfg.app, env)
    if release and VERSION_RE.fullmatch(release):
        query = f"WorkflowId='{wid}' AND {VERSION.name}='{release}'"
        found = await find_run(client, query)
        if found is None:
            raise ValueError(f"no release {release} to {env} found (see `history {env}`)")
    elif release:
        try:
            desc = await client.get_workflow_handle(wid, run_id=release).describe()
        except Exception as err:
            raise ValueError(f"no run {release} of {wid} ({err})") from err
        found = (wid, desc.run_id, desc.workflow_type)
    else:
        found = await find_run(client, f"WorkflowId='{wid}'")
        if found is None:
            raise ValueError(f"no release to {env} has run yet")
    wid, run_id, kind = found
    if kind in (WorkflowType.RESTORE, WorkflowType.POINT_IN_TIME_RECOVERY):
        rtype: Any = RestoreStatus if kind == WorkflowType.RESTORE else PointInTimeResult
        rec = await final_status(client, wid, run_id, rtype)
        path = out or Path(f"report-{cfg.app}-{env}-{kind.lower()}.html")
        path.write_text(pages.recovery_report(rec, workflow_id=wid), encoding="utf-8")
        return path, f"{kind} in {env}: {words(rec.outcome.value)}"
    st: ReleaseStatus = await final_status(client, wid, run_id, ReleaseStatus)
    gates = await release_gates(client, wid, run_id)
    if gates is None:
        gates = cfg.gates_for(env)
    page = pages.release_report(st, gates, workflow_id=wid, run_id=run_id, link=link)
    path = out or Path(f"report-{cfg.app}-{env}-{st.version}.html")
    path.write_text(page, encoding="utf-8")
    return path, f"release {st.version} to {env}: {words(st.outcome.value)}"


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
