"""`dr-drill prod --scenario regional --from replica` end to end: prod configured with a
cross-region read replica in us-east1 (`environments.prod.database.replicas`), gcpsim seeded with
it. The drill creates a SCRATCH read replica of the primary in us-east1, waits for it to catch
up (Monitoring's replica_lag), promotes it, validates it, brings up the scratch services bound to
it and smoke-tests them, reports, and deletes every scratch resource; the configured replica is
never touched (no operation on it, still a RUNNABLE replica of the primary). A cancellation while
the scratch replica catches up deletes it (still a replica) and the rest. `--from replica`
without `--scenario regional` is a one-line exit 2. The success history replays (and is the
recorded `regional_drill_replica_succeeded`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from temporalio.client import Client

from stagecoach.cli.schemas import validate
from stagecoach.clients import Clients
from stagecoach.contract import regional_drill_workflow_id
from stagecoach.payloads.common import AbortInput, Outcome, Target
from stagecoach.payloads.replica_drill import ReplicaDrillStatus
from stagecoach.temporal import workflow_result
from testing.cli import show, starter, starter_env
from testing.gcpsim import GcpsimProcess, start_seeded_gcpsim, stop_gcpsim
from testing.histories import record_history, replays
from testing.releases import prod_with_replica, wait_for, worker, worker_config

pytestmark = pytest.mark.asyncio

APP = "legal-forms"
PROJECT = "legal-forms-prod"
PRIMARY = "legal-forms-db-prod"
REPLICA = "legal-forms-db-prod-replica-us-east1"
WID = regional_drill_workflow_id(APP, "prod")
WAIT = 120.0


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drill-replica") / "deploy.yaml"
    return worker_config(path, prod_with_replica)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory, config: Path) -> Iterator[GcpsimProcess]:
    s = start_seeded_gcpsim(tmp_path_factory.mktemp("gcpsim-drill-replica"), config)
    yield s
    stop_gcpsim(s)


@pytest.fixture
def env_vars(
    temporal_address: str, task_queue: str, sim: GcpsimProcess, tmp_path: Path, config: Path
) -> dict[str, str]:
    return starter_env(
        temporal_address, task_queue, sim, tmp_path / "home", STAGECOACH_CONFIG=str(config)
    )


def sqladmin(sim: GcpsimProcess) -> Any:
    return Clients(Target(kind="gcpsim", port=sim.port, grpc_port=sim.grpc_port)).sqladmin()


def run_services(sim: GcpsimProcess) -> Any:
    return Clients(Target(kind="gcpsim", port=sim.port, grpc_port=sim.grpc_port)).services


def operations(sim: GcpsimProcess) -> list[dict[str, Any]]:
    """Every Cloud SQL operation of the project (those of deleted instances too)."""
    api = sqladmin(sim).operations()
    req = api.list(project=PROJECT)
    items: list[dict[str, Any]] = []
    while req is not None:
        resp = req.execute()
        items += resp.get("items", [])
        req = api.list_next(req, resp)
    return items


def ops_on(sim: GcpsimProcess, instance: str) -> list[tuple[str, str]]:
    return sorted(
        (o["operationType"], o["status"]) for o in operations(sim) if o["targetId"] == instance
    )


def configured_replica(sim: GcpsimProcess) -> dict[str, Any]:
    api = sqladmin(sim).instances()
    inst: dict[str, Any] = api.get(project=PROJECT, instance=REPLICA).execute()
    return {
        "type": inst["instanceType"],
        "master": inst.get("masterInstanceName"),
        "state": inst["state"],
        "region": inst["region"],
        "tier": inst["settings"]["tier"],
        "ops": ops_on(sim, REPLICA),
    }


def scratch_left(sim: GcpsimProcess) -> list[str]:
    """Every scratch (`-dr-`) instance and us-east1 service left in gcpsim."""
    items = sqladmin(sim).instances().list(project=PROJECT).execute().get("items", [])
    names = [i["name"] for i in items if "-dr-" in i["name"]]
    try:
        svcs = run_services(sim).list_services(parent=f"projects/{PROJECT}/locations/us-east1")
        names += [s.name for s in svcs if "-dr-" in s.name]
    except gexc.NotFound:
        pass
    return names


async def test_from_replica_needs_the_regional_scenario(env_vars: dict[str, str]) -> None:
    cron = ["--cron", "0 3 1-7 * SUN"]
    for cmd, args, words in (
        (["dr-drill", "prod"], ["--from", "replica"], "--scenario regional"),
        (["dr-drill", "prod"], ["--scenario", "regional", "--from", "moon"], "--from"),
        (["schedule", "dr-drill", "prod", *cron], ["--from", "replica"], "--scenario regional"),
        (["schedule", "dr-drill", "prod", *cron], ["--version", "v1.1.0"], "--scenario regional"),
    ):
        res = await starter(env_vars, *cmd, *args)
        assert res.returncode == 2, show(res)
        assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1, show(res)


async def test_replica_drill_promotes_a_scratch_replica_and_deletes_it(
    client: Client, task_queue: str, sim: GcpsimProcess, env_vars: dict[str, str], config: Path
) -> None:
    before = configured_replica(sim)
    assert before["type"] == "READ_REPLICA_INSTANCE" and before["master"] == PRIMARY
    async with worker(client, task_queue, config=config):
        res = await starter(env_vars, "dr-drill", "prod", "--scenario", "regional",
                            "--to-region", "us-east1", "--from", "replica",
                            "--version", "v1.1.0")  # fmt: skip
        assert res.returncode == 0, show(res)
        handle = client.get_workflow_handle(WID, result_type=ReplicaDrillStatus)
        st = await workflow_result(handle, ReplicaDrillStatus)
        await replays(handle)
        await record_history(handle, "regional_drill_replica_succeeded")

    assert st.outcome == Outcome.SUCCEEDED, st.error
    # the configured replica: not one operation, still a RUNNABLE replica of the primary
    assert configured_replica(sim) == before
    assert st.mode == "drill" and st.source == "replica" and st.backup is None
    scratch = st.scratch_replica
    assert scratch.startswith(f"{PRIMARY}-dr-") and st.instance == scratch
    # the scratch replica existed (created as a replica of the primary), was promoted, is gone
    assert ops_on(sim, scratch) == [
        ("CREATE_REPLICA", "DONE"), ("DELETE", "DONE"), ("PROMOTE_REPLICA", "DONE"),
    ]  # fmt: skip
    assert st.replica_created and st.replica_promoted and st.replica_deleted
    assert any(f"read replica {scratch} promoted" in e for e in st.events), st.events
    assert scratch_left(sim) == []
    assert sorted(st.deleted) == sorted(st.created) and len(st.deleted) == 3, st.deleted
    # the services ran (the one that uses the database bound to it); the one with a public
    # ingress answered its smoke test (the internal one has `smoke: none` in deploy.yaml)
    assert len(st.services) == 2 and all(s.region == "us-east1" for s in st.services)
    bound = [e for e in st.events if f"bound to {scratch}" in e]
    assert len(bound) == 1 and "node-server-prod-dr-" in bound[0], st.events
    assert sum("smoke test passed" in e for e in st.events) == 1, st.events
    assert st.configured_replica == REPLICA and st.primary_replicas == [REPLICA]
    assert st.replicas_untouched is True
    assert any("configured read replica" in x and "left alone" in x for x in st.left_in)
    # the report: lag and data-loss window vs RPO, the phases and the failover time vs RTO
    assert st.caught_up_lag_seconds is not None and st.caught_up_lag_seconds <= st.rpo_seconds
    assert st.replica_lag_seconds is not None
    assert st.data_loss_exact and st.data_loss_seconds is not None and st.rpo_met is not None
    assert st.validation is not None and st.validation.ok
    assert all(t.rows > 0 for t in st.validation.tables)
    phases = {p.phase: p.seconds for p in st.phases}
    assert list(phases) == ["replica", "database", "services", "cleaning_up"], st.phases
    assert st.failover_seconds == round(phases["database"] + phases["services"], 3)
    assert st.failover_rto_met is True and st.rto_met is True
    assert st.replica_ready_seconds is not None
    assert not st.dns_moved
    # `dr-drill --json` prints this status: its documented schema (docs/schemas) has it
    assert isinstance(validate("dr-drill", st.model_dump_json()), ReplicaDrillStatus)
    # the printed report says it
    for words in (f"scratch {scratch}", "promoted, deleted", "vs RTO", "vs RPO",
                  f"configured read replica {REPLICA} (us-east1): left alone"):  # fmt: skip
        assert words in res.stdout, show(res)


@pytest.mark.parametrize("how", ["cancel", "abort"])
async def test_replica_drill_stopped_while_catching_up_deletes_everything(
    client: Client,
    task_queue: str,
    sim: GcpsimProcess,
    env_vars: dict[str, str],
    config: Path,
    how: str,
) -> None:
    before = configured_replica(sim)
    # Monitoring unavailable: the scratch replica's lag is never read, so the drill waits there
    assert sim.cli("fault", "monitoring.timeSeries.list", "--status", "503").returncode == 0
    try:
        async with worker(client, task_queue, config=config):
            await asyncio.sleep(1.1)  # a new second: a new scratch name
            res = await starter(env_vars, "dr-drill", "prod", "--scenario", "regional",
                                "--from", "replica", "--version", "v1.1.0", "--detach")  # fmt: skip
            assert res.returncode == 0, show(res)
            handle = client.get_workflow_handle(WID, result_type=ReplicaDrillStatus)
            mid = await wait_for(
                handle, lambda s: s.replica_created, WAIT, result_type=ReplicaDrillStatus
            )
            scratch = mid.scratch_replica
            inst = sqladmin(sim).instances().get(project=PROJECT, instance=scratch).execute()
            assert inst["instanceType"] == "READ_REPLICA_INSTANCE", inst
            if how == "cancel":
                await handle.cancel()
                with pytest.raises(Exception):  # noqa: B017 (ends cancelled)
                    await handle.result()
                st = await handle.query("status", result_type=ReplicaDrillStatus)
            else:
                await handle.signal("abort", AbortInput(reason="e2e", by="tester"))
                # the abort ends the wait for the catch-up (which Monitoring never answers)
                st = await asyncio.wait_for(workflow_result(handle, ReplicaDrillStatus), WAIT)
            await replays(handle)
    finally:
        sim.cli("fault", "--clear")
    want = Outcome.CANCELLED if how == "cancel" else Outcome.ABORTED
    assert st.outcome == want, st
    assert st.replica_created and not st.replica_promoted and st.replica_deleted
    assert ops_on(sim, scratch) == [("CREATE_REPLICA", "DONE"), ("DELETE", "DONE")]
    assert scratch_left(sim) == []
    assert configured_replica(sim) == before and st.replicas_untouched is True
    assert any(f"scratch replica {scratch} deleted" in e for e in st.events), st.events


async def test_scheduled_replica_drill_names_each_run_afresh(
    client: Client, task_queue: str, sim: GcpsimProcess, env_vars: dict[str, str], config: Path
) -> None:
    sched = f"dr-drill-regional-{APP}-prod"
    res = await starter(env_vars, "schedule", "dr-drill", "prod", "--cron", "0 3 1-7 * SUN",
                        "--scenario", "regional", "--from", "replica",
                        "--version", "v1.1.0")  # fmt: skip
    assert res.returncode == 0, show(res)
    assert f"schedule {sched}: regional DR drill of prod into us-east1" in res.stdout, show(res)
    assert "images v1.1.0" in res.stdout, show(res)
    try:
        scratches = []
        async with worker(client, task_queue, config=config):
            for _ in range(2):
                await asyncio.sleep(1.1)  # a new second: a new scratch name
                run = await starter(env_vars, "schedule", "trigger", sched, "--wait", "--json")
                assert run.returncode == 0, show(run)
                st = validate("schedule-trigger", run.stdout)
                assert isinstance(st, ReplicaDrillStatus), run.stdout
                assert st.outcome == Outcome.SUCCEEDED and st.replica_deleted, st.error
                assert st.events[0].endswith("requested by schedule"), st.events
                scratches.append(st.scratch_replica)
        assert len(set(scratches)) == 2 and all(f"{PRIMARY}-dr-" in n for n in scratches)
        assert scratch_left(sim) == []
    finally:
        await client.get_schedule_handle(sched).delete()
