"""Deploy freeze windows: when no release may start or move traffic.

Pure (no I/O, no wall clock): the caller passes the instant, so the CLI asks with its clock and
the release workflow with `workflow.now()`. Importable from workflow code (zoneinfo's database
is read once per zone and cached; a zone's rules do not change under a running worker).

A window is `{start, end, timezone, reason}` where `start` and `end` are either
- `"Fri 15:00"` / `"Mon 08:00"`: weekly (day names Mon..Sun, any case, three letters or whole);
- `"22:00"` / `"06:00"`: daily;
- `"2026-12-20 00:00"` / `"2027-01-04T08:00:00"`: one-off date ranges;
with optional seconds everywhere. Times are wall-clock times in `timezone` (an IANA name,
default UTC), so a window at "Fri 15:00" in Europe/Berlin follows daylight saving. An end
earlier than its start wraps into the next day/week. A window is half-open: [start, end).

`FreezeWindow` validates a window as written in deploy.yaml; a release carries it as
`stagecoach.payloads.policy.FreezeWindow` (no validators). The evaluation (`occurrence`,
`frozen_at`) reads either: anything with `start`, `end`, `timezone` and `reason`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_FULL = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_WEEKLY_RE = re.compile(rf"^([A-Za-z]+)\s+{_TIME}$")
_DAILY_RE = re.compile(rf"^{_TIME}$")
_ONE_OFF_RE = re.compile(rf"^(\d{{4}}-\d{{2}}-\d{{2}})(?:[ T]{_TIME})?$")

Kind = Literal["weekly", "daily", "once"]
Bound = tuple[Kind, int | None, time, date | None]


class Window(Protocol):
    """A freeze window as config or payload holds it."""

    @property
    def start(self) -> str: ...
    @property
    def end(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def reason(self) -> str: ...


def _clock(h: str, m: str, s: str | None) -> time:
    hour, minute, second = int(h), int(m), int(s or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{h}:{m} is not a time of day")
    return time(hour, minute, second)


def _parse(value: str) -> Bound:
    """(kind, weekday, time of day, date) of a window bound."""
    v = value.strip()
    if m := _WEEKLY_RE.match(v):
        day = m.group(1).lower()
        if day in _DAYS:
            wd = _DAYS.index(day)
        elif day in _FULL:
            wd = _FULL.index(day)
        else:
            raise ValueError(f"{m.group(1)!r} is not a day; write Mon, Tue, ... Sun")
        return "weekly", wd, _clock(m.group(2), m.group(3), m.group(4)), None
    if m := _DAILY_RE.match(v):
        return "daily", None, _clock(m.group(1), m.group(2), m.group(3)), None
    if m := _ONE_OFF_RE.match(v):
        d = date.fromisoformat(m.group(1))
        t = _clock(m.group(2), m.group(3), m.group(4)) if m.group(2) else time(0)
        return "once", None, t, d
    raise ValueError(
        f"{value!r} is not a window bound; write 'Fri 15:00' (weekly), '22:00' (daily) or "
        "'2026-12-24 00:00' (one-off)"
    )


class FreezeWindow(BaseModel):
    """One freeze window (see the module docstring for the formats)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str
    end: str
    timezone: str = "UTC"
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _valid(self) -> FreezeWindow:
        a, b = _parse(self.start), _parse(self.end)
        if a[0] != b[0]:
            raise ValueError(
                f"start {self.start!r} and end {self.end!r} must be of the same kind "
                "(both weekly 'Fri 15:00', both daily '22:00' or both dates)"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone {self.timezone!r} is not an IANA time zone (e.g. Europe/Berlin)"
            ) from None
        if a[0] == "once" and _local(self, a) >= _local(self, b):
            raise ValueError(f"end {self.end!r} must come after start {self.start!r}")
        if a[0] != "once" and a[1:] == b[1:]:
            raise ValueError("start and end must differ")
        return self

    @property
    def kind(self) -> Kind:
        return _parse(self.start)[0]

    def occurrence(self, at: datetime) -> tuple[datetime, datetime] | None:
        return occurrence(self, at)


def _local(w: Window, bound: Bound) -> datetime:
    assert bound[3] is not None
    return datetime.combine(bound[3], bound[2], tzinfo=ZoneInfo(w.timezone))


def occurrence(w: Window, at: datetime) -> tuple[datetime, datetime] | None:
    """The occurrence [start, end) of window `w` that contains `at` (aware), in UTC."""
    tz = ZoneInfo(w.timezone)
    a, b = _parse(w.start), _parse(w.end)
    if a[0] == "once":
        s, e = _local(w, a).astimezone(UTC), _local(w, b).astimezone(UTC)
        return (s, e) if s <= at < e else None
    period = 7 if a[0] == "weekly" else 1
    local_day = at.astimezone(tz).date()
    # the latest start at or before `at`: within the last period (+1 day for DST slack)
    start: datetime | None = None
    for back in range(period + 1, -1, -1):
        d = local_day - timedelta(days=back)
        if a[1] is not None and d.weekday() != a[1]:
            continue
        cand = datetime.combine(d, a[2], tzinfo=tz)
        if cand.astimezone(UTC) <= at:
            start = cand
    if start is None:
        return None
    for ahead in range(0, period + 1):
        d = start.date() + timedelta(days=ahead)
        if b[1] is not None and d.weekday() != b[1]:
            continue
        end = datetime.combine(d, b[2], tzinfo=tz)
        if end.astimezone(UTC) > start.astimezone(UTC):
            s, e = start.astimezone(UTC), end.astimezone(UTC)
            return (s, e) if at < e else None
    return None  # pragma: no cover (an end always follows within a period)


@dataclass(frozen=True)
class Freeze:
    """The window in force at an instant: its reason and when the freeze ends (overlapping or
    back-to-back windows chained)."""

    reason: str
    until: datetime  # UTC
    window: Window


def frozen_at(windows: Sequence[Window], at: datetime) -> Freeze | None:
    """The freeze in force at `at` (an aware datetime), or None. `until` is when no window
    holds any more: a window that ends inside another is followed to the other's end."""
    if at.tzinfo is None:
        raise ValueError("frozen_at needs an aware datetime")
    at = at.astimezone(UTC)
    first: Freeze | None = None
    t = at
    for _ in range(32):  # windows chained end to end; bounded
        best: tuple[datetime, Window] | None = None
        for w in windows:
            occ = occurrence(w, t)
            if occ and (best is None or occ[1] > best[0]):
                best = (occ[1], w)
        if best is None:
            break
        if first is None:
            first = Freeze(reason=best[1].reason, until=best[0], window=best[1])
        else:
            first = replace(first, until=best[0])
        t = best[0]
    return first


def describe_window(w: Window) -> str:
    return f"{w.start} to {w.end} ({w.timezone}): {w.reason}"
