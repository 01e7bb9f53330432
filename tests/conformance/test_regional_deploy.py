"""`DeployService` (activities/regional.py) against the session simulator through the real
Cloud Run client: created when missing, left alone when it already serves exactly the request,
and otherwise changed with an update-mask patch (a new revision, or only the traffic when the
revision exists) waited with operations.wait, like a release's changes."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import run_v2
from google.protobuf import field_mask_pb2
from temporalio.testing import ActivityEnvironment

from activities.regional import RegionalActivities
from stagecoach.clients import Clients
from stagecoach.payloads.common import DatabaseBinding, ServiceRef, Target
from stagecoach.payloads.failover import DeployServiceInput, DeployServiceResult
from stagecoach.payloads.policy import Sizing
from testing.gcpsim import GcpsimProcess

PROJECT = "regional-conformance"
REGION = "us-east1"


@pytest.fixture(scope="module")
def target(gcpsim: GcpsimProcess) -> Target:
    return Target(kind="gcpsim", port=gcpsim.port, grpc_port=gcpsim.grpc_port)


def deploy(acts: RegionalActivities, inp: DeployServiceInput) -> DeployServiceResult:
    out: Any = ActivityEnvironment().run(acts.deploy_service, inp)
    assert isinstance(out, DeployServiceResult)
    return out


def request(target: Target, revision: str, image: str, instance: str) -> DeployServiceInput:
    return DeployServiceInput(
        ref=ServiceRef(target=target, project=PROJECT, region=REGION, service="api-prod"),
        revision=revision, image=image, sizing=Sizing(min_instances=1, max_instances=4),
        env={"MODE": "dr"}, database=DatabaseBinding(
            connection_name=f"{PROJECT}:{REGION}:{instance}"
        ),
    )  # fmt: skip


def test_deploy_service_creates_adopts_and_patches(target: Target) -> None:
    acts = RegionalActivities()
    services = Clients(target).services
    first = request(target, "api-prod-v1-0-0-fo", "example/api:v1.0.0", "db-a")
    made = deploy(acts, first)
    assert made.created and made.changed and made.revision == first.revision
    assert deploy(acts, first).changed is False  # serves exactly this: left alone

    # a field Stagecoach never sets survives the patches (no whole-Service write-back)
    svc = services.get_service(name=first.ref.name)
    op = services.update_service(
        request=run_v2.UpdateServiceRequest(
            service=run_v2.Service(name=first.ref.name, description="kept by the patch"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
    )
    op.result()

    second = request(target, "api-prod-v1-1-0-fo", "example/api:v1.1.0", "db-b")
    res = deploy(acts, second)
    assert (res.created, res.changed, res.revision) == (False, True, second.revision)
    svc = services.get_service(name=first.ref.name)
    assert svc.description == "kept by the patch"
    assert [(t.revision, t.percent) for t in svc.traffic if t.percent] == [(second.revision, 100)]
    rev = Clients(target).revisions.get_revision(name=f"{svc.name}/revisions/{second.revision}")
    env = {e.name: e.value for e in rev.containers[0].env}
    assert rev.containers[0].image == "example/api:v1.1.0"
    assert env["INSTANCE_CONNECTION_NAME"] == f"{PROJECT}:{REGION}:db-b"
    assert rev.scaling.max_instance_count == 4

    # the first revision exists: going back moves only the traffic (no new revision)
    back = deploy(acts, first)
    assert back.changed and back.revision == first.revision
    svc = services.get_service(name=first.ref.name)
    assert [(t.revision, t.percent) for t in svc.traffic if t.percent] == [(first.revision, 100)]
    assert svc.description == "kept by the patch"
