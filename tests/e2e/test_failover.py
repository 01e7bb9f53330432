"""Regional failover, failback and the regional drill end to end: `starter.py` as a subprocess,
the real Temporal dev server, a worker inside the test, the real Google clients (run_v2,
sqladmin v1, dns v1) and a gcpsim of this module's own (it takes prod's region down and moves
prod's DNS record, so it does not share the session simulator).

The story (one test, the steps depend on each other): with `outage us-central1`, a failover of
prod to us-east1 whose smoke test fails stops before the DNS move (DNS untouched, the new
resources kept); the retry adopts them, waits for approval, moves DNS and reports RTO and the
data-loss window; after `outage --clear`, failback brings users back to us-central1 with the rows
written in us-east1 meanwhile. The regional drill deletes every scratch resource on success,
failure and cancellation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)

from stagecoach.clients import Clients
from stagecoach.contract import regional_drill_workflow_id
from stagecoach.payloads.common import ApproveInput, ApproveResult, Outcome, Phase, Target
from stagecoach.payloads.failover import FailoverStatus
from stagecoach.temporal import workflow_result
from testing.cli import show, starter, starter_env
from testing.gcpsim import GcpsimProcess, start_seeded_gcpsim, stop_gcpsim
from testing.histories import record_history, replays
from testing.releases import signed_approval, wait_for, worker

pytestmark = pytest.mark.asyncio

APP = "legal-forms"
PROJECT = "legal-forms-prod"
WID = f"deploy-{APP}-prod"
RECORD = "app.legal-forms.example."
EAST = "node-server-prod-legal-forms-prod.us-east1.run.app."
CENTRAL = "node-server-prod-legal-forms-prod.us-central1.run.app."
WAIT = 120.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpsimProcess]:
    s = start_seeded_gcpsim(tmp_path_factory.mktemp("gcpsim-failover"))
    yield s
    stop_gcpsim(s)


@pytest.fixture
def env_vars(
    temporal_address: str, task_queue: str, sim: GcpsimProcess, tmp_path: Path
) -> dict[str, str]:
    return starter_env(temporal_address, task_queue, sim, tmp_path / "home")


def clients(sim: GcpsimProcess) -> Clients:
    return Clients(Target(kind="gcpsim", port=sim.port, grpc_port=sim.grpc_port))


def record(sim: GcpsimProcess) -> list[str]:
    rr = (
        clients(sim)
        .dns()
        .resourceRecordSets()
        .get(project=PROJECT, managedZone="legal-forms", name=RECORD, type="CNAME")
        .execute()
    )
    return list(rr["rrdatas"])


def resolve(sim: GcpsimProcess) -> dict[str, Any]:
    import requests

    resp = requests.get(f"{sim.url}/_dns/resolve", params={"name": RECORD}, timeout=10)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def service_exists(sim: GcpsimProcess, region: str, service: str) -> bool:
    name = f"projects/{PROJECT}/locations/{region}/services/{service}"
    try:
        clients(sim).services.get_service(name=name)
        return True
    except gexc.NotFound:
        return False


def instance_exists(sim: GcpsimProcess, instance: str) -> bool:
    from googleapiclient.errors import HttpError

    try:
        clients(sim).sqladmin().instances().get(project=PROJECT, instance=instance).execute()
        return True
    except HttpError as e:
        if e.status_code == 404:
            return False
        raise


def bound_to(sim: GcpsimProcess, region: str, service: str) -> str:
    c = clients(sim)
    svc = c.services.get_service(name=f"projects/{PROJECT}/locations/{region}/services/{service}")
    name = svc.traffic[0].revision or svc.latest_ready_revision.rsplit("/", 1)[-1]
    rev = c.revisions.get_revision(name=f"{svc.name}/revisions/{name}")
    env = {e.name: e.value for e in rev.containers[0].env}
    return str(env.get("INSTANCE_CONNECTION_NAME", ""))


async def run_with_approval(env: dict[str, str], client: Client, *args: str) -> FailoverStatus:
    """Start a failover/failback detached, approve the DNS move, return its result."""
    res = await starter(env, *args, "--detach")
    assert res.returncode == 0, show(res)
    handle = client.get_workflow_handle(WID, result_type=FailoverStatus)
    await wait_for(
        handle,
        lambda st: st.awaiting_approval or st.outcome != Outcome.RUNNING,
        WAIT,
        result_type=FailoverStatus,
    )
    # it holds the environment: no release or restore can start meanwhile
    deploy = await starter(env, "deploy", "prod", "v1.2.0")
    assert deploy.returncode == 2, show(deploy)
    assert "regional failover or failback of prod is running" in deploy.stderr, show(deploy)
    restore = await starter(env, "restore", "prod", "--backup-id", "1", "--yes")
    assert restore.returncode == 2, show(restore)
    # the DNS move needs a signed approval: a bare name does not count, nor does a signature
    # for another step (the worker's policy and keys decide, as for a restore)
    for bad, why in (
        (ApproveInput(by="release-manager", comment="go"), "no proof"),
        (await signed_approval(handle, comment="go", step=100), "another release or step"),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("approve", bad, result_type=ApproveResult)
        assert why in str(refused.value.cause), refused.value.cause
    ok = await starter(env, "approve", "prod", "--by", "release-manager", "--comment", "go")
    assert ok.returncode == 0, show(ok)
    st: FailoverStatus = await workflow_result(handle)
    return st


async def test_user_errors_are_one_line_with_exit_2(env_vars: dict[str, str]) -> None:
    cases = [
        (["failover", "prod", "--yes"], "--to-region"),
        (["failover", "prod", "--to-region", "us-east1"], "--yes"),
        (["failover", "prod", "--to-region", "us-central1", "--yes", "--version", "v1.1.0"],
         "own region"),
        (["failover", "prod", "--to-region", "us-east1", "--yes", "--version", "1.1"], "v1.2.3"),
        (["failover", "prod", "--to-region", "us-east1", "--yes", "--from", "replica",
          "--version", "v1.1.0"], "replica"),
        (["failover", "nope", "--to-region", "us-east1", "--yes"], "unknown environment"),
        (["dr-drill", "prod", "--scenario", "moon"], "--scenario"),
    ]  # fmt: skip
    for args, words in cases:
        res = await starter(env_vars, *args)
        assert res.returncode == 2, show(res)
        line = res.stderr.strip()
        assert line.startswith("error: ") and "\n" not in line, show(res)
        assert words in line, show(res)


async def test_failover_retry_and_failback(
    client: Client, task_queue: str, sim: GcpsimProcess, env_vars: dict[str, str]
) -> None:
    assert record(sim) == [CENTRAL]
    assert sim.cli("outage", "us-central1").returncode == 0
    # a failure before the DNS move: node-server's smoke test fails in us-east1
    out = sim.cli("behavior", "node-server-prod", "v1.1.0", "--smoke-fail")
    assert out.returncode == 0, out.stderr
    async with worker(client, task_queue):
        # with --cleanup, what the failed failover created is removed again
        gone = await starter(
            env_vars, "failover", "prod", "--to-region", "us-east1", "--yes", "--version",
            "v1.1.0", "--cleanup",
        )  # fmt: skip
        assert gone.returncode == 1, show(gone)
        assert "DNS: untouched" in gone.stdout and "deleted: instance" in gone.stdout, show(gone)
        assert record(sim) == [CENTRAL]
        assert not instance_exists(sim, "legal-forms-db-prod-us-east1")
        assert not service_exists(sim, "us-east1", "python-pipeline-prod")
        assert not service_exists(sim, "us-east1", "node-server-prod")
        await replays(client.get_workflow_handle(WID))

        # without it they are kept for a retry
        bad = await starter(
            env_vars, "failover", "prod", "--to-region", "us-east1", "--yes", "--version", "v1.1.0"
        )
        assert bad.returncode == 1, show(bad)
        assert "smoke test of node-server-prod in us-east1 failed" in bad.stdout, show(bad)
        assert "DNS: untouched" in bad.stdout, show(bad)
        assert "kept; a retry adopts it" in bad.stdout, show(bad)
        assert record(sim) == [CENTRAL]  # users never moved
        assert resolve(sim)["cloudRun"]["location"] == "us-central1"
        assert instance_exists(sim, "legal-forms-db-prod-us-east1")
        assert service_exists(sim, "us-east1", "python-pipeline-prod")
        await replays(client.get_workflow_handle(WID))

        assert sim.cli("behavior", "--clear").returncode == 0
        # an abort while it waits for approval: users stay where they were
        res = await starter(env_vars, "failover", "prod", "--to-region", "us-east1", "--yes",
                            "--version", "v1.1.0", "--detach")  # fmt: skip
        assert res.returncode == 0, show(res)
        handle = client.get_workflow_handle(WID, result_type=FailoverStatus)
        await wait_for(handle, lambda st: st.awaiting_approval, WAIT, result_type=FailoverStatus)
        ab = await starter(env_vars, "abort", "prod", "--reason", "rehearsal stopped")
        assert ab.returncode == 0, show(ab)
        # a failover that did not succeed ends as a FAILED execution carrying its status
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        aborted = await workflow_result(handle)
        assert aborted.outcome == Outcome.ABORTED and aborted.abort_reason
        assert record(sim) == [CENTRAL] and not aborted.dns_moved

        # the retry adopts what the earlier attempts created
        st = await run_with_approval(
            env_vars, client, "failover", "prod", "--to-region", "us-east1", "--yes",
            "--version", "v1.1.0",
        )  # fmt: skip
        assert st.outcome == Outcome.SUCCEEDED, st.error
        assert any("adopted" in e for e in st.events), st.events
        assert record(sim) == [EAST]
        ans = resolve(sim)
        assert ans["cloudRun"]["location"] == "us-east1"
        assert ans["cloudRun"]["service"] == "node-server-prod"
        assert st.dns_verified and st.dns_before == [CENTRAL] and st.dns_after == [EAST]
        new = "legal-forms-db-prod-us-east1"
        assert bound_to(sim, "us-east1", "node-server-prod") == f"{PROJECT}:us-east1:{new}"
        assert st.validation is not None and st.validation.ok
        assert all(t.rows > 0 for t in st.validation.tables)
        assert st.backup is not None and st.backup.status == "SUCCESSFUL"
        assert st.data_loss_seconds is not None and st.rpo_met is not None
        assert st.total_seconds is not None and st.rto_met
        assert [p.phase for p in st.phases] == [
            "database", "services", "awaiting_approval", "dns"
        ]  # fmt: skip
        assert any("failback prod --yes" in n for n in st.next_steps)
        await replays(client.get_workflow_handle(WID))
        await record_history(client.get_workflow_handle(WID), "failover_prod_succeeded")
        failed_over_at = st.ended_at
        assert failed_over_at is not None

        status = await starter(env_vars, "status", "prod")
        assert status.returncode == 0 and "   succeeded   " in status.stdout, show(status)

        # the application writes in us-east1 for a while; then the region comes back
        await asyncio.sleep(4)
        assert sim.cli("outage", "us-central1", "--clear").returncode == 0
        back = await run_with_approval(env_vars, client, "failback", "prod", "--yes")
        assert back.outcome == Outcome.SUCCEEDED, back.error
        assert back.mode == "failback" and back.to_region == "us-central1"
        await replays(client.get_workflow_handle(WID))
        await record_history(client.get_workflow_handle(WID), "failback_prod_succeeded")
        assert record(sim) == [CENTRAL]
        assert resolve(sim)["cloudRun"]["location"] == "us-central1"
        assert back.validation is not None and back.restored_newest is not None
        # the rows written in us-east1 during the outage are in the primary now
        assert back.restored_newest > failed_over_at
        assert bound_to(sim, "us-central1", "node-server-prod") == (
            f"{PROJECT}:us-central1:legal-forms-db-prod"
        )
        again = await starter(env_vars, "failback", "prod", "--yes")
        assert again.returncode == 2 and again.stderr.startswith("error: "), show(again)


def scratch_left(sim: GcpsimProcess) -> list[str]:
    c = clients(sim)
    names = [
        s.name
        for s in c.services.list_services(parent=f"projects/{PROJECT}/locations/us-east1")
        if "-dr-" in s.name
    ]
    items = c.sqladmin().instances().list(project=PROJECT).execute().get("items", [])
    return names + [i["name"] for i in items if "-dr-" in i["name"]]


async def test_regional_drill_always_deletes_scratch(
    client: Client, task_queue: str, sim: GcpsimProcess, env_vars: dict[str, str]
) -> None:
    async with worker(client, task_queue):
        ok = await starter(env_vars, "dr-drill", "prod", "--scenario", "regional",
                           "--to-region", "us-east1", "--version", "v1.1.0", "--json")  # fmt: skip
        assert ok.returncode == 0, show(ok)
        rep = FailoverStatus.model_validate(json.loads(ok.stdout))
        assert rep.outcome == Outcome.SUCCEEDED and rep.mode == "drill"
        assert len(rep.deleted) == 3 and rep.total_seconds is not None
        assert rep.data_loss_exact and rep.data_loss_seconds is not None
        assert not rep.dns_moved
        assert scratch_left(sim) == []

        # failure: the scratch node-server's smoke test fails
        assert (
            sim.cli("behavior", "node-server-prod-dr-*", "v1.1.0", "--smoke-fail").returncode == 0
        )
        try:
            bad = await starter(env_vars, "dr-drill", "prod", "--scenario", "regional",
                                "--version", "v1.1.0")  # fmt: skip
        finally:
            sim.cli("behavior", "--clear")
        assert bad.returncode == 1, show(bad)
        assert "smoke test" in bad.stdout, show(bad)
        assert scratch_left(sim) == []

        # cancellation while the scratch services come up
        await asyncio.sleep(1.1)  # a new scratch name (second resolution)
        started = await starter(env_vars, "dr-drill", "prod", "--scenario", "regional",
                                "--version", "v1.1.0", "--detach")  # fmt: skip
        assert started.returncode == 0, show(started)
        handle = client.get_workflow_handle(
            regional_drill_workflow_id(APP, "prod"), result_type=FailoverStatus
        )
        await wait_for(
            handle, lambda st: st.phase == Phase.SERVICES, WAIT, result_type=FailoverStatus
        )
        await handle.cancel()
        with pytest.raises(Exception):  # noqa: B017 (ends cancelled)
            await handle.result()
        st = await handle.query("status", result_type=FailoverStatus)
        assert st.outcome == Outcome.CANCELLED
        assert scratch_left(sim) == []
        await replays(handle)
        await record_history(handle, "regional_drill_cancelled")
