"""Inputs and outputs of the Cloud Run service activities (activities/cloud_run*.py,
revisions.py, revision_health.py, smoke.py)."""

from __future__ import annotations

from stagecoach.payloads.base import Payload
from stagecoach.payloads.common import DatabaseBinding, ServiceRef, TrafficTarget
from stagecoach.payloads.policy import Sizing


class ScalingRecord(Payload):
    """A service's scaling exactly as set, recorded before a drain and put back after it: the
    service-level scaling (Cloud Run unsets the service's min/max when it switches to manual
    scaling) and the tag-only (0%) traffic entries (a revision kept only by a tag still runs its
    revision-level minimum instances, which a drain therefore removes for a while)."""

    mode: str = ""  # service-level scaling_mode: "", "AUTOMATIC" or "MANUAL"
    min_instances: int = 0  # service-level minimum (0: not set)
    max_instances: int = 0  # service-level maximum (0: not set)
    manual_instances: int | None = None  # set only in manual mode
    tags: list[TrafficTarget] = []  # tag-only entries (percent 0), LATEST never among them


class ServiceState(Payload):
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


class ServingRevision(Payload):
    revision: str  # short name
    percent: int
    image: str = ""
    connection_name: str = ""  # "" when the revision has no database binding


class ReadServingInput(Payload):
    ref: ServiceRef
    env_var: str = ""  # the binding's env var ("": only the Cloud SQL volume is looked at)


class CreateRevisionInput(Payload):
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


class CreateRevisionResult(Payload):
    revision: str
    tag_url: str
    created: bool  # False when a retry found the revision already there
    # The traffic before this revision was added, LATEST pinned to the revision it routed to:
    # the snapshot a rollback restores (read in the same services.get the update needs). A retry
    # that finds the revision already added derives it by taking the new revision's 0% entry out.
    before: list[TrafficTarget] = []


class SetTrafficInput(Payload):
    ref: ServiceRef
    traffic: list[TrafficTarget]
    reason: str = ""


class SetTrafficResult(Payload):
    traffic: list[TrafficTarget]
    changed: bool


class SetScalingInput(Payload):
    """Drain (manual 0 instances) or resume a service at recorded scaling."""

    ref: ServiceRef
    drained: bool
    min_instances: int = 0
    max_instances: int = 0
    # What GetServiceState recorded before the drain: the resume puts it back exactly. None
    # (workflows started before it existed): the service-level min/max as read at resume time.
    record: ScalingRecord | None = None


class RevisionHealthInput(Payload):
    ref: ServiceRef
    revision: str  # short name
    window_seconds: int = 300  # how far back Monitoring is read for the instance count


class RevisionHealth(Payload):
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


class SmokeTestInput(Payload):
    url: str
    path: str = "/"
    attempts: int = 3
    timeout_seconds: float = 5.0


class SmokeTestResult(Payload):
    ok: bool
    status: int
    detail: str = ""


class FindPreviousRevisionInput(Payload):
    ref: ServiceRef
    serving: list[str]  # revisions that receive traffic now (LATEST pinned)
    previous_of: dict[str, str] = {}  # revision -> the revision it replaced (release history)
    exclude: list[str] = []  # never roll back to these (canaries of failed releases)


class PreviousRevision(Payload):
    current: str  # the newest revision serving now
    previous: str  # the revision to send 100% to
    how: str  # why that one, for the status line and the result
