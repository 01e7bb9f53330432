"""The release config: one pydantic schema and one loader for `deploy.yaml`.

Pure (no I/O outside `load_config`), so workflow code may import the models.
Validation errors name the key path, e.g. `environments.prod.release.steps.2.weight`.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from stagecoach.freeze import FreezeWindow

VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+$")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_CONFIG = "deploy.yaml"
MIN_INTERVAL = timedelta(seconds=1)


class ConfigError(Exception):
    """A config, version, environment or service the user got wrong (exit code 2)."""


def parse_duration(value: Any) -> Any:
    """`"90s"`, `"5m"`, `"4h"`, `"1.5s"`, `"250ms"` or a number of seconds -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value.strip())
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
        if value.startswith("P"):  # ISO 8601, as the pydantic data converter serializes it
            return value
        raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 5m, 4h or 250ms")
    return value


def format_duration(td: timedelta) -> str:
    secs = td.total_seconds()
    for unit, size in (("h", 3600), ("m", 60)):
        if secs >= size and secs % size == 0:
            return f"{int(secs // size)}{unit}"
    return f"{secs:g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GcpsimEndpoint(_Strict):
    host: str = "127.0.0.1"
    port: int = 8780
    grpc_port: int = 8781


class Sizing(_Strict):
    min_instances: int = Field(0, ge=0)
    max_instances: int = Field(100, ge=0)
    memory: str = "512Mi"
    cpu: str = "1"

    @model_validator(mode="after")
    def _min_le_max(self) -> Sizing:
        if self.max_instances and self.min_instances > self.max_instances:
            raise ValueError("min_instances must not exceed max_instances")
        return self


class Service(_Strict):
    name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$")
    image: str = Field(description="image repository; the version is appended as the tag")
    health_path: str = "/"
    ingress: Literal["all", "internal", "internal-and-cloud-load-balancing"] = "all"
    vpc_connector: str | None = None
    depends_on: list[str] = []
    uses_database: bool = False
    env: dict[str, str] = {}
    secrets: dict[str, str] = Field(
        {}, description="env var -> Secret Manager secret name (never a value)"
    )
    sizing: Sizing | None = None

    def image_for(self, project: str, version: str) -> str:
        return f"{self.image.replace('{project}', project)}:{version}"


class Gates(_Strict):
    max_error_rate: float = Field(0.05, ge=0, le=1)
    max_p95_latency: Duration = timedelta(seconds=10)
    healthy_error_rate: float = Field(0.01, ge=0, le=1)
    healthy_p95_latency: Duration = timedelta(seconds=5)
    max_error_rate_increase: float | None = Field(0.02, ge=0, le=1)
    min_requests: int = Field(20, ge=0)
    consecutive_breaches: int = Field(1, ge=1)
    on_inconclusive: Literal["pause", "pass", "fail", "extend"] = "pause"
    max_extensions: int = Field(3, ge=0)
    on_failure: Literal["rollback", "pause"] = "rollback"
    # the sequential judge (stagecoach/judge.py)
    false_rollback_rate: float = Field(0.01, gt=0, lt=0.5)
    error_tolerance: float = Field(1.0, ge=1)
    latency_tolerance: float = Field(1.0, ge=1)
    baseline_window: Duration = timedelta(hours=1)
    metrics_delay: Duration | None = None  # None: 180 s on target gcp, 0 on gcpsim
    metrics_alignment: Duration | None = None  # None: 60 s on target gcp, 1 s on gcpsim

    @model_validator(mode="after")
    def _healthy_within_max(self) -> Gates:
        if self.healthy_error_rate > self.max_error_rate:
            raise ValueError("healthy_error_rate must not exceed max_error_rate")
        if self.healthy_p95_latency > self.max_p95_latency:
            raise ValueError("healthy_p95_latency must not exceed max_p95_latency")
        return self


class Step(_Strict):
    weight: int = Field(ge=1, le=100)
    bake: Duration = timedelta(0)


