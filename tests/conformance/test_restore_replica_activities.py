"""`ListReplicas`, `DeleteReplica` and `CreateReplica` (activities/replicas.py), what a restore
into an instance with read replicas needs, against the session simulator through the real
sqladmin v1 client: the replicas are read from the primary's `replicaNames`; a delete waits until
the replica is gone, resumes an earlier attempt's operation and counts a replica already gone as
deleted; a create recreates the replica with its region and tier, waited until RUNNABLE, and
adopts one that exists already; after the delete Cloud SQL restores a backup into the primary,
which it refuses while the replica is there. Nothing that is not a replica of the given primary
is ever deleted, and a protected replica is refused with the fix.

The primary is a clone of the seeded dev instance in a project of this module's own, so no other
test sees its replicas."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from googleapiclient.errors import HttpError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.replicas import ReplicaActivities
from stagecoach.payloads.common import InstanceRef, Target
from stagecoach.payloads.sql import OperationResult, ReplicaInfo, ReplicaInput
from testing.cloudsql import OwnInstances, sqladmin, wait_ok
from testing.gcpsim import GcpsimProcess

PROJECT = "restore-replicas-conf"
REGION = "us-east1"
TIER = "db-custom-2-7680"


def run(fn: Any, arg: Any, prior: dict[str, Any] | None = None) -> Any:
    """Run an activity; `prior`: the heartbeat details of an earlier attempt."""
    env = ActivityEnvironment()
    if prior is not None:
        env.info = dataclasses.replace(env.info, heartbeat_details=[prior], attempt=2)
    return env.run(fn, arg)


@pytest.fixture(scope="module")
def own(gcpsim: GcpsimProcess) -> Iterator[OwnInstances]:
    own = OwnInstances(sqladmin(gcpsim.url), PROJECT)
    yield own
    own.names.reverse()  # replicas (added later) before their primary
    own.cleanup()


@pytest.fixture(scope="module")
def primary(gcpsim: GcpsimProcess, own: OwnInstances) -> InstanceRef:
    target = Target(kind="gcpsim", port=gcpsim.port, grpc_port=gcpsim.grpc_port)
    return InstanceRef(target=target, project=PROJECT, instance=own.clone("restore-primary"))


def insert_replica(own: OwnInstances, primary: str, **settings: Any) -> str:
    name = f"{primary}-rep-{uuid.uuid4().hex[:6]}"
    body = {
        "name": name,
        "region": REGION,
        "masterInstanceName": primary,
        "instanceType": "READ_REPLICA_INSTANCE",
        "replicaConfiguration": {},
        "settings": {"tier": TIER, **settings},
    }
    own.names.append(name)
    own.wait_ok(own.sql.instances().insert(project=PROJECT, body=body).execute())
    return name


def gone(own: OwnInstances, name: str) -> bool:
    try:
        own.get(name)
    except HttpError as e:
        return e.status_code == 404
    return False


def test_list_delete_restore_recreate(own: OwnInstances, primary: InstanceRef) -> None:
    acts = ReplicaActivities()
    assert run(acts.list_replicas, primary) == []
    name = insert_replica(own, primary.instance)
    found: list[ReplicaInfo] = run(acts.list_replicas, primary)
    assert [(r.name, r.project, r.region, r.tier, r.state) for r in found] == [
        (name, PROJECT, REGION, TIER, "RUNNABLE")
    ]
    replica = found[0]
    assert replica.database_version == own.get(primary.instance)["databaseVersion"]

    # Cloud SQL's rule: no restore into an instance with read replicas
    backup = own.wait_ok(
        own.sql.backupRuns().insert(project=PROJECT, instance=primary.instance, body={}).execute()
    )["backupContext"]["backupId"]
    restore = {"restoreBackupContext": {"backupRunId": backup, "instanceId": primary.instance}}
    with pytest.raises(HttpError) as err:
        own.sql.instances().restoreBackup(
            project=PROJECT, instance=primary.instance, body=restore
        ).execute()
    assert err.value.status_code == 400 and "read replicas" in str(err.value)

    deleted: OperationResult = run(
        acts.delete_replica, ReplicaInput(primary=primary, replica=replica)
    )
    assert deleted.operation and gone(own, name)
    assert "replicaNames" not in own.get(primary.instance)
    assert run(acts.list_replicas, primary) == []
    again = run(acts.delete_replica, ReplicaInput(primary=primary, replica=replica))
    assert again.operation == ""  # gone already: deleted

    # now the restore is accepted
    own.wait_ok(
        own.sql.instances()
        .restoreBackup(project=PROJECT, instance=primary.instance, body=restore)
        .execute()
    )

    made: ReplicaInfo = run(acts.create_replica, ReplicaInput(primary=primary, replica=replica))
    assert (made.name, made.region, made.tier, made.state) == (name, REGION, TIER, "RUNNABLE")
    inst = own.get(name)
    assert inst["instanceType"] == "READ_REPLICA_INSTANCE"
    assert inst["masterInstanceName"] == primary.instance and inst["region"] == REGION
    assert own.get(primary.instance)["replicaNames"] == [name]
    created = inst["createTime"]
    adopted = run(acts.create_replica, ReplicaInput(primary=primary, replica=replica))
    assert adopted.state == "RUNNABLE" and own.get(name)["createTime"] == created  # not made twice


def test_a_retry_adopts_the_operation_under_way(own: OwnInstances, primary: InstanceRef) -> None:
    """An attempt that died after asking for the delete (its operation in the heartbeat) or
    while Cloud SQL was still creating the replica: the retry waits for that, asks for nothing
    twice."""
    acts = ReplicaActivities()
    name = insert_replica(own, primary.instance)
    replica = next(r for r in run(acts.list_replicas, primary) if r.name == name)
    op = own.sql.instances().delete(project=PROJECT, instance=name).execute()
    prior = {"delete_replica": f"{PROJECT}:{name}", "op": op["name"], "started": time.time()}
    res = run(acts.delete_replica, ReplicaInput(primary=primary, replica=replica), prior)
    assert res.operation == op["name"] and gone(own, name)

    body = {
        "name": name, "region": REGION, "masterInstanceName": primary.instance,
        "replicaConfiguration": {}, "settings": {"tier": TIER},
    }  # fmt: skip
    op = own.sql.instances().insert(project=PROJECT, body=body).execute()
    prior = {"create_replica": f"{PROJECT}:{name}", "op": op["name"], "started": time.time()}
    made = run(acts.create_replica, ReplicaInput(primary=primary, replica=replica), prior)
    assert made.state == "RUNNABLE" and own.get(name)["masterInstanceName"] == primary.instance
    assert wait_ok(own.sql, PROJECT, op)["status"] == "DONE"  # the one insert there was
    created = own.get(name)["createTime"]

    # a replica still being deleted (a person, or an earlier run) is waited out, then created
    own.sql.instances().delete(project=PROJECT, instance=name).execute()
    made = run(acts.create_replica, ReplicaInput(primary=primary, replica=replica))
    assert made.state == "RUNNABLE" and own.get(name)["createTime"] != created
    run(acts.delete_replica, ReplicaInput(primary=primary, replica=replica))


def test_refuses_what_is_not_its_replica(own: OwnInstances, primary: InstanceRef) -> None:
    acts = ReplicaActivities()
    # the primary itself, named as a replica: never deleted, never "adopted"
    itself = ReplicaInfo(name=primary.instance, project=PROJECT, region="us-central1")
    with pytest.raises(ApplicationError) as err:
        run(acts.delete_replica, ReplicaInput(primary=primary, replica=itself))
    assert err.value.type == "NotAReplica" and err.value.non_retryable
    with pytest.raises(ApplicationError) as err:
        run(acts.create_replica, ReplicaInput(primary=primary, replica=itself))
    assert err.value.type == "NameTaken" and "gcloud sql instances create" in err.value.message
    assert own.get(primary.instance)["state"] == "RUNNABLE"

    # a protected replica: refused with the fix, left as it is
    name = insert_replica(own, primary.instance, deletionProtectionEnabled=True)
    replica = next(r for r in run(acts.list_replicas, primary) if r.name == name)
    assert replica.deletion_protection
    with pytest.raises(ApplicationError) as err:
        run(acts.delete_replica, ReplicaInput(primary=primary, replica=replica))
    assert err.value.type == "FailedPrecondition"
    assert f"gcloud sql instances patch {name} --no-deletion-protection" in err.value.message
    assert own.get(name)["state"] == "RUNNABLE"
    own.wait_ok(
        own.sql.instances()
        .patch(
            project=PROJECT, instance=name, body={"settings": {"deletionProtectionEnabled": False}}
        )
        .execute()
    )
    run(acts.delete_replica, ReplicaInput(primary=primary, replica=replica))
    assert gone(own, name)

    with pytest.raises(ApplicationError) as err:
        run(acts.list_replicas, primary.model_copy(update={"instance": "no-such-db"}))
    assert err.value.type == "NotFound" and err.value.non_retryable
