"""The release config: the pydantic schema of `deploy.yaml`.

Pure (no I/O), so workflow code may import the models; reading the file (`load_config`,
`parse_config`) is stagecoach.config_file. Validation errors name the key path, e.g.
`environments.prod.release.steps.2.weight`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from stagecoach.freeze import FreezeWindow

# ASCII digits only, matched whole (`fullmatch`: no trailing newline, no other scripts' digits)
VERSION_RE = re.compile(r"v[0-9]+\.[0-9]+\.[0-9]+")
APPROVER_RE = re.compile(r"[A-Za-z0-9][-A-Za-z0-9._@]{0,63}")
PUBLIC_KEY_RE = re.compile(r"ed25519:[A-Za-z0-9+/]{43}=")
# an environment key is a DNS label (it is part of Cloud Run service names and workflow ids);
# matched whole with `fullmatch` (a `$` would let "dev\n" through)
ENV_NAME_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
MAX_DURATION = timedelta(days=366)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_INTERVAL = timedelta(seconds=1)
# Cloud Run names: a service name is a DNS label of at most 49 characters, and "Combined traffic
# tag and service name cannot exceed 46 characters" (the tag URL is one DNS label). The longest
# tag a release sets is workflows.release.CANARY_TAG.
RUN_SERVICE_MAX = 49
TAG_PLUS_SERVICE_MAX = 46
LONGEST_TAG = "canary"


class ConfigError(Exception):
    """A config, version, environment or service the user got wrong (exit code 2)."""


def parse_duration(value: Any) -> Any:
    """`"90s"`, `"5m"`, `"4h"`, `"1.5s"`, `"250ms"` or a number of seconds -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _seconds(float(value), value)
    if isinstance(value, str):
        m = _DURATION_RE.fullmatch(value.strip())
        if m:
            return _seconds(float(m.group(1)) * _UNIT_SECONDS[m.group(2)], value)
        if value.startswith("P"):  # ISO 8601, as the pydantic data converter serializes it
            return value
        raise ValueError(f"{value[:40]!r} is not a duration; write e.g. 30s, 5m, 4h or 250ms")
    return value


def _seconds(seconds: float, shown: Any) -> timedelta:
    if not seconds <= MAX_DURATION.total_seconds():  # also NaN and infinity
        raise ValueError(f"{str(shown)[:40]!r} is longer than {MAX_DURATION.days} days")
    if seconds < 0:
        raise ValueError(f"{str(shown)[:40]!r} is negative")
    return timedelta(seconds=seconds)


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
    # How the release smoke-tests a new revision: `tag_url` (GET the tag URL's health_path from
    # the worker) or `none` (no smoke test, said in the status). Default: `tag_url` with ingress
    # `all`; with an internal ingress the tag URL answers only inside the VPC, so say which.
    smoke: Literal["tag_url", "none"] | None = None

    @model_validator(mode="after")
    def _smoke_route_explicit(self) -> Service:
        if self.smoke is None and self.ingress != "all":
            raise ValueError(
                f"smoke: service {self.name!r} has ingress {self.ingress!r}, so its tag URL "
                "answers only inside the VPC: set smoke: tag_url if the worker runs inside it, "
                "or smoke: none to release without a smoke test"
            )
        return self

    @property
    def smoke_route(self) -> str:
        return self.smoke or "tag_url"

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
    # also built from a release input's approval (stagecoach.payloads.policy.Approval, the same
    # fields): the worker policy of a release recorded before the worker's own policy existed
    model_config = ConfigDict(extra="forbid", frozen=True, from_attributes=True)

    before_weight: int = Field(100, ge=1, le=100)
    approvers: list[str] = Field(min_length=1)
    # signature: an approval counts only with an Ed25519 signature by the approver's key (public
    # half in `approver_keys`); none: names are taken on trust (recorded as unverified)
    proof: Literal["signature", "none"] = "signature"
    forbid_self_approval: bool = False  # the release's requester may not approve it

    @model_validator(mode="after")
    def _names(self) -> Approval:
        for name in self.approvers:
            if not APPROVER_RE.fullmatch(name):
                raise ValueError(
                    f"approver {name[:40]!r}: use letters, digits, '.', '_', '@' and '-' (up to 64)"
                )
        return self


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


class Replica(_Strict):
    """`environments.<env>.database.replicas[]`: a cross-region read replica of the environment's
    instance, which `failover --from replica` promotes (better RPO than a backup)."""

    region: str = Field(pattern=r"^[a-z]+-[a-z]+[0-9]+$")
    instance: str | None = Field(None, pattern=r"^[a-z]([-a-z0-9]{0,95}[a-z0-9])?$")


