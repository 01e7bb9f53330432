"""From config + command-line request to workflow inputs (pure; no I/O).

The config models (stagecoach.config) validate what a person writes; a workflow input carries
their payload twins (stagecoach.payloads.policy): `as_payload` converts, here and only here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from stagecoach.config import (
    MIN_INTERVAL,
    Config,
    ConfigError,
    check_version,
    run_service_name,
)
from stagecoach.freeze import frozen_at
from stagecoach.hooks import job_id
from stagecoach.payloads.base import Payload
from stagecoach.payloads.common import DatabaseBinding, InstanceRef, ServiceRef, Target
from stagecoach.payloads.hooks import HookPlan, HookStage, JobRef
from stagecoach.payloads.policy import (
    Approval,
    FreezeOverride,
    FreezeWindow,
    Gates,
    Sizing,
    Step,
)
from stagecoach.payloads.release import RecoveryInfo, ReleaseInput, ServicePlan

P = TypeVar("P", bound=Payload)


def as_payload(cls: type[P], model: BaseModel) -> P:
    """A config model as the payload model `cls` of the same shape (what a workflow carries)."""
    return cls.model_validate(model.model_dump())


def as_payloads(cls: type[P], models: Iterable[BaseModel]) -> list[P]:
    return [as_payload(cls, m) for m in models]


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


def recovery_instance_name(instance: str, point_in_time: datetime) -> str:
    """`<instance>-recovery-<YYYYMMDDHHMM>` of the recovery point (UTC): one per requested
    minute, so a retried request finds the clone it already made."""
    return f"{instance}-recovery-{point_in_time.strftime('%Y%m%d%H%M')}"


def database_binding(cfg: Config, env: str, instance: str | None = None) -> DatabaseBinding:
    """The binding every revision of a `uses_database` service gets: the environment's instance
    (or `instance`), reached through Cloud Run's Cloud SQL connection and `connection_env`."""
    e = cfg.env(env)
    name = instance or instance_ref(cfg, env).instance
    return DatabaseBinding(
        env_var=cfg.database.connection_env, connection_name=f"{e.project}:{e.region}:{name}"
    )


def _plans(
    cfg: Config,
    env: str,
    version: str,
    release_id: str,
    services: list[str] | None,
    *,
    keep_image: bool = False,
    instance: str | None = None,
) -> list[ServicePlan]:
    e = cfg.env(env)
    if services:
        for name in services:
            cfg.service(name)  # raises ConfigError naming the choices
    plans = []
    for svc in cfg.ordered_services(services or None):
        run_name = run_service_name(svc.name, env)
        uses_db = svc.uses_database and e.database is not None
        plans.append(
            ServicePlan(
                name=svc.name,
                ref=service_ref(cfg, env, svc.name),
                image="" if keep_image else svc.image_for(e.project, version),
                revision=revision_name(run_name, version, release_id),
                health_path=svc.health_path,
                smoke=svc.smoke_route,
                sizing=as_payload(Sizing, cfg.sizing_for(env, svc.name)),
                env=svc.env,
                secrets=svc.secrets,
                ingress=svc.ingress,
                vpc_connector=svc.vpc_connector,
                database=database_binding(cfg, env, instance) if uses_db else None,
            )
        )
    return plans


def hook_plans(cfg: Config, env: str, version: str, stage: HookStage) -> list[HookPlan]:
    """The environment's hooks of `stage` (its own `release.hooks`, else the top-level ones)."""
    e = cfg.env(env)
    hooks = cfg.hooks_for(env)
    where = f"environments.{env}.release.hooks" if e.release.hooks else "hooks"
    plans = []
    for h in hooks.pre_deploy if stage == "pre_deploy" else hooks.post_deploy:
        if h.uses_database and e.database is None:
            raise ConfigError(
                f"{where}.{stage} {h.name!r} has uses_database: true but "
                f"environments.{env}.database is not set; add the instance"
            )
        try:
            job = job_id(h.name, env)
        except ValueError as err:
            raise ConfigError(f"{where}.{stage} {h.name!r}: {err}") from None
        plans.append(
            HookPlan(
                name=h.name,
                stage=stage,
                ref=JobRef(target=target_for(cfg), project=e.project, region=e.region, job=job),
                image=h.image_for(e.project, version),
                command=h.command,
                args=h.args,
                env=h.env,
                secrets=h.secrets,
                timeout=h.timeout,
                task_count=h.task_count,
                max_retries=h.max_retries,
                database=database_binding(cfg, env) if h.uses_database else None,
            )
        )
    return plans


