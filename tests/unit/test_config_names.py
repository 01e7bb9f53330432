"""Issue 9 item 7: names Cloud Run would refuse are config errors (exit 2, key path named)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from stagecoach.config import LONGEST_TAG, ConfigError
from stagecoach.config_file import parse_config
from testing.paths import ROOT
from workflows.release import CANARY_TAG


def shipped() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    return data


def with_env(key: str) -> dict[str, Any]:
    data = shipped()
    data["environments"][key] = data["environments"].pop("dev")
    return data


def test_the_longest_tag_checked_is_the_one_a_release_sets() -> None:
    assert LONGEST_TAG == CANARY_TAG


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("Prod", ["environments.Prod:", "DNS label"]),
        ("prod_eu", ["environments.prod_eu:", "DNS label"]),
        ("eu-", ["environments.eu-:", "DNS label"]),
        ("dev\n", ["environments.dev", "environment name", "DNS label"]),  # matched whole
        ("x" * 5000, ["environments." + "x" * 40 + "...:", "characters"]),  # bounded message
        # python-pipeline (15) + '-' + 25 = 41 > 46 - len('canary')
        ("europe-west-production-01", ["environments.europe-west-production-01:",
                                       "'python-pipeline-europe-west-production-01'",
                                       "41 characters", "services.0.name"]),
    ],
)  # fmt: skip
def test_names_cloud_run_refuses_name_the_key(key: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_env(key), "deploy.yaml")
    message = str(info.value)
    for w in words:
        assert w in message, message
    assert "fix that key" in message
    assert len(message) < 600, message


def test_names_at_the_limit_pass() -> None:
    parse_config(with_env("europe-west-production"))  # python-pipeline-... = 38 characters
    data = with_env("a" * 24)  # 15 + 1 + 24 = 40: exactly 46 with 'canary'
    parse_config(data)


def test_cli_exits_2_with_the_key_path(tmp_path: Any) -> None:
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(yaml.safe_dump(with_env("Dev")))
    res = subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), "deploy", "Dev", "v1.2.0", "--config", str(cfg)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "TEMPORAL_ADDRESS": "127.0.0.1:1"},
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "environments.Dev" in lines[0]


def test_an_internal_service_must_say_how_it_is_smoke_tested() -> None:
    data = shipped()
    data["services"][0].pop("smoke")  # python-pipeline: ingress internal
    with pytest.raises(ConfigError) as info:
        parse_config(data, "deploy.yaml")
    assert "services.0" in str(info.value) and "smoke: none" in str(info.value)
    data["services"][0]["smoke"] = "tag_url"  # a worker inside the VPC
    assert parse_config(data).services[0].smoke_route == "tag_url"
    assert parse_config(shipped()).services[1].smoke_route == "tag_url"  # ingress all: default
