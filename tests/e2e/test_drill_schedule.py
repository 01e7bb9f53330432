"""`schedule dr-drill prod --cron ... --scenario regional` (from a backup, the default) end to
end: `starter.py` as a subprocess, the real Temporal dev server and its Schedules, a worker in
the test, the real Google clients and a gcpsim of this module's own (it changes what serves in
prod's region and takes that region down).

Every run of the one schedule names its scratch resources after its own start (two triggers:
two sets of names, each deleted), and deploys the images serving in the primary region when it
starts: between the triggers a new image is rolled out to node-server-prod in us-central1
through the real run_v2 client, and the second run deploys it (read back from the DeployService
activity inputs in the run's history, i.e. what was sent to Cloud Run). With us-central1 down,
or a service missing there, a run fails before it creates anything, saying why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import run_v2
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from stagecoach.cli.schemas import validate
from stagecoach.contract import Activity, regional_drill_schedule_id
from stagecoach.payloads.common import Outcome
from stagecoach.payloads.failover import DeployServiceInput, FailoverStatus
from stagecoach.payloads.replica_drill import ReplicaDrillStatus
from stagecoach.temporal import workflow_result
from testing.cli import show, starter, starter_env
from testing.gcpsim import GcpsimProcess, start_seeded_gcpsim, stop_gcpsim
from testing.histories import record_history, replays
from testing.releases import worker, worker_config
from tests.e2e.test_failover import clients

pytestmark = pytest.mark.asyncio

APP = "legal-forms"
PROJECT = "legal-forms-prod"
PRIMARY = "legal-forms-db-prod"
SCHEDULE = regional_drill_schedule_id(APP, "prod")
CRON = ["--cron", "0 3 1-7 * SUN"]
REPO = f"us-central1-docker.pkg.dev/{PROJECT}/legal-forms"
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpsimProcess]:
    s = start_seeded_gcpsim(tmp_path_factory.mktemp("gcpsim-drill-schedule"))
    yield s
    stop_gcpsim(s)


@pytest.fixture
def env_vars(
    temporal_address: str, task_queue: str, sim: GcpsimProcess, tmp_path: Path
) -> dict[str, str]:
    return starter_env(temporal_address, task_queue, sim, tmp_path / "home")


def serving_image(sim: GcpsimProcess, service: str) -> str:
    """The image of the revision serving `service` in us-central1, read through run_v2."""
    c = clients(sim)
    svc = c.services.get_service(
        name=f"projects/{PROJECT}/locations/us-central1/services/{service}"
    )
    [target] = [t for t in svc.traffic if t.percent]
    rev = target.revision or svc.latest_ready_revision.rsplit("/", 1)[-1]
    found = c.revisions.get_revision(name=f"{svc.name}/revisions/{rev}")
    return str(found.containers[0].image)


def roll_out(sim: GcpsimProcess, service: str, image: str) -> None:
    """A new revision of `service` in us-central1 with `image`, serving 100% (run_v2 update)."""
    services = clients(sim).services
    svc = services.get_service(name=f"projects/{PROJECT}/locations/us-central1/services/{service}")
    svc.template.containers[0].image = image
    svc.template.revision = ""
    svc.traffic = [run_v2.TrafficTarget(type_=LATEST, percent=100)]
    services.update_service(service=svc).result(timeout=60)


def scratch_left(sim: GcpsimProcess) -> list[str]:
    c = clients(sim)
    names = [
        s.name
        for s in c.services.list_services(parent=f"projects/{PROJECT}/locations/us-east1")
        if "-dr-" in s.name
    ]
    items = c.sqladmin().instances().list(project=PROJECT).execute().get("items", [])
    return names + [i["name"] for i in items if "-dr-" in i["name"]]


async def deployed_images(client: Client, workflow_id: str) -> dict[str, str]:
    """Service -> image of every DeployService the run scheduled (its history: what the
    activity sent to Cloud Run)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    out = {}
    for e in history.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            a = e.activity_task_scheduled_event_attributes
            if a.activity_type.name == Activity.DEPLOY_SERVICE:
                [inp] = pydantic_data_converter.payload_converter.from_payloads(
                    list(a.input.payloads), [DeployServiceInput]
                )
                out[inp.ref.service] = inp.image
    return out


