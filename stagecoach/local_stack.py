"""Moved to `stagecoach.localstack`; this name stays only until stagecoach/keys.py imports
`home` from there (then delete this file)."""

from stagecoach.localstack import home

__all__ = ["home"]
