"""`PromoteReplica` (activities/replicas.py) against the session simulator through the real
sqladmin v1 and Monitoring v3 clients: it reads the replica's lag from Monitoring, promotes
it with `instances.promoteReplica`, adopts a replica promoted already, and refuses what is not
the configured replica with a non-retryable error that names the fix."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.replicas import ReplicaActivities
from stagecoach.payloads.common import InstanceRef, Target
from stagecoach.payloads.failover import PromoteReplicaInput, PromoteReplicaResult
from testing.cloudsql import DEV_DB, DEV_PROJECT, sqladmin, wait_ok
from testing.gcpsim import GcpsimProcess

REGION = "us-east1"


def promote(inp: PromoteReplicaInput) -> PromoteReplicaResult:
    out: Any = ActivityEnvironment().run(ReplicaActivities().promote_replica, inp)
    assert isinstance(out, PromoteReplicaResult)
    return out


@pytest.fixture
def replica(gcpsim: GcpsimProcess) -> Any:
    sql = sqladmin(gcpsim.url)
    name = f"{DEV_DB}-rep-{uuid.uuid4().hex[:6]}"
    body = {
        "name": name,
        "region": REGION,
        "masterInstanceName": DEV_DB,
        "instanceType": "READ_REPLICA_INSTANCE",
        "replicaConfiguration": {},
    }
    wait_ok(sql, DEV_PROJECT, sql.instances().insert(project=DEV_PROJECT, body=body).execute())
    yield name
    wait_ok(sql, DEV_PROJECT, sql.instances().delete(project=DEV_PROJECT, instance=name).execute())


def test_promote_reads_the_lag_promotes_and_adopts(gcpsim: GcpsimProcess, replica: str) -> None:
    target = Target(kind="gcpsim", port=gcpsim.port, grpc_port=gcpsim.grpc_port)
    ref = InstanceRef(target=target, project=DEV_PROJECT, instance=replica)
    first = promote(PromoteReplicaInput(ref=ref, region=REGION, primary=DEV_DB))
    assert first.promoted and first.instance == replica and first.region == REGION
    assert first.lag_seconds is not None and first.lag_seconds >= 0  # read before promoting
    assert first.lag_at is not None
    inst = sqladmin(gcpsim.url).instances().get(project=DEV_PROJECT, instance=replica).execute()
    assert inst["instanceType"] == "CLOUD_SQL_INSTANCE" and "masterInstanceName" not in inst
    again = promote(
        PromoteReplicaInput(ref=ref, region=REGION, primary=DEV_DB)
    )  # a retry adopts it
    assert not again.promoted and again.lag_seconds is None


def test_promote_refuses_what_is_not_the_configured_replica(
    gcpsim: GcpsimProcess, replica: str
) -> None:
    target = Target(kind="gcpsim", port=gcpsim.port, grpc_port=gcpsim.grpc_port)
    missing = InstanceRef(target=target, project=DEV_PROJECT, instance="no-such-replica")
    with pytest.raises(ApplicationError) as err:
        promote(PromoteReplicaInput(ref=missing, region=REGION))
    assert err.value.type == "ReplicaNotFound" and err.value.non_retryable
    assert "database.replicas" in err.value.message
    ref = InstanceRef(target=target, project=DEV_PROJECT, instance=replica)
    with pytest.raises(ApplicationError) as err:
        promote(PromoteReplicaInput(ref=ref, region="europe-west1"))
    assert err.value.type == "ReplicaElsewhere" and err.value.non_retryable
    primary = InstanceRef(target=target, project=DEV_PROJECT, instance=DEV_DB)
    with pytest.raises(ApplicationError) as err:  # the primary itself is never "adopted"
        promote(PromoteReplicaInput(ref=primary, region="us-central1", primary=DEV_DB))
    assert err.value.type == "NotAReplica"
    inst = sqladmin(gcpsim.url).instances().get(project=DEV_PROJECT, instance=replica).execute()
    assert inst["instanceType"] == "READ_REPLICA_INSTANCE"  # nothing was promoted