class Approval(_Strict):
    before_weight: int = Field(100, ge=1, le=100)
    approvers: list[str] = Field(min_length=1)


# ------------------------------------------------- release hooks (see stagecoach/hooks.py)


class Hook(_Strict):
    """One job of `hooks.pre_deploy` / `hooks.post_deploy`."""

    name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$")
    image: str = Field(
        description="`{project}` and `{version}` are replaced; without `{version}` and without a "
        "tag, the release's version is the tag (as for services)"
    )
    command: list[str] = []
    args: list[str] = []
    env: dict[str, str] = {}
    secrets: dict[str, str] = Field({}, description="env var -> Secret Manager secret name")
    timeout: Duration = timedelta(minutes=10)
    uses_database: bool = False
    task_count: int = Field(1, ge=1, le=100)
    max_retries: int = Field(0, ge=0, le=10)

    @model_validator(mode="after")
    def _timeout_positive(self) -> Hook:
        if self.timeout <= timedelta(0) or self.timeout > timedelta(hours=24):
            raise ValueError("timeout must be more than 0s and at most 24h (Cloud Run's limit)")
        return self

    def image_for(self, project: str, version: str) -> str:
        image = self.image.replace("{project}", project)
        if "{version}" in image:
            return image.replace("{version}", version)
        last = image.rsplit("/", 1)[-1]
        return image if (":" in last or "@" in last) else f"{image}:{version}"


class Hooks(_Strict):
    """`hooks:` at the top level, or `environments.<env>.release.hooks` (which replaces it)."""

    pre_deploy: list[Hook] = []
    post_deploy: list[Hook] = []
    # a failed post_deploy hook: roll every service back, or only report it (the release is
    # promoted and says the hook failed)
    on_post_deploy_failure: Literal["rollback", "report"] = "rollback"

    @model_validator(mode="after")
    def _unique_names(self) -> Hooks:
        names = [h.name for h in self.pre_deploy + self.post_deploy]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"hook names must be unique across pre_deploy and post_deploy: {dup}")
        return self


class ReleasePolicy(_Strict):
    steps: list[Step] = Field(min_length=1)
    interval: Duration = timedelta(seconds=60)
    backup: bool = False
    approval: Approval | None = None
    restore_requires_approval: bool = False
    freeze: list[FreezeWindow] = []  # stagecoach/freeze.py: no release starts or moves traffic
    hooks: Hooks | None = None  # replaces the top-level `hooks` for this environment

    @model_validator(mode="after")
    def _steps_rise_to_100(self) -> ReleasePolicy:
        weights = [s.weight for s in self.steps]
        if weights != sorted(set(weights)):
            raise ValueError(f"step weights must strictly increase, got {weights}")
        if weights[-1] != 100:
            raise ValueError(f"the last step must have weight 100, got {weights[-1]}")
        if self.approval and self.approval.before_weight not in weights:
            raise ValueError(
                f"approval.before_weight {self.approval.before_weight} is not one of the step "
                f"weights {weights}"
            )
        if self.interval < MIN_INTERVAL:
            raise ValueError(
                "interval must be at least 1s (Temporal timers fire no faster than that)"
            )
        if self.restore_requires_approval and self.approval is None:
            raise ValueError("restore_requires_approval needs approval.approvers: add them")
        return self


class DatabaseInstance(_Strict):
    instance: str
    tier: str = "db-f1-micro"
    availability: Literal["ZONAL", "REGIONAL"] = "ZONAL"


class Validation(_Strict):
    tables: list[str] = []
    timestamp_column: str = "created_at"


class Database(_Strict):
    name: str = "app"
    validation: Validation = Validation()
    connection_env: str = Field(
        "INSTANCE_CONNECTION_NAME",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="env var through which a uses_database service learns its instance's "
        "connection name (project:region:instance)",
    )


