"""Release hooks: the plan of a pre_deploy / post_deploy Cloud Run job, its execution
(activities/cloud_run_jobs.py) and its status in a release."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from stagecoach.payloads.base import Payload
from stagecoach.payloads.common import DatabaseBinding, Target

HookStage = Literal["pre_deploy", "post_deploy"]


class JobRef(Payload):
    target: Target
    project: str
    region: str
    job: str  # Cloud Run job name, e.g. migrate-prod

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def name(self) -> str:
        return f"{self.parent}/jobs/{self.job}"


class HookPlan(Payload):
    """One hook of a release, resolved from the config for one environment."""

    name: str
    stage: HookStage
    ref: JobRef
    image: str
    command: list[str] = []
    args: list[str] = []
    env: dict[str, str] = {}
    secrets: dict[str, str] = {}  # env var -> Secret Manager secret name (never a value)
    timeout: timedelta = timedelta(minutes=10)
    task_count: int = 1
    max_retries: int = 0
    database: DatabaseBinding | None = None  # set for hooks with uses_database


class StartHookInput(Payload):
    hook: HookPlan
    release_id: str  # labels the execution: a retry finds the one it started
    version: str


class ExecutionRef(Payload):
    ref: JobRef
    execution: str  # short name, e.g. migrate-prod-x7k2p

    @property
    def name(self) -> str:
        return f"{self.ref.name}/executions/{self.execution}"


class HookExecution(Payload):
    """A hook's Cloud Run job execution as the API reports it."""

    execution: str
    state: Literal["running", "succeeded", "failed", "cancelled"]
    task_count: int = 1
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    log_uri: str = ""
    message: str = ""
    started_at: datetime | None = None
    completed_at: datetime | None = None
    reused: bool = False  # StartHook found the execution this release had started already


class HookStatus(Payload):
    name: str
    stage: HookStage
    job: str
    image: str = ""
    uses_database: bool = False
    state: Literal["pending", "running", "succeeded", "failed", "cancelled"] = "pending"
    execution: str = ""
    task_count: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    log_uri: str = ""
    message: str = ""
    started_at: datetime | None = None
    completed_at: datetime | None = None
