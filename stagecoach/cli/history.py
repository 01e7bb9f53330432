"""`history ENV`: the releases to ENV, newest first."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from stagecoach import contract
from stagecoach.cli import render, schemas
from stagecoach.cli.app import (
    EXIT_OK,
    ConfigOpt,
    JsonOpt,
    app,
    async_client,
    check_env,
    load,
    out,
    print_json,
    run,
)
from stagecoach.cli.follow import query_status
from stagecoach.cli.schemas import HistoryEntry
from stagecoach.config import Config
from stagecoach.contract import release_workflow_id
from stagecoach.payloads.common import Outcome
from stagecoach.payloads.release import ReleaseStatus
from stagecoach.temporal import workflow_result

_ENDED_BY_OUTCOME = (
    WorkflowExecutionStatus.RUNNING,
    WorkflowExecutionStatus.COMPLETED,
    WorkflowExecutionStatus.FAILED,  # not promoted: its outcome says how
)


async def _status_of(client: Client, wf: WorkflowExecution) -> ReleaseStatus | None:
    """The run's status: its result once it ended (the status a not-promoted failure carries),
    the `status` query while it runs; None when neither can be read (terminated, no worker)."""
    handle = client.get_workflow_handle(wf.id, run_id=wf.run_id, result_type=ReleaseStatus)
    if wf.status == WorkflowExecutionStatus.RUNNING:
        return await query_status(handle, ReleaseStatus)
    if wf.status not in _ENDED_BY_OUTCOME:
        return None
    try:
        return await workflow_result(handle, ReleaseStatus, follow_runs=False)
    except Exception:
        return None


async def _entry(client: Client, wf: WorkflowExecution) -> HistoryEntry:
    sa = wf.typed_search_attributes
    status = wf.status.name.lower() if wf.status else ""
    outcome = str(sa.get(contract.OUTCOME) or "")
    if wf.status not in _ENDED_BY_OUTCOME or (
        wf.status == WorkflowExecutionStatus.FAILED and outcome in ("", "running")
    ):
        outcome = status  # terminated, failed before it recorded an outcome, continued...
    st, memo = await asyncio.gather(_status_of(client, wf), wf.memo())
    reason = ""
    if st is not None and st.outcome != Outcome.PROMOTED:
        reason = st.error or st.abort_reason
    took = (wf.close_time - wf.start_time).total_seconds() if wf.close_time else None
    return HistoryEntry(
        workflow_id=wf.id,
        run_id=wf.run_id,
        version=str(sa.get(contract.VERSION) or ""),
        outcome=outcome,
        phase=str(sa.get(contract.PHASE) or "") or None if outcome == "running" else None,
        status=status,
        started=wf.start_time,
        closed=wf.close_time,
        duration_seconds=took,
        reason=reason,
        approved_by=[a.by for a in st.approvals] if st is not None else [],
        note=str(memo.get("note") or ""),
    )


async def _history(cfg: Config, env: str, limit: int, json_out: bool) -> int:
    client = await async_client(cfg)
    wid = release_workflow_id(cfg.app, env)
    safe_env = env.replace("'", "\\'")
    query = (
        f"WorkflowType='{contract.WorkflowType.RELEASE}' "
        f"AND {contract.ENVIRONMENT.name}='{safe_env}' AND WorkflowId='{wid}'"
    )
    runs = [wf async for wf in client.list_workflows(query, limit=limit)]
    rows = list(await asyncio.gather(*(_entry(client, wf) for wf in runs)))
    if json_out:
        print_json(schemas.to_json([r.model_dump(mode="json") for r in rows]))
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
    """List the releases to ENV (newest first): version, outcome, why it was not promoted, who
    approved it, when it started and how long it took, run id."""
    cfg = load(config)
    check_env(cfg, env)
    raise typer.Exit(run(_history(cfg, env, limit, json_out)))
