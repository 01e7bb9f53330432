"""What the CLI shows: rich views of a release, JSON output, and the small tables.

Pure functions from models to rich renderables or strings (no I/O, no Temporal)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from stagecoach.models import (
    Outcome,
    Phase,
    Reading,
    ReleaseStatus,
    RollbackResult,
    ServiceStatus,
    TrafficTarget,
)
from stagecoach.splits import describe

OUTCOME_STYLE = {
    Outcome.RUNNING: "cyan",
    Outcome.PROMOTED: "green",
    Outcome.ROLLED_BACK: "yellow",
    Outcome.ABORTED: "yellow",
    Outcome.FAILED: "red",
}
STATE_STYLE = {
    "pending": "dim",
    "created": "cyan",
    "smoke_tested": "cyan",
    "shifting": "bold cyan",
    "promoted": "green",
    "rolled_back": "yellow",
    "failed": "red",
}
VERDICT_STYLE = {"pass": "green", "fail": "red", "inconclusive": "yellow"}
EVENTS_SHOWN = 8


def workflow_link(ui: str, namespace: str, workflow_id: str) -> str:
    return f"{ui}/namespaces/{namespace}/workflows/{workflow_id}"


def approve_command(env: str, approvers: list[str] | None = None) -> str:
    who = approvers[0] if approvers and len(approvers) == 1 else "NAME"
    return f"python starter.py approve {env} --by {who}"


# ----------------------------------------------------------------------------- JSON


def status_dict(st: ReleaseStatus, workflow_id: str = "", web_ui: str = "") -> dict[str, Any]:
    """The `status --json` / `deploy --json` shape: ReleaseStatus plus where to see it."""
    out: dict[str, Any] = st.model_dump(mode="json")
    # the events again, structured: ISO 8601 times (the date from the release's start)
    from stagecoach.report import event_times

    out["timeline"] = [
        {"at": at.isoformat() if at else None, "event": text} for at, text in event_times(st)
    ]
    if workflow_id:
        out["workflow_id"] = workflow_id
    if web_ui:
        out["web_ui"] = web_ui
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()  # ISO 8601 everywhere, as pydantic's JSON mode writes them
    return str(value)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=_json_default)


# ----------------------------------------------------------------------------- readings


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1000:.2f} s" if x >= 1000 else f"{x:.0f} ms"


def reading_line(r: Reading) -> str:
    line = (
        f"{r.weight}%: canary {r.canary_requests} req, {_pct(r.canary_error_rate)} err, "
        f"p95 {_ms(r.canary_p95_ms)}"
    )
    if r.stable_requests:
        line += (
            f" | stable {r.stable_requests} req, {_pct(r.stable_error_rate)} err, "
            f"p95 {_ms(r.stable_p95_ms)}"
        )
    return f"{line} -> {r.verdict.value}"


def _reading_text(svc: ServiceStatus) -> Text:
    if not svc.readings:
        return Text("-", style="dim")
    r = svc.readings[-1]
    t = Text(reading_line(r).rsplit(" -> ", 1)[0] + " -> ")
    t.append(r.verdict.value, style=VERDICT_STYLE.get(r.verdict.value, ""))
    if r.reasons and r.verdict.value != "pass":
        t.append(f" ({'; '.join(r.reasons)})", style="dim")
    return t


def _time(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


# ----------------------------------------------------------------------------- release view


@dataclass
class ViewContext:
    env: str
    workflow_id: str
    link: str
    approvers: list[str]
    note: str = ""
    show_events: bool = True


def database_lines(st: ReleaseStatus) -> list[str]:
    """The point-in-time recovery a switch release moves to, the database moves, and (once a
    switch is promoted) the config change that keeps later releases on the new instance."""
    lines = []
    rec = st.recovery
    if rec is not None:
        counts = ""
        if rec.validation is not None:
            counts = ", validated: " + (
                ", ".join(f"{t.table}={t.rows}" for t in rec.validation.tables) or "no tables"
            )
        took = f", cloned in {rec.clone_seconds:g}s" if rec.clone_seconds is not None else ""
        lines.append(
            f"recovery: {rec.recovery_instance} = {rec.source_instance} as of "
            f"{_time(rec.point_in_time)}{took}{counts}"
        )
    for svc in st.services:
        if svc.database and svc.database_before and svc.database_before != svc.database:
            lines.append(f"{svc.run_service}: database {svc.database_before} -> {svc.database}")
    if rec is not None and st.outcome == Outcome.PROMOTED:
        lines.append(
            f"next: set environments.{st.env}.database.instance: {rec.recovery_instance} in the "
            "config (releases stop while it names another instance than the services use)"
        )
    return lines


def hook_lines(st: ReleaseStatus) -> list[str]:
    """One line per hook: job, execution, state, task counts, where its logs are."""
    lines = []
    for h in st.hooks:
        line = f"{h.stage} hook {h.name}: job {h.job}"
        if h.execution:
            line += (
                f", execution {h.execution} {h.state}: {h.succeeded}/{h.task_count} task(s) "
                f"succeeded, {h.failed} failed"
            )
            if h.running:
                line += f", {h.running} running"
            if h.cancelled:
                line += f", {h.cancelled} cancelled"
        else:
            line += f" {h.state}"
        if h.message:
            line += f" ({h.message})"
        lines.append(line)
        if h.log_uri:
            lines.append(f"  logs: {h.log_uri}")
    return lines


def freeze_lines(st: ReleaseStatus) -> list[str]:
    """A freeze holding the release, and a freeze the release was started through."""
    lines = []
    if st.frozen_until is not None and st.outcome == Outcome.RUNNING:
        lines.append(f"frozen until {_time(st.frozen_until)}: {st.frozen_reason}")
    ov = st.freeze_override
    if ov is not None:
        lines.append(
            f"started inside a freeze ({ov.window}, until {_time(ov.until)}) by {ov.by}: "
            f"{ov.reason}"
        )
    return lines


def print_release(console: Console, st: ReleaseStatus, ctx: ViewContext) -> None:
    """The release's panel, then the Web UI link on one line whatever the width (soft-wrapped
    by the terminal, so it stays clickable and copyable)."""
    console.print(release_view(st, ctx, with_link=False))
    console.print(f"Web UI: {ctx.link}", style="blue", soft_wrap=True, markup=False)


def release_view(st: ReleaseStatus, ctx: ViewContext, with_link: bool = True) -> RenderableType:
    head = Text()
    head.append(f"Release {st.version}", style="bold")
    head.append(f" of {st.app} to {st.env}   phase ")
    head.append(st.phase.value, style="bold")
    head.append("   outcome ")
    head.append(st.outcome.value, style=f"bold {OUTCOME_STYLE.get(st.outcome, '')}")
    parts: list[RenderableType] = [head]
    if st.progress:
        parts.append(Text(st.progress, style="italic"))
    if st.backup_id:
        parts.append(Text(f"pre-deploy backup: {st.backup_id}"))
    parts.extend(Text(line) for line in database_lines(st))
    parts.extend(Text(line, style="yellow") for line in freeze_lines(st))
    parts.extend(Text(line) for line in hook_lines(st))

    parts.append(ServicesView(st.services))
    for svc in st.services:
        if svc.readings:
            reading = Text(f"{svc.run_service} latest reading ({svc.reading_count} so far): ")
            reading.append_text(_reading_text(svc))
            parts.append(reading)
            for line in svc.readings[-1].evidence:
                # the judge's cumulative evidence, one test a line (what, evidence, bar)
                parts.append(Text(f"  {line}", style="red" if "FAILS" in line else "dim"))
    errors = [st.error] if st.error else []
    errors += [
        f"{s.run_service}: {s.error}" for s in st.services if s.error and s.error not in st.error
    ]
    for line in errors:
        parts.append(Text(line, style="red"))
    if st.abort_reason:
        parts.append(Text(f"aborted: {st.abort_reason}", style="yellow"))
    if st.migration_note:
        parts.append(Text(st.migration_note, style="bold yellow"))
    if st.approvals:
        for a in st.approvals:
            parts.append(
                Text(
                    f"approved by {a.by} at {_time(a.at)} before {a.before_weight}%"
                    + (f": {a.comment}" if a.comment else ""),
                    style="green",
                )
            )
    if st.awaiting_approval_for is not None:
        who = f" ({', '.join(ctx.approvers)})" if ctx.approvers else ""
        t = Text(
            f"Awaiting approval before {st.awaiting_approval_for}%{who}. Run: ", style="bold yellow"
        )
        t.append(approve_command(ctx.env, ctx.approvers), style="bold")
        parts.append(t)
    if st.events and ctx.show_events:
        parts.append(Text("events", style="bold"))
        for e in st.events[-EVENTS_SHOWN:]:
            parts.append(Text(f"  {e}", style="dim"))
    if ctx.note:
        parts.append(Text(ctx.note, style="dim"))
    panel = Panel(Group(*parts), title=ctx.workflow_id, title_align="left")
    if not with_link:  # print_release prints it unbroken
        return panel
    return Group(panel, Text(f"Web UI: {ctx.link}", style="blue", overflow="fold"))


class ServicesView:
    """The services of a release: a table where names fit on one line each, else (narrow
    terminals) a block per service, so no service or revision name is broken mid-word."""

    WIDE = 110  # columns from which the table fits the usual names whole

    def __init__(self, services: list[ServiceStatus]) -> None:
        self.services = services

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width >= self.WIDE:
            table = Table(expand=True, box=box.SIMPLE_HEAD, pad_edge=False)
            for col in ("service", "state", "stable", "canary"):
                table.add_column(col, overflow="fold")
            table.add_column("%", justify="right", no_wrap=True)
            for svc in self.services:
                table.add_row(
                    svc.run_service,
                    Text(svc.state, style=STATE_STYLE.get(svc.state, "")),
                    ", ".join(svc.stable_revisions) or "-",
                    svc.canary_revision or "-",
                    str(svc.percent),
                )
            yield table
            return
        for svc in self.services:
            head = Text(svc.run_service, style="bold")
            head.append(f"  {svc.state}", style=STATE_STYLE.get(svc.state, ""))
            head.append(f"  {svc.percent}%")
            yield head
            yield Text(f"  stable  {', '.join(svc.stable_revisions) or '-'}")
            yield Text(f"  canary  {svc.canary_revision or '-'}")


def new_events(seen: list[str], events: list[str]) -> list[str]:
    """The events not printed yet. The workflow keeps only the newest events, so the list may
    have slid: find where the printed tail overlaps the new list's head."""
    for k in range(min(len(seen), len(events)), 0, -1):
        if seen[-k:] == events[:k]:
            return events[k:]
    return events


