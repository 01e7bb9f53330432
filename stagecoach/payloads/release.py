"""The Release and Rollback workflows: input, status (query `status`) and result."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from stagecoach.bounds import Name, Text
from stagecoach.judge import JudgeState
from stagecoach.payloads.base import Payload
from stagecoach.payloads.common import (
    ApprovalRecord,
    DatabaseBinding,
    InstanceRef,
    Outcome,
    Phase,
    RejectedApproval,
    ServiceRef,
    TrafficTarget,
)
from stagecoach.payloads.hooks import HookPlan, HookStatus
from stagecoach.payloads.monitoring import Reading
from stagecoach.payloads.policy import Approval, FreezeOverride, FreezeWindow, Gates, Sizing, Step
from stagecoach.payloads.run import CreateRevisionInput
from stagecoach.payloads.sql import ValidationReport


class ServicePlan(Payload):
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


class RecoveryInfo(Payload):
    """The point-in-time recovery a switch release moves the services to (restore --switch)."""

    source_instance: str
    recovery_instance: str
    point_in_time: datetime
    clone_seconds: float | None = None
    validation: ValidationReport | None = None
    workflow_run_id: str = ""  # the PointInTimeRecovery run that made the instance


class ReleaseInput(Payload):
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


class ServiceStatus(Payload):
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


class ReleaseStatus(Payload):
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


ReleaseInput.model_rebuild()


# --------------------------------------------------------------------------- rollback workflow


class RollbackInput(Payload):
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


class RollbackServiceResult(Payload):
    service: str
    from_traffic: list[TrafficTarget]
    to_traffic: list[TrafficTarget]
    changed: bool
    error: str = ""


class RollbackResult(Payload):
    services: list[RollbackServiceResult]
    outcome: Outcome
