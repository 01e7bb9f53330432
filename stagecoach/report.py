"""`starter.py report`: one self-contained HTML page telling a release's story (or a DR drill's,
restore's or point-in-time recovery's), with inline SVG plots and the tables behind them.

Pure: models in, an HTML string out (no I/O, no network, no script). The page opens offline: no
external stylesheet, font, script or image; every plot is an `<svg>` element drawn here.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from stagecoach.bake import Gates
from stagecoach.payloads.common import ApprovalRecord, Outcome
from stagecoach.payloads.dr import DrillReport, PointInTimeResult, RestoreStatus
from stagecoach.payloads.monitoring import Reading
from stagecoach.payloads.release import ReleaseStatus, ServiceStatus

W, H = 760, 220  # plot size (px)
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 14, 34
CANARY, STABLE, GATE, STEP = "#d9480f", "#1c7ed6", "#c92a2a", "#2b8a3e"
VERDICT_COLOUR = {"pass": "#2b8a3e", "fail": "#c92a2a", "inconclusive": "#e67700"}
OUTCOME_COLOUR = {
    "promoted": "#2b8a3e",
    "succeeded": "#2b8a3e",
    "running": "#1c7ed6",
    "rolled_back": "#e67700",
    "aborted": "#e67700",
    "failed": "#c92a2a",
    "cancelled": "#c92a2a",
}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#212529}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #dee2e6}
h3{font-size:15px;margin:18px 0 6px}
.outcome{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:600}
.why{margin:8px 0;padding:8px 12px;background:#fff4e6;border-left:4px solid #e67700}
.meta{color:#495057} table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
td,th{border:1px solid #dee2e6;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f5} tr.fail td{background:#fff5f5} tr.inconclusive td{background:#fff9db}
svg{display:block;margin:4px 0 14px;background:#fff;border:1px solid #e9ecef}
svg text{font:11px system-ui,sans-serif;fill:#495057} .legend span{margin-right:14px}
.sw{display:inline-block;width:12px;height:3px;vertical-align:middle;margin-right:4px}
code{background:#f1f3f5;padding:0 3px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _t(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else ""


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Marker:
    """A vertical line on a time plot: a decision, an approval, a rollback."""

    at: datetime
    label: str
    colour: str = "#868e96"


@dataclass
class Series:
    name: str
    colour: str
    points: list[tuple[datetime, float]] = field(default_factory=list)
    step: bool = False  # drawn as a step function (traffic)
    dots: list[str] = field(default_factory=list)  # per point colour (verdicts); "" none


@dataclass
class TimePlot:
    title: str
    unit: str
    series: list[Series]
    limits: list[tuple[float, str]] = field(default_factory=list)  # (value, label)
    markers: list[Marker] = field(default_factory=list)
    y_max: float | None = None


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values from `lo` to `hi` (steps of 1, 2, 2.5 or 5 times a power of
    ten)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step)
    return [round(i * step, 10) for i in range(first, math.floor(hi / step) + 1)]


def svg_time_plot(plot: TimePlot) -> str:
    """An inline SVG line plot over time: series, horizontal limits, vertical markers."""
    times = [t for s in plot.series for t, _ in s.points] + [m.at for m in plot.markers]
    values = [v for s in plot.series for _, v in s.points] + [v for v, _ in plot.limits]
    title = f"<title>{_e(plot.title)}</title>"
    if not times:
        return (
            f'<svg class="plot" role="img" width="{W}" height="40" viewBox="0 0 {W} 40">{title}'
            f'<text x="{PAD_L}" y="24">{_e(plot.title)}: no data</text></svg>'
        )
    t0, t1 = min(times), max(times)
    if t1 <= t0:
        t1 = t0 + timedelta(seconds=1)
    y1 = plot.y_max if plot.y_max is not None else max([*values, 0.0]) * 1.12 or 1.0
    span = (t1 - t0).total_seconds()

    def x(t: datetime) -> float:
        return PAD_L + (W - PAD_L - PAD_R) * (t - t0).total_seconds() / span

    def y(v: float) -> float:
        return H - PAD_B - (H - PAD_T - PAD_B) * min(max(v, 0.0), y1) / y1

    parts = [
        f'<svg class="plot" role="img" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'xmlns="http://www.w3.org/2000/svg">{title}'
    ]
    for v in _ticks(0.0, y1):
        parts.append(
            f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            'stroke="#f1f3f5"/>'
            f'<text x="{PAD_L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">'
            f"{v:g}{_e(plot.unit)}</text>"
        )
    for i in range(5):
        t = t0 + timedelta(seconds=span * i / 4)
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            f'<text x="{x(t):.1f}" y="{H - PAD_B + 16}" text-anchor="{anchor}">'
            f"{t.astimezone(UTC):%H:%M:%S}</text>"
        )
    parts.append(
        f'<line x1="{PAD_L}" x2="{PAD_L}" y1="{PAD_T}" y2="{H - PAD_B}" stroke="#adb5bd"/>'
        f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{H - PAD_B}" y2="{H - PAD_B}" stroke="#adb5bd"/>'
    )
    for m in plot.markers:
        parts.append(
            f'<line class="marker" x1="{x(m.at):.1f}" x2="{x(m.at):.1f}" y1="{PAD_T}" '
            f'y2="{H - PAD_B}" stroke="{m.colour}" stroke-dasharray="3,3">'
            f"<title>{_e(_t(m.at))} {_e(m.label)}</title></line>"
        )
    for value, label in plot.limits:
        parts.append(
            f'<line class="limit" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}" stroke="{GATE}" stroke-dasharray="6,4"/>'
            f'<text x="{W - PAD_R - 4}" y="{y(value) - 4:.1f}" text-anchor="end" '
            f'style="fill:{GATE}">{_e(label)}</text>'
        )
    for s in plot.series:
        if not s.points:
            continue
        pts: list[str] = []
        prev: float | None = None
        for t, v in s.points:
            if s.step and prev is not None:
                pts.append(f"{x(t):.1f},{y(prev):.1f}")
            pts.append(f"{x(t):.1f},{y(v):.1f}")
            prev = v
        parts.append(
            f'<polyline class="series" fill="none" stroke="{s.colour}" stroke-width="2" '
            f'points="{" ".join(pts)}"><title>{_e(s.name)}</title></polyline>'
        )
        dots = s.dots or ([] if s.step else [""] * len(s.points))
        for (t, v), dot in zip(s.points, dots, strict=False):
            if not s.step:  # every reading a point (one reading is no line), verdict coloured
                parts.append(
                    f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="{4 if dot else 3}" '
                    f'fill="{dot or s.colour}">'
                    f"<title>{_e(s.name)} {_e(_t(t))}: {v:g}{_e(plot.unit)}</title></circle>"
                )
    parts.append("</svg>")
    legend = "".join(
        f'<span><i class="sw" style="background:{s.colour}"></i>{_e(s.name)}</span>'
        for s in plot.series
    )
    if plot.limits:
        legend += f'<span><i class="sw" style="background:{GATE}"></i>gate limit</span>'
    return f"<h3>{_e(plot.title)}</h3><div class='legend'>{legend}</div>" + "".join(parts)


def _table(
    head: Sequence[str], rows: Iterable[Sequence[object]], classes: Sequence[str] = ()
) -> str:
    out = ["<table><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{_e(classes[i])}"' if i < len(classes) and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def _header(title: str, outcome: str, why: str, meta: Sequence[str]) -> str:
    colour = OUTCOME_COLOUR.get(outcome, "#495057")
    out = [
        f"<h1>{_e(title)}</h1>",
        f'<p><span class="outcome" id="outcome" style="background:{colour}">'
        f"{_e(outcome.replace('_', ' '))}</span></p>",
    ]
    if why:
        out.append(f'<div class="why" id="why">{_e(why)}</div>')
    out.extend(f'<div class="meta">{_e(m)}</div>' for m in meta if m)
    return "".join(out)


# ============================================================================== releases

_EVENT = re.compile(r"^(\d\d):(\d\d):(\d\d) (.*)$")


def event_times(st: ReleaseStatus) -> list[tuple[datetime | None, str]]:
    """The status's event lines ("HH:MM:SS text") with full times: the date comes from the
    release's start, a time earlier than the one before it is the next day."""
    out: list[tuple[datetime | None, str]] = []
    day = (
        (st.started_at or datetime.now(UTC))
        .astimezone(UTC)
        .replace(hour=0, minute=0, second=0, microsecond=0)
    )
    last: datetime | None = None
    for line in st.events:
        m = _EVENT.match(line)
        if not m:
            out.append((None, line))
            continue
        at = day + timedelta(hours=int(m[1]), minutes=int(m[2]), seconds=int(m[3]))
        if last is not None and at < last - timedelta(hours=1):
            day += timedelta(days=1)
            at += timedelta(days=1)
        last = at
        out.append((at, m[4]))
    return out


