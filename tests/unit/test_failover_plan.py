"""Failover planning (pure): from deploy.yaml and the command line to the Failover input."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from stagecoach.config import ConfigError
from stagecoach.config_file import load_config, parse_config
from stagecoach.failover import build_failback, build_failover, build_regional_drill, dns_plan
from stagecoach.payloads.common import Outcome
from stagecoach.payloads.failover import FailoverStatus
from stagecoach.payloads.policy import Sizing
from testing.paths import ROOT


def cfg_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    return data


def test_failover_input_from_the_shipped_config() -> None:
    cfg = load_config(ROOT / "deploy.yaml")
    inp = build_failover(cfg, "prod", "us-east1", "v1.2.0", "--version")
    assert inp.from_region == "us-central1" and inp.to_region == "us-east1"
    assert inp.instance.instance == "legal-forms-db-prod-us-east1"
    assert inp.source_instance.instance == "legal-forms-db-prod"
    ci = inp.create_instance
    assert ci is not None and (ci.region, ci.tier, ci.availability) == (
        "us-east1", "db-custom-2-7680", "REGIONAL",
    )  # fmt: skip
    assert [s.name for s in inp.services] == ["python-pipeline", "node-server"]
    node = inp.services[1].deploy
    assert type(node.sizing) is Sizing  # the payload, not the config model
    assert node.ref.region == "us-east1" and node.ref.service == "node-server-prod"
    assert node.image.endswith("/node-server:v1.2.0")
    assert node.database is not None
    assert node.database.connection_name == "legal-forms-prod:us-east1:legal-forms-db-prod-us-east1"
    assert node.secrets == {"DATABASE_PASSWORD": "legal-forms-db-password"}  # a name, no value
    assert (node.sizing.min_instances, node.sizing.max_instances) == (1, 20)
    assert inp.services[0].deploy.database is None and inp.services[0].deploy.ingress == "internal"
    assert inp.dns is not None
    assert inp.dns.rrdatas == ["node-server-prod-legal-forms-prod.us-east1.run.app."]
    assert inp.approvers == ["release-manager"]  # restore_requires_approval


def test_failover_refuses_its_own_region_and_bad_versions() -> None:
    cfg = load_config(ROOT / "deploy.yaml")
    with pytest.raises(ConfigError, match="own region"):
        build_failover(cfg, "prod", "us-central1", "v1.2.0", "")
    with pytest.raises(ConfigError, match=r"v1\.2\.3"):
        build_failover(cfg, "prod", "us-east1", "latest", "")
    with pytest.raises(ConfigError, match=r"environments\.staging\.dns is not set"):
        build_failover(cfg, "staging", "us-east1", "v1.2.0", "")


def test_failback_reverses_the_failover_whatever_the_config_says() -> None:
    data = cfg_data()
    cfg = load_config(ROOT / "deploy.yaml")
    last = FailoverStatus(
        app="legal-forms", env="prod", from_region="us-central1", to_region="us-east1",
        version="v1.2.0", instance="legal-forms-db-prod-us-east1",
        source_instance="legal-forms-db-prod", outcome=Outcome.SUCCEEDED,
    )  # fmt: skip
    # the team followed the next steps: the config now names the secondary
    data["environments"]["prod"]["region"] = "us-east1"
    data["environments"]["prod"]["database"]["instance"] = "legal-forms-db-prod-us-east1"
    for c in (cfg, parse_config(data)):
        inp = build_failback(c, "prod", last)
        assert (inp.from_region, inp.to_region) == ("us-east1", "us-central1")
        assert inp.source_instance.instance == "legal-forms-db-prod-us-east1"
        assert inp.instance.instance == "legal-forms-db-prod"
        assert inp.create_instance is None
        node = inp.services[1].deploy
        assert node.ref.region == "us-central1"
        assert node.database is not None
        assert node.database.connection_name.endswith(":us-central1:legal-forms-db-prod")
        assert inp.dns is not None
        assert inp.dns.rrdatas == ["node-server-prod-legal-forms-prod.us-central1.run.app."]


def test_regional_drill_uses_scratch_names_and_no_dns() -> None:
    cfg = load_config(ROOT / "deploy.yaml")
    at = datetime(2026, 11, 30, 4, 55, 39, tzinfo=UTC)
    inp = build_regional_drill(cfg, "staging", "us-west1", "v1.1.0", "--version", at)
    assert inp.mode == "drill" and inp.dns is None
    assert inp.instance.instance == "legal-forms-db-staging-dr-1130045539"
    assert [s.deploy.ref.service for s in inp.services] == [
        "python-pipeline-staging-dr-1130045539", "node-server-staging-dr-1130045539",
    ]  # fmt: skip
    assert all(len(s.deploy.revision) <= 63 for s in inp.services)
    assert inp.services[1].deploy.revision.startswith(inp.services[1].deploy.ref.service + "-")


def test_dns_config_keys() -> None:
    data = cfg_data()
    dns = data["environments"]["prod"]["dns"]
    dns.update(name="app.legal-forms.example", type="A", targets={"us-east1": ["203.0.113.7"]})
    cfg = parse_config(data)
    rec = cfg.env("prod").dns
    assert rec is not None and rec.name == "app.legal-forms.example."
    assert dns_plan(cfg, "prod", "us-east1").rrdatas == ["203.0.113.7"]
    with pytest.raises(ConfigError, match="targets has no entry for us-west1"):
        dns_plan(cfg, "prod", "us-west1")
    del dns["targets"]
    with pytest.raises(ConfigError, match="needs targets"):
        parse_config(data)
    dns.update(type="CNAME", service="nope")
    with pytest.raises(ConfigError, match=r"dns\.service 'nope' is not a service"):
        parse_config(data)
