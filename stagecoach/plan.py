"""From config + command-line request to workflow inputs (pure; no I/O)."""

from __future__ import annotations

from datetime import timedelta

from stagecoach.config import (
    MIN_INTERVAL,
    Config,
    ConfigError,
    Step,
    check_version,
    run_service_name,
)
from stagecoach.models import InstanceRef, ReleaseInput, ServicePlan, ServiceRef, Target

TASK_QUEUE = "stagecoach"


def release_workflow_id(app: str, env: str) -> str:
    return f"deploy-{app}-{env}"


def target_for(cfg: Config) -> Target:
    if cfg.target == "gcp":
        return Target(kind="gcp")
    return Target(
        kind="gcpsim", host=cfg.gcpsim.host, port=cfg.gcpsim.port, grpc_port=cfg.gcpsim.grpc_port
    )


def revision_name(run_service: str, version: str, release_id: str) -> str:
    """Deterministic per release, so a retried CreateRevision never makes a second one."""
    name = f"{run_service}-{version.replace('.', '-')}-{release_id}".lower()
    if len(name) > 63:
        raise ConfigError(f"revision name {name!r} is longer than 63 characters; shorten the name")
    return name


def service_ref(cfg: Config, env: str, service: str) -> ServiceRef:
    e = cfg.env(env)
    return ServiceRef(
        target=target_for(cfg),
        project=e.project,
        region=e.region,
        service=run_service_name(service, env),
    )


def instance_ref(cfg: Config, env: str) -> InstanceRef:
    e = cfg.env(env)
    if e.database is None:
        raise ConfigError(f"environments.{env}.database is not set; add its instance name")
    return InstanceRef(target=target_for(cfg), project=e.project, instance=e.database.instance)


def build_release(
    cfg: Config,
    env: str,
    version: str,
    release_id: str,
    *,
    services: list[str] | None = None,
    bake: timedelta | None = None,
    interval: timedelta | None = None,
    requested_by: str = "",
) -> ReleaseInput:
    """Validate the request against the config and resolve everything the workflow needs."""
    check_version(version)
    e = cfg.env(env)
    if services:
        for name in services:
            cfg.service(name)  # raises ConfigError naming the choices
    plans = []
    for svc in cfg.ordered_services(services or None):
        run_name = run_service_name(svc.name, env)
        plans.append(
            ServicePlan(
                name=svc.name,
                ref=service_ref(cfg, env, svc.name),
                image=svc.image_for(e.project, version),
                revision=revision_name(run_name, version, release_id),
                health_path=svc.health_path,
                sizing=cfg.sizing_for(env, svc.name),
                env=svc.env,
                secrets=svc.secrets,
                ingress=svc.ingress,
                vpc_connector=svc.vpc_connector,
            )
        )
    if interval is not None and interval < MIN_INTERVAL:
        raise ConfigError("--interval must be at least 1s (Temporal timers fire no faster)")
    steps = e.release.steps
    if bake is not None:
        steps = [Step(weight=s.weight, bake=bake if s.weight < 100 else s.bake) for s in steps]
    return ReleaseInput(
        app=cfg.app,
        env=env,
        version=version,
        release_id=release_id,
        services=plans,
        steps=steps,
        interval=interval or e.release.interval,
        gates=cfg.gates_for(env),
        approval=e.release.approval,
        backup=instance_ref(cfg, env) if e.release.backup else None,
        requested_by=requested_by,
        notify=bool(cfg.notifications.webhook_url),
    )
