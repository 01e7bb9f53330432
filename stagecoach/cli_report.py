"""`starter.py report ENV [--release RUN_ID|VERSION] [--drill] [--html FILE]`: find the run, read
its final (or live) status and the gates it ran with, and write the page `stagecoach.report`
renders. Imported by the `report` command in stagecoach/cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from stagecoach import report
from stagecoach.config import VERSION_RE, Config, Gates
from stagecoach.dr_models import DrillReport, PointInTimeResult, RestoreStatus
from stagecoach.models import ReleaseInput, ReleaseStatus
from stagecoach.plan import release_workflow_id
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
    return await handle.query("status", result_type=result_type)


async def release_gates(client: Client, workflow_id: str, run_id: str) -> Gates | None:
    """The gates the run was started with (its input in the first history event)."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    async for event in handle.fetch_history_events():
        attrs = event.workflow_execution_started_event_attributes
        if not attrs.input.payloads:
            return None
        try:
            [inp] = await client.data_converter.decode(attrs.input.payloads, [ReleaseInput])
        except Exception:  # a restore's input that continued as new into a release, ...
            return None
        return inp.gates if isinstance(inp, ReleaseInput) else None
    return None


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
            client, f"WorkflowType='DrDrill' AND StagecoachEnvironment='{safe_env}'"
        )
        if found is None:
            raise ValueError(f"no DR drill of {env} has run yet (run `dr-drill {env}`)")
        wid, run_id, _ = found
        r: DrillReport = await final_status(client, wid, run_id, DrillReport)
        path = out or Path(f"report-{cfg.app}-{env}-drill.html")
        path.write_text(report.drill_report(r, workflow_id=wid), encoding="utf-8")
        return path, f"DR drill of {r.source_instance}: {r.outcome.value}"
    wid = release_workflow_id(cfg.app, env)
    if release and VERSION_RE.fullmatch(release):
        query = f"WorkflowId='{wid}' AND StagecoachVersion='{release}'"
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
    if kind in ("Restore", "PointInTimeRecovery"):
        rtype: Any = RestoreStatus if kind == "Restore" else PointInTimeResult
        rec = await final_status(client, wid, run_id, rtype)
        path = out or Path(f"report-{cfg.app}-{env}-{kind.lower()}.html")
        path.write_text(report.recovery_report(rec, workflow_id=wid), encoding="utf-8")
        return path, f"{kind} in {env}: {rec.outcome.value}"
    st: ReleaseStatus = await final_status(client, wid, run_id, ReleaseStatus)
    gates = await release_gates(client, wid, run_id)
    if gates is None:
        gates = cfg.gates_for(env)
    page = report.release_report(st, gates, workflow_id=wid, run_id=run_id, link=link)
    path = out or Path(f"report-{cfg.app}-{env}-{st.version}.html")
    path.write_text(page, encoding="utf-8")
    return path, f"release {st.version} to {env}: {st.outcome.value}"
