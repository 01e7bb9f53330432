"""The DR commands' views: backups, restores, point-in-time recoveries and drills."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from rich.table import Table

from stagecoach.cli.app import out
from stagecoach.cli.render import iso, words
from stagecoach.payloads.dr import DrillReport, PointInTimeResult, RestoreStatus
from stagecoach.payloads.replica_drill import ReplicaDrillStatus
from stagecoach.payloads.sql import BackupInfo


def dump(model: BaseModel | list[Any] | dict[str, Any]) -> str:
    if isinstance(model, BaseModel):
        return model.model_dump_json(indent=2)
    return json.dumps(model, indent=2, default=str)


def utc_time(dt: datetime | None) -> str:
    """ISO 8601, UTC, to the second (as every time the CLI prints)."""
    return iso(dt)


def seconds(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 3600:
        return f"{x / 3600:.1f} h"
    if x >= 120:
        return f"{x / 60:.1f} min"
    return f"{x:.1f} s"


def backups_table(backups: list[BackupInfo], title: str) -> Table:
    table = Table(title=title)
    for col in ("id", "type", "status", "time", "description"):
        table.add_column(col)
    for b in backups:
        table.add_row(
            b.id, b.type, b.status, utc_time(b.enqueued_time or b.end_time), b.description
        )
    return table


def restore_summary(st: RestoreStatus) -> list[str]:
    lines = [
        f"restore of backup {st.backup_id} into {st.instance} ({st.env}): "
        + words(st.outcome.value),
    ]
    if st.error or st.abort_reason:
        lines.append(f"  reason: {st.error or st.abort_reason}")
    lines.append(
        f"  restore time {seconds(st.restore_seconds)}, services drained for "
        f"{seconds(st.downtime_seconds)}"
    )
    if st.validation:
        counts = ", ".join(
            f"{t.table}={t.rows} (newest {utc_time(t.newest)})" for t in st.validation.tables
        )
        lines.append(f"  validation: {'ok' if st.validation.ok else 'PROBLEMS'}: {counts}")
    lines.append("  left in:")
    lines += [f"    - {s}" for s in st.left_in]
    return lines


def pitr_summary(st: PointInTimeResult) -> list[str]:
    lines = [
        f"point-in-time recovery of {st.source_instance} at {utc_time(st.point_in_time)} into "
        f"{st.recovery_instance}: {words(st.outcome.value)}"
    ]
    if st.error or st.abort_reason:
        lines.append(f"  reason: {st.error or st.abort_reason}")
    lines.append(f"  clone time {seconds(st.clone_seconds)}, newest row {utc_time(st.newest)}")
    if st.validation:
        counts = ", ".join(f"{t.table}={t.rows}" for t in st.validation.tables)
        lines.append(f"  validation: {'ok' if st.validation.ok else 'PROBLEMS'}: {counts}")
    lines.append("  left in:")
    lines += [f"    - {s}" for s in st.left_in]
    if st.next_steps:
        lines.append("  next steps:")
        lines += [f"    - {s}" for s in st.next_steps]
    return lines


def drill_view(r: DrillReport) -> list[Any]:
    """The drill report as printed (a table and summary lines)."""
    b = r.backup
    head = (
        f"DR drill {r.env}: {words(r.outcome.value)} -- backup {b.id if b else '-'} "
        f"({b.type if b else '-'}, {utc_time(b.enqueued_time) if b else '-'}) "
        f"of {r.source_instance} "
        f"restored into {r.scratch_instance}"
    )
    table = Table(title=None)
    for col in ("table", "source rows", "scratch rows", "source newest", "scratch newest"):
        table.add_column(col)
    for t in r.tables:
        table.add_row(
            t.table,
            "-" if t.source_rows is None else str(t.source_rows),
            "-" if t.scratch_rows is None else str(t.scratch_rows),
            utc_time(t.source_newest),
            utc_time(t.scratch_newest),
        )

    def verdict(met: bool | None) -> str:
        return "not measured" if met is None else ("met" if met else "MISSED")

    lines = [
        f"restore time      {seconds(r.restore_seconds)}  vs RTO {seconds(r.rto_seconds)}: "
        f"{verdict(r.rto_met)}",
        f"data-loss window  {seconds(r.data_loss_seconds)}  vs RPO {seconds(r.rpo_seconds)}: "
        f"{verdict(r.rpo_met)}  (source newest {utc_time(r.source_newest)} - scratch newest "
        f"{utc_time(r.scratch_newest)})",
        f"verification      {'passed' if r.verified else 'FAILED'}",
        f"scratch instance  {'deleted' if r.scratch_deleted else 'NOT DELETED: delete it by hand'}",
    ]
    if r.error or r.abort_reason:
        lines.append(f"reason            {r.error or r.abort_reason}")
    return [head, table, *lines]


def replica_drill_lines(st: ReplicaDrillStatus) -> list[str]:
    """What `dr-drill --scenario regional --from replica` adds to the regional drill's report
    (stagecoach.cli.failover.report_lines; its `left` lines name the configured replica left
    alone): the scratch replica's story, the failover's own time (promote, validate, services)
    against the RTO, and the primary's replicas afterwards."""
    lag = (
        f", caught up at {seconds(st.caught_up_lag_seconds)} of lag"
        if st.caught_up_lag_seconds is not None
        else ""
    )
    fate = (
        "deleted"
        if st.replica_deleted
        else "NOT DELETED: delete it by hand"
        if any(c.startswith(f"replica {st.scratch_replica} ") for c in st.created)
        else "never created"
    )
    lines = [
        f"replica    scratch {st.scratch_replica}: ready in {seconds(st.replica_ready_seconds)}"
        f"{lag} (not part of a failover's time), "
        f"{'promoted' if st.replica_promoted else 'not promoted'}, {fate}"
    ]
    if st.failover_seconds is not None:
        verdict = "met" if st.failover_rto_met else "MISSED"
        lines.append(
            f"failover   {seconds(st.failover_seconds)} (promote, validate, services; a "
            f"failover --from replica before its DNS move) vs RTO {seconds(st.rto_seconds)}: "
            f"{verdict}"
        )
    if st.replicas_untouched is not None:
        names = ", ".join(st.primary_replicas) or "none"
        state = "still replicating" if st.replicas_untouched else "NOT all replicating"
        lines.append(f"replicas   of {st.source_instance} before the drill ({names}): {state}")
    return lines


def print_lines(lines: list[Any]) -> None:
    for line in lines:
        if isinstance(line, str):
            out.print(line, markup=False, highlight=False)
        else:
            out.print(line)
