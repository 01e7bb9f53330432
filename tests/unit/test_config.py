"""The config schema: the shipped deploy.yaml is valid; mistakes name the key path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml

from stagecoach.config import ConfigError
from stagecoach.config_file import load_config, parse_config
from stagecoach.payloads.base import Payload
from stagecoach.plan import build_release
from testing.paths import ROOT


def shipped() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    return data


def test_shipped_config_describes_the_reference_scenario() -> None:
    cfg = load_config(ROOT / "deploy.yaml")
    assert [s.name for s in cfg.ordered_services()] == ["python-pipeline", "node-server"]
    prod = cfg.env("prod").release
    assert [s.weight for s in prod.steps] == [10, 50, 100]
    assert prod.backup and prod.approval and prod.approval.approvers == ["release-manager"]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("environments", "prod", "release", "interval"), "500ms",
         "prod.release: Value error, interval must be at least 1s"),
        (("environments", "prod", "release", "steps"), [{"weight": 50}, {"weight": 10}],
         "step weights must strictly increase"),
        (("environments", "prod", "release", "steps"), [{"weight": 10}], "weight 100"),
        (("gates", "max_error_rate"), 2, "gates.max_error_rate"),
        (("environments", "dev", "release", "bake"), "5m",
         "dev.release.bake: Extra inputs are not permitted"),
        (("environments", "prod", "release", "approval"), None,
         "prod.release: Value error, restore_requires_approval needs approval.approvers"),
        (("database", "connection_env"), "DB-NAME", "database.connection_env"),
    ],
)  # fmt: skip
def test_mistakes_name_the_key(path: tuple[str, ...], value: object, expected: str) -> None:
    data = shipped()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        parse_config(data, "deploy.yaml")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_dependency_and_cycle_are_rejected() -> None:
    data = shipped()
    data["services"][0]["depends_on"] = ["node-server"]
    with pytest.raises(ConfigError, match="cycle"):
        parse_config(data)


def test_release_request_is_validated_before_anything_starts() -> None:
    cfg = load_config(ROOT / "deploy.yaml")
    with pytest.raises(ConfigError, match=r"v1\.2\.3"):
        build_release(cfg, "prod", "1.2.0", "abcde")
    with pytest.raises(ConfigError, match="unknown environment"):
        build_release(cfg, "qa", "v1.2.0", "abcde")
    with pytest.raises(ConfigError, match="unknown service"):
        build_release(cfg, "prod", "v1.2.0", "abcde", services=["api"])
    with pytest.raises(ConfigError, match="at least 1s"):
        build_release(cfg, "prod", "v1.2.0", "abcde", interval=timedelta(milliseconds=200))
    inp = build_release(cfg, "prod", "v1.2.0", "abcde", bake=timedelta(seconds=5))
    assert [s.bake for s in inp.steps] == [timedelta(seconds=5)] * 2 + [timedelta(0)]
    assert inp.services[0].revision == "python-pipeline-prod-v1-2-0-abcde"


def test_a_release_input_carries_payloads_not_config_models() -> None:
    """The config validates; the workflow input holds the payload twins (stagecoach.payloads),
    with the same values, so a later config schema never has to decode a running release."""
    data = shipped()
    data["environments"]["prod"]["release"]["freeze"] = [
        {"start": "Fri 15:00", "end": "Mon 08:00", "reason": "weekend"}
    ]
    cfg = parse_config(data)
    inp = build_release(cfg, "prod", "v1.2.0", "abcde")
    prod = cfg.env("prod").release
    assert inp.approval is not None and prod.approval is not None
    pairs = [
        (inp.gates, cfg.gates_for("prod")),
        (inp.approval, prod.approval),
        (inp.services[0].sizing, cfg.sizing_for("prod", inp.services[0].name)),
        *zip(inp.steps, prod.steps, strict=True),
        *zip(inp.freeze, prod.freeze, strict=True),
    ]
    for payload, config_model in pairs:
        assert isinstance(payload, Payload), type(payload)
        assert type(payload).__name__ == type(config_model).__name__
        assert payload.model_dump() == config_model.model_dump()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"a: 1\nb: 2\na: 3\n", "duplicate key 'a'"),
        (b"x: &x [1]\n" + b"".join(b"y%d: *x\n" % i for i in range(21)), "more than 20 aliases"),
        (b"\xff", "not UTF-8"),
        (b"a: [", "not valid YAML at line 1"),
    ],
)
def test_yaml_loader_refuses_what_a_config_never_needs(raw: bytes, expected: str) -> None:
    from stagecoach.config_file import parse_yaml

    with pytest.raises(ConfigError, match=expected):
        parse_yaml(raw)


def test_yaml_loader_keeps_merge_keys_and_a_few_aliases() -> None:
    from stagecoach.config_file import parse_yaml

    data = parse_yaml(b"base: &b {x: 1}\nprod: {<<: *b, y: 2}\n")
    assert data == {"base": {"x": 1}, "prod": {"x": 1, "y": 2}}


@pytest.mark.parametrize("version", ["v1.2.0\n", "v\u0661.2.0", " v1.2.0", "v1.2.0 ", "1.2.0"])
def test_versions_are_ascii_and_matched_whole(version: str) -> None:
    from stagecoach.config import check_version

    with pytest.raises(ConfigError):
        check_version(version)
