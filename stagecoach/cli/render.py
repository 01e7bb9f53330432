"""What the CLI shows: rich views of a release, JSON output, and the small tables.

Pure functions from models to rich renderables or strings (no I/O, no Temporal)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from stagecoach.cli.schemas import HistoryEntry
from stagecoach.payloads.common import Outcome, Phase, TrafficTarget
from stagecoach.payloads.monitoring import Reading
from stagecoach.payloads.release import ReleaseStatus, RollbackResult, ServiceStatus
from stagecoach.report import event_times
from stagecoach.splits import describe

# How the program was started, for the commands messages suggest: `python starter.py` in a
# checkout, else the installed `stagecoach` script.
STARTER = "python starter.py" if Path(sys.argv[0]).name == "starter.py" else "stagecoach"

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
    return f"{STARTER} approve {env} --by {who}"


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


def iso(t: datetime | None) -> str:
    """A time as the CLI prints it: ISO 8601, UTC, to the second (2026-11-30T05:32:27Z)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else "-"


def words(name: str) -> str:
    """An enum value as prose: rolled_back -> rolled back."""
    return name.replace("_", " ")


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
            f"{iso(rec.point_in_time)}{took}{counts}"
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
        lines.append(f"frozen until {iso(st.frozen_until)}: {st.frozen_reason}")
    ov = st.freeze_override
    if ov is not None:
        lines.append(
            f"started inside a freeze ({ov.window}, until {iso(ov.until)}) by {ov.by}: {ov.reason}"
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
    head.append(f" of {st.app} to {st.env}: ")
    state = st.phase if st.outcome == Outcome.RUNNING else st.outcome
    head.append(words(state.value), style=f"bold {OUTCOME_STYLE.get(st.outcome, '')}")
    parts: list[RenderableType] = [head]
    if st.progress and st.outcome == Outcome.RUNNING:  # once it ended, the reason says it
        parts.append(Text(st.progress, style="italic"))
    if st.backup_id:
        parts.append(Text(f"pre-deploy backup: {st.backup_id}"))
    parts.extend(Text(line) for line in database_lines(st))
    parts.extend(Text(line, style="yellow") for line in freeze_lines(st))
    parts.extend(Text(line) for line in hook_lines(st))

    parts.append(ServicesView(st))
    for svc in st.services:
        if svc.readings:
            reading = Text(f"{svc.run_service} latest reading ({svc.reading_count} so far): ")
            reading.append_text(_reading_text(svc))
            parts.append(reading)
            for line in svc.readings[-1].evidence:
                # the judge's cumulative evidence, one test a line (what, evidence, bar)
                parts.append(Text(f"  {line}", style="red" if "FAILS" in line else "dim"))
    # the reason once: a service's error only when it says more than the release's
    said = [x for x in (st.error, st.abort_reason) if x]
    errors = [st.error] if st.error else []
    errors += [
        f"{s.run_service}: {s.error}"
        for s in st.services
        if s.error and not any(s.error in x for x in said)
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
                    f"approved by {a.by} at {iso(a.at)} before {a.before_weight}%"
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
        for e in event_lines(st)[-EVENTS_SHOWN:]:
            parts.append(Text(f"  {e}", style="dim"))
    if ctx.note:
        parts.append(Text(ctx.note, style="dim"))
    panel = Panel(Group(*parts), title=ctx.workflow_id, title_align="left")
    if not with_link:  # print_release prints it unbroken
        return panel
    return Group(panel, Text(f"Web UI: {ctx.link}", style="blue", overflow="fold"))


def service_state(st: ReleaseStatus, svc: ServiceStatus) -> str:
    """A service's state in words; the service the release is at says what it waits for
    (baking, awaiting approval, frozen, paused) rather than "shifting" for all of them."""
    at_it = st.outcome == Outcome.RUNNING and st.current_service in (svc.name, svc.run_service)
    if svc.state == "shifting" and at_it:
        if st.awaiting_approval_for is not None:
            return "awaiting approval"
        if st.phase in (Phase.BAKING, Phase.FROZEN, Phase.PAUSED):
            return words(st.phase.value)
    return words(svc.state)


class ServicesView:
    """The services of a release: a table where names fit on one line each, else (narrow
    terminals) a block per service, so no service or revision name is broken mid-word."""

    WIDE = 110  # columns from which the table fits the usual names whole

    def __init__(self, st: ReleaseStatus) -> None:
        self.st = st
        self.services = st.services

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width >= self.WIDE:
            table = Table(expand=True, box=box.SIMPLE_HEAD, pad_edge=False)
            for col in ("service", "state", "stable", "canary"):
                table.add_column(col, overflow="fold")
            table.add_column("%", justify="right", no_wrap=True)
            for svc in self.services:
                table.add_row(
                    svc.run_service,
                    Text(service_state(self.st, svc), style=STATE_STYLE.get(svc.state, "")),
                    ", ".join(svc.stable_revisions) or "-",
                    svc.canary_revision or "-",
                    str(svc.percent),
                )
            yield table
            return
        for svc in self.services:
            head = Text(svc.run_service, style="bold")
            head.append(f"  {service_state(self.st, svc)}", style=STATE_STYLE.get(svc.state, ""))
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


def print_finished(console: Console, st: ReleaseStatus, ctx: ViewContext) -> None:
    """What follows a release's events once it ended: its panel (without the events, printed
    above it already), the Web UI link, and one summary line."""
    print_release(console, st, replace(ctx, show_events=False, note=""))
    style = OUTCOME_STYLE.get(st.outcome, "")
    console.print(summary_line(st), style=f"bold {style}", markup=False, soft_wrap=True)


def summary_line(st: ReleaseStatus) -> str:
    """The last line of a followed release (the reason is in the panel above it, once)."""
    return f"Release {st.version} to {st.env}: {words(st.outcome.value)}"


def event_lines(st: ReleaseStatus | Any) -> list[str]:
    """The events of a status (a release's or a DR workflow's: `events` "HH:MM:SS text" and
    `started_at`) with their full times (ISO 8601, UTC), one line each."""
    if not isinstance(st, ReleaseStatus):  # the same two fields, read the same way
        st = ReleaseStatus.model_construct(
            app="", env="", version="", events=list(st.events), started_at=st.started_at
        )
    return [f"{iso(at)}  {text}" if at else text for at, text in event_times(st)]


def new_event_lines(seen: list[str], st: ReleaseStatus | Any) -> list[str]:
    """The events of `st` not printed yet (`seen`: the raw events printed), with full times."""
    new = new_events(seen, list(st.events))
    return event_lines(st)[len(st.events) - len(new) :] if new else []


def live_line(st: ReleaseStatus, note: str = "") -> RenderableType:
    """The one line a terminal shows below the events while a release runs."""
    line = Text("... ", style="cyan", no_wrap=True, overflow="ellipsis")
    line.append(st.progress or words(st.phase.value))
    serving = [f"{s.run_service} {s.percent}%" for s in st.services if s.state == "shifting"]
    if serving:
        line.append(f"  [{', '.join(serving)}]", style="dim")
    if note:
        line.append(f"  {note}", style="dim")
    return line


# ----------------------------------------------------------------------------- tables


def took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    secs = int(seconds)
    return (
        f"{secs // 3600}h{secs % 3600 // 60:02d}m"
        if secs >= 3600
        else f"{secs // 60}m{secs % 60:02d}s"
    )


def history_table(rows: list[HistoryEntry], title: str) -> RenderableType:
    return HistoryView(rows, title)


class HistoryView:
    """Past releases: a table where a row fits on one line (the reason wraps at spaces), else
    (narrow terminals) a block per release. Nothing folds: a run id is copied whole; the phase
    shows only while a release runs ("running (baking)")."""

    WIDE = 140

    def __init__(self, rows: list[HistoryEntry], title: str) -> None:
        self.rows = rows
        self.title = title

    @staticmethod
    def _outcome(r: HistoryEntry) -> Text:
        style = {"promoted": "green", "running": "cyan", "failed": "red"}.get(r.outcome, "yellow")
        outcome = words(r.outcome or r.status)
        if r.outcome == "running" and r.phase:
            outcome += f" ({words(r.phase)})"
        return Text(outcome, style=style)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width >= self.WIDE:
            table = Table(title=self.title, title_justify="left", box=box.SIMPLE_HEAD)
            cols = ("version", "outcome", "started", "took", "approved by", "run id")
            for col in cols:
                table.add_column(col, no_wrap=True)
            table.add_column("why / note", overflow="fold", ratio=1)
            for r in self.rows:
                table.add_row(
                    r.version or "-",
                    self._outcome(r),
                    iso(r.started),
                    took(r.duration_seconds) if r.closed else "running",
                    ", ".join(r.approved_by) or "-",
                    r.run_id,
                    "; ".join(x for x in (r.reason, r.note) if x),
                )
            yield table
            return
        yield Text(self.title, style="italic")
        for r in self.rows:
            line = Text(f"{r.version or '-'}  ", style="bold")
            line.append_text(self._outcome(r))
            line.append(
                f"  {iso(r.started)}" + (f"  took {took(r.duration_seconds)}" if r.closed else "")
            )
            yield line
            if r.reason:
                yield Text(f"  why: {r.reason}")
            if r.approved_by:
                yield Text(f"  approved by {', '.join(r.approved_by)}")
            if r.note:
                yield Text(f"  {r.note}")
            yield Text(f"  run {r.run_id}", no_wrap=True, overflow="ignore")


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
