"""`failover --from replica` end to end: prod configured with a cross-region read replica in
us-east1 (`environments.prod.database.replicas`), gcpsim seeded with it, us-central1 out. The
failover promotes the replica (reading its replication lag from Monitoring first), creates no
instance, binds the services in us-east1 to the promoted replica, moves DNS after a signed
approval, and reports the data-loss window against the RPO; the rows the replica had received
are there, and it takes writes. The history replays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from stagecoach.payloads.common import Outcome
from testing.cli import show, starter, starter_env
from testing.gcpsim import GcpsimProcess, start_seeded_gcpsim, stop_gcpsim
from testing.histories import replays
from testing.paths import DEPLOY_YAML
from testing.releases import prod_with_replica, worker, worker_config
from tests.e2e.test_failover import (
    CENTRAL,
    EAST,
    PROJECT,
    WID,
    bound_to,
    clients,
    instance_exists,
    record,
    resolve,
    run_with_approval,
)

pytestmark = pytest.mark.asyncio

REPLICA = "legal-forms-db-prod-replica-us-east1"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replica-config") / "deploy.yaml"
    return worker_config(path, prod_with_replica)


@pytest.fixture(scope="module")
def rsim(tmp_path_factory: pytest.TempPathFactory, config: Path) -> Iterator[GcpsimProcess]:
    s = start_seeded_gcpsim(tmp_path_factory.mktemp("gcpsim-replica"), config)
    yield s
    stop_gcpsim(s)


@pytest.fixture
def renv(
    temporal_address: str, task_queue: str, rsim: GcpsimProcess, tmp_path: Path, config: Path
) -> dict[str, str]:
    return starter_env(
        temporal_address, task_queue, rsim, tmp_path / "home", STAGECOACH_CONFIG=str(config)
    )


def instance(sim: GcpsimProcess, name: str) -> dict[str, Any]:
    out: dict[str, Any] = (
        clients(sim).sqladmin().instances().get(project=PROJECT, instance=name).execute()
    )
    return out


async def test_failover_from_replica_promotes_it(
    client: Client, task_queue: str, rsim: GcpsimProcess, renv: dict[str, str], config: Path
) -> None:
    assert config != DEPLOY_YAML
    assert instance(rsim, REPLICA)["instanceType"] == "READ_REPLICA_INSTANCE"
    assert rsim.cli("outage", "us-central1").returncode == 0
    async with worker(client, task_queue, config=config):
        st = await run_with_approval(
            renv, client, "failover", "prod", "--to-region", "us-east1", "--yes",
            "--from", "replica", "--version", "v1.1.0",
        )  # fmt: skip
        assert st.outcome == Outcome.SUCCEEDED, st.error
        assert st.instance == REPLICA and st.backup is None and not st.instance_created
        assert st.replica_lag_seconds is not None, st.events
        assert any(f"read replica {REPLICA} promoted" in e for e in st.events), st.events
        promoted = instance(rsim, REPLICA)
        assert promoted["instanceType"] == "CLOUD_SQL_INSTANCE"
        assert "masterInstanceName" not in promoted
        assert not instance_exists(rsim, "legal-forms-db-prod-us-east1")  # nothing restored
        assert bound_to(rsim, "us-east1", "node-server-prod") == f"{PROJECT}:us-east1:{REPLICA}"
        assert st.validation is not None and st.validation.ok
        assert all(t.rows > 0 for t in st.validation.tables)  # what the replica had received
        assert st.data_loss_seconds is not None and st.rpo_met is not None
        assert record(rsim) == [EAST] and resolve(rsim)["cloudRun"]["location"] == "us-east1"
        assert any("promoted: a standalone primary now" in x for x in st.left_in), st.left_in
        assert any("recreate the read replica" in n for n in st.next_steps), st.next_steps
        await replays(client.get_workflow_handle(WID))
        status = await starter(renv, "status", "prod")
        assert status.returncode == 0, show(status)
        assert f"{REPLICA} (us-east1) <- read replica of legal-forms-db-prod" in status.stdout
        # the failback carries the promoted replica's rows back into the primary, DNS back
        assert rsim.cli("outage", "us-central1", "--clear").returncode == 0
        back = await run_with_approval(renv, client, "failback", "prod", "--yes")
        assert back.outcome == Outcome.SUCCEEDED, back.error
        assert back.source_instance == REPLICA and back.backup is not None
        assert record(rsim) == [CENTRAL]
        assert bound_to(rsim, "us-central1", "node-server-prod") == (
            f"{PROJECT}:us-central1:legal-forms-db-prod"
        )
        await replays(client.get_workflow_handle(WID))
