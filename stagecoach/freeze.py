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
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_FULL = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_WEEKLY_RE = re.compile(rf"^([A-Za-z]+)\s+{_TIME}$")
_DAILY_RE = re.compile(rf"^{_TIME}$")
_ONE_OFF_RE = re.compile(rf"^(\d{{4}}-\d{{2}}-\d{{2}})(?:[ T]{_TIME})?$")

Kind = Literal["weekly", "daily", "once"]


def _clock(h: str, m: str, s: str | None) -> time:
    hour, minute, second = int(h), int(m), int(s or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{h}:{m} is not a time of day")
    return time(hour, minute, second)


def _parse(value: str) -> tuple[Kind, int | None, time, date | None]:
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
        if a[0] == "once" and self._local(a) >= self._local(b):
            raise ValueError(f"end {self.end!r} must come after start {self.start!r}")
        if a[0] != "once" and a[1:] == b[1:]:
            raise ValueError("start and end must differ")
        return self

    @property
    def kind(self) -> Kind:
        return _parse(self.start)[0]

    def _local(self, bound: tuple[Kind, int | None, time, date | None]) -> datetime:
        assert bound[3] is not None
        return datetime.combine(bound[3], bound[2], tzinfo=ZoneInfo(self.timezone))

    def occurrence(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence [start, end) of this window that contains `at` (aware), in UTC."""
        tz = ZoneInfo(self.timezone)
        a, b = _parse(self.start), _parse(self.end)
        if a[0] == "once":
            s, e = self._local(a).astimezone(UTC), self._local(b).astimezone(UTC)
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


class Freeze(BaseModel):
    """The window in force at an instant: its reason and when the freeze ends (overlapping or
    back-to-back windows chained)."""

    reason: str
    until: datetime  # UTC
    window: FreezeWindow


def frozen_at(windows: list[FreezeWindow], at: datetime) -> Freeze | None:
    """The freeze in force at `at` (an aware datetime), or None. `until` is when no window
    holds any more: a window that ends inside another is followed to the other's end."""
    if at.tzinfo is None:
        raise ValueError("frozen_at needs an aware datetime")
    at = at.astimezone(UTC)
    first: Freeze | None = None
    t = at
    for _ in range(32):  # windows chained end to end; bounded
        best: tuple[datetime, FreezeWindow] | None = None
        for w in windows:
            occ = w.occurrence(t)
            if occ and (best is None or occ[1] > best[0]):
                best = (occ[1], w)
        if best is None:
            break
        if first is None:
            first = Freeze(reason=best[1].reason, until=best[0], window=best[1])
        else:
            first = first.model_copy(update={"until": best[0]})
        t = best[0]
    return first


def describe_window(w: FreezeWindow) -> str:
    return f"{w.start} to {w.end} ({w.timezone}): {w.reason}"
