"""Typed inputs and outputs of every workflow, activity, signal, update and query.

One input object per workflow/activity (Temporal's rule for evolvable signatures). Pure: no I/O,
importable from workflow code. Never put secrets, clients or large blobs in these models.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from stagecoach.bounds import Name, Text
from stagecoach.config import Approval, Gates, Sizing, Step
from stagecoach.freeze import FreezeWindow
from stagecoach.judge import JudgeState

# --------------------------------------------------------------------------- shared pieces


class Phase(StrEnum):
    VALIDATING = "validating"
    BACKING_UP = "backing_up"
    DEPLOYING = "deploying"
    SMOKE_TESTING = "smoke_testing"
    SHIFTING = "shifting"
    BAKING = "baking"
    AWAITING_APPROVAL = "awaiting_approval"
    FROZEN = "frozen"  # a freeze window holds the next traffic step
    RUNNING_HOOK = "running_hook"  # a pre_deploy / post_deploy hook (Cloud Run job) runs
    PAUSED = "paused"
    ROLLING_BACK = "rolling_back"
    DONE = "done"


class Outcome(StrEnum):
    RUNNING = "running"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    FAILED = "failed"


# A release that did not promote (and a DR workflow that did not succeed) ends as a *failed*
# workflow execution, so the Web UI's list and page never show it as a success. The failure is
# an ApplicationError of one of these types whose first detail is the full status (the same
# object a promoted release returns); `stagecoach.temporal.workflow_result` reads it back.
RELEASE_NOT_PROMOTED = "ReleaseNotPromoted"
DR_NOT_SUCCEEDED = "DrNotSucceeded"
STATUS_FAILURE_TYPES = frozenset({RELEASE_NOT_PROMOTED, DR_NOT_SUCCEEDED})


class Target(BaseModel):
    """Where the activities send their API calls (no credentials: the worker has those)."""

    kind: Literal["gcpsim", "gcp"] = "gcpsim"
    host: str = "127.0.0.1"
    port: int = 8780
    grpc_port: int = 8781


class TrafficTarget(BaseModel):
    """One Cloud Run traffic entry, exactly as the API holds it."""

    type: Literal["LATEST", "REVISION"] = "REVISION"
    revision: str = ""
    percent: int = 0
    tag: str = ""


class ServiceRef(BaseModel):
    target: Target
    project: str
    region: str
    service: str  # Cloud Run service name, e.g. node-server-prod

    @property
    def name(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/services/{self.service}"


# --------------------------------------------------------------------------- Cloud Run activities


class ScalingRecord(BaseModel):
    """A service's scaling exactly as set, recorded before a drain and put back after it: the
    service-level scaling (Cloud Run unsets the service's min/max when it switches to manual
    scaling) and the tag-only (0%) traffic entries (a revision kept only by a tag still runs its
    revision-level minimum instances, which a drain therefore removes for a while)."""

    mode: str = ""  # service-level scaling_mode: "", "AUTOMATIC" or "MANUAL"
    min_instances: int = 0  # service-level minimum (0: not set)
    max_instances: int = 0  # service-level maximum (0: not set)
    manual_instances: int | None = None  # set only in manual mode
    tags: list[TrafficTarget] = []  # tag-only entries (percent 0), LATEST never among them


class ServiceState(BaseModel):
    """Output of GetServiceState: what serves now."""

    traffic: list[TrafficTarget]
    latest_ready_revision: str = ""  # short name
    latest_created_revision: str = ""  # short name
    image: str = ""
    uri: str = ""
    min_instances: int = 0
    max_instances: int = 0
    drained: bool = False
    scaling: ScalingRecord | None = None  # the service-level scaling and tag-only entries


class DatabaseBinding(BaseModel):
    """How a revision reaches its Cloud SQL instance: Cloud Run's Cloud SQL connection (volume
    `cloudsql`, mounted at /cloudsql) plus one env var holding the connection name."""

    env_var: str = "INSTANCE_CONNECTION_NAME"
    connection_name: str  # project:region:instance

    @property
    def instance(self) -> str:
        return self.connection_name.rsplit(":", 1)[-1]


class ServingRevision(BaseModel):
    revision: str  # short name
    percent: int
    image: str = ""
    connection_name: str = ""  # "" when the revision has no database binding


class ReadServingInput(BaseModel):
    ref: ServiceRef
    env_var: str = ""  # the binding's env var ("": only the Cloud SQL volume is looked at)


class CreateRevisionInput(BaseModel):
    ref: ServiceRef
    revision: str  # deterministic short name, e.g. node-server-prod-v1-2-0-3f9a1
    image: str
    tag: str  # tag given to the new revision (0% traffic), e.g. canary
    sizing: Sizing
    env: dict[str, str] = {}
    secrets: dict[str, str] = {}  # env var -> Secret Manager secret name
    ingress: str = "all"
    vpc_connector: str | None = None
    database: DatabaseBinding | None = None


class CreateRevisionResult(BaseModel):
    revision: str
    tag_url: str
    created: bool  # False when a retry found the revision already there
    # The traffic before this revision was added, LATEST pinned to the revision it routed to:
    # the snapshot a rollback restores (read in the same services.get the update needs). A retry
    # that finds the revision already added derives it by taking the new revision's 0% entry out.
    before: list[TrafficTarget] = []


class SetTrafficInput(BaseModel):
    ref: ServiceRef
    traffic: list[TrafficTarget]
    reason: str = ""


class SetTrafficResult(BaseModel):
    traffic: list[TrafficTarget]
    changed: bool


class SetScalingInput(BaseModel):
    """Drain (manual 0 instances) or resume a service at recorded scaling."""

    ref: ServiceRef
    drained: bool
    min_instances: int = 0
    max_instances: int = 0
    # What GetServiceState recorded before the drain: the resume puts it back exactly. None
    # (workflows started before it existed): the service-level min/max as read at resume time.
    record: ScalingRecord | None = None


class RevisionHealthInput(BaseModel):
    ref: ServiceRef
    revision: str  # short name
    window_seconds: int = 300  # how far back Monitoring is read for the instance count


class RevisionHealth(BaseModel):
    """Output of CheckRevisionHealth: whether a revision can serve at all. request_count leaves
    out requests that never reach an instance (not ready, at max instances), so a canary with
    `can_serve` False and few requests is not a quiet one."""

    revision: str
    ready: bool  # the revision's Ready condition succeeded
    reason: str = ""  # why not ready / why saturated ("" when can_serve)
    max_instances: int = 0  # the revision's scaling.maxInstanceCount (0: Cloud Run's default)
    instances: int | None = None  # newest active instance count; None: Monitoring has none
    at_max_instances: bool = False  # instances >= max_instances
    can_serve: bool = False  # ready and not at max instances
    note: str = ""  # why `instances` is None


class SmokeTestInput(BaseModel):
    url: str
    path: str = "/"
    attempts: int = 3
    timeout_seconds: float = 5.0


class SmokeTestResult(BaseModel):
    ok: bool
    status: int
    detail: str = ""


# --------------------------------------------------------------------------- Monitoring


class MetricWindow(BaseModel):
    requests: int = 0
    errors: int = 0  # 5xx
    p95_ms: float | None = None
    error_logs: int = 0  # log entries of severity ERROR or worse
    latency: list[int] = []  # request_latencies bucket counts (layout: CanaryMetrics.bounds)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


class ReadCanaryMetricsInput(BaseModel):
    ref: ServiceRef
    canary_revision: str
    stable_revisions: list[str]
    window: timedelta  # look-back from now (when `start` is not set)
    # complete data only: the window runs from `start` to the newest complete sample, i.e.
    # now - delay aligned down to `alignment` (or to `end` when set, for a baseline)
    start: datetime | None = None
    end: datetime | None = None
    delay: timedelta = timedelta(0)
    alignment: timedelta = timedelta(seconds=1)


class CanaryMetrics(BaseModel):
    start: datetime
    end: datetime
    canary: MetricWindow
    stable: MetricWindow | None = None
    bounds: list[float] = []  # upper bounds (ms) of latency buckets 0..N-2 (N-1: overflow)


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class GateResult(BaseModel):
    verdict: Verdict
    reasons: list[str]


class Reading(BaseModel):
    """One gate reading as kept in status and result."""

    at: datetime
    service: str
    weight: int
    canary_requests: int
    canary_error_rate: float | None
    canary_p95_ms: float | None
    stable_requests: int = 0
    stable_error_rate: float | None = None
    stable_p95_ms: float | None = None
    verdict: Verdict
    reasons: list[str] = []
    # the sequential judge: the window read, and each test's standing over the cumulative evidence
    window_start: datetime | None = None
    window_end: datetime | None = None
    canary_errors: int = 0
    canary_error_logs: int = 0
    stable_errors: int = 0
    stable_error_logs: int = 0
    evidence: list[str] = []


# --------------------------------------------------------------------------- Cloud SQL


class InstanceRef(BaseModel):
    target: Target
    project: str
    instance: str


class CreateBackupInput(BaseModel):
    ref: InstanceRef
    description: str  # unique per request: a retry finds and reuses the same backup


class BackupInfo(BaseModel):
    id: str
    status: str
    type: str = "ON_DEMAND"
    description: str = ""
    enqueued_time: datetime | None = None
    end_time: datetime | None = None
    instance: str = ""


class ListBackupsInput(BaseModel):
    ref: InstanceRef
    limit: int = 50


class RestoreBackupInput(BaseModel):
    ref: InstanceRef  # target instance (overwritten)
    backup_id: str
    source_instance: str  # instance the backup was taken from


class CloneInstanceInput(BaseModel):
    ref: InstanceRef  # source instance
    destination: str
    point_in_time: datetime | None = None
    backup_id: str | None = None


class RecoveryWindowInput(BaseModel):
    ref: InstanceRef
    point_in_time: datetime | None = None  # checked against the window when given


class RecoveryWindow(BaseModel):
    """Output of ReadRecoveryWindow: how far back point-in-time recovery of an instance reaches
    (`instances.getLatestRecoveryTime`, the backup configuration)."""

    instance: str
    pitr_enabled: bool
    retention_days: int = 0  # settings.backupConfiguration.transactionLogRetentionDays
    earliest: datetime | None = None
    latest: datetime | None = None
    problem: str = ""  # why `point_in_time` cannot be recovered (with the fix); "" when it can


class DeleteInstanceInput(BaseModel):
    ref: InstanceRef
    # Only for instances this Stagecoach run created itself (a drill's scratch instance, a
    # recovery clone that did not complete): clones inherit the source's deletion protection,
    # which is then turned off first. Never set for an instance Stagecoach did not create.
    created_by_stagecoach: bool = False


class OperationResult(BaseModel):
    operation: str
    seconds: float  # measured from request to DONE


class ValidateDatabaseInput(BaseModel):
    ref: InstanceRef
    database: str
    tables: list[str]
    timestamp_column: str = "created_at"


class TableCount(BaseModel):
    table: str
    rows: int
    newest: datetime | None = None


class ValidationReport(BaseModel):
    instance: str
    tables: list[TableCount]
    ok: bool
    problems: list[str] = []

    @property
    def newest(self) -> datetime | None:
        stamps = [t.newest for t in self.tables if t.newest]
        return max(stamps) if stamps else None


# --------------------------------------------------------------------------- notifications


class NotifyInput(BaseModel):
    event: Literal["started", "awaiting_approval", "promoted", "rolled_back", "failed", "drill"]
    text: str
    # The webhook URL is read by the worker from config/env: never passed through history.


# --------------------------------------------------------------------------- release hooks


HookStage = Literal["pre_deploy", "post_deploy"]


class JobRef(BaseModel):
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


class HookPlan(BaseModel):
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


class StartHookInput(BaseModel):
    hook: HookPlan
    release_id: str  # labels the execution: a retry finds the one it started
    version: str


class ExecutionRef(BaseModel):
    ref: JobRef
    execution: str  # short name, e.g. migrate-prod-x7k2p

    @property
    def name(self) -> str:
        return f"{self.ref.name}/executions/{self.execution}"


class HookExecution(BaseModel):
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


class HookStatus(BaseModel):
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


# --------------------------------------------------------------------------- release workflow


class ServicePlan(BaseModel):
    """One service of a release, resolved from the config for one environment."""

    name: str  # config name, e.g. node-server
    ref: ServiceRef
    image: str  # "" keeps the image of the revision serving the most traffic (switch releases)
    revision: str
    health_path: str = "/"
    smoke: str = "tag_url"  # tag_url | none (services[].smoke)
    sizing: Sizing
    env: dict[str, str] = {}
    secrets: dict[str, str] = {}
    ingress: str = "all"
    vpc_connector: str | None = None
    database: DatabaseBinding | None = None  # set for services with uses_database

    def create_input(self, tag: str, image: str = "") -> CreateRevisionInput:
        """CreateRevision's input for this service (`image` overrides the plan's own, e.g. the
        serving image a switch release keeps)."""
        return CreateRevisionInput(
            ref=self.ref,
            revision=self.revision,
            image=image or self.image,
            tag=tag,
            sizing=self.sizing,
            env=self.env,
            secrets=self.secrets,
            ingress=self.ingress,
            vpc_connector=self.vpc_connector,
            database=self.database,
        )


class RecoveryInfo(BaseModel):
    """The point-in-time recovery a switch release moves the services to (restore --switch)."""

    source_instance: str
    recovery_instance: str
    point_in_time: datetime
    clone_seconds: float | None = None
    validation: ValidationReport | None = None
    workflow_run_id: str = ""  # the PointInTimeRecovery run that made the instance


class FreezeOverride(BaseModel):
    """`deploy --override-freeze --reason R`: who started a release inside a freeze window, why,
    and which window; the release does not wait for windows before `until`."""

    by: str
    reason: str
    window: str  # the window's reason
    until: datetime  # when that freeze ends (UTC)


class ReleaseInput(BaseModel):
    app: str
    env: str
    version: str
    release_id: str  # short, unique per release; part of revision names
    services: list[ServicePlan]
    steps: list[Step]
    interval: timedelta
    gates: Gates
    approval: Approval | None = None
    backup: InstanceRef | None = None
    requested_by: Name = ""
    notify: bool = False
    # Move the services to the instance in their `database` binding even where they serve from
    # another one now (restore --switch, deploy --switch-database). Without it such drift fails
    # the release before anything is touched.
    switch_database: bool = False
    recovery: RecoveryInfo | None = None  # set by a point-in-time recovery that switches
    freeze: list[FreezeWindow] = []  # traffic steps wait while one holds
    freeze_override: FreezeOverride | None = None
    pre_deploy_hooks: list[HookPlan] = []  # after the backup, before the first revision
    post_deploy_hooks: list[HookPlan] = []  # after every service is promoted
    on_post_deploy_failure: Literal["rollback", "report"] = "rollback"
    # history events after which a bake continues as new: a 48 h bake polled every minute
    # stays bounded (Temporal warns at 10,240 events)
    continue_as_new_after: int = 4000
    # set only by continue-as-new
    resume: ReleaseStatus | None = None


class ServiceStatus(BaseModel):
    name: str
    run_service: str
    stable_revisions: list[str] = []
    canary_revision: str = ""
    snapshot: list[TrafficTarget] = []  # the traffic before this release touched it
    percent: int = 0
    step: int = -1  # index into steps; -1 before traffic moved
    state: Literal[
        "pending", "created", "smoke_tested", "shifting", "promoted", "rolled_back", "failed"
    ] = "pending"
    tag_url: str = ""
    image: str = ""  # the image deployed (resolved at the start when the plan keeps the image)
    database: str = ""  # instance the new revision is bound to ("" when it uses none)
    database_before: str = ""  # instance the serving revision was bound to
    bake_until: datetime | None = None  # end of the current step's bake window
    extensions: int = 0  # bake extensions used on inconclusive readings in this step
    readings: list[Reading] = []  # the newest readings (bounded; failures always kept)
    judge: JudgeState | None = None  # the sequential judge's cumulative evidence
    window_end: datetime | None = None  # end of the last metric window judged
    canary_since: datetime | None = None  # when the canary first received traffic
    reading_count: int = 0
    breaches: int = 0
    error: str = ""


class ApprovalRecord(BaseModel):
    by: Name
    at: datetime
    comment: Text = ""
    before_weight: int
    # who the proof says sent it: "<name> (ed25519 key <fingerprint>)", or how it was let
    # through without proof ("unverified: environments.<env>...proof is none")
    authenticated: str = ""


class RejectedApproval(BaseModel):
    """An `approve` that was refused: kept in the status (newest MAX_REJECTED) and logged."""

    at: datetime
    claimed: Name  # the `by` of the payload
    authenticated: str = ""  # who the proof verified as ("" when it did not verify)
    reason: Text


class ReleaseStatus(BaseModel):
    app: str
    env: str
    version: str
    phase: Phase = Phase.VALIDATING
    outcome: Outcome = Outcome.RUNNING
    backup_id: str = ""
    serving_checked: bool = False  # the database bindings / kept images were read
    recovery: RecoveryInfo | None = None  # the point-in-time recovery this release switches to
    current_service: str = ""
    services: list[ServiceStatus] = []
    approvals: list[ApprovalRecord] = []
    rejected_approvals: list[RejectedApproval] = []  # newest MAX_REJECTED
    awaiting_approval_for: int | None = None  # weight waiting for approval
    events: list[str] = []  # one line per notable event, oldest first (bounded)
    abort_reason: str = ""
    promote_requested: bool = False
    frozen_until: datetime | None = None  # set while a freeze window holds the next step
    frozen_reason: str = ""
    freeze_override: FreezeOverride | None = None
    hooks: list[HookStatus] = []  # the hooks started so far, in order
    # set when a release whose pre_deploy hook changed the database is not promoted: a traffic
    # rollback does not undo schema changes; it names the pre-deploy backup and its restore
    migration_note: str = ""
    error: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    progress: str = ""


class ApprovalProof(BaseModel):
    """Proof of who sent an `approve`: an Ed25519 signature by the approver's own key over
    `stagecoach.trust.statement(...)`, bound to one release (workflow id and run id), its
    version and the step (weight; 0 for a restore), the name and the comment."""

    workflow_id: Name
    run_id: Name
    version: Name
    step: int
    key: Name = ""  # fingerprint of the public key, for the record and the error message
    signature: Name  # base64 of the 64-byte signature


class ApproveInput(BaseModel):
    by: Name = Field(min_length=1)
    comment: Text = ""
    proof: ApprovalProof | None = None


class ApproveResult(BaseModel):
    approved_weight: int
    by: str


class AbortInput(BaseModel):
    reason: Text = "aborted by operator"
    by: Name = ""


ReleaseInput.model_rebuild()


# --------------------------------------------------------------------------- rollback workflow


class RollbackInput(BaseModel):
    """Scenario 4. The release history is optional: without it (e.g. started from the Web UI)
    the previous revision comes from the service's revision list. Keys are Cloud Run service
    names (`node-server-prod`)."""

    app: str
    env: str
    services: list[ServiceRef]
    reason: Text = ""
    previous_of: dict[str, dict[str, str]] = {}  # service -> {revision: revision it replaced}
    exclude: dict[str, list[str]] = {}  # service -> canary revisions never promoted
    requested_by: Name = ""


class FindPreviousRevisionInput(BaseModel):
    ref: ServiceRef
    serving: list[str]  # revisions that receive traffic now (LATEST pinned)
    previous_of: dict[str, str] = {}  # revision -> the revision it replaced (release history)
    exclude: list[str] = []  # never roll back to these (canaries of failed releases)


class PreviousRevision(BaseModel):
    current: str  # the newest revision serving now
    previous: str  # the revision to send 100% to
    how: str  # why that one, for the status line and the result


class RollbackServiceResult(BaseModel):
    service: str
    from_traffic: list[TrafficTarget]
    to_traffic: list[TrafficTarget]
    changed: bool
    error: str = ""


class RollbackResult(BaseModel):
    services: list[RollbackServiceResult]
    outcome: Outcome
