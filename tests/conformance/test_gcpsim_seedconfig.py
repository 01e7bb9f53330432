"""gcpsim's own reader of deploy.yaml (gcpsim.seedconfig) reads what seeding needs exactly as the
product's config does: same services, sizing, images, bindings and DNS record data, for the
repository's deploy.yaml and for variants that exercise the other branches."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gcpsim.seedconfig import SeedError, dns_rrdatas, parse_seed_config, run_service_name
from stagecoach.config import run_service_name as product_run_service_name
from stagecoach.config_file import parse_config
from stagecoach.failover import dns_plan
from stagecoach.plan import database_binding

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = yaml.safe_load((ROOT / "deploy.yaml").read_text())


def variant() -> dict[str, Any]:
    """deploy.yaml with a service sizing override, env vars and A records with targets."""
    data = copy.deepcopy(BASE)
    data["services"][0]["sizing"] = {"min_instances": 2, "memory": "1Gi"}
    data["services"][0]["env"] = {"FEATURE": "on"}
    for env in data["environments"].values():
        if env.get("dns"):
            region = env.get("region", "us-central1")
            env["dns"].update(
                name=env["dns"]["name"].rstrip("."), type="A", targets={region: ["10.0.0.1"]}
            )
    return data


@pytest.mark.parametrize("data", [BASE, variant()], ids=["deploy.yaml", "variant"])
def test_seed_reader_agrees_with_the_product_config(data: dict[str, Any]) -> None:
    product = parse_config(copy.deepcopy(data))
    mine = parse_seed_config(copy.deepcopy(data))
    assert [e.name for e in mine.environments] == list(product.environments)
    assert [s.name for s in mine.services] == [s.name for s in product.services]
    assert mine.database_name == product.database.name
    assert mine.validation_tables == list(product.database.validation.tables)
    dns_seen = 0
    for env in mine.environments:
        p_env = product.environments[env.name]
        assert (env.project, env.region) == (p_env.project, p_env.region)
        for svc, p_svc in zip(mine.services, product.services, strict=True):
            sizing = svc.sizing or env.sizing
            p_sizing = product.sizing_for(env.name, p_svc.name)
            assert (sizing.min_instances, sizing.max_instances, sizing.memory, sizing.cpu) == (
                p_sizing.min_instances, p_sizing.max_instances, p_sizing.memory, p_sizing.cpu,
            )  # fmt: skip
            assert svc.image_for(env.project, "v1.1.0") == p_svc.image_for(env.project, "v1.1.0")
            assert (svc.ingress, svc.vpc_connector, svc.uses_database) == (
                p_svc.ingress, p_svc.vpc_connector, p_svc.uses_database,
            )  # fmt: skip
            assert (svc.env, svc.secrets) == (dict(p_svc.env), dict(p_svc.secrets))
            assert run_service_name(svc.name, env.name) == product_run_service_name(
                p_svc.name, env.name
            )
        if env.database is not None:
            assert p_env.database is not None
            db = p_env.database
            assert (env.database.instance, env.database.tier, env.database.availability) == (
                db.instance, db.tier, db.availability,
            )  # fmt: skip
            binding = database_binding(product, env.name)
            assert mine.connection_env == binding.env_var
            assert f"{env.project}:{env.region}:{env.database.instance}" == binding.connection_name
        if env.dns is not None:
            dns_seen += 1
            plan = dns_plan(product, env.name, env.region)
            assert dns_rrdatas(mine, env, env.region) == plan.rrdatas
            assert env.dns.name == plan.record.name
            assert (env.dns.managed_zone, env.dns.type, env.dns.ttl) == (
                plan.record.zone, plan.record.type, plan.record.ttl,
            )  # fmt: skip
            assert (env.dns.zone_project or env.project) == plan.record.project
    assert dns_seen, "deploy.yaml should have an environment with a DNS record"


def test_seed_reader_names_the_key_it_cannot_read() -> None:
    data = copy.deepcopy(BASE)
    first = next(iter(data["environments"]))
    del data["environments"][first]["project"]
    with pytest.raises(SeedError, match=rf"environments\.{first}\.project"):
        parse_seed_config(data, "deploy.yaml")
    with pytest.raises(SeedError, match="services"):
        parse_seed_config({"environments": {"x": {"project": "p"}}}, "deploy.yaml")


def test_replicas_key_defaults_the_replica_name() -> None:
    data = copy.deepcopy(BASE)
    env = next(e for e in data["environments"].values() if e.get("database"))
    env["database"]["replicas"] = [
        {"region": "us-east1"},
        {"region": "europe-west1", "instance": "x"},
    ]
    mine = parse_seed_config(data)
    db = next(e.database for e in mine.environments if e.database is not None)
    assert [(r.region, r.instance) for r in db.replicas] == [
        ("us-east1", f"{db.instance}-replica-us-east1"),
        ("europe-west1", "x"),
    ]
