"""gcpsim + Temporal dev server + the production worker, each its own process on free ports.

`Stack` starts the three processes a release needs in a work directory:

- gcpsim (`testing.gcpsim.start_gcpsim`, seeded from deploy.yaml, state in `<dir>/sim/`),
- the Temporal dev server (`stagecoach.temporal.start_dev_server`; in memory, or a persistent
  `--db-filename` for the restart drill),
- the production worker (`python worker.py`) as its own process, so its RSS and CPU are its
  own and it can be killed with SIGKILL.

The benchmarks, the fault drills and tests/chaos use it; tests/conftest.py starts the dev server
with `start_temporal_server`. Every process is started here and stopped here by its own pid.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client

from stagecoach.config import Config
from stagecoach.config_file import load_config
from stagecoach.temporal import TemporalSettings, connect, free_port, port_open, start_dev_server
from testing.gcpsim import GcpsimProcess, config_for, start_gcpsim, stop_gcpsim
from testing.paths import DEPLOY_YAML, ROOT, WORKER_PY


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Send `sig` to a process that still runs and wait for it (SIGKILL after 30 s)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_temporal_server(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Temporal dev server (in memory, our search attributes registered) on a free port;
    returns the process and its address."""
    port = free_port()
    return start_dev_server(port, log=log), f"127.0.0.1:{port}"


def provision_approver_keys(keys: Path) -> None:
    """Approver keys as the embedded stack provisions them: a private key per approver of
    deploy.yaml in STAGECOACH_KEYS_DIR=`keys`, their public halves in the file workers trust
    (STAGECOACH_APPROVER_KEYS), for this process and the workers and CLIs it starts."""
    from stagecoach.keys import provision_local, trusted_file

    os.environ["STAGECOACH_KEYS_DIR"] = str(keys)
    provision_local(load_config(DEPLOY_YAML))
    os.environ["STAGECOACH_APPROVER_KEYS"] = str(trusted_file())


@dataclass
class Stack:
    """gcpsim + Temporal dev server + worker process in `workdir` (see the module docstring)."""

    workdir: Path
    gcpsim_args: list[str] = field(default_factory=list)
    seed: bool = True
    temporal_db: bool = False
    worker_env: dict[str, str] = field(default_factory=dict)
    # the worker's own config (its policy: environments, projects, approvers); default deploy.yaml
    worker_config: Path | None = None
    task_queue: str = field(default_factory=lambda: f"bench-{secrets.token_hex(4)}")

    sim: GcpsimProcess | None = None
    temporal: subprocess.Popen[bytes] | None = None
    temporal_port: int = 0
    worker: subprocess.Popen[bytes] | None = None
    worker_starts: int = 0

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.start_gcpsim(reset=True)
            self.start_temporal()
            self.start_worker()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.stop_worker()
        self.stop_temporal()
        if self.sim is not None:
            stop_gcpsim(self.sim)
            self.sim = None

    # ------------------------------------------------------------------ gcpsim

    @property
    def sim_dir(self) -> Path:
        return self.workdir / "sim"

    def start_gcpsim(self, reset: bool = False) -> GcpsimProcess:
        """Start gcpsim; a restart (reset=False) keeps its state dir and its ports."""
        self.sim_dir.mkdir(parents=True, exist_ok=True)
        args = list(self.gcpsim_args)
        if reset:
            args.append("--reset")
            if self.seed:
                args += ["--seed", str(DEPLOY_YAML)]
        elif self.sim is not None:
            args += ["--port", str(self.sim.port), "--grpc-port", str(self.sim.grpc_port)]
        self.sim = start_gcpsim(self.sim_dir, *args)
        return self.sim

    def kill_gcpsim(self, sig: int = signal.SIGKILL) -> None:
        """Stop gcpsim abruptly (SIGKILL: a crash) or gracefully (SIGTERM), keeping its ports."""
        assert self.sim is not None
        self.sim.proc.send_signal(sig)
        self.sim.proc.wait(timeout=60)

    @property
    def gcpsim(self) -> GcpsimProcess:
        assert self.sim is not None, "gcpsim is not running"
        return self.sim

    # ------------------------------------------------------------------ Temporal

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    def start_temporal(self) -> None:
        if not self.temporal_port:
            self.temporal_port = free_port()
        db = self.workdir / "temporal.db" if self.temporal_db else None
        self.temporal = start_dev_server(
            self.temporal_port, db_file=db, log=self.workdir / "temporal.log"
        )

    def stop_temporal(self, sig: int = signal.SIGTERM) -> None:
        if self.temporal is None:
            return
        stop_process(self.temporal, sig)
        self.temporal = None
        deadline = time.monotonic() + 10
        while port_open("127.0.0.1", self.temporal_port) and time.monotonic() < deadline:
            time.sleep(0.1)

    async def client(self) -> Client:
        return await connect(TemporalSettings(address=self.address, task_queue=self.task_queue))

    # ------------------------------------------------------------------ worker

    def start_worker(self, timeout: float = 90.0) -> subprocess.Popen[bytes]:
        """`python worker.py` on this stack's task queue; returns once it polls."""
        self.worker_starts += 1
        ready = self.workdir / f"worker-{self.worker_starts}.ready"
        ready.unlink(missing_ok=True)
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": self.address,
            "STAGECOACH_TASK_QUEUE": self.task_queue,
            "STAGECOACH_READY_FILE": str(ready),
            "STAGECOACH_CONFIG": str(DEPLOY_YAML),
            "PYTHONPATH": str(ROOT),
            **self.worker_env,
        }
        out = open(self.workdir / "worker.log", "ab")  # noqa: SIM115
        self.worker = subprocess.Popen(
            [sys.executable, str(WORKER_PY), "--config", str(self.worker_config or DEPLOY_YAML)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.worker.poll() is not None:
                raise RuntimeError(f"worker exited with {self.worker.returncode}; see worker.log")
            if time.monotonic() > deadline:
                self.worker.kill()
                raise RuntimeError("worker did not become ready; see worker.log")
            time.sleep(0.05)
        return self.worker

    def kill_worker(self, sig: int = signal.SIGKILL) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(sig)
            self.worker.wait(timeout=30)
        self.worker = None

    def stop_worker(self) -> None:
        if self.worker is None:
            return
        stop_process(self.worker)
        self.worker = None

    # ------------------------------------------------------------------ config

    def config(self) -> Config:
        """deploy.yaml pointed at this stack's gcpsim."""
        return config_for(self.gcpsim)
