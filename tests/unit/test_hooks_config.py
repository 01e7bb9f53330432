"""Hook config: keys, defaults, the image's version, job names, per-environment override, and
errors that name the key path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from stagecoach.config import ConfigError, Hook
from stagecoach.config_file import parse_config
from stagecoach.plan import build_release


def cfg(hooks: dict[str, Any] | None = None, env_hooks: dict[str, Any] | None = None) -> Any:
    release: dict[str, Any] = {"steps": [{"weight": 100}], "backup": True}
    if env_hooks is not None:
        release["hooks"] = env_hooks
    data: dict[str, Any] = {
        "app": "hk",
        "services": [{"name": "web", "image": "example.com/web"}],
        "environments": {
            "prod": {"project": "p", "database": {"instance": "db"}, "release": release},
            "dev": {"project": "pd", "release": {"steps": [{"weight": 100}]}},
        },
    }
    if hooks is not None:
        data["hooks"] = hooks
    return parse_config(data)


MIGRATE = {"name": "migrate", "image": "example.com/{project}/migrate", "uses_database": True}


def test_image_takes_the_version() -> None:
    def image(i: str) -> str:
        return Hook(name="h", image=i).image_for("p", "v1.2.3")

    assert image("example.com/{project}/m") == "example.com/p/m:v1.2.3"
    assert image("example.com/m:{version}-slim") == "example.com/m:v1.2.3-slim"
    assert image("localhost:5000/m") == "localhost:5000/m:v1.2.3"
    assert image("example.com/m:pinned") == "example.com/m:pinned"


def test_plans_bind_the_database_and_name_the_job() -> None:
    c = cfg(hooks={"pre_deploy": [MIGRATE], "post_deploy": [{"name": "e2e", "image": "e/s"}]})
    inp = build_release(c, "prod", "v1.0.0", "abcde")
    (pre,) = inp.pre_deploy_hooks
    assert (pre.ref.job, pre.ref.project, pre.image) == (
        "migrate-prod",
        "p",
        "example.com/p/migrate:v1.0.0",
    )
    assert pre.database is not None and pre.database.connection_name == "p:us-central1:db"
    assert pre.timeout == timedelta(minutes=10) and pre.task_count == 1
    (post,) = inp.post_deploy_hooks
    assert post.database is None and post.ref.job == "e2e-prod"
    assert inp.on_post_deploy_failure == "rollback"


def test_environment_hooks_replace_the_top_level_ones() -> None:
    c = cfg(hooks={"pre_deploy": [MIGRATE]}, env_hooks={"on_post_deploy_failure": "report"})
    inp = build_release(c, "prod", "v1.0.0", "abcde")
    assert inp.pre_deploy_hooks == [] and inp.on_post_deploy_failure == "report"


@pytest.mark.parametrize(
    ("hooks", "words"),
    [
        ({"pre_deploy": [{"name": "Bad_Name", "image": "x"}]}, "hooks.pre_deploy.0.name"),
        ({"pre_deploy": [{"name": "m", "image": "x", "timeout": "0s"}]}, "timeout"),
        ({"pre_deploy": [{"name": "m", "image": "x", "password": "s"}]}, "password"),
        (
            {
                "pre_deploy": [{"name": "m", "image": "x"}],
                "post_deploy": [{"name": "m", "image": "y"}],
            },
            "unique",
        ),
        ({"on_post_deploy_failure": "ignore"}, "on_post_deploy_failure"),
    ],
)
def test_bad_hook_config_names_the_key(hooks: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        cfg(hooks=hooks)


def test_database_hook_needs_an_instance_and_a_short_job_name() -> None:
    c = cfg(hooks={"pre_deploy": [MIGRATE]})
    with pytest.raises(ConfigError, match=r"hooks\.pre_deploy 'migrate' has uses_database.*dev"):
        build_release(c, "dev", "v1.0.0", "abcde")
    long = "m" + "x" * 31
    c = cfg(hooks={"post_deploy": [{"name": long, "image": "e/s"}]})
    build_release(c, "dev", "v1.0.0", "abcde")  # 32 + "-dev" fits
    c2 = parse_config(
        {
            "app": "hk",
            "services": [{"name": "web", "image": "example.com/web"}],
            "hooks": {"post_deploy": [{"name": long, "image": "e/s"}]},
            "environments": {
                "a-very-long-environment-name": {
                    "project": "p",
                    "release": {"steps": [{"weight": 100}]},
                }
            },
        }
    )
    with pytest.raises(ConfigError, match="at most 49 characters"):
        build_release(c2, "a-very-long-environment-name", "v1.0.0", "abcde")
