"""Regional failover (DR Scenario 3): typed inputs and results of the `Failover` workflow and
the pure planning from config + command line to its input. No I/O; importable from workflow
code.

One workflow type serves three uses (`FailoverInput.mode`):
- `failover`: database and services brought up in `to_region`, then the DNS record moved there;
- `failback`: the same towards the primary region, the secondary's data carried back by a fresh
  backup of the secondary restored into the primary's instance, then DNS back;
- `drill`: everything but the DNS move, into scratch resources that are always deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from stagecoach.config import Config, ConfigError, check_version, run_service_name
from stagecoach.dr_models import DEFAULT_RPO, DEFAULT_RTO, DrOutcome, Verification
from stagecoach.models import (
    ApprovalRecord,
    BackupInfo,
    DatabaseBinding,
    InstanceRef,
    RejectedApproval,
    ServiceRef,
    Sizing,
    Target,
    ValidationReport,
)
from stagecoach.plan import target_for

Mode = Literal["failover", "failback", "drill"]


class FailoverPhase(StrEnum):
    """Values of the StagecoachPhase search attribute for regional failovers."""

    PLANNING = "planning"
    DATABASE = "database"
    SERVICES = "services"
    AWAITING_APPROVAL = "awaiting_approval"
    DNS = "dns"
    CLEANING_UP = "cleaning_up"
    DONE = "done"


# --------------------------------------------------------------------------- activity payloads


class CreateInstanceInput(BaseModel):
    ref: InstanceRef  # the instance to create (project, name)
    region: str
    tier: str
    availability: str = "ZONAL"
    database_version: str = "POSTGRES_15"


class CreateInstanceResult(BaseModel):
    instance: str
    region: str
    created: bool  # False: it existed already (a retry adopts it)
    seconds: float = 0.0


class DeployServiceInput(BaseModel):
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


class DeployServiceResult(BaseModel):
    service: str
    region: str
    revision: str
    uri: str
    created: bool  # the service was created by this call
    changed: bool  # a revision was deployed (False: it already served exactly this)


class DeleteServiceInput(BaseModel):
    ref: ServiceRef


class DnsRecordRef(BaseModel):
    target: Target
    project: str  # the zone's project
    zone: str
    name: str  # FQDN with the trailing dot
    type: str = "CNAME"
    ttl: int = 300


class MoveDnsInput(BaseModel):
    record: DnsRecordRef
    rrdatas: list[str]  # what the record must hold afterwards


class MoveDnsResult(BaseModel):
    before: list[str]  # the record's data before ([] when it did not exist)
    after: list[str]
    change_id: str = ""  # "" when nothing had to change
    seconds: float = 0.0


class ReadDnsInput(BaseModel):
    record: DnsRecordRef


class VerifyDnsInput(BaseModel):
    record: DnsRecordRef
    rrdatas: list[str]
    region: str  # the region the name must answer from
    service: str  # the Cloud Run service the name fronts in that region
    health_path: str = "/"
    attempts: int = 20


class VerifyDnsResult(BaseModel):
    ok: bool
    detail: str
    answered_region: str = ""


# --------------------------------------------------------------------------- workflow input


class FailoverService(BaseModel):
    name: str  # config name
    deploy: DeployServiceInput
    health_path: str = "/"
    # `services[].smoke`: `tag_url` GETs health_path on the service's URL from the worker;
    # `none` (e.g. an internal ingress the worker cannot reach) skips it, said in the events
    smoke: Literal["tag_url", "none"] = "tag_url"


class DnsPlan(BaseModel):
    record: DnsRecordRef
    rrdatas: list[str]  # the record's data for the target region
    service: str  # Cloud Run service name the record fronts


class FailoverInput(BaseModel):
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


class PhaseTime(BaseModel):
    phase: str
    seconds: float


class FailoverStatus(BaseModel):
    """Status (query `status`) and result of a failover, failback or regional drill."""

    app: str
    env: str
    mode: Mode = "failover"
    from_region: str
    to_region: str
    version: str
    instance: str = ""  # the instance the services are bound to in to_region
    source_instance: str = ""  # whose backup was restored into it
    phase: FailoverPhase = FailoverPhase.PLANNING
    outcome: DrOutcome = DrOutcome.RUNNING
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
    awaiting_approval: bool = False
    approvals: list[ApprovalRecord] = []
    rejected_approvals: list[RejectedApproval] = []  # newest MAX_REJECTED
    dns_before: list[str] = []
    dns_after: list[str] = []
    dns_moved: bool = False
    dns_verified: bool = False
    phases: list[PhaseTime] = []
    total_seconds: float | None = None
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


# --------------------------------------------------------------------------- planning (pure)


def failover_workflow_id(app: str, env: str) -> str:
    """Failover and failback hold the environment's release id: nothing else runs meanwhile."""
    return f"deploy-{app}-{env}"