class DatabaseInstance(_Strict):
    instance: str
    tier: str = "db-f1-micro"
    availability: Literal["ZONAL", "REGIONAL"] = "ZONAL"
    replicas: list[Replica] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _one_replica_per_region(self) -> DatabaseInstance:
        regions = [r.region for r in self.replicas]
        for region in regions:
            if regions.count(region) > 1:
                raise ValueError(f"replicas: two replicas in {region}; keep one per region")
        return self

    def replica_in(self, region: str) -> str | None:
        """The name of the read replica in `region` (default `<instance>-replica-<region>`)."""
        for r in self.replicas:
            if r.region == region:
                return r.instance or f"{self.instance}-replica-{region}"
        return None

    def replica_names(self) -> list[str]:
        """The names of every configured read replica, in config order."""
        return [r.instance or f"{self.instance}-replica-{r.region}" for r in self.replicas]


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


class DnsRecord(_Strict):
    """`environments.<env>.dns`: the Cloud DNS record users reach the environment by, moved
    by `failover` / `failback` (regional failover, DR Scenario 3)."""

    managed_zone: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
    name: str = Field(description="fully qualified record name, e.g. app.legal-forms.example.")
    type: Literal["CNAME", "A", "AAAA"] = "CNAME"
    ttl: int = Field(300, ge=1, le=86400)
    zone_project: str | None = None  # the zone's project (default: the environment's)
    service: str | None = None  # the config service the name fronts (default: first public)
    # region -> record data. Without an entry, a CNAME points at the service's Cloud Run URL
    # host in that region; A/AAAA records need an entry for every region they may point at.
    targets: dict[str, list[str]] = {}

    @field_validator("name")
    @classmethod
    def _fqdn(cls, v: str) -> str:
        return v if v.endswith(".") else v + "."

    @model_validator(mode="after")
    def _targets(self) -> DnsRecord:
        if self.type != "CNAME" and not self.targets:
            raise ValueError(f"a {self.type} record needs targets: {{region: [addresses]}}")
        return self


class Failover(_Strict):
    """`environments.<env>.failover`: regional failover settings."""

    rto: Duration = timedelta(hours=1)  # the brief's recovery time objective
    rpo: Duration = timedelta(minutes=5)  # the brief's recovery point objective
    # Regions a failover or regional drill may bring the environment up in. The worker's policy
    # allows the environment's own region plus these, and refuses any other (a config or an
    # input cannot send the environment's resources to an unlisted region).
    regions: list[str] = Field(default_factory=list, max_length=20)


class Environment(_Strict):
    project: str
    region: str = "us-central1"
    sizing: Sizing = Sizing()
    database: DatabaseInstance | None = None
    release: ReleasePolicy
    gates: Gates | None = None
    dns: DnsRecord | None = None
    failover: Failover = Failover()


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

    # approver -> Ed25519 public key ("ed25519:<base64>", from `starter.py keys create NAME`):
    # read by the worker only; an approval is verified against its approver's key
    approver_keys: dict[str, str] = {}

    @model_validator(mode="after")
    def _keys(self) -> Config:
        for name, key in self.approver_keys.items():
            if not PUBLIC_KEY_RE.fullmatch(key):
                raise ValueError(
                    f"approver_keys.{name[:40]}: not an Ed25519 public key (ed25519:<base64>, "
                    "as `python starter.py keys create NAME` prints it)"
                )
        return self

    @field_validator("environments")
    @classmethod
    def _names_cloud_run_accepts(
        cls, envs: dict[str, Environment], info: ValidationInfo
    ) -> dict[str, Environment]:
        services: list[Service] = info.data.get("services") or []
        longest = max(services, key=lambda s: len(s.name), default=None)
        for env in envs:
            key = env if len(env) <= 40 else env[:40] + "..."  # messages stay bounded
            if not ENV_NAME_RE.fullmatch(env):
                raise ValueError(
                    f"environments.{key}: the environment name becomes part of Cloud Run service "
                    "names (<service>-<env>) and workflow ids, so it must be a DNS label: "
                    "lowercase letters, digits and '-', starting with a letter and not ending "
                    "with '-'"
                )
            if longest is None:
                continue
            name = run_service_name(longest.name, env)
            limit = min(RUN_SERVICE_MAX, TAG_PLUS_SERVICE_MAX - len(LONGEST_TAG))
            if len(name) > limit:
                i = services.index(longest)
                shown = name if len(name) <= 80 else name[:80] + "..."
                raise ValueError(
                    f"environments.{key}: the Cloud Run service name {shown!r} "
                    f"(services.{i}.name + '-' + environment key) is {len(name)} characters; "
                    f"Cloud Run allows {TAG_PLUS_SERVICE_MAX} for it with the traffic tag "
                    f"{LONGEST_TAG!r}, so at most {limit}: shorten services.{i}.name or the "
                    "environment key"
                )
        return envs

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
        for env_name, env in self.environments.items():
            if env.dns is not None and env.dns.service is not None and env.dns.service not in names:
                raise ValueError(
                    f"environments.{env_name}.dns.service {env.dns.service!r} is not a service"
                )
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
    if not VERSION_RE.fullmatch(version):
        raise ConfigError(
            f"version {version[:40]!r} must look like v1.2.3 (ASCII ^v[0-9]+\\.[0-9]+\\.[0-9]+$)"
        )
    return version
