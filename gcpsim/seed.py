"""Seed an empty simulator from the release config (`python -m gcpsim --seed deploy.yaml`).

For every environment: each config service becomes the Cloud Run service `<name>-<env>` in the
environment's project and region, running image version SEED_VERSION with one ready revision
serving 100%, sized like the environment (or the service override), a `uses_database` service
bound to the environment's instance as a release binds it (Cloud SQL volume + `connection_env`
variable, `stagecoach.plan.database_binding`); and, when the Cloud SQL
module offers `seed_instance`, the environment's database instance with the validation tables;
and where the environment has `dns`, its Cloud DNS managed zone with the record pointing at the
environment's region.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from gcpsim import run_v2
from gcpsim.sim import Sim

SEED_VERSION = "v1.1.0"


def is_empty(sim: Sim) -> bool:
    """No Cloud Run service yet (a fresh or reset state)."""
    with sim.store.lock:
        return not sim.store.section("run").get("services")


def _sqladmin() -> Any:
    try:
        return importlib.import_module("gcpsim.sqladmin_v1")
    except ImportError:
        return None


def seed_from_config(sim: Sim, path: str | Path) -> list[str]:
    """Create the config's services (and databases); returns what was created, for the log."""
    from stagecoach.config import load_config, run_service_name
    from stagecoach.plan import database_binding

    cfg = load_config(path)
    sqladmin = _sqladmin()
    seed_instance = getattr(sqladmin, "seed_instance", None) if sqladmin else None
    created: list[str] = []
    for env_name, env in cfg.environments.items():
        for svc in cfg.services:
            sizing = cfg.sizing_for(env_name, svc.name)
            name = run_service_name(svc.name, env_name)
            env_vars = dict(svc.env)
            connections: list[str] = []
            if svc.uses_database and env.database is not None:
                binding = database_binding(cfg, env_name)
                env_vars[binding.env_var] = binding.connection_name
                connections.append(binding.connection_name)
            run_v2.seed_service(
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
        if env.database is not None and seed_instance is not None:
            seed_instance(
                sim,
                env.project,
                env.region,
                env.database.instance,
                env.database.tier,
                env.database.availability,
                cfg.database.name,
                list(cfg.database.validation.tables),
                # production-shaped (REGIONAL) instances are protected, as they should be
                deletion_protection=env.database.availability == "REGIONAL",
            )
            created.append(f"sql {env.project}/{env.database.instance}")
        if env.dns is not None:
            from gcpsim import dns_v1
            from stagecoach.failover import dns_plan

            plan = dns_plan(cfg, env_name, env.region)
            rec = plan.record
            zone_dns = rec.name.split(".", 1)[1] if rec.name.count(".") > 1 else rec.name
            dns_v1.seed_record(
                sim, rec.project, rec.zone, zone_dns, rec.name, rec.type, rec.ttl, plan.rrdatas
            )
            created.append(f"dns {rec.project}/{rec.zone} {rec.name} -> {plan.rrdatas[0]}")
    return created