def regional_drill_workflow_id(app: str, env: str) -> str:
    return f"dr-drill-regional-{app}-{env}"


def regional_instance_name(instance: str, region: str) -> str:
    return f"{instance}-{region}"


def drill_suffix(at: datetime) -> str:
    return at.strftime("%m%d%H%M%S")


def run_app_host(run_service: str, project: str, region: str) -> str:
    """The Cloud Run URL host of a service, `<service>-<project>.<region>.run.app.` (Cloud
    Run's deterministic URL names the project number; gcpsim uses the id)."""
    return f"{run_service}-{project}.{region}.run.app."


def front_service(cfg: Config, env: str) -> str:
    e = cfg.env(env)
    if e.dns is not None and e.dns.service:
        return e.dns.service
    public = [s.name for s in cfg.ordered_services() if s.ingress == "all"]
    if not public:
        raise ConfigError(
            f"environments.{env}.dns.service is not set and no service has ingress all; "
            "name the service the DNS record fronts"
        )
    return public[-1]


def dns_plan(cfg: Config, env: str, region: str, service_name: str | None = None) -> DnsPlan:
    e = cfg.env(env)
    if e.dns is None:
        raise ConfigError(
            f"environments.{env}.dns is not set; add managed_zone, name (and type, ttl) of the "
            "record users reach the environment by"
        )
    front = front_service(cfg, env)
    run_name = service_name or run_service_name(front, env)
    if region in e.dns.targets:
        rrdatas = list(e.dns.targets[region])
    elif e.dns.type == "CNAME":
        rrdatas = [run_app_host(run_name, e.project, region)]
    else:
        raise ConfigError(
            f"environments.{env}.dns.targets has no entry for {region}; add the {e.dns.type} "
            f"addresses users reach in {region}"
        )
    return DnsPlan(
        record=DnsRecordRef(
            target=target_for(cfg),
            project=e.dns.zone_project or e.project,
            zone=e.dns.managed_zone,
            name=e.dns.name,
            type=e.dns.type,
            ttl=e.dns.ttl,
        ),
        rrdatas=rrdatas,
        service=run_name,
    )


def _services(
    cfg: Config,
    env: str,
    region: str,
    version: str,
    instance: str,
    revision_suffix: str,
    name_suffix: str = "",
) -> list[FailoverService]:
    e = cfg.env(env)
    out = []
    for svc in cfg.ordered_services():
        run_name = run_service_name(svc.name, env) + name_suffix
        binding = None
        if svc.uses_database and e.database is not None:
            binding = DatabaseBinding(
                env_var=cfg.database.connection_env,
                connection_name=f"{e.project}:{region}:{instance}",
            )
        revision = f"{run_name}-{version.replace('.', '-')}-{revision_suffix}".lower()[:63]
        out.append(
            FailoverService(
                name=svc.name,
                health_path=svc.health_path,
                smoke="none" if svc.smoke_route == "none" else "tag_url",
                deploy=DeployServiceInput(
                    ref=ServiceRef(
                        target=target_for(cfg), project=e.project, region=region, service=run_name
                    ),
                    revision=revision.rstrip("-"),
                    image=svc.image_for(e.project, version),
                    sizing=cfg.sizing_for(env, svc.name),
                    env=dict(svc.env),
                    secrets=dict(svc.secrets),
                    ingress=svc.ingress,
                    vpc_connector=svc.vpc_connector,
                    database=binding,
                ),
            )
        )
    return out


def _common(cfg: Config, env: str) -> tuple[InstanceRef, Verification]:
    e = cfg.env(env)
    if e.database is None:
        raise ConfigError(f"environments.{env}.database is not set; add its instance name")
    v = cfg.database.validation
    ref = InstanceRef(target=target_for(cfg), project=e.project, instance=e.database.instance)
    return ref, Verification(
        database=cfg.database.name, tables=list(v.tables), timestamp_column=v.timestamp_column
    )


def _approvers(cfg: Config, env: str) -> list[str]:
    rel = cfg.env(env).release
    if rel.restore_requires_approval and rel.approval is not None:
        return list(rel.approval.approvers)
    return []


def check_failover_region(cfg: Config, env: str, to_region: str) -> None:
    """The worker's policy (activities/policy.py) allows only the environment's region and its
    `failover.regions`; the CLI says so before anything starts. (The planners do not check it:
    the worker's own config decides.)"""
    allowed = cfg.env(env).failover.regions
    if to_region not in allowed:
        raise ConfigError(
            f"--to-region {to_region[:40]} is not in environments.{env}.failover.regions "
            f"({', '.join(allowed) or 'none listed'}); the worker's policy refuses other regions: "
            "add it there (in the worker's config too)"
        )