async def trigger(env_vars: dict[str, str], *args: str) -> Any:
    await asyncio.sleep(1.1)  # a new second: a new scratch name
    return await starter(env_vars, "schedule", "trigger", SCHEDULE, "--wait", *args)


async def started_id(client: Client) -> str:
    desc = await client.get_schedule_handle(SCHEDULE).describe()
    wid: str = desc.info.recent_actions[-1].action.workflow_id  # type: ignore[attr-defined]
    return wid


async def test_scheduled_regional_drill_runs_what_serves_now_under_fresh_names(
    client: Client, task_queue: str, sim: GcpsimProcess, env_vars: dict[str, str]
) -> None:
    res = await starter(env_vars, "schedule", "dr-drill", "prod", *CRON, "--scenario", "regional")
    assert res.returncode == 0, show(res)
    assert f"schedule {SCHEDULE}: regional DR drill of prod into us-east1" in res.stdout, show(res)
    said = " ".join(res.stdout.split())  # the note wraps
    assert "images: what each service serves in us-central1 when the run starts" in said, said
    try:
        runs: list[FailoverStatus] = []
        serving: list[dict[str, str]] = []
        async with worker(client, task_queue):
            for new_image in ("", f"{REPO}/node-server:v1.3.0"):
                if new_image:  # what serves in the primary changes between the two runs
                    roll_out(sim, "node-server-prod", new_image)
                now = {
                    s: serving_image(sim, s) for s in ("python-pipeline-prod", "node-server-prod")
                }
                run = (
                    await trigger(env_vars, "--json") if not new_image else await trigger(env_vars)
                )
                assert run.returncode == 0, show(run)
                wid = await started_id(client)
                handle = client.get_workflow_handle(wid, result_type=FailoverStatus)
                st = await workflow_result(handle, FailoverStatus)
                if not new_image:  # --json: the status, as documented
                    assert validate("schedule-trigger", run.stdout) is not None
                    assert FailoverStatus.model_validate_json(run.stdout) == st
                assert st.outcome == Outcome.SUCCEEDED, st.error
                assert st.mode == "drill" and st.source == "backup" and not st.dns_moved
                assert "requested by schedule: the images serving in us-central1" in st.events[0]
                assert st.instance in st.events[0], st.events  # this run's scratch name
                await replays(handle)
                if new_image:
                    await record_history(handle, "regional_drill_scheduled_serving")
                # what was sent to Cloud Run: the images serving in us-central1 at run time
                sent = await deployed_images(client, wid)
                assert sorted(sent.values()) == sorted(now.values()), (sent, now)
                assert {i.service: i.image for i in st.images} == sent
                assert st.images_from == "serving"
                for img in st.images:
                    assert img.source.startswith("serving in us-central1: "), img
                    assert img.service.endswith(st.instance.removeprefix(PRIMARY)), img
                # each run deleted its scratch resources
                assert sorted(st.deleted) == sorted(st.created) and len(st.deleted) == 3
                assert scratch_left(sim) == []
                runs.append(st)
                serving.append(now)
        first, second = runs
        # distinct scratch names, each after its own run's start
        assert first.instance != second.instance, first.instance
        assert first.instance.startswith(f"{PRIMARY}-dr-")
        assert {s.service for s in first.services}.isdisjoint(s.service for s in second.services)
        # the second run rehearsed the image rolled out in between
        assert serving[0]["node-server-prod"] == f"{REPO}/node-server:v1.1.0"
        assert serving[1]["node-server-prod"] == f"{REPO}/node-server:v1.3.0"
        assert first.version == "v1.1.0" and second.version == "serving"
        # the printed report says which images were rehearsed and where they came from
        node = next(i for i in second.images if i.service.startswith("node-server-prod-dr-"))
        line = f"image      {node.service}  {REPO}/node-server:v1.3.0  <- serving in us-central1"
        assert line in run.stdout, show(run)
    finally:
        await client.get_schedule_handle(SCHEDULE).delete()


