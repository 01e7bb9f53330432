"""`starter.py` end to end: the CLI as a subprocess against the Temporal dev server and gcpsim,
with a worker running inside the test (on the test's own task queue).

Destructive tests use `dev` of the reference app (other e2e tests use prod and staging) or apps
of their own written to a tmp config, whose Cloud Run services the test creates through the real
run_v2 client (the simulator is seeded from deploy.yaml only).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from google.api_core import exceptions as gexc
from google.cloud import run_v2
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from stagecoach.cli import schemas
from stagecoach.clients import clients_for
from stagecoach.payloads.common import Target
from stagecoach.temporal import free_port, port_open
from testing.cli import show, starter
from testing.gcpsim import GcpsimProcess
from testing.paths import ROOT
from testing.releases import worker

pytestmark = pytest.mark.asyncio

APP = "legal-forms"


# ----------------------------------------------------------------------------- helpers


def output(res: subprocess.CompletedProcess[str], command: str) -> Any:
    """A command's --json output, checked against its documented schema (docs/schemas/)."""
    schemas.validate(command, res.stdout)
    return json.loads(res.stdout)


def assert_one_line_error(res: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert res.returncode == code, show(res)
    line = res.stderr.strip()
    assert "\n" not in line, show(res)
    assert line.startswith("error: "), show(res)
    assert "Traceback" not in res.stderr + res.stdout, show(res)
    for w in words:
        assert w in line, show(res)
    return line


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def small_app_config(
    app: str, project: str, env: str, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    """An app of our own with one service `web` (Cloud Run `web-<env>`) in `project`."""
    return {
        "app": app,
        "target": "gcpsim",
        "services": [{"name": "web", "image": "example.com/cli-e2e/web", "health_path": "/"}],
        "environments": {
            env: {
                "project": project,
                "region": "us-central1",
                "sizing": {"min_instances": 0, "max_instances": 2},
                "release": {"steps": steps, "interval": "5s"},
            }
        },
    }


def create_service(sim: GcpsimProcess, project: str, name: str) -> None:
    """A Cloud Run service with one ready revision serving 100%, through the real client."""
    target = Target(kind="gcpsim", port=sim.port, grpc_port=sim.grpc_port)
    services = clients_for(target).services
    try:
        op = services.create_service(
            parent=f"projects/{project}/locations/us-central1",
            service=run_v2.Service(
                template=run_v2.RevisionTemplate(
                    containers=[run_v2.Container(image="example.com/cli-e2e/web:v1.0.0")]
                )
            ),
            service_id=name,
        )
        op.result(timeout=60)
    except gexc.AlreadyExists:
        pass


def live_traffic(sim: GcpsimProcess, project: str, service: str) -> list[tuple[str, int]]:
    target = Target(kind="gcpsim", port=sim.port, grpc_port=sim.grpc_port)
    svc = clients_for(target).services.get_service(
        name=f"projects/{project}/locations/us-central1/services/{service}"
    )
    return [(t.revision.rsplit("/", 1)[-1], int(t.percent)) for t in svc.traffic if t.percent]


async def workflow_exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
        return True
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


# ----------------------------------------------------------------------------- bad input


BAD_INPUT = [
    (["deploy", "dev", "1.2.0"], ["'1.2.0'", "v1.2.3"]),
    (["deploy", "dev", "v1.2"], ["'v1.2'"]),
    (["deploy", "qa", "v1.2.0"], ["'qa'", "dev, staging, prod"]),
    (["deploy", "dev", "v1.2.0", "--services", "python-pipeline,nope"], ["'nope'", "node-server"]),
    (["deploy", "dev", "v1.2.0", "--bake", "soon"], ["--bake", "'soon'"]),
    (["deploy", "dev", "v1.2.0", "--interval", "0s"], ["--interval"]),
    (["status", "qa"], ["'qa'"]),
    (["rollback", "dev", "--service", "nope"], ["'nope'"]),
    (["history", "qa"], ["'qa'"]),
]


@pytest.mark.parametrize(("args", "words"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
async def test_bad_input_exits_2_with_one_line(
    cli_env: dict[str, str], client: Client, tmp_path: Path, args: list[str], words: list[str]
) -> None:
    # An app name of its own, so "nothing started" can be checked on its workflow id.
    app = f"bad-{uuid.uuid4().hex[:6]}"
    data = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    data["app"] = app
    cfg = write_config(tmp_path / "deploy.yaml", data)
    res = await starter(cli_env, *args, "--config", str(cfg))
    assert_one_line_error(res, 2, *words)
    for env in ("dev", "qa"):
        assert not await workflow_exists(client, f"deploy-{app}-{env}")


async def test_invalid_config_file_exits_2_naming_the_key(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    data = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    data["environments"]["dev"]["release"]["steps"] = [{"weight": 50}, {"weight": 10}]
    cfg = write_config(tmp_path / "bad.yaml", data)
    res = await starter(cli_env, "deploy", "dev", "v1.2.0", "--config", str(cfg))
    assert_one_line_error(res, 2, "environments.dev.release", "strictly increase", "fix")

    data = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    data["environments"]["dev"]["sizing"]["min_instances"] = -1
    cfg = write_config(tmp_path / "bad2.yaml", data)
    res = await starter(cli_env, "deploy", "dev", "v1.2.0", "--config", str(cfg))
    assert_one_line_error(res, 2, "environments.dev.sizing.min_instances")

    (tmp_path / "broken.yaml").write_text("app: [unclosed\n")
    res = await starter(cli_env, "status", "dev", "--config", str(tmp_path / "broken.yaml"))
    assert_one_line_error(res, 2, "not valid YAML")

    res = await starter(cli_env, "status", "dev", "--config", str(tmp_path / "missing.yaml"))
    assert_one_line_error(res, 2, "not found", "--config")


async def test_messages_with_nothing_running_exit_2(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    data = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    data["app"] = f"idle-{uuid.uuid4().hex[:6]}"
    cfg = str(write_config(tmp_path / "deploy.yaml", data))
    for args in (
        ["approve", "prod", "--by", "release-manager"],
        ["abort", "prod", "--reason", "nothing"],
        ["promote", "prod"],
        ["status", "prod"],
    ):
        res = await starter(cli_env, *args, "--config", cfg)
        assert_one_line_error(res, 2, "prod")


async def test_temporal_unreachable_exits_3(cli_env: dict[str, str], tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    data["target"] = "gcp"  # no embedded stack is started for gcp
    cfg = str(write_config(tmp_path / "gcp.yaml", data))
    port = free_port()
    env = {**cli_env, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}"}
    for args in (["deploy", "dev", "v1.2.0"], ["status", "dev"], ["history", "dev"]):
        res = await starter(env, *args, "--config", cfg)
        assert_one_line_error(res, 3, f"127.0.0.1:{port}", "local up")
    assert not port_open("127.0.0.1", port)


async def test_temporal_settings_from_a_cli_profile(
    cli_env: dict[str, str], temporal_address: str, tmp_path: Path
) -> None:
    """Temporal's own client config (temporalio.envconfig): a profile of TEMPORAL_CONFIG_FILE
    picked by TEMPORAL_PROFILE reaches the server; an unknown profile is one line, exit 2."""
    toml = tmp_path / "temporal.toml"
    toml.write_text(f'[profile.e2e]\naddress = "{temporal_address}"\nnamespace = "default"\n')
    env = {k: v for k, v in cli_env.items() if k != "TEMPORAL_ADDRESS"}
    env.update(TEMPORAL_CONFIG_FILE=str(toml), TEMPORAL_PROFILE="e2e")
    res = await starter(env, "history", "dev", "--json")
    assert res.returncode == 0, show(res)
    assert isinstance(json.loads(res.stdout), list)
    res = await starter({**env, "TEMPORAL_PROFILE": "nope"}, "history", "dev")
    assert_one_line_error(res, 2, "'nope'", "TEMPORAL_PROFILE")


async def test_schedule_cron_refused_by_temporal_exits_2(
    cli_env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """The cron is Temporal's to validate: a field it refuses is one line naming the fix, and
    no schedule exists afterwards."""
    app = f"cron-{uuid.uuid4().hex[:6]}"
    data = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    data["app"] = app
    cfg = str(write_config(tmp_path / "deploy.yaml", data))
    res = await starter(
        cli_env, "schedule", "dr-drill", "dev", "--cron", "61 3 * * *", "--config", cfg
    )
    assert_one_line_error(res, 2, "'61 3 * * *'", "Minute", "0 3 1-7 * SUN")
    with pytest.raises(RPCError) as missing:
        await client.get_schedule_handle(f"dr-drill-{app}-dev").describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


# ----------------------------------------------------------------------------- releases


async def test_deploy_json_promoted_then_status_and_history(
    cli_env: dict[str, str], client: Client, task_queue: str
) -> None:
    async with worker(client, task_queue):
        res = await starter(
            cli_env, "deploy", "dev", "v1.2.0", "--bake", "1s", "--interval", "1s", "--json"
        )
        assert res.returncode == 0, show(res)
        final = output(res, "deploy")
        assert final["outcome"] == "promoted"
        assert final["phase"] == "done"
        times = [final["started_at"], final["ended_at"], *(e["at"] for e in final["events"])]
        assert all(t.endswith("Z") for t in times), times  # ISO 8601, UTC
        assert "started by e2e-tester" in final["events"][0]["text"]
        # every service names its image (from the plan when the status has not read it)
        assert all(s["image"].endswith(":v1.2.0") for s in final["services"]), final["services"]
        assert final["version"] == "v1.2.0"
        assert final["workflow_id"] == f"deploy-{APP}-dev"
        assert [s["run_service"] for s in final["services"]] == [
            "python-pipeline-dev",
            "node-server-dev",
        ]
        for svc in final["services"]:
            assert svc["state"] == "promoted"
            assert svc["percent"] == 100
            assert svc["canary_revision"].startswith(f"{svc['run_service']}-v1-2-0-")
            assert svc["stable_revisions"] and svc["canary_revision"] not in svc["stable_revisions"]

        desc = await client.get_workflow_handle(f"deploy-{APP}-dev").describe()
        assert await desc.static_summary() == "Release v1.2.0 to dev: python-pipeline, node-server"
        assert "Requested by e2e-tester" in (await desc.static_details() or "")
        assert desc.search_attributes.get("StagecoachEnvironment") == ["dev"]
        assert desc.search_attributes.get("StagecoachOutcome") == ["promoted"]

        res = await starter(cli_env, "status", "dev", "--json")
        assert res.returncode == 0, show(res)
        st = output(res, "status")
        assert [s["image"] for s in st["services"]] == [s["image"] for s in final["services"]]
        for key in ("phase", "version", "outcome", "backup_id", "services"):
            assert key in st, key
        assert (st["phase"], st["version"], st["outcome"]) == ("done", "v1.2.0", "promoted")
        assert st["backup_id"] == ""  # dev takes no pre-deploy backup
        for svc in st["services"]:
            for key in ("name", "stable_revisions", "canary_revision", "percent", "readings"):
                assert key in svc, key
        assert [s["canary_revision"] for s in st["services"]] == [
            s["canary_revision"] for s in final["services"]
        ]

        res = await starter(cli_env, "status", "dev")
        assert res.returncode == 0, show(res)
        assert "v1.2.0" in res.stdout and "promoted" in res.stdout
        res = await starter(cli_env, "status", "dev", "--summary")
        assert res.returncode == 0, show(res)
        assert res.stdout.splitlines()[0] == "Release v1.2.0 to dev: promoted", res.stdout
        assert "node-server-dev: 100%, promoted" in res.stdout, res.stdout

    # history reads visibility, which may lag the close by a moment
    for _ in range(50):
        res = await starter(cli_env, "history", "dev", "--json")
        assert res.returncode == 0, show(res)
        rows = output(res, "history")
        if any(r["version"] == "v1.2.0" and r["outcome"] == "promoted" for r in rows):
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"v1.2.0 not in history: {rows}")
    assert all(r["workflow_id"] == f"deploy-{APP}-dev" for r in rows)
    res = await starter(cli_env, "history", "dev")
    assert res.returncode == 0 and "v1.2.0" in res.stdout, show(res)


async def test_second_deploy_refused_while_one_runs(
    cli_env: dict[str, str], client: Client, task_queue: str, gcpsim: GcpsimProcess, tmp_path: Path
) -> None:
    app = f"cli{uuid.uuid4().hex[:6]}"
    project = f"{app}-staging"
    create_service(gcpsim, project, "web-staging")
    data = small_app_config(
        app, project, "staging", [{"weight": 10, "bake": "1h"}, {"weight": 100}]
    )
    cfg = str(write_config(tmp_path / "deploy.yaml", data))
    async with worker(client, task_queue, cfg):
        res = await starter(cli_env, "deploy", "staging", "v2.0.0", "--detach", "--config", cfg)
        assert res.returncode == 0, show(res)
        assert f"deploy-{app}-staging" in res.stdout

        res = await starter(cli_env, "deploy", "staging", "v2.0.1", "--config", cfg)
        assert_one_line_error(
            res, 2, "v2.0.0", "already running", "starter.py status staging", "abort staging"
        )
        res = await starter(cli_env, "rollback", "staging", "--config", cfg)
        assert_one_line_error(res, 2, "v2.0.0", "abort staging")

        res = await starter(cli_env, "abort", "staging", "--reason", "test over", "--config", cfg)
        assert res.returncode == 0, show(res)
        res = await starter(cli_env, "status", "staging", "--wait", "--json", "--config", cfg)
        assert res.returncode == 1, show(res)
        st = json.loads(res.stdout)
        assert (st["outcome"], st["version"], st["abort_reason"]) == (
            "aborted",
            "v2.0.0",
            "test over",
        )
    # v2.0.1 never started: the latest run of the id is still v2.0.0's
    desc = await client.get_workflow_handle(f"deploy-{app}-staging").describe()
    assert desc.search_attributes.get("StagecoachVersion") == ["v2.0.0"]
    [(revision, percent)] = live_traffic(gcpsim, project, "web-staging")
    assert percent == 100 and "v2-0-0" not in revision


async def test_approve_rejected_then_granted(
    cli_env: dict[str, str],
    client: Client,
    task_queue: str,
    gcpsim: GcpsimProcess,
    tmp_path: Path,
    own_keys: Path,
) -> None:
    cli_env["STAGECOACH_KEYS_DIR"] = str(own_keys)  # no mallory key, whatever ran before
    app = f"cli{uuid.uuid4().hex[:6]}"
    project = f"{app}-prod"
    create_service(gcpsim, project, "web-prod")
    data = small_app_config(app, project, "prod", [{"weight": 100}])
    data["environments"]["prod"]["release"]["approval"] = {
        "before_weight": 100,
        "approvers": ["release-manager"],
    }
    cfg = str(write_config(tmp_path / "deploy.yaml", data))
    async with worker(client, task_queue, cfg):
        res = await starter(cli_env, "deploy", "prod", "v3.0.0", "--detach", "--config", cfg)
        assert res.returncode == 0, show(res)
        for _ in range(100):
            st = json.loads(
                (await starter(cli_env, "status", "prod", "--json", "--config", cfg)).stdout
            )
            if st["awaiting_approval_for"] == 100:
                break
            await asyncio.sleep(0.2)
        # the running release's `summary` query: what is awaited, from whom, how to answer
        res = await starter(cli_env, "status", "prod", "--summary", "--config", cfg)
        assert res.returncode == 0, show(res)
        assert res.stdout.splitlines()[0] == "Release v3.0.0 to prod: awaiting approval"
        assert "web-prod: 0%, awaiting approval before 100%" in res.stdout, res.stdout
        assert "Awaiting approval by release-manager before 100%" in res.stdout
        res = await starter(cli_env, "status", "prod", "--summary", "--json", "--config", cfg)
        assert_one_line_error(res, 2, "--summary", "without --json")
        res = await starter(cli_env, "approve", "prod", "--by", "mallory", "--config", cfg)
        assert_one_line_error(res, 2, "no approver key for mallory", "keys create mallory")
        res = await starter(cli_env, "keys", "create", "mallory")
        assert res.returncode == 0 and "approver_keys:" in res.stdout, show(res)
        res = await starter(cli_env, "approve", "prod", "--by", "mallory", "--config", cfg)
        line = assert_one_line_error(res, 2, "approval rejected", "mallory", "not an approver")
        assert "release-manager" not in line  # the rejection never lists who may approve
        res = await starter(
            cli_env,
            "approve",
            "prod",
            "--by",
            "release-manager",
            "--comment",
            "ok",
            "--config",
            cfg,
        )
        assert res.returncode == 0, show(res)
        res = await starter(cli_env, "status", "prod", "--wait", "--json", "--config", cfg)
        assert res.returncode == 0, show(res)
        st = json.loads(res.stdout)
        assert st["outcome"] == "promoted"
        assert [(a["by"], a["comment"]) for a in st["approvals"]] == [("release-manager", "ok")]
        assert [r["claimed"] for r in st["rejected_approvals"]] == ["mallory"]


async def test_rollback_goes_to_the_revision_that_served_before(
    cli_env: dict[str, str],
    client: Client,
    task_queue: str,
    gcpsim: GcpsimProcess,
    tmp_path: Path,
) -> None:
    """v1 promoted, v2 failed its smoke test (a newer revision that never served), v3 promoted:
    the rollback sends 100% back to v1's revision -- not v2's, not LATEST."""
    project = "legal-forms-dev"
    service = "node-server-dev"
    deploy = ["--services", "node-server", "--bake", "1s", "--interval", "1s", "--json"]
    behaviors = f"{gcpsim.url}/_sim/behaviors"
    async with worker(client, task_queue):
        res = await starter(cli_env, "deploy", "dev", "v1.6.0", *deploy)
        assert res.returncode == 0, show(res)
        v1 = json.loads(res.stdout)["services"][0]["canary_revision"]

        requests.post(
            behaviors,
            json={"service": service, "version": "v1.7.0", "smoke_fail": True},
            timeout=10,
        ).raise_for_status()
        try:
            res = await starter(cli_env, "deploy", "dev", "v1.7.0", *deploy)
        finally:
            requests.post(
                behaviors,
                json={"service": service, "version": "v1.7.0", "smoke_fail": False},
                timeout=10,
            ).raise_for_status()
        assert res.returncode == 1, show(res)
        failed = output(res, "deploy")
        assert failed["outcome"] == "failed"
        v2 = failed["services"][0]["canary_revision"]
        assert v2 and live_traffic(gcpsim, project, service) == [(v1, 100)]
        # the execution ended Failed; status and history still tell the whole status
        res = await starter(cli_env, "status", "dev", "--json")
        assert res.returncode == 0, show(res)
        shown = output(res, "status")
        assert shown["outcome"] == "failed" and shown["services"][0]["canary_revision"] == v2
        assert "smoke" in shown["error"]
        res = await starter(cli_env, "history", "dev", "--json", "--limit", "1")
        assert res.returncode == 0, show(res)
        [row] = output(res, "history")
        assert (row["status"], row["outcome"], row["version"]) == ("failed", "failed", "v1.7.0")
        assert "smoke" in row["reason"] and row["duration_seconds"] > 0
        page = tmp_path / "v170.html"
        res = await starter(cli_env, "report", "dev", "--release", "v1.7.0", "--html", str(page))
        assert res.returncode == 0, show(res)
        assert "release v1.7.0 to dev: failed" in res.stdout
        assert "smoke" in page.read_text() and "<svg" in page.read_text()

        res = await starter(cli_env, "deploy", "dev", "v1.8.0", *deploy)
        assert res.returncode == 0, show(res)
        v3 = json.loads(res.stdout)["services"][0]["canary_revision"]
        assert live_traffic(gcpsim, project, service) == [(v3, 100)]

        pipeline = live_traffic(gcpsim, project, "python-pipeline-dev")
        res = await starter(cli_env, "rollback", "dev", "--service", "node-server", "--json")
        assert res.returncode == 0, show(res)
        result = output(res, "rollback")
        assert result["outcome"] == "rolled_back"
        [svc] = result["services"]
        assert svc["service"] == service and svc["error"] == "" and svc["changed"]
        assert [
            (t["type"], t["revision"], t["percent"]) for t in svc["to_traffic"] if t["percent"]
        ] == [("REVISION", v1, 100)]
        assert live_traffic(gcpsim, project, service) == [(v1, 100)]
        assert live_traffic(gcpsim, project, "python-pipeline-dev") == pipeline  # untouched


async def test_sim_passes_through_on_the_config_ports(
    cli_env: dict[str, str], gcpsim: GcpsimProcess
) -> None:
    res = await starter(cli_env, "sim", "show", "--json")
    assert res.returncode == 0, show(res)
    state = json.loads(res.stdout)
    assert state["settings"]["port"] == gcpsim.port
    assert any("node-server-dev" in json.dumps(s) for s in state["services"])


# ----------------------------------------------------------------------------- local stack


async def test_local_stack_auto_start_status_down(tmp_path: Path) -> None:
    """`deploy` with nothing answering brings the embedded stack up by itself (Temporal, gcpsim,
    worker), `local up` is then a no-op, `local status` shows it, `local down` stops it."""
    while True:
        t_port = free_port()
        if not port_open("127.0.0.1", t_port + 1000):
            break
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STAGECOACH_", "TEMPORAL_"))}
    env.update(
        TEMPORAL_ADDRESS=f"127.0.0.1:{t_port}",
        STAGECOACH_TASK_QUEUE=f"tq-local-{uuid.uuid4().hex[:6]}",
        GCPSIM_PORT=str(free_port()),
        GCPSIM_GRPC_PORT=str(free_port()),
        STAGECOACH_HOME=str(tmp_path / "home"),
        COLUMNS="200",
    )
    try:
        res = await starter(
            env, "deploy", "dev", "v1.2.0", "--bake", "1s", "--interval", "1s", "--json"
        )
        assert res.returncode == 0, show(res)
        assert json.loads(res.stdout)["outcome"] == "promoted"
        assert "starting the embedded stack" in res.stderr
        for name in ("temporal", "gcpsim", "worker"):
            assert (tmp_path / "home" / f"{name}.json").exists(), name
        assert (tmp_path / "home" / "temporal.db").exists()

        res = await starter(env, "local", "up")
        assert res.returncode == 0, show(res)
        assert res.stdout.count("already") == 3, show(res)

        res = await starter(env, "local", "status", "--json")
        assert res.returncode == 0, show(res)
        rows = {r["name"]: r for r in output(res, "local-status")}
        assert set(rows) == {"temporal", "gcpsim", "worker"}
        assert all(r["healthy"] and r["pid"] for r in rows.values()), rows
    finally:
        res = await starter(env, "local", "down")
    assert res.returncode == 0, show(res)
    assert res.stdout.count("stopped") == 3, show(res)
    assert not port_open("127.0.0.1", t_port)
    res = await starter(env, "local", "status")
    assert res.returncode == 3, show(res)


async def test_quickstart_approval_on_the_embedded_stack_and_private_files(
    tmp_path: Path,
) -> None:
    """README's quickstart as written: `deploy prod` in one terminal, `approve prod --by
    release-manager` in a second; the embedded stack provisioned this user's approver key, so
    the approval is signed and counts. `--print-payload` gives JSON the plain temporal CLI
    accepts. Everything under the stack's home is private to its user (0700 / 0600)."""
    while True:
        t_port = free_port()
        if not port_open("127.0.0.1", t_port + 1000):
            break
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STAGECOACH_", "TEMPORAL_"))}
    home = tmp_path / "home"
    env.update(
        TEMPORAL_ADDRESS=f"127.0.0.1:{t_port}",
        STAGECOACH_TASK_QUEUE=f"tq-qs-{uuid.uuid4().hex[:6]}",
        GCPSIM_PORT=str(free_port()),
        GCPSIM_GRPC_PORT=str(free_port()),
        STAGECOACH_HOME=str(home),
        COLUMNS="200",
    )

    async def awaiting(running: asyncio.Task[Any] | None = None) -> dict[str, Any]:
        for _ in range(240):
            if running is not None and running.done():
                raise AssertionError(show(running.result()))
            res = await starter(env, "status", "prod", "--json")
            if res.returncode == 0:
                st: dict[str, Any] = json.loads(res.stdout)
                if st["awaiting_approval_for"] is not None:
                    return st
            await asyncio.sleep(0.5)
        raise AssertionError("never awaited approval")

    # deploy.yaml but for the judge's level: at its 0.01 a correct judge leaves about 1 in 2000
    # of these releases unpromoted (a canary identical to stable; Monte Carlo of the judge), too
    # many for a suite that runs two of them here; the other e2e tests run it at 1e-4 too
    data = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    data["gates"]["false_rollback_rate"] = 1e-4
    cfg = str(write_config(tmp_path / "deploy.yaml", data))
    try:
        # the stack first: the status polls below would otherwise race deploy to start it
        res = await starter(env, "local", "up")
        assert res.returncode == 0, show(res)
        # 6 s windows: the stack's simulator sends a 10% canary ~30 requests (min 20)
        args = ["deploy", "prod", "v1.2.0", "--bake", "6s", "--interval", "6s", "--config", cfg]
        deploy = asyncio.create_task(starter(env, *args))
        await awaiting(deploy)
        res = await starter(
            env, "approve", "prod", "--by", "release-manager", "--comment", "canary looks good"
        )
        assert res.returncode == 0, show(res)
        res = await deploy
        assert res.returncode == 0, show(res)
        assert "approve prod --by release-manager" in res.stdout + res.stderr
        # the whole story stays in the output: each event once, with its full time (ISO 8601,
        # UTC), from the first ("started by") to the summary line at the end
        lines = res.stdout.splitlines()
        started = [x for x in lines if "started by" in x]
        assert len(started) == 1 and started[0][:20].endswith("Z"), show(res)
        assert lines[-1] == "Release v1.2.0 to prod: promoted", show(res)
        res = await starter(env, "status", "prod", "--json")
        st = json.loads(res.stdout)
        assert st["outcome"] == "promoted"
        assert st["approvals"][0]["authenticated"].startswith("release-manager (ed25519 key ")

        # the Web UI / temporal CLI path: the printed payload, sent by the plain temporal CLI
        res = await starter(
            env, "deploy", "prod", "v1.2.1", "--services", "python-pipeline",
            "--bake", "6s", "--interval", "6s", "--detach", "--config", cfg,
        )  # fmt: skip
        assert res.returncode == 0, show(res)
        await awaiting()
        res = await starter(env, "approve", "prod", "--by", "release-manager", "--print-payload")
        assert res.returncode == 0, show(res)
        payload = json.loads(res.stdout)
        assert payload["proof"]["signature"] and "PRIVATE" not in res.stdout
        temporal = str(Path(sys.executable).parent / "temporal")
        done = subprocess.run(
            [temporal, "workflow", "update", "execute", "--address", f"127.0.0.1:{t_port}",
             "--workflow-id", "deploy-legal-forms-prod", "--name", "approve",
             "--input", res.stdout.strip()],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        res = await starter(env, "status", "prod", "--wait", "--json")
        assert json.loads(res.stdout)["outcome"] == "promoted", show(res)

        # private: the home (so nothing below it is reachable by other users), the Temporal
        # database with every history, the logs, the records and the keys
        assert (home.stat().st_mode & 0o777) == 0o700
        own = [*home.iterdir(), *(home / "keys").iterdir()]
        loose = [str(p) for p in own if p.is_file() and p.stat().st_mode & 0o077]
        assert loose == [], loose
        assert (home / "keys").stat().st_mode & 0o777 == 0o700
        assert (home / "keys" / "release-manager.key").exists()
        assert (home / "temporal.db").exists()
    finally:
        res = await starter(env, "local", "down")
    assert res.returncode == 0, show(res)
