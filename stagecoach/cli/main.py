"""The `stagecoach` program: the app of `stagecoach.cli.app` with every command group registered
(importing a command module registers its commands; the order is the order of `--help`)."""

from __future__ import annotations

from stagecoach.cli import (  # noqa: F401  (imported for their commands)
    doctor,
    dr,
    failover,
    history,
    keys,
    local,
    release,
    report,
    rollback,
    schedule,
)
from stagecoach.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """The console script `stagecoach` (and `python starter.py`)."""
    app()


if __name__ == "__main__":
    main()