class Environment(_Strict):
    project: str
    region: str = "us-central1"
    sizing: Sizing = Sizing()
    database: DatabaseInstance | None = None
    release: ReleasePolicy
    gates: Gates | None = None


class Notifications(_Strict):
    webhook_url: str | None = None


class Config(_Strict):
    app: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$")
    target: Literal["gcpsim", "gcp"] = "gcpsim"
    gcpsim: GcpsimEndpoint = GcpsimEndpoint()
    services: list[Service] = Field(min_length=1)
    database: Database = Database()
    gates: Gates = Gates()
    environments: dict[str, Environment] = Field(min_length=1)
    notifications: Notifications = Notifications()
    hooks: Hooks = Hooks()

    @model_validator(mode="after")
    def _dependencies_known_and_acyclic(self) -> Config:
        names = [s.name for s in self.services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique, got {names}")
        for s in self.services:
            for d in s.depends_on:
                if d not in names:
                    raise ValueError(f"service {s.name!r} depends_on unknown service {d!r}")
        self.ordered_services()  # raises on a cycle
        return self

    def ordered_services(self, only: list[str] | None = None) -> list[Service]:
        """Services in dependency order (dependencies first), stable for ties."""
        by_name = {s.name: s for s in self.services}
        done: list[str] = []
        visiting: set[str] = set()

        def visit(n: str) -> None:
            if n in done:
                return
            if n in visiting:
                raise ValueError(f"services depend on each other in a cycle through {n!r}")
            visiting.add(n)
            for d in by_name[n].depends_on:
                visit(d)
            visiting.discard(n)
            done.append(n)

        for s in self.services:
            visit(s.name)
        return [by_name[n] for n in done if only is None or n in only]

    def env(self, name: str) -> Environment:
        if name not in self.environments:
            raise ConfigError(
                f"unknown environment {name!r}; choose one of {', '.join(self.environments)}"
            )
        return self.environments[name]

    def hooks_for(self, env: str) -> Hooks:
        return self.env(env).release.hooks or self.hooks

    def gates_for(self, env: str) -> Gates:
        return self.env(env).gates or self.gates

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise ConfigError(
            f"unknown service {name!r}; choose from {', '.join(s.name for s in self.services)}"
        )

    def sizing_for(self, env: str, service: str) -> Sizing:
        return self.service(service).sizing or self.env(env).sizing


def run_service_name(service: str, env: str) -> str:
    """Cloud Run service name of a config service in an environment."""
    return f"{service}-{env}"


def check_version(version: str) -> str:
    if not VERSION_RE.match(version):
        raise ConfigError(f"version {version!r} must look like v1.2.3 (^v\\d+\\.\\d+\\.\\d+$)")
    return version


def _describe(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    path = ".".join(str(p) for p in e["loc"]) or "(top level)"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {path}: {e['msg']}{more}"


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("STAGECOACH_CONFIG") or DEFAULT_CONFIG)


def parse_config(data: Any, source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, source) + "; fix that key and run again") from None


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the config file (explicit path, STAGECOACH_CONFIG, or ./deploy.yaml).

    GCPSIM_PORT / GCPSIM_GRPC_PORT override the `gcpsim` endpoint ports."""
    import yaml

    p = config_path(str(path) if path else None)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found; pass --config FILE or set STAGECOACH_CONFIG")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML ({err}); fix the file and run again") from None
    if isinstance(data, dict) and (
        os.environ.get("GCPSIM_PORT") or os.environ.get("GCPSIM_GRPC_PORT")
    ):
        sim = dict(data.get("gcpsim") or {})
        if os.environ.get("GCPSIM_PORT"):
            sim["port"] = int(os.environ["GCPSIM_PORT"])
        if os.environ.get("GCPSIM_GRPC_PORT"):
            sim["grpc_port"] = int(os.environ["GCPSIM_GRPC_PORT"])
        data["gcpsim"] = sim
    return parse_config(data, str(p))
