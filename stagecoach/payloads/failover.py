"""Regional failover (DR Scenario 3): the `Failover` workflow's input, status and result, and
the inputs and outputs of its activities (activities/regional.py, dns.py).

One workflow type serves three uses (`FailoverInput.mode`): `failover`, `failback` and `drill`
(see stagecoach.failover, which plans them).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from stagecoach.payloads.base import Payload
from stagecoach.payloads.common import (
    ApprovalRecord,
    DatabaseBinding,
    InstanceRef,
    Outcome,
    Phase,
    RejectedApproval,
    ServiceRef,
    Target,
)
from stagecoach.payloads.dr import DEFAULT_RPO, DEFAULT_RTO, ReplicaRecreation, Verification
from stagecoach.payloads.policy import Sizing
from stagecoach.payloads.sql import BackupInfo, ValidationReport

Mode = Literal["failover", "failback", "drill"]


# --------------------------------------------------------------------------- activity payloads


class CreateInstanceInput(Payload):
    ref: InstanceRef  # the instance to create (project, name)
    region: str
    tier: str
    availability: str = "ZONAL"
    database_version: str = "POSTGRES_15"


class CreateInstanceResult(Payload):
    instance: str
    region: str
    created: bool  # False: it existed already (a retry adopts it)
    seconds: float = 0.0


class PromoteReplicaInput(Payload):
    """Promote the cross-region read replica `ref` (in `region`) to a standalone primary."""

    ref: InstanceRef
    region: str
    primary: str = ""  # the instance it replicates (never "adopted" as a promoted replica)


class PromoteReplicaResult(Payload):
    instance: str
    region: str
    promoted: bool  # False: it was a standalone primary already (an earlier attempt promoted it)
    # The replication lag Cloud Monitoring reported just before the promotion (the data-loss
    # window the replica had then), and when; None when no sample was found.
    lag_seconds: float | None = None
    lag_at: datetime | None = None
    seconds: float = 0.0


class DeployServiceInput(Payload):
    """Make `ref` (a Cloud Run service in its region) serve `image` at 100% from one revision
    with this configuration, creating the service when missing."""

    ref: ServiceRef
    revision: str  # deterministic short name
    image: str
    sizing: Sizing
    env: dict[str, str] = {}
    secrets: dict[str, str] = {}  # env var -> Secret Manager secret name
    ingress: str = "all"
    vpc_connector: str | None = None
    database: DatabaseBinding | None = None


class DeployServiceResult(Payload):
    service: str
    region: str
    revision: str
    uri: str
    created: bool  # the service was created by this call
    changed: bool  # a revision was deployed (False: it already served exactly this)


class DeleteServiceInput(Payload):
    ref: ServiceRef


class DnsRecordRef(Payload):
    target: Target
    project: str  # the zone's project
    zone: str
    name: str  # FQDN with the trailing dot
    type: str = "CNAME"
    ttl: int = 300


class MoveDnsInput(Payload):
    record: DnsRecordRef
    rrdatas: list[str]  # what the record must hold afterwards


class MoveDnsResult(Payload):
    before: list[str]  # the record's data before ([] when it did not exist)
    after: list[str]
    change_id: str = ""  # "" when nothing had to change
    seconds: float = 0.0


class ReadDnsInput(Payload):
    record: DnsRecordRef


class VerifyDnsInput(Payload):
    record: DnsRecordRef
    rrdatas: list[str]
    region: str  # the region the name must answer from
    service: str  # the Cloud Run service the name fronts in that region
    health_path: str = "/"
    attempts: int = 20


class VerifyDnsResult(Payload):
    ok: bool
    detail: str
    answered_region: str = ""


# --------------------------------------------------------------------------- workflow input, status


class FailoverService(Payload):
    name: str  # config name
    deploy: DeployServiceInput
    # `images_from: serving`: the service in the primary region (from_region) whose serving
    # image `deploy.image` is replaced with when the run starts
    primary: ServiceRef | None = None
    health_path: str = "/"
    # `services[].smoke`: `tag_url` GETs health_path on the service's URL from the worker;
    # `none` (e.g. an internal ingress the worker cannot reach) skips it, said in the events
    smoke: Literal["tag_url", "none"] = "tag_url"


class DnsPlan(Payload):
    record: DnsRecordRef
    rrdatas: list[str]  # the record's data for the target region
    service: str  # Cloud Run service name the record fronts


class FailoverInput(Payload):
    app: str
    env: str
    mode: Mode = "failover"
    from_region: str  # the region users leave (down for a failover)
    to_region: str  # the region users end up in
    version: str  # the release whose images are deployed
    version_source: str = ""  # where the version came from (a release id, or --version)
    source: Literal["backup", "replica"] = "backup"
    # The instance whose backups are restored (failover/drill), or whose data is carried back
    # (failback: the secondary).
    source_instance: InstanceRef
    # The instance in to_region the services are bound to: created (failover/drill), or the
    # primary's own instance restored from the secondary's fresh backup (failback).
    instance: InstanceRef
    create_instance: CreateInstanceInput | None = None
    services: list[FailoverService]
    dns: DnsPlan | None = None
    verification: Verification
    approvers: list[str] = []
    rto: timedelta = DEFAULT_RTO
    rpo: timedelta = DEFAULT_RPO
    cleanup_on_failure: bool = False  # failover/failback: remove what this run created
    requested_by: str = ""
    notify: bool = False
    # failback: the names in environments.<env>.database.replicas (the events say which
    # replicas of the primary the failback deletes and recreates that the config does not
    # name; None: not given, nothing said); the primary's real replicas are read from the API
    # either way
    configured_replicas: list[str] | None = None
    # a scheduled regional drill (`schedule dr-drill ENV --scenario regional` without
    # --version): `serving` = each service's image is read when the run starts from what its
    # `primary` serves now (the revision with the most traffic) and deployed instead of
    # `deploy.image`; `input` = the images in the input (a release's, or --version)
    images_from: Literal["input", "serving"] = "input"
    # a scheduled regional drill: its input is built once, so its scratch names (`-dr-<this>`)
    # are renamed to the run's start time (`-dr-<MMDDhhmmss>` of workflow.now()): every run
    # has its own (workflows/dr/scheduled.py)
    rename_scratch_from: str = ""


class RehearsedImage(Payload):
    """The image a service was (or is being) brought up with, and where it came from."""

    service: str  # the Cloud Run service in to_region (a drill's scratch one)
    image: str
    # e.g. `serving in us-central1: node-server-prod-00002-abc (100%)`, `--version`, or the
    # release it was promoted by
    source: str


class PhaseTime(Payload):
    phase: str
    seconds: float


class FailoverStatus(Payload):
    """Status (query `status`) and result of a failover, failback or regional drill."""

    app: str
    env: str
    mode: Mode = "failover"
    source: Literal["backup", "replica"] = "backup"  # where the database came from
    from_region: str
    to_region: str
    version: str
    instance: str = ""  # the instance the services are bound to in to_region
    source_instance: str = ""  # whose backup was restored into it (or whose replica was promoted)
    replica_lag_seconds: float | None = None  # --from replica: the lag reported before promoting
    phase: Phase = Phase.PLANNING
    outcome: Outcome = Outcome.RUNNING
    backup: BackupInfo | None = None
    instance_created: bool = False
    validation: ValidationReport | None = None
    restored_newest: datetime | None = None
    # failover: start minus newest restored row (an upper bound: the failed region is not
    # read); drill: source newest minus restored newest (exact); failback: secondary newest
    # after the DNS move minus restored newest (the writes not carried back)
    data_loss_seconds: float | None = None
    data_loss_exact: bool = False
    rpo_seconds: float = DEFAULT_RPO.total_seconds()
    rpo_met: bool | None = None
    services: list[DeployServiceResult] = []
    # the images deployed and where they came from (`images_from: serving`: read when the run
    # started from the primary region; empty until then)
    images_from: Literal["input", "serving"] = "input"
    images: list[RehearsedImage] = []
    # failback: the primary's read replicas, deleted before the restore into it (Cloud SQL
    # restores no backup into an instance with replicas) and recreated after the DNS move
    replicas: list[ReplicaRecreation] = []
    replicas_deleted_seconds: float | None = None  # workflow.now() delta around the deletes
    replicas_recreated_seconds: float | None = None  # ... around the recreations
    awaiting_approval: bool = False
    approvals: list[ApprovalRecord] = []
    rejected_approvals: list[RejectedApproval] = []  # newest MAX_REJECTED
    dns_before: list[str] = []
    dns_after: list[str] = []
    dns_moved: bool = False
    dns_verified: bool = False
    phases: list[PhaseTime] = []
    total_seconds: float | None = None
    # what the RTO is measured on: the total less the read replicas' recreation, which comes
    # after the DNS move (users are served again before it)
    recovery_seconds: float | None = None
    rto_seconds: float = DEFAULT_RTO.total_seconds()
    rto_met: bool | None = None
    created: list[str] = []  # resources this run created (or adopted from an earlier attempt)
    deleted: list[str] = []
    left_in: list[str] = []
    next_steps: list[str] = []
    error: str = ""
    abort_reason: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    events: list[str] = []
    progress: str = ""
