"""Hooks through `starter.py`: `deploy --json` carries the hook (job, execution, task counts,
logs), `status` shows it, and `rollback` of a release that ran a migration says the schema
stays and prints the restore command of its pre-deploy backup. An app of its own (project,
Cloud Run service, a clone of the dev instance), so nothing else in the session is touched.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from testing.cli import show, starter
from testing.cloudsql import OwnInstances, sqladmin
from testing.gcpsim import GcpsimProcess
from testing.releases import worker
from tests.e2e.test_cli import create_service, small_app_config, write_config

pytestmark = pytest.mark.asyncio


@pytest.fixture
def own_db(gcpsim: GcpsimProcess) -> Iterator[tuple[str, str]]:
    project = f"hk-{uuid.uuid4().hex[:6]}"
    own = OwnInstances(sqladmin(gcpsim.url), project)
    name = own.clone("hk")
    yield project, name
    own.cleanup()


async def test_deploy_status_and_rollback_show_the_migration(
    cli_env: dict[str, str],
    client: Client,
    task_queue: str,
    gcpsim: GcpsimProcess,
    tmp_path: Path,
    own_db: tuple[str, str],
) -> None:
    project, instance = own_db
    app = f"hk{uuid.uuid4().hex[:6]}"
    create_service(gcpsim, project, "web-dev")
    cfg = small_app_config(app, project, "dev", [{"weight": 100}])
    cfg["services"][0]["uses_database"] = True
    cfg["database"] = {"name": "legalforms"}
    dev = cfg["environments"]["dev"]
    dev["database"] = {"instance": instance}
    dev["release"]["backup"] = True
    dev["release"]["interval"] = "1s"
    dev["release"]["hooks"] = {
        "pre_deploy": [
            {
                "name": "migrate",
                "image": "example.com/cli-e2e/migrate:{version}",
                "command": ["npm"],
                "args": ["run", "db:migrate"],
                "env": {"MIGRATION": "0200_cli"},
                "secrets": {"DATABASE_PASSWORD": "db-password"},
                "timeout": "5m",
                "uses_database": True,
            }
        ]
    }
    path = write_config(tmp_path / "deploy.yaml", cfg)
    async with worker(client, task_queue, path):
        res = await starter(cli_env, "deploy", "dev", "v2.0.0", "--config", str(path), "--json")
        assert res.returncode == 0, show(res)
        final = json.loads(res.stdout)
        assert final["outcome"] == "promoted", show(res)
        (hook,) = final["hooks"]
        assert (hook["name"], hook["job"], hook["state"]) == ("migrate", "migrate-dev", "succeeded")
        assert hook["succeeded"] == 1 and hook["log_uri"]
        assert "DATABASE_PASSWORD" not in res.stdout.replace('"DATABASE_PASSWORD"', "")
        backup = final["backup_id"]

        res = await starter(cli_env, "status", "dev", "--config", str(path))
        assert res.returncode == 0, show(res)
        assert "pre_deploy hook migrate: job migrate-dev, execution migrate-dev-" in res.stdout
        assert "succeeded: 1/1 task(s) succeeded" in res.stdout and "logs:" in res.stdout
        assert "https://console.cloud.google.com/logs/" in res.stdout

        # a second release so there is something to roll back to, then roll it back
        res = await starter(cli_env, "deploy", "dev", "v2.0.1", "--config", str(path), "--json")
        assert res.returncode == 0, show(res)
        backup = json.loads(res.stdout)["backup_id"]
        res = await starter(cli_env, "rollback", "dev", "--config", str(path))
    assert res.returncode == 0, show(res)
    out = " ".join(res.stdout.split())
    assert "release v2.0.1 ran database hook(s) migrate" in out, show(res)
    assert "does not undo their schema changes" in out
    assert f"python starter.py restore dev --backup-id {backup} --yes" in out