def _markers(st: ReleaseStatus, svc: ServiceStatus) -> list[Marker]:
    marks = [
        Marker(a.at, f"approved by {a.by} before {a.before_weight}%: {a.comment}", "#5f3dc4")
        for a in st.approvals
    ]
    for at, text in event_times(st):
        if at is None or not text.startswith(svc.run_service):
            continue
        if "traffic restored" in text or "gate failed" in text:
            marks.append(Marker(at, text, GATE))
        elif "traffic" in text:
            marks.append(Marker(at, text, STEP))
    for r in svc.readings:
        if r.verdict != "pass":
            marks.append(
                Marker(r.at, f"{r.verdict}: " + "; ".join(r.reasons), VERDICT_COLOUR[r.verdict])
            )
    return marks


def _traffic_points(st: ReleaseStatus, svc: ServiceStatus) -> list[tuple[datetime, float]]:
    """The canary's percent over time, from the traffic events (the readings as a fallback)."""
    pts: list[tuple[datetime, float]] = []
    for at, text in event_times(st):
        if at is None or not text.startswith(svc.run_service + ":"):
            continue
        if "traffic restored" in text:
            pts.append((at, 0.0))
        elif text.startswith(f"{svc.run_service}: traffic ") and svc.canary_revision:
            m = re.search(re.escape(svc.canary_revision) + r" (\d+)%", text)
            pts.append((at, float(m[1]) if m else 0.0))
    if not pts:
        pts = [(r.at, float(r.weight)) for r in svc.readings]
    if pts and st.ended_at and st.ended_at > pts[-1][0]:
        pts.append((st.ended_at, pts[-1][1]))
    return pts


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v * 100:.2f}%"


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v:.0f} ms"


