"""Moved to `stagecoach.localstack`; this name stays only until stagecoach/keys.py imports
`home` from `stagecoach.localstack.paths` (then delete this file)."""

from stagecoach.localstack.paths import home

__all__ = ["home"]
