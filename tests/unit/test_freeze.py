"""Freeze windows: pure evaluation (weekly, daily, one-off, time zones, DST, chaining) and the
deploy check (refused with the reason and the end; overridden with a reason)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from stagecoach.config import Config, ConfigError
from stagecoach.config_file import parse_config
from stagecoach.freeze import FreezeWindow, frozen_at
from stagecoach.plan import build_release, check_freeze

WEEKEND = FreezeWindow(
    start="Fri 15:00", end="Mon 08:00", timezone="Europe/Berlin", reason="weekend"
)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def test_weekly_window_in_a_named_zone() -> None:
    # 2026-11-27 is a Friday; Berlin is UTC+1 in November
    assert frozen_at([WEEKEND], utc(2026, 11, 27, 13, 59)) is None
    f = frozen_at([WEEKEND], utc(2026, 11, 27, 14, 0))
    assert f is not None and f.reason == "weekend" and f.until == utc(2026, 11, 30, 7, 0)
    assert frozen_at([WEEKEND], utc(2026, 11, 29, 23, 0)) is not None  # Sunday night
    assert frozen_at([WEEKEND], utc(2026, 11, 30, 7, 0)) is None  # half-open: ends at 08:00
    assert frozen_at([WEEKEND], utc(2026, 11, 25, 12, 0)) is None  # Wednesday


def test_weekly_window_follows_daylight_saving() -> None:
    # 2026-07-03 is a Friday; Berlin is UTC+2 in summer
    assert frozen_at([WEEKEND], utc(2026, 7, 3, 13, 0)) is not None
    assert frozen_at([WEEKEND], utc(2026, 7, 3, 12, 59)) is None


def test_daily_window_wraps_midnight() -> None:
    night = FreezeWindow(start="22:00", end="06:00:30", reason="night")
    assert frozen_at([night], utc(2026, 11, 25, 21, 59)) is None
    f = frozen_at([night], utc(2026, 11, 25, 23, 0))
    assert f is not None and f.until == utc(2026, 11, 26, 6, 0, 30)
    f = frozen_at([night], utc(2026, 11, 26, 3, 0))
    assert f is not None and f.until == utc(2026, 11, 26, 6, 0, 30)


def test_one_off_range_and_chained_windows() -> None:
    xmas = FreezeWindow(start="2026-12-24", end="2027-01-02 08:00", reason="year end")
    assert frozen_at([xmas], utc(2026, 12, 23, 23, 59)) is None
    f = frozen_at([xmas], utc(2026, 12, 31, 12, 0))
    assert f is not None and f.until == utc(2027, 1, 2, 8, 0)
    # 2027-01-01 is a Friday: the weekend freeze starts inside the year-end one and outlasts it
    f = frozen_at([xmas, WEEKEND], utc(2026, 12, 31, 12, 0))
    assert f is not None and f.reason == "year end" and f.until == utc(2027, 1, 4, 7, 0)


@pytest.mark.parametrize(
    ("start", "end", "tz", "words"),
    [
        ("Fri 15:00", "08:00", "UTC", "same kind"),
        ("Fry 15:00", "Mon 08:00", "UTC", "not a day"),
        ("25:00", "08:00", "UTC", "not a time"),
        ("Fri 15:00", "Mon 08:00", "Mars/Olympus", "IANA"),
        ("2026-12-24", "2026-12-20", "UTC", "after start"),
        ("soon", "later", "UTC", "not a window bound"),
    ],
)
def test_bad_windows_name_the_fix(start: str, end: str, tz: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        FreezeWindow(start=start, end=end, timezone=tz, reason="r")


def _cfg(windows: list[dict[str, str]]) -> Config:
    return parse_config(
        {
            "app": "fz",
            "services": [{"name": "web", "image": "example.com/web"}],
            "environments": {
                "prod": {
                    "project": "p",
                    "release": {"steps": [{"weight": 100}], "freeze": windows},
                }
            },
        }
    )


def test_config_key_path_and_deploy_check() -> None:
    with pytest.raises(ConfigError, match=r"environments\.prod\.release\.freeze\.0"):
        _cfg([{"start": "Fri 15:00", "end": "Mon 08:00"}])  # no reason
    now = datetime.now(UTC)
    cfg = _cfg(
        [
            {
                "start": (now - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S"),
                "end": (now + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
                "reason": "incident review",
            }
        ]
    )
    inp = build_release(cfg, "prod", "v1.0.0", "abcde")
    with pytest.raises(ConfigError, match=r"prod is frozen until .* UTC \(incident review\)"):
        check_freeze(inp, now, override=False, reason=None, by="me")
    with pytest.raises(ConfigError, match="--override-freeze needs --reason"):
        check_freeze(inp, now, override=True, reason=" ", by="me")
    out = check_freeze(inp, now, override=True, reason="hotfix", by="me")
    assert out.freeze_override is not None
    assert (out.freeze_override.by, out.freeze_override.reason) == ("me", "hotfix")
    assert out.freeze_override.window == "incident review"
    later = now + timedelta(hours=2)
    assert check_freeze(inp, later, override=False, reason=None, by="me").freeze_override is None