def _service_section(st: ReleaseStatus, svc: ServiceStatus, gates: Gates | None) -> str:
    readings: list[Reading] = sorted(svc.readings, key=lambda r: r.at)
    marks = _markers(st, svc)
    dots = [VERDICT_COLOUR.get(r.verdict, "") for r in readings]
    err = TimePlot(
        f"{svc.run_service}: error rate per reading (canary vs stable)",
        "%",
        [
            Series(
                "canary",
                CANARY,
                [
                    (r.at, r.canary_error_rate * 100)
                    for r in readings
                    if r.canary_error_rate is not None
                ],
                dots=[
                    d
                    for r, d in zip(readings, dots, strict=True)
                    if r.canary_error_rate is not None
                ],
            ),
            Series(
                "stable",
                STABLE,
                [
                    (r.at, r.stable_error_rate * 100)
                    for r in readings
                    if r.stable_error_rate is not None
                ],
            ),
        ],
        limits=[(gates.max_error_rate * 100, f"max_error_rate {gates.max_error_rate:.0%}")]
        if gates
        else [],
        markers=marks,
    )
    lat = TimePlot(
        f"{svc.run_service}: p95 latency per reading (canary vs stable)",
        " ms",
        [
            Series(
                "canary",
                CANARY,
                [(r.at, r.canary_p95_ms) for r in readings if r.canary_p95_ms is not None],
                dots=[
                    d for r, d in zip(readings, dots, strict=True) if r.canary_p95_ms is not None
                ],
            ),
            Series(
                "stable",
                STABLE,
                [(r.at, r.stable_p95_ms) for r in readings if r.stable_p95_ms is not None],
            ),
        ],
        limits=[
            (
                gates.max_p95_latency.total_seconds() * 1000,
                f"max_p95_latency {gates.max_p95_latency.total_seconds():g} s",
            )
        ]
        if gates
        else [],
        markers=marks,
    )
    traffic = TimePlot(
        f"{svc.run_service}: traffic to the canary {svc.canary_revision or ''}",
        "%",
        [Series("canary traffic", STEP, _traffic_points(st, svc), step=True)],
        markers=[m for m in marks if m.colour == "#5f3dc4" or m.colour == GATE],
        y_max=100.0,
    )
    rows = [
        (
            _t(r.at),
            f"{r.weight}%",
            r.verdict,
            r.canary_requests,
            _pct(r.canary_error_rate),
            _ms(r.canary_p95_ms),
            r.stable_requests,
            _pct(r.stable_error_rate),
            _ms(r.stable_p95_ms),
            "; ".join(r.reasons),
        )
        for r in readings
    ]
    head = (
        f'<section class="service" id="svc-{_e(svc.name)}"><h2>{_e(svc.run_service)}: '
        f"{_e(svc.state.replace('_', ' '))}</h2>"
        f'<div class="meta">stable {_e(", ".join(svc.stable_revisions) or "none")}; canary '
        f"{_e(svc.canary_revision or 'none')}; {svc.reading_count} readings "
        f"({len(readings)} kept)</div>"
    )
    if svc.error:
        head += f'<div class="why">{_e(svc.error)}</div>'
    table = _table(
        ["time", "step", "verdict", "canary req", "canary 5xx", "canary p95", "stable req",
         "stable 5xx", "stable p95", "reasons"],
        rows,
        [r.verdict for r in readings],
    )  # fmt: skip
    return (
        head
        + svg_time_plot(err)
        + svg_time_plot(lat)
        + svg_time_plot(traffic)
        + table
        + "</section>"
    )