def _release_input(
    cfg: Config,
    env: str,
    version: str,
    release_id: str,
    plans: list[ServicePlan],
    bake: timedelta | None,
    interval: timedelta | None,
    **fields: Any,
) -> ReleaseInput:
    """The environment's release policy (steps with the --bake/--interval overrides, gates,
    approval, notifications) around `plans`; `fields` set the rest."""
    e = cfg.env(env)
    if interval is not None and interval < MIN_INTERVAL:
        raise ConfigError("--interval must be at least 1s (Temporal timers fire no faster)")
    steps = as_payloads(Step, e.release.steps)
    if bake is not None:
        steps = [s if s.weight == 100 else s.model_copy(update={"bake": bake}) for s in steps]
    return ReleaseInput(
        app=cfg.app,
        env=env,
        version=version,
        release_id=release_id,
        services=plans,
        steps=steps,
        interval=interval or e.release.interval,
        gates=as_payload(Gates, cfg.gates_for(env)),
        approval=as_payload(Approval, e.release.approval) if e.release.approval else None,
        notify=bool(cfg.notifications.webhook_url),
        **fields,
    )


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
    switch_database: bool = False,
    freeze_override: FreezeOverride | None = None,
) -> ReleaseInput:
    """Validate the request against the config and resolve everything the workflow needs."""
    check_version(version)
    e = cfg.env(env)
    plans = _plans(cfg, env, version, release_id, services)
    if switch_database and not any(p.database for p in plans):
        raise ConfigError(
            "--switch-database: none of the released services has uses_database: true "
            f"(or environments.{env}.database is not set)"
        )
    return _release_input(
        cfg,
        env,
        version,
        release_id,
        plans,
        bake,
        interval,
        requested_by=requested_by,
        backup=instance_ref(cfg, env) if e.release.backup else None,
        switch_database=switch_database,
        freeze=as_payloads(FreezeWindow, e.release.freeze),
        freeze_override=freeze_override,
        pre_deploy_hooks=hook_plans(cfg, env, version, "pre_deploy"),
        post_deploy_hooks=hook_plans(cfg, env, version, "post_deploy"),
        on_post_deploy_failure=cfg.hooks_for(env).on_post_deploy_failure,
    )


def build_switch_release(
    cfg: Config,
    env: str,
    point_in_time: datetime,
    release_id: str,
    *,
    bake: timedelta | None = None,
    interval: timedelta | None = None,
    requested_by: str = "",
) -> ReleaseInput:
    """The release `restore --point-in-time --switch` hands over to once the recovery instance
    is verified: the `uses_database` services, each keeping the image it serves now, moved to
    `<instance>-recovery-<YYYYMMDDHHMM>` through the environment's canary steps and gates.

    No pre-deploy backup (the source is what is being recovered from; the recovery instance was
    just validated). Approval: the environment's release approval; where
    `restore_requires_approval` is set, before the first step instead (before any traffic reaches
    the recovery instance)."""
    e = cfg.env(env)
    source = instance_ref(cfg, env).instance
    names = [s.name for s in cfg.ordered_services() if s.uses_database]
    if not names:
        raise ConfigError(
            "--switch: no service has uses_database: true, so there is nothing to point at the "
            "recovery instance; mark the services that use the database"
        )
    version = f"recovery-{point_in_time.strftime('%Y%m%d%H%M')}"
    recovery = recovery_instance_name(source, point_in_time)
    plans = _plans(cfg, env, version, release_id, names, keep_image=True, instance=recovery)
    release = _release_input(
        cfg,
        env,
        version,
        release_id,
        plans,
        bake,
        interval,
        requested_by=requested_by,
        switch_database=True,
        recovery=RecoveryInfo(
            source_instance=source, recovery_instance=recovery, point_in_time=point_in_time
        ),
    )
    if e.release.restore_requires_approval and release.approval:  # the config ensures both
        first = release.steps[0].weight
        release.approval = release.approval.model_copy(update={"before_weight": first})
    return release


def check_freeze(
    inp: ReleaseInput, now: datetime, *, override: bool, reason: str | None, by: str
) -> ReleaseInput:
    """`deploy` inside a freeze window: refused (ConfigError, exit 2) naming the window's reason
    and when it ends, unless overridden with a reason; then the override rides in the input (the
    release records who and why, and does not wait for that freeze)."""
    if override and not (reason or "").strip():
        raise ConfigError("--override-freeze needs --reason R (recorded in the release's history)")
    freeze = frozen_at(inp.freeze, now)
    if freeze is None:
        return inp
    until = freeze.until.strftime("%Y-%m-%d %H:%M:%S UTC")
    if not override:
        raise ConfigError(
            f"{inp.env} is frozen until {until} ({freeze.reason}); deploy after that, or start "
            "it anyway with --override-freeze --reason R"
        )
    ov = FreezeOverride(
        by=by, reason=(reason or "").strip(), window=freeze.reason, until=freeze.until
    )
    return inp.model_copy(update={"freeze_override": ov})
