"""`python starter.py ...` as a user runs it: in a subprocess, its environment pointed at the
test's Temporal server, task queue and gcpsim, with the session's approver keys."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from testing.gcpsim import GcpsimProcess
from testing.paths import ROOT

STARTER = str(ROOT / "starter.py")


def starter_env(
    temporal_address: str, task_queue: str, sim: GcpsimProcess, home: Path, **more: str
) -> dict[str, str]:
    """This process's environment without STAGECOACH_*/TEMPORAL_* settings, then the test's:
    Temporal address and task queue, gcpsim's ports, a private STAGECOACH_HOME, the session's
    approver keys (STAGECOACH_KEYS_DIR), a wide terminal, and `more`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STAGECOACH_", "TEMPORAL_"))}
    env.update(
        TEMPORAL_ADDRESS=temporal_address,
        STAGECOACH_TASK_QUEUE=task_queue,
        GCPSIM_PORT=str(sim.port),
        GCPSIM_GRPC_PORT=str(sim.grpc_port),
        STAGECOACH_HOME=str(home),
        STAGECOACH_USER="e2e-tester",
        STAGECOACH_KEYS_DIR=os.environ["STAGECOACH_KEYS_DIR"],
        COLUMNS="200",
        **more,
    )
    return env


async def starter(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `python starter.py ARGS` in a thread (the test's event loop keeps the worker going)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, STARTER, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def show(res: subprocess.CompletedProcess[str]) -> str:
    """A finished command's exit code and output, for assertion messages."""
    return f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