def _timeline(st: ReleaseStatus) -> str:
    evs = event_times(st)
    if not evs:
        return ""
    known = [at for at, _ in evs if at is not None]
    plot = ""
    if known:
        t0, t1 = min(known), max(known)
        span = max((t1 - t0).total_seconds(), 1.0)
        rows = []
        for i, (at, text) in enumerate([(a, t) for a, t in evs if a is not None]):
            xpos = PAD_L + (W - PAD_L - PAD_R) * (at - t0).total_seconds() / span
            colour = (
                GATE if re.search(r"fail|rolled|restored|abort|REJECTED", text)
                else "#5f3dc4" if "approv" in text
                else STEP
            )  # fmt: skip
            ypos = PAD_T + 8 + (i % 6) * 12
            rows.append(
                f'<circle class="event" cx="{xpos:.1f}" cy="{ypos}" r="4" fill="{colour}">'
                f"<title>{_e(_t(at))} {_e(text)}</title></circle>"
            )
        height = PAD_T + 8 + 6 * 12 + 24
        plot = (
            f'<svg class="plot" role="img" width="{W}" height="{height}" '
            f'viewBox="0 0 {W} {height}" xmlns="http://www.w3.org/2000/svg">'
            f"<title>decisions, approvals and rollbacks over time</title>"
            f'<text x="{PAD_L}" y="{height - 6}">{t0:%H:%M:%S}</text>'
            f'<text x="{W - PAD_R}" y="{height - 6}" text-anchor="end">{t1:%H:%M:%S} UTC</text>'
            + "".join(rows)
            + "</svg>"
        )
    table = _table(["time", "event"], [(_t(at), text) for at, text in evs])
    return "<h2>Timeline</h2>" + plot + table


def _approvals(approvals: list[ApprovalRecord]) -> str:
    if not approvals:
        return ""
    return "<h2>Approvals</h2>" + _table(
        ["when", "by", "before", "comment", "authenticated"],
        [(_t(a.at), a.by, f"{a.before_weight}%", a.comment, a.authenticated) for a in approvals],
    )


def release_report(
    st: ReleaseStatus,
    gates: Gates | None = None,
    *,
    workflow_id: str = "",
    run_id: str = "",
    link: str = "",
) -> str:
    """The HTML page of one release."""
    why = st.error or st.abort_reason
    if st.outcome == Outcome.PROMOTED:
        why = why or f"every service passed its canary steps; {st.version} serves 100%"
    dur = (st.ended_at - st.started_at).total_seconds() if st.ended_at and st.started_at else None
    meta = [
        f"app {st.app}, environment {st.env}, phase {st.phase.value}",
        f"started {_t(st.started_at)}"
        + (f", ended {_t(st.ended_at)} ({_dur(dur)})" if dur else ""),
        f"workflow {workflow_id} run {run_id}" if workflow_id else "",
        f"Web UI: {link}" if link else "",
        f"pre-deploy backup {st.backup_id}" if st.backup_id else "",
    ]
    if gates:
        meta.append(
            f"gates: max_error_rate {gates.max_error_rate:.0%}, max_p95_latency "
            f"{gates.max_p95_latency.total_seconds():g} s, false_rollback_rate "
            f"{gates.false_rollback_rate:g}, on_failure {gates.on_failure}, on_inconclusive "
            f"{gates.on_inconclusive}"
        )
    body = _header(f"Release {st.version} of {st.app} to {st.env}", st.outcome.value, why, meta)
    body += "".join(_service_section(st, s, gates) for s in st.services)
    body += _approvals(st.approvals)
    if st.rejected_approvals:
        body += "<h3>Rejected approvals</h3>" + _table(
            ["when", "claimed", "authenticated", "reason"],
            [(_t(r.at), r.claimed, r.authenticated, r.reason) for r in st.rejected_approvals],
        )
    body += _timeline(st)
    return _page(f"Release {st.version} to {st.env}: {st.outcome.value}", body)


