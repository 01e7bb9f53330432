"""gcpsim's own reader of the release config (deploy.yaml), for seeding only.

gcpsim imports nothing of the product: this reads just the keys seeding needs, with the same
defaults the product's config applies, and leaves validation to the product (a key gcpsim does
not know is ignored; a key it needs that is missing or of the wrong type is a `SeedError`).

Keys read (defaults in brackets):
    services[]: name, image, ingress [all], vpc_connector, depends_on [], uses_database [false],
        env {}, secrets {}, sizing {min_instances 0, max_instances 100, memory 512Mi, cpu "1"}
    database: name [app], connection_env [INSTANCE_CONNECTION_NAME], validation.tables []
    environments.<env>: project, region [us-central1], sizing, database {instance,
        tier [db-f1-micro], availability [ZONAL], replicas [] of {region,
        instance [<instance>-replica-<region>]}}, dns {managed_zone, name, type [CNAME],
        ttl [300], zone_project, service, targets {region: [rrdata]}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class SeedError(ValueError):
    """The seed config cannot be read (the message names the file and the key)."""


@dataclass(frozen=True)
class Sizing:
    min_instances: int = 0
    max_instances: int = 100
    memory: str = "512Mi"
    cpu: str = "1"


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    ingress: str = "all"
    vpc_connector: str | None = None
    depends_on: list[str] = field(default_factory=list)
    uses_database: bool = False
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    sizing: Sizing | None = None

    def image_for(self, project: str, version: str) -> str:
        """As a release names it: `{project}` replaced, the version as the tag."""
        return f"{self.image.replace('{project}', project)}:{version}"


@dataclass(frozen=True)
class Replica:
    """A cross-region read replica of the environment's instance (`environments.<env>.database.
    replicas[]`, the key `failover --from replica` reads too)."""

    region: str
    instance: str


@dataclass(frozen=True)
class Database:
    instance: str
    tier: str = "db-f1-micro"
    availability: str = "ZONAL"
    replicas: list[Replica] = field(default_factory=list)


@dataclass(frozen=True)
class Dns:
    managed_zone: str
    name: str  # fully qualified (a trailing dot added, as the product does)
    type: str = "CNAME"
    ttl: int = 300
    zone_project: str | None = None
    service: str | None = None
    targets: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Environment:
    name: str
    project: str
    region: str = "us-central1"
    sizing: Sizing = Sizing()
    database: Database | None = None
    dns: Dns | None = None


@dataclass(frozen=True)
class SeedConfig:
    services: list[Service]
    environments: list[Environment]
    database_name: str = "app"
    connection_env: str = "INSTANCE_CONNECTION_NAME"
    validation_tables: list[str] = field(default_factory=list)

    def ordered_services(self) -> list[Service]:
        """Dependencies first, stable for ties (as the product orders a release)."""
        by_name = {s.name: s for s in self.services}
        done: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in done or name in path or name not in by_name:
                return
            for dep in by_name[name].depends_on:
                visit(dep, (*path, name))
            done.append(name)

        for s in self.services:
            visit(s.name, ())
        return [by_name[n] for n in done]

    def front_service(self, env: Environment) -> str | None:
        """The service a DNS record fronts: `dns.service`, else the last public one."""
        if env.dns is not None and env.dns.service:
            return env.dns.service
        public = [s.name for s in self.ordered_services() if s.ingress == "all"]
        return public[-1] if public else None


def default_replica_name(primary: str, region: str) -> str:
    """A read replica's name when none is given (seed key, `python -m gcpsim replica create`)."""
    return f"{primary}-replica-{region}"


def run_service_name(service: str, env: str) -> str:
    return f"{service}-{env}"


def run_app_host(run_service: str, project: str, region: str) -> str:
    """The Cloud Run URL host a CNAME points at: `<service>-<project>.<region>.run.app.`."""
    return f"{run_service}-{project}.{region}.run.app."


def dns_rrdatas(cfg: SeedConfig, env: Environment, region: str) -> list[str]:
    """What `env`'s DNS record holds when it points at `region`."""
    dns = env.dns
    if dns is None:
        raise SeedError(f"environments.{env.name}.dns is not set")
    if region in dns.targets:
        return list(dns.targets[region])
    front = cfg.front_service(env)
    if dns.type != "CNAME" or front is None:
        raise SeedError(f"environments.{env.name}.dns.targets has no entry for {region}")
    return [run_app_host(run_service_name(front, env.name), env.project, region)]


# ------------------------------------------------------------------------------- reading


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, what: str) -> SeedError:
        return SeedError(f"{self.source}: {key}: {what}")

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, "must be a mapping")
        return value

    def text(self, d: dict[str, Any], name: str, key: str, default: str | None = None) -> str:
        value = d.get(name, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{key}.{name}", "must be a non-empty string")
        return value

    def opt_text(self, d: dict[str, Any], name: str, key: str) -> str | None:
        value = d.get(name)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"{key}.{name}", "must be a string")
        return value

    def strings(self, d: dict[str, Any], name: str, key: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.mapping(d.get(name), f"{key}.{name}").items()}

    def sizing(self, value: Any, key: str) -> Sizing:
        d = self.mapping(value, key)
        try:
            return Sizing(
                min_instances=int(d.get("min_instances", 0)),
                max_instances=int(d.get("max_instances", 100)),
                memory=str(d.get("memory", "512Mi")),
                cpu=str(d.get("cpu", "1")),
            )
        except (TypeError, ValueError):
            raise self.fail(key, "min_instances and max_instances must be integers") from None

    def service(self, value: Any, key: str) -> Service:
        d = self.mapping(value, key)
        deps = d.get("depends_on") or []
        if not isinstance(deps, list):
            raise self.fail(f"{key}.depends_on", "must be a list")
        return Service(
            name=self.text(d, "name", key),
            image=self.text(d, "image", key),
            ingress=self.text(d, "ingress", key, "all"),
            vpc_connector=self.opt_text(d, "vpc_connector", key),
            depends_on=[str(x) for x in deps],
            uses_database=bool(d.get("uses_database", False)),
            env=self.strings(d, "env", key),
            secrets=self.strings(d, "secrets", key),
            sizing=self.sizing(d["sizing"], f"{key}.sizing") if d.get("sizing") else None,
        )

    def dns(self, value: Any, key: str) -> Dns:
        d = self.mapping(value, key)
        name = self.text(d, "name", key)
        targets = self.mapping(d.get("targets"), f"{key}.targets")
        return Dns(
            managed_zone=self.text(d, "managed_zone", key),
            name=name if name.endswith(".") else name + ".",
            type=self.text(d, "type", key, "CNAME"),
            ttl=int(d.get("ttl", 300)),
            zone_project=self.opt_text(d, "zone_project", key),
            service=self.opt_text(d, "service", key),
            targets={str(r): [str(x) for x in (v or [])] for r, v in targets.items()},
        )

    def replicas(self, value: Any, primary: str, key: str) -> list[Replica]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, "must be a list of {region, instance}")
        out = []
        for i, item in enumerate(value):
            d = self.mapping(item, f"{key}[{i}]")
            region = self.text(d, "region", f"{key}[{i}]")
            name = self.text(d, "instance", f"{key}[{i}]", default_replica_name(primary, region))
            out.append(Replica(region=region, instance=name))
        return out

    def environment(self, name: str, value: Any, key: str) -> Environment:
        d = self.mapping(value, key)
        db = d.get("database")
        database = None
        if db is not None:
            dbm = self.mapping(db, f"{key}.database")
            instance = self.text(dbm, "instance", f"{key}.database")
            database = Database(
                instance=instance,
                tier=self.text(dbm, "tier", f"{key}.database", "db-f1-micro"),
                availability=self.text(dbm, "availability", f"{key}.database", "ZONAL"),
                replicas=self.replicas(dbm.get("replicas"), instance, f"{key}.database.replicas"),
            )
        return Environment(
            name=name,
            project=self.text(d, "project", key),
            region=self.text(d, "region", key, "us-central1"),
            sizing=self.sizing(d.get("sizing"), f"{key}.sizing"),
            database=database,
            dns=self.dns(d["dns"], f"{key}.dns") if d.get("dns") is not None else None,
        )


def parse_seed_config(data: Any, source: str = "config") -> SeedConfig:
    r = _Reader(source)
    top = r.mapping(data, "(top level)")
    services = top.get("services")
    if not isinstance(services, list) or not services:
        raise r.fail("services", "must be a non-empty list")
    envs = r.mapping(top.get("environments"), "environments")
    if not envs:
        raise r.fail("environments", "must name at least one environment")
    db = r.mapping(top.get("database"), "database")
    validation = r.mapping(db.get("validation"), "database.validation")
    tables = validation.get("tables") or []
    if not isinstance(tables, list):
        raise r.fail("database.validation.tables", "must be a list")
    return SeedConfig(
        services=[r.service(s, f"services[{i}]") for i, s in enumerate(services)],
        environments=[r.environment(str(n), e, f"environments.{n}") for n, e in envs.items()],
        database_name=r.text(db, "name", "database", "app"),
        connection_env=r.text(db, "connection_env", "database", "INSTANCE_CONNECTION_NAME"),
        validation_tables=[str(t) for t in tables],
    )


def load_seed_config(path: str | Path) -> SeedConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SeedError(f"{p}: cannot read it ({err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SeedError(f"{p}: not valid YAML: {str(err).splitlines()[0]}") from None
    return parse_seed_config(data, str(p))
