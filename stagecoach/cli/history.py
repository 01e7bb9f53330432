"""`history ENV`: the releases to ENV, newest first."""

from __future__ import annotations

from typing import Annotated

import typer
from temporalio.client import WorkflowExecutionStatus

from stagecoach import contract
from stagecoach.cli import render
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
from stagecoach.config import Config
from stagecoach.contract import release_workflow_id


async def _history(cfg: Config, env: str, limit: int, json_out: bool) -> int:
    client = await async_client(cfg)
    wid = release_workflow_id(cfg.app, env)
    safe_env = env.replace("'", "\\'")
    query = (
        f"WorkflowType='{contract.WorkflowType.RELEASE}' "
        f"AND {contract.ENVIRONMENT.name}='{safe_env}' AND WorkflowId='{wid}'"
    )
    rows: list[render.HistoryRow] = []
    async for wf in client.list_workflows(query, limit=limit):
        sa = wf.typed_search_attributes
        status = wf.status.name.lower() if wf.status else ""
        outcome = str(sa.get(contract.OUTCOME) or "")
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
                version=str(sa.get(contract.VERSION) or ""),
                phase=str(sa.get(contract.PHASE) or ""),
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