def summary_line(st: ReleaseStatus) -> str:
    what = st.error or st.abort_reason
    return f"Release {st.version} to {st.env}: {st.outcome.value}" + (f" ({what})" if what else "")


def is_done(st: ReleaseStatus) -> bool:
    return st.phase == Phase.DONE or st.outcome != Outcome.RUNNING


# ----------------------------------------------------------------------------- tables


@dataclass
class HistoryRow:
    workflow_id: str
    run_id: str
    version: str
    phase: str
    outcome: str
    status: str
    started: datetime | None
    closed: datetime | None
    note: str = ""  # e.g. a freeze overridden to start it (who, why)


def _duration(r: HistoryRow) -> str:
    if not (r.started and r.closed):
        return "-"
    secs = int((r.closed - r.started).total_seconds())
    return (
        f"{secs // 3600}h{secs % 3600 // 60:02d}m"
        if secs >= 3600
        else f"{secs // 60}m{secs % 60:02d}s"
    )


def history_table(rows: list[HistoryRow], title: str) -> RenderableType:
    return HistoryView(rows, title)


class HistoryView:
    """Past releases: a table where a row fits on one line, else (narrow terminals) two lines
    per release. Nothing folds: a run id is copied whole; the phase shows only while a release
    runs ("running (baking)")."""

    WIDE = 100

    def __init__(self, rows: list[HistoryRow], title: str) -> None:
        self.rows = rows
        self.title = title

    @staticmethod
    def _outcome(r: HistoryRow) -> Text:
        style = {"promoted": "green", "running": "cyan", "failed": "red"}.get(r.outcome, "yellow")
        outcome = (r.outcome or r.status).replace("_", " ")
        if r.outcome == "running" and r.phase:
            outcome += f" ({r.phase.replace('_', ' ')})"
        return Text(outcome, style=style)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width >= self.WIDE:
            table = Table(title=self.title, title_justify="left", box=box.SIMPLE_HEAD)
            notes = any(r.note for r in self.rows)
            cols = ("version", "outcome", "started (UTC)", "took", "run id")
            for col in cols + (("note",) if notes else ()):
                table.add_column(col, no_wrap=col != "note", overflow="fold")
            for r in self.rows:
                cells: list[str | Text] = [
                    r.version or "-",
                    self._outcome(r),
                    _time(r.started),
                    _duration(r) if r.closed else "running",
                    r.run_id,
                ]
                if notes:
                    cells.append(r.note)
                table.add_row(*cells)
            yield table
            return
        yield Text(self.title, style="italic")
        for r in self.rows:
            line = Text(f"{r.version or '-'}  ", style="bold")
            line.append_text(self._outcome(r))
            line.append(
                f"  {_time(r.started)} UTC" + (f"  took {_duration(r)}" if r.closed else "")
            )
            yield line
            yield Text(f"  run {r.run_id}", no_wrap=True, overflow="ignore")
            if r.note:
                yield Text(f"  {r.note}")


def _traffic(t: list[TrafficTarget]) -> str:
    return describe(t) if t else "-"


def rollback_table(res: RollbackResult, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("service", "before", "after", "result"):
        table.add_column(col)
    for s in res.services:
        result = (
            Text(s.error, style="red")
            if s.error
            else Text("changed" if s.changed else "already there", style="green")
        )
        table.add_row(s.service, _traffic(s.from_traffic), _traffic(s.to_traffic), result)
    return table


def stack_table(rows: list[Any]) -> Table:
    table = Table(title="local stack", title_justify="left")
    for col in ("component", "pid", "port", "health"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.name,
            str(r.pid) if r.pid else "-",
            r.port,
            Text(r.detail, style="green" if r.healthy else "red"),
        )
    return table