@pytest.mark.parametrize("broken", ["outage", "missing"])
async def test_scheduled_regional_drill_stops_before_creating_anything(
    client: Client,
    task_queue: str,
    sim: GcpsimProcess,
    env_vars: dict[str, str],
    tmp_path: Path,
    broken: str,
) -> None:
    """The primary down, or a service missing there: the run fails at once, nothing created."""
    args: list[str] = []
    if broken == "missing":  # a service the primary region does not have
        cfg = worker_config(
            tmp_path / "deploy.yaml",
            lambda d: d["services"].append(
                {"name": "ghost", "image": f"{REPO}/ghost", "smoke": "none"}
            ),
        )
        args = ["--config", str(cfg)]
    res = await starter(env_vars, "schedule", "dr-drill", "prod", *CRON, "--scenario",
                        "regional", *args)  # fmt: skip
    assert res.returncode == 0, show(res)
    try:
        async with worker(client, task_queue):
            if broken == "outage":
                assert sim.cli("outage", "us-central1").returncode == 0
            try:
                run = await trigger(env_vars)
            finally:
                sim.cli("outage", "us-central1", "--clear")
            wid = await started_id(client)
            handle = client.get_workflow_handle(wid, result_type=FailoverStatus)
            st = await handle.query("status", result_type=FailoverStatus)
            await replays(handle)
        assert run.returncode == 1, show(run)
        assert st.outcome == Outcome.FAILED, st
        where = "python-pipeline-prod" if broken == "outage" else "ghost-prod"
        assert f"cannot read the image {where} serves in us-central1" in st.error, st.error
        assert "nothing was created" in st.error, st.error
        assert st.created == [] and st.deleted == [] and st.services == []
        assert [p.phase for p in st.phases] == ["cleaning_up"], st.phases
        assert f"error      cannot read the image {where}" in run.stdout, show(run)
        assert scratch_left(sim) == []
    finally:
        await client.get_schedule_handle(SCHEDULE).delete()


async def test_scheduled_replica_drill_runs_what_serves_now(
    client: Client, task_queue: str, sim: GcpsimProcess, env_vars: dict[str, str]
) -> None:
    """`--from replica` shares it: without --version each run reads what serves when it starts."""
    res = await starter(env_vars, "schedule", "dr-drill", "prod", *CRON, "--scenario",
                        "regional", "--from", "replica")  # fmt: skip
    assert res.returncode == 0, show(res)
    said = " ".join(res.stdout.split())
    assert "images: what each service serves in us-central1 when the run starts" in said, said
    try:
        roll_out(sim, "python-pipeline-prod", f"{REPO}/python-pipeline:v1.4.0")
        now = {s: serving_image(sim, s) for s in ("python-pipeline-prod", "node-server-prod")}
        async with worker(client, task_queue):
            run = await trigger(env_vars, "--json")
            wid = await started_id(client)
            handle = client.get_workflow_handle(wid, result_type=ReplicaDrillStatus)
            await replays(handle)
        assert run.returncode == 0, show(run)
        st = ReplicaDrillStatus.model_validate_json(run.stdout)
        assert st.outcome == Outcome.SUCCEEDED and st.replica_deleted, st.error
        # this run's scratch names, everywhere
        assert st.scratch_replica == st.instance and st.instance in st.events[0], st.events
        sent = await deployed_images(client, wid)
        assert sorted(sent.values()) == sorted(now.values()), (sent, now)
        assert f"{REPO}/python-pipeline:v1.4.0" in sent.values()
        assert {i.service: i.image for i in st.images} == sent and st.images_from == "serving"
        assert scratch_left(sim) == []
    finally:
        await client.get_schedule_handle(SCHEDULE).delete()
