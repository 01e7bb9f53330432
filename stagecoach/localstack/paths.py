"""Where the embedded stack keeps its state: `.stagecoach/` under the working directory, or
$STAGECOACH_HOME. Imports nothing of the product (the approver keys live there too)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("STAGECOACH_HOME") or Path.cwd() / ".stagecoach")


def private_home() -> Path:
    """The stack's home, created (or tightened) private to its user: 0700. It holds the
    Temporal database with every history, the simulator's backup dumps and approver keys."""
    h = home()
    h.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(h, 0o700)
    return h
