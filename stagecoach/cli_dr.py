"""Moved to `stagecoach.cli.dr` and `stagecoach.cli.schedule`; this name stays only until
tests/e2e/test_dr.py and tests/e2e/test_real_gcp_e2e.py import from there (then delete this
file)."""

from stagecoach.cli.dr import drill_input
from stagecoach.cli.schedule import FIRST_SUNDAY_CRON

__all__ = ["FIRST_SUNDAY_CRON", "drill_input"]