# ============================================================================== DR


def _bars(title: str, bars: Sequence[tuple[str, float, float, str]]) -> str:
    """Horizontal bars, each against its objective: (label, value s, objective s, note)."""
    rows = len(bars)
    height = PAD_T + rows * 34 + 20
    top = max([max(v, o) for _, v, o, _ in bars] + [1.0]) * 1.1
    scale = (W - 220 - PAD_R) / top
    parts = [
        f'<svg class="plot" role="img" width="{W}" height="{height}" viewBox="0 0 {W} {height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
    ]
    for i, (label, value, objective, note) in enumerate(bars):
        y0 = PAD_T + i * 34
        met = value <= objective
        ox = 200 + objective * scale
        parts.append(
            f'<text x="4" y="{y0 + 14}">{_e(label)}</text>'
            f'<rect x="200" y="{y0 + 2}" width="{max(value * scale, 1):.1f}" height="16" '
            f'fill="{STEP if met else GATE}"><title>{_e(_dur(value))}</title></rect>'
            f'<line class="limit" x1="{ox:.1f}" x2="{ox:.1f}" '
            f'y1="{y0}" y2="{y0 + 22}" stroke="#212529" stroke-width="2"/>'
            f'<text x="200" y="{y0 + 30}">{_e(_dur(value))} vs {_e(_dur(objective))}: '
            f"{'met' if met else 'MISSED'} {_e(note)}</text>"
        )
    parts.append("</svg>")
    return f"<h3>{_e(title)}</h3>" + "".join(parts)


def _phases(events: Sequence[str], started: datetime | None) -> str:
    fake = ReleaseStatus(app="", env="", version="", events=list(events), started_at=started)
    evs = event_times(fake)
    return "<h2>Timeline</h2>" + _table(["time", "event"], [(_t(a), t) for a, t in evs])


def drill_report(r: DrillReport, *, workflow_id: str = "") -> str:
    why = r.error or r.abort_reason
    bars: list[tuple[str, float, float, str]] = []
    if r.restore_seconds is not None:
        bars.append(("restore time vs RTO", r.restore_seconds, r.rto_seconds, ""))
    if r.data_loss_seconds is not None:
        bars.append(("data-loss window vs RPO", r.data_loss_seconds, r.rpo_seconds, ""))
    meta = [
        f"source {r.source_instance}, scratch {r.scratch_instance} "
        f"({'deleted' if r.scratch_deleted else 'NOT deleted'})",
        f"started {_t(r.started_at)}, ended {_t(r.ended_at)}",
        f"workflow {workflow_id}" if workflow_id else "",
    ]
    body = _header(f"DR drill of {r.source_instance} ({r.env})", r.outcome.value, why, meta)
    body += _bars("Objectives", bars) if bars else ""
    body += "<h2>Tables</h2>" + _table(
        ["table", "source rows", "scratch rows", "source newest", "scratch newest"],
        [
            (t.table, t.source_rows, t.scratch_rows, _t(t.source_newest), _t(t.scratch_newest))
            for t in r.tables
        ],
    )
    body += _phases(r.events, r.started_at)
    return _page(f"DR drill {r.env}: {r.outcome.value}", body)


def recovery_report(r: RestoreStatus | PointInTimeResult, *, workflow_id: str = "") -> str:
    kind = "Restore" if isinstance(r, RestoreStatus) else "Point-in-time recovery"
    why = r.error or r.abort_reason
    dur = (r.ended_at - r.started_at).total_seconds() if r.ended_at and r.started_at else None
    meta = [f"started {_t(r.started_at)}, ended {_t(r.ended_at)}", *r.left_in]
    meta.append(f"workflow {workflow_id}" if workflow_id else "")
    body = _header(f"{kind} in {r.env}", r.outcome.value, why, meta)
    if dur is not None:
        body += _bars("Duration", [("recovery time vs RTO", dur, 3600.0, "(RTO 1 h)")])
    body += _phases(r.events, r.started_at)
    return _page(f"{kind} {r.env}: {r.outcome.value}", body)


def dr_outcome_ok(outcome: Outcome) -> bool:
    return outcome == Outcome.SUCCEEDED
