"""Cloud SQL cross-region read replicas in gcpsim, through the real sqladmin v1 discovery client
(and the real Monitoring client for the lag): what gcpsim.model.sql_replicas promises.

Self-contained: the module starts its own gcpsim, seeded from a small config whose environment
has a read replica (`database.replicas`, the gcpsim-only seed key), with a 1 s replication lag.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pg8000.native
import pytest
import requests
from google.api import metric_pb2
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import (
    MetricServiceGrpcTransport,
)
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from testing.gcpsim import GcpsimProcess, start_gcpsim, stop_gcpsim

PROJECT = "replica-conf"
PRIMARY = "db-main"
PRIMARY_REGION = "us-central1"
SEEDED_REPLICA = "db-main-replica-us-west1"
REPLICA_LAG = "cloudsql.googleapis.com/database/replication/replica_lag"
TABLES = ["cases", "parties", "party_issue_selections"]

SEED = {
    "app": "replica-conf",
    "services": [{"name": "web", "image": "us-docker.pkg.dev/{project}/app/web"}],
    "database": {"name": "legalforms", "validation": {"tables": TABLES}},
    "environments": {
        "prod": {
            "project": PROJECT,
            "region": PRIMARY_REGION,
            "database": {"instance": PRIMARY, "replicas": [{"region": "us-west1"}]},
        }
    },
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpsimProcess]:
    base = tmp_path_factory.mktemp("gcpsim-replica")
    seed = base / "seed.yaml"
    seed.write_text(json.dumps(SEED))  # JSON is YAML
    state = base / "state"
    state.mkdir()
    proc = start_gcpsim(
        state, "--reset", "--seed", str(seed), "--sql-op-seconds", "0.3",
        "--replica-lag-seconds", "1", timeout=180,
    )  # fmt: skip
    yield proc
    stop_gcpsim(proc)


@pytest.fixture(scope="module")
def sql(sim: GcpsimProcess) -> Any:
    return discovery.build(
        "sqladmin", "v1", credentials=AnonymousCredentials(), static_discovery=True,
        cache_discovery=False, client_options={"api_endpoint": sim.url + "/"},
    )  # fmt: skip


def wait_done(sql: Any, op: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while op["status"] != "DONE":
        assert time.monotonic() < deadline, f"operation {op['name']} not DONE: {op}"
        time.sleep(0.1)
        op = sql.operations().get(project=PROJECT, operation=op["name"]).execute()
    return op


def eventually(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def get(sql: Any, name: str) -> dict[str, Any]:
    inst: dict[str, Any] = sql.instances().get(project=PROJECT, instance=name).execute()
    return inst


def connect(inst: dict[str, Any]) -> pg8000.native.Connection:
    c = inst["gcpsimConnection"]
    return pg8000.native.Connection(
        c["user"], password=c["password"], host=inst["ipAddresses"][0]["ipAddress"],
        port=c["port"], database=c["databases"]["legalforms"],
    )  # fmt: skip


def insert_case(inst: dict[str, Any], title: str) -> None:
    c = connect(inst)
    try:
        c.run("INSERT INTO cases (title) VALUES (:t)", t=title)
    finally:
        c.close()


def has_case(inst: dict[str, Any], title: str) -> bool:
    c = connect(inst)
    try:
        return bool(c.run("SELECT count(*) FROM cases WHERE title = :t", t=title)[0][0])
    finally:
        c.close()


def insert_replica(sql: Any, name: str, region: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "region": region,
        "masterInstanceName": PRIMARY,
        "instanceType": "READ_REPLICA_INSTANCE",
        "replicaConfiguration": {"kind": "sql#replicaConfiguration", "failoverTarget": False},
        **extra,
    }
    op: dict[str, Any] = sql.instances().insert(project=PROJECT, body=body).execute()
    return op


def status(err: pytest.ExceptionInfo[HttpError]) -> int:
    return int(err.value.resp.status)


# ----------------------------------------------------------------------------------- tests


def test_seeded_replica_is_a_read_replica_of_the_primary(sim: GcpsimProcess, sql: Any) -> None:
    replica = get(sql, SEEDED_REPLICA)
    assert replica["state"] == "RUNNABLE"
    assert replica["instanceType"] == "READ_REPLICA_INSTANCE"
    assert replica["masterInstanceName"] == PRIMARY
    assert replica["region"] == "us-west1"
    assert replica["connectionName"] == f"{PROJECT}:us-west1:{SEEDED_REPLICA}"
    assert SEEDED_REPLICA in get(sql, PRIMARY)["replicaNames"]


def test_insert_creates_a_cross_region_replica_listed_by_the_primary(sql: Any) -> None:
    name = f"rep-{uuid.uuid4().hex[:6]}"
    op = insert_replica(sql, name, "us-east1")
    assert op["operationType"] == "CREATE_REPLICA"
    done = wait_done(sql, op)
    assert "error" not in done, done
    replica = get(sql, name)
    primary = get(sql, PRIMARY)
    assert replica["state"] == "RUNNABLE"
    assert replica["instanceType"] == "READ_REPLICA_INSTANCE"
    assert replica["masterInstanceName"] == PRIMARY
    assert replica["replicaConfiguration"]["kind"] == "sql#replicaConfiguration"
    assert replica["region"] == "us-east1" != primary["region"]
    assert replica["databaseVersion"] == primary["databaseVersion"]
    assert replica["settings"]["tier"] == primary["settings"]["tier"]
    assert replica["settings"]["backupConfiguration"]["enabled"] is False
    assert primary["instanceType"] == "CLOUD_SQL_INSTANCE"
    assert name in primary["replicaNames"]
    assert "masterInstanceName" not in primary
    op = sql.instances().delete(project=PROJECT, instance=name).execute()
    assert "error" not in wait_done(sql, op)
    assert name not in get(sql, PRIMARY).get("replicaNames", [])


def test_replica_follows_the_primary_and_refuses_writes(sql: Any) -> None:
    primary, replica = get(sql, PRIMARY), get(sql, SEEDED_REPLICA)
    marker = f"follow-{uuid.uuid4().hex[:8]}"
    insert_case(primary, marker)
    eventually(lambda: has_case(replica, marker), "the primary's row reaches the replica")

    with pytest.raises(pg8000.native.DatabaseError, match="read-only transaction"):
        insert_case(replica, f"refused-{uuid.uuid4().hex[:8]}")
    for call in (
        lambda: sql.backupRuns().insert(project=PROJECT, instance=SEEDED_REPLICA, body={}),
        lambda: sql.instances().clone(
            project=PROJECT,
            instance=SEEDED_REPLICA,
            body={"cloneContext": {"destinationInstanceName": "never-made"}},
        ),
        lambda: sql.instances().restoreBackup(
            project=PROJECT,
            instance=SEEDED_REPLICA,
            body={"restoreBackupContext": {"backupRunId": "1", "instanceId": PRIMARY}},
        ),
    ):
        with pytest.raises(HttpError) as err:
            call().execute()
        assert status(err) == 400


def test_replica_rules(sql: Any) -> None:
    with pytest.raises(HttpError) as err:  # a master, but not a replica's type
        insert_replica(sql, "rep-bad", "us-east1", instanceType="CLOUD_SQL_INSTANCE")
    assert status(err) == 400
    with pytest.raises(HttpError) as err:
        sql.instances().promoteReplica(project=PROJECT, instance=PRIMARY).execute()
    assert status(err) == 400  # not a replica
    with pytest.raises(HttpError) as err:
        sql.instances().delete(project=PROJECT, instance=PRIMARY).execute()
    assert status(err) == 400  # it has replicas
    with pytest.raises(HttpError) as err:  # GCP: a restore target's replicas go first
        body = {"restoreBackupContext": {"backupRunId": "1", "instanceId": PRIMARY}}
        sql.instances().restoreBackup(project=PROJECT, instance=PRIMARY, body=body).execute()
    assert status(err) == 400 and "read replicas" in str(err.value)
    with pytest.raises(HttpError) as err:
        insert_replica(sql, "rep-orphan", "us-east1", masterInstanceName="no-such-db")
    assert status(err) == 404


def test_replication_lag_is_served_by_monitoring(sim: GcpsimProcess) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{sim.grpc_port}")
    mon = monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))
    end = datetime.now(UTC)
    series = list(
        mon.list_time_series(
            request={
                "name": f"projects/{PROJECT}",
                "filter": f'metric.type = "{REPLICA_LAG}" AND '
                f'resource.labels.database_id = "{PROJECT}:{SEEDED_REPLICA}"',
                "interval": {"end_time": end, "start_time": end - timedelta(minutes=2)},
            }
        )
    )
    assert len(series) == 1
    ts = series[0]
    assert ts.resource.type == "cloudsql_database"
    assert ts.resource.labels["region"] == "us-west1"
    assert ts.metric_kind == metric_pb2.MetricDescriptor.MetricKind.GAUGE
    assert ts.value_type == metric_pb2.MetricDescriptor.ValueType.DOUBLE
    lag = ts.points[0].value.double_value
    assert math.isfinite(lag) and lag >= 0


def test_promote_during_an_outage_of_the_primary_region(sim: GcpsimProcess, sql: Any) -> None:
    name = f"rep-{uuid.uuid4().hex[:6]}"
    assert "error" not in wait_done(sql, insert_replica(sql, name, "us-east1"))
    primary, replica = get(sql, PRIMARY), get(sql, name)
    before = f"before-{uuid.uuid4().hex[:8]}"
    insert_case(primary, before)
    eventually(lambda: has_case(replica, before), "the row written before the outage arrives")

    requests.post(f"{sim.url}/_sim/outages", json={"region": PRIMARY_REGION}, timeout=10)
    try:
        after = f"after-{uuid.uuid4().hex[:8]}"
        insert_case(primary, after)  # written after replication stopped: lost on failover
        with pytest.raises(HttpError) as err:
            get(sql, PRIMARY)
        assert status(err) == 503  # the primary's region is out ...
        op = sql.instances().promoteReplica(project=PROJECT, instance=name).execute()
        assert op["operationType"] == "PROMOTE_REPLICA"  # ... the replica's is not
        assert "error" not in wait_done(sql, op)
        promoted = get(sql, name)
        assert promoted["instanceType"] == "CLOUD_SQL_INSTANCE"
        assert "masterInstanceName" not in promoted
        assert "replicaConfiguration" not in promoted
        assert has_case(promoted, before)
        assert not has_case(promoted, after)
        mine = f"promoted-{uuid.uuid4().hex[:8]}"
        insert_case(promoted, mine)  # a standalone primary takes writes
        assert has_case(promoted, mine)
    finally:
        requests.delete(f"{sim.url}/_sim/outages/{PRIMARY_REGION}", timeout=10)
    assert name not in get(sql, PRIMARY).get("replicaNames", [])
    assert "error" not in wait_done(
        sql, sql.instances().delete(project=PROJECT, instance=name).execute()
    )


def test_cli_creates_and_lists_a_replica(sim: GcpsimProcess, sql: Any) -> None:
    r = sim.cli("replica", "create", PRIMARY, "--region", "europe-west1")
    assert r.returncode == 0, r.stderr
    name = f"{PRIMARY}-replica-europe-west1"
    assert name in r.stdout
    replica = get(sql, name)
    assert replica["instanceType"] == "READ_REPLICA_INSTANCE"
    assert replica["region"] == "europe-west1"
    listed = sim.cli("replica")
    assert listed.returncode == 0, listed.stderr
    assert f"{PROJECT}/{name} of {PRIMARY}" in listed.stdout
    again = sim.cli("replica", "create", PRIMARY, "--region", "europe-west1")
    assert again.returncode == 2 and "already exists" in again.stderr
    usage = sim.cli("replica", "create", PRIMARY)
    assert usage.returncode == 2
