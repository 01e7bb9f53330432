"""The worker's policy (activities/policy.py `check_claims`) and regions: an environment's own
region, plus exactly the regions listed in `environments.<env>.failover.regions` (a failover or
regional drill brings the environment up there); every other region is refused."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.policy import check_claims
from stagecoach.config_file import load_config, parse_config
from stagecoach.payloads.policy import TargetClaim
from testing.paths import ROOT


def claim(region: str, project: str = "legal-forms-prod", what: str = "service x") -> TargetClaim:
    return TargetClaim(what=what, kind="gcpsim", host="127.0.0.1", project=project, region=region)


def test_own_region_and_listed_failover_regions_only() -> None:
    cfg = load_config(ROOT / "deploy.yaml")
    assert cfg.env("prod").failover.regions == ["us-east1"]
    check_claims(cfg, "prod", [claim("us-central1"), claim("us-east1"), claim("")], "test")
    with pytest.raises(ApplicationError, match=r"us-west1.*failover\.regions") as err:
        check_claims(cfg, "prod", [claim("us-west1")], "test")
    assert err.value.type == "PolicyViolation" and err.value.non_retryable
    # staging lists none: only its own region
    with pytest.raises(ApplicationError, match="us-east1"):
        check_claims(cfg, "staging", [claim("us-east1", "legal-forms-staging")], "test")


def test_dns_zone_project_only_for_the_dns_record() -> None:
    import yaml

    data = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    data["environments"]["prod"]["dns"]["zone_project"] = "shared-dns"
    cfg = parse_config(data)
    check_claims(cfg, "prod", [claim("", "shared-dns", "DNS record app.legal-forms.example.")], "t")
    with pytest.raises(ApplicationError, match="shared-dns"):
        check_claims(cfg, "prod", [claim("us-east1", "shared-dns")], "t")
