"""Seed an empty simulator from the release config (`python -m gcpsim --seed deploy.yaml`).

For every environment: each config service becomes the Cloud Run service `<name>-<env>` in the
environment's project and region, running image version SEED_VERSION with one ready revision
serving 100%, sized like the environment (or the service override), a `uses_database` service
bound to the environment's instance as a release binds it (Cloud SQL volume + `connection_env`
variable `<project>:<region>:<instance>`); the environment's database instance with the
validation tables (and its read replicas, `database.replicas`, a gcpsim-only key); and where
the environment has `dns`, its Cloud DNS managed zone with the
record pointing at the environment's region. The config is read by gcpsim.seedconfig (gcpsim
imports nothing of the product).
"""

from __future__ import annotations

from pathlib import Path

from gcpsim.model import dns, run_queries
from gcpsim.model.sql_runtime import seed_instance, seed_replica
from gcpsim.seedconfig import SeedError, dns_rrdatas, load_seed_config, run_service_name
from gcpsim.sim import Sim

SEED_VERSION = "v1.1.0"

__all__ = ["SEED_VERSION", "SeedError", "is_empty", "seed_from_config"]


def is_empty(sim: Sim) -> bool:
    """No Cloud Run service yet (a fresh or reset state)."""
    with sim.store.lock:
        return not sim.store.section("run").get("services")


def seed_from_config(sim: Sim, path: str | Path) -> list[str]:
    """Create the config's services (and databases); returns what was created, for the log."""
    cfg = load_seed_config(path)
    created: list[str] = []
    for env in cfg.environments:
        for svc in cfg.services:
            sizing = svc.sizing or env.sizing
            name = run_service_name(svc.name, env.name)
            env_vars = dict(svc.env)
            connections: list[str] = []
            if svc.uses_database and env.database is not None:
                connection = f"{env.project}:{env.region}:{env.database.instance}"
                env_vars[cfg.connection_env] = connection
                connections.append(connection)
            run_queries.seed_service(
                sim,
                env.project,
                env.region,
                name,
                svc.image_for(env.project, SEED_VERSION),
                min_instances=sizing.min_instances,
                max_instances=sizing.max_instances,
                memory=sizing.memory,
                cpu=sizing.cpu,
                ingress=svc.ingress,
                env=env_vars,
                secrets=dict(svc.secrets),
                vpc_connector=svc.vpc_connector,
                cloud_sql_instances=connections,
            )
            created.append(f"run {env.project}/{env.region}/{name}")
        if env.database is not None:
            seed_instance(
                sim,
                env.project,
                env.region,
                env.database.instance,
                env.database.tier,
                env.database.availability,
                cfg.database_name,
                list(cfg.validation_tables),
                # production-shaped (REGIONAL) instances are protected, as they should be
                deletion_protection=env.database.availability == "REGIONAL",
            )
            created.append(f"sql {env.project}/{env.database.instance}")
            for rep in env.database.replicas:
                seed_replica(sim, env.project, env.database.instance, rep.instance, rep.region)
                created.append(f"sql {env.project}/{rep.instance} (replica in {rep.region})")
        if env.dns is not None:
            rec = env.dns
            rrdatas = dns_rrdatas(cfg, env, env.region)
            project = rec.zone_project or env.project
            zone_dns = rec.name.split(".", 1)[1] if rec.name.count(".") > 1 else rec.name
            dns.seed_record(
                sim, project, rec.managed_zone, zone_dns, rec.name, rec.type, rec.ttl, rrdatas
            )
            created.append(f"dns {project}/{rec.managed_zone} {rec.name} -> {rrdatas[0]}")
    return created