def check_failover_request(
    cfg: Config, env: str, to_region: str, source: Literal["backup", "replica"] = "backup"
) -> None:
    """What a failover request must satisfy before anything starts (ConfigError otherwise)."""
    e = cfg.env(env)
    if to_region == e.region:
        raise ConfigError(
            f"--to-region {to_region} is {env}'s own region; name another region to fail over to"
        )
    if source == "replica":
        raise ConfigError(
            "--from replica is not supported yet (no cross-region read replicas are modelled); "
            "use --from backup"
        )


def build_failover(
    cfg: Config,
    env: str,
    to_region: str,
    version: str,
    version_source: str,
    *,
    source: Literal["backup", "replica"] = "backup",
    cleanup_on_failure: bool = False,
    requested_by: str = "",
) -> FailoverInput:
    e = cfg.env(env)
    check_version(version)
    check_failover_request(cfg, env, to_region, source)
    primary, verification = _common(cfg, env)
    assert e.database is not None
    new = regional_instance_name(e.database.instance, to_region)
    return FailoverInput(
        app=cfg.app,
        env=env,
        mode="failover",
        from_region=e.region,
        to_region=to_region,
        version=version,
        version_source=version_source,
        source=source,
        source_instance=primary,
        instance=primary.model_copy(update={"instance": new}),
        create_instance=CreateInstanceInput(
            ref=primary.model_copy(update={"instance": new}),
            region=to_region,
            tier=e.database.tier,
            availability=e.database.availability,
        ),
        services=_services(cfg, env, to_region, version, new, "fo"),
        dns=dns_plan(cfg, env, to_region),
        verification=verification,
        approvers=_approvers(cfg, env),
        rto=e.failover.rto,
        rpo=e.failover.rpo,
        cleanup_on_failure=cleanup_on_failure,
        requested_by=requested_by,
        notify=bool(cfg.notifications.webhook_url),
    )


def build_failback(
    cfg: Config,
    env: str,
    last: FailoverStatus,
    *,
    requested_by: str = "",
) -> FailoverInput:
    """Back from `last` (the newest successful failover) to the primary region."""
    e = cfg.env(env)
    configured, verification = _common(cfg, env)
    # The primary is where the failover came from, whatever the config says since.
    primary = configured.model_copy(update={"instance": last.source_instance})
    secondary = configured.model_copy(update={"instance": last.instance})
    return FailoverInput(
        app=cfg.app,
        env=env,
        mode="failback",
        from_region=last.to_region,
        to_region=last.from_region,
        version=last.version,
        version_source=f"the failover to {last.to_region}",
        source_instance=secondary,
        instance=primary,
        services=_services(cfg, env, last.from_region, last.version, primary.instance, "fb"),
        dns=dns_plan(cfg, env, last.from_region),
        verification=verification,
        approvers=_approvers(cfg, env),
        rto=e.failover.rto,
        rpo=e.failover.rpo,
        requested_by=requested_by,
        notify=bool(cfg.notifications.webhook_url),
    )


def build_regional_drill(
    cfg: Config,
    env: str,
    to_region: str,
    version: str,
    version_source: str,
    at: datetime,
    *,
    requested_by: str = "",
) -> FailoverInput:
    """Scratch copies in `to_region`: instance `<instance>-dr-<MMDDhhmmss>`, services
    `<name>-<env>-dr-<MMDDhhmmss>`; no DNS; always deleted."""
    e = cfg.env(env)
    check_version(version)
    primary, verification = _common(cfg, env)
    assert e.database is not None
    sfx = drill_suffix(at)
    scratch = f"{e.database.instance}-dr-{sfx}"
    return FailoverInput(
        app=cfg.app,
        env=env,
        mode="drill",
        from_region=e.region,
        to_region=to_region,
        version=version,
        version_source=version_source,
        source_instance=primary,
        instance=primary.model_copy(update={"instance": scratch}),
        create_instance=CreateInstanceInput(
            ref=primary.model_copy(update={"instance": scratch}),
            region=to_region,
            tier=e.database.tier,
            availability=e.database.availability,
        ),
        services=_services(cfg, env, to_region, version, scratch, "dr", f"-dr-{sfx}"),
        dns=None,
        verification=verification,
        rto=e.failover.rto,
        rpo=e.failover.rpo,
        cleanup_on_failure=True,
        requested_by=requested_by,
        notify=bool(cfg.notifications.webhook_url),
    )
