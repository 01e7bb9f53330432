"""Regional failover (DR Scenario 3): the pure planning from config + command line to the
`Failover` workflow's input. No I/O; importable from workflow code.

One workflow type serves three uses (`FailoverInput.mode`):
- `failover`: database and services brought up in `to_region`, then the DNS record moved there;
- `failback`: the same towards the primary region, the secondary's data carried back by a fresh
  backup of the secondary restored into the primary's instance, then DNS back;
- `drill`: everything but the DNS move, into scratch resources that are always deleted.

The payloads are in stagecoach.payloads.failover; the workflow ids are stagecoach.contract's
(failover and failback hold the environment's release id: nothing else runs meanwhile).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from stagecoach.config import Config, ConfigError, check_version, run_service_name
from stagecoach.payloads.common import DatabaseBinding, InstanceRef, ServiceRef
from stagecoach.payloads.dr import Verification
from stagecoach.payloads.failover import (
    CreateInstanceInput,
    DeployServiceInput,
    DnsPlan,
    DnsRecordRef,
    FailoverInput,
    FailoverService,
    FailoverStatus,
)
from stagecoach.payloads.policy import Sizing
from stagecoach.plan import as_payload, instance_ref, target_for

__all__ = [
    "SERVING",
    "build_failback",
    "build_failover",
    "build_regional_drill",
    "check_failover_region",
    "check_failover_request",
    "dns_plan",
    "drill_suffix",
    "front_service",
    "regional_instance_name",
    "run_app_host",
]


# The `version` of a scheduled regional drill that runs what serves when each run starts.
SERVING = "serving"


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
    primary_region: str = "",
) -> list[FailoverService]:
    e = cfg.env(env)
    out = []
    for svc in cfg.ordered_services():
        run_name = run_service_name(svc.name, env) + name_suffix
        primary = (
            ServiceRef(
                target=target_for(cfg), project=e.project, region=primary_region,
                service=run_service_name(svc.name, env),
            )
            if primary_region
            else None
        )  # fmt: skip
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
                primary=primary,
                health_path=svc.health_path,
                smoke="none" if svc.smoke_route == "none" else "tag_url",
                deploy=DeployServiceInput(
                    ref=ServiceRef(
                        target=target_for(cfg), project=e.project, region=region, service=run_name
                    ),
                    revision=revision.rstrip("-"),
                    image=svc.image_for(e.project, version),
                    sizing=as_payload(Sizing, cfg.sizing_for(env, svc.name)),
                    env=dict(svc.env),
                    secrets=dict(svc.secrets),
                    ingress=svc.ingress,
                    vpc_connector=svc.vpc_connector,
                    database=binding,
                ),
            )
        )
    return out


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
        db = e.database
        if db is None:
            raise ConfigError(f"environments.{env}.database is not set; add its instance name")
        if db.replica_in(to_region) is None:
            raise ConfigError(
                f"environments.{env}.database.replicas has no read replica in {to_region}; add "
                f"`- region: {to_region}` there (and create the replica), or use --from backup"
            )


def _input(cfg: Config, env: str, requested_by: str, **fields: Any) -> FailoverInput:
    """What a failover, a failback and a regional drill of `env` share (the database check,
    the objectives, notifications) around `fields`."""
    e = cfg.env(env)
    v = cfg.database.validation
    return FailoverInput(
        app=cfg.app,
        env=env,
        verification=Verification(
            database=cfg.database.name, tables=list(v.tables), timestamp_column=v.timestamp_column
        ),
        rto=e.failover.rto,
        rpo=e.failover.rpo,
        requested_by=requested_by,
        notify=bool(cfg.notifications.webhook_url),
        **fields,
    )


def _created(cfg: Config, env: str, primary: InstanceRef, name: str, region: str) -> dict[str, Any]:
    """`instance` and `create_instance` of a run that creates instance `name` in `region`, a
    copy of the environment's database settings."""
    db = cfg.env(env).database
    assert db is not None  # instance_ref checked it
    ref = primary.model_copy(update={"instance": name})
    return {
        "instance": ref,
        "create_instance": CreateInstanceInput(
            ref=ref, region=region, tier=db.tier, availability=db.availability
        ),
    }


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
    primary = instance_ref(cfg, env)
    replica = e.database.replica_in(to_region) if e.database and source == "replica" else None
    if replica is not None:
        # --from replica: the services are bound to the promoted replica; nothing is created
        new = replica
        database: dict[str, Any] = {"instance": primary.model_copy(update={"instance": new})}
    else:
        new = regional_instance_name(primary.instance, to_region)
        database = _created(cfg, env, primary, new, to_region)
    return _input(
        cfg,
        env,
        requested_by,
        mode="failover",
        from_region=e.region,
        to_region=to_region,
        version=version,
        version_source=version_source,
        source=source,
        source_instance=primary,
        **database,
        services=_services(cfg, env, to_region, version, new, "fo"),
        dns=dns_plan(cfg, env, to_region),
        approvers=_approvers(cfg, env),
        cleanup_on_failure=cleanup_on_failure,
    )


def build_failback(
    cfg: Config,
    env: str,
    last: FailoverStatus,
    *,
    requested_by: str = "",
) -> FailoverInput:
    """Back from `last` (the newest successful failover) to the primary region."""
    configured = instance_ref(cfg, env)
    # The primary is where the failover came from, whatever the config says since.
    primary = configured.model_copy(update={"instance": last.source_instance})
    return _input(
        cfg,
        env,
        requested_by,
        mode="failback",
        from_region=last.to_region,
        to_region=last.from_region,
        version=last.version,
        version_source=f"the failover to {last.to_region}",
        source_instance=configured.model_copy(update={"instance": last.instance}),
        instance=primary,
        services=_services(cfg, env, last.from_region, last.version, primary.instance, "fb"),
        dns=dns_plan(cfg, env, last.from_region),
        approvers=_approvers(cfg, env),
        # the replicas the config names, if the primary is still the configured instance
        configured_replicas=(
            db.replica_names()
            if (db := cfg.env(env).database) is not None and db.instance == primary.instance
            else None
        ),
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
    scheduled: bool = False,
) -> FailoverInput:
    """Scratch copies in `to_region`: instance `<instance>-dr-<MMDDhhmmss>`, services
    `<name>-<env>-dr-<MMDDhhmmss>`; no DNS; always deleted.

    `scheduled` (the input of a Temporal Schedule, started again and again): every run renames
    the scratch resources after its own start (`rename_scratch_from`); and with `version`
    SERVING every run deploys the images serving in the primary region when it starts
    (`images_from: serving`; the input's images are placeholders `<image>:serving`)."""
    serving = scheduled and version == SERVING
    if not serving:
        check_version(version)
    primary = instance_ref(cfg, env)
    sfx = drill_suffix(at)
    scratch = f"{primary.instance}-dr-{sfx}"
    e = cfg.env(env)
    services = _services(
        cfg, env, to_region, version, scratch, "dr", f"-dr-{sfx}",
        primary_region=e.region if serving else "",
    )  # fmt: skip
    return _input(
        cfg,
        env,
        requested_by,
        mode="drill",
        from_region=e.region,
        to_region=to_region,
        version=version,
        version_source=(
            f"what serves in {e.region} when the run starts" if serving else version_source
        ),
        source_instance=primary,
        **_created(cfg, env, primary, scratch, to_region),
        services=services,
        dns=None,
        cleanup_on_failure=True,
        images_from="serving" if serving else "input",
        rename_scratch_from=sfx if scheduled else "",
    )
