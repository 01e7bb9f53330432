"""Moved to `stagecoach.cli.report`; this name stays only until tests/e2e/test_story.py imports
`write_report` from there (then delete this file)."""

from stagecoach.cli.report import write_report

__all__ = ["write_report"]
