"""Cloud Run Admin v2 conformance: gcpsim driven by the real `google.cloud.run_v2` REST clients.

No hand-written HTTP: every call goes through ServicesClient / RevisionsClient exactly as the
orchestrator makes it. Destructive tests create their own services so they do not interfere.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions, operation
from google.cloud import run_v2
from google.protobuf import duration_pb2

from testing.cloudrun import run_revisions, run_services
from testing.gcpsim import GcpsimProcess, start_gcpsim, stop_gcpsim

PROJECT = "gcpsim-conformance"
LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
SEEDED = "projects/legal-forms-dev/locations/us-central1/services/node-server-dev"
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED
FAILED = run_v2.Condition.State.CONDITION_FAILED
TIMEOUT = 30


def _clients(sim: GcpsimProcess) -> tuple[run_v2.ServicesClient, run_v2.RevisionsClient]:
    return run_services(sim), run_revisions(sim)


@pytest.fixture(scope="module")
def clients(gcpsim: GcpsimProcess) -> tuple[run_v2.ServicesClient, run_v2.RevisionsClient]:
    return _clients(gcpsim)


@pytest.fixture(scope="module")
def services(
    clients: tuple[run_v2.ServicesClient, run_v2.RevisionsClient],
) -> run_v2.ServicesClient:
    return clients[0]


@pytest.fixture(scope="module")
def revisions(
    clients: tuple[run_v2.ServicesClient, run_v2.RevisionsClient],
) -> run_v2.RevisionsClient:
    return clients[1]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _image(service: str, version: str) -> str:
    return f"us-docker.pkg.dev/{PROJECT}/app/{service}:{version}"


def _create(
    services: run_v2.ServicesClient, service_id: str, version: str = "v1.0.0"
) -> run_v2.Service:
    svc = run_v2.Service(
        template=run_v2.RevisionTemplate(
            containers=[run_v2.Container(image=_image(service_id, version))]
        )
    )
    op = services.create_service(parent=PARENT, service=svc, service_id=service_id)
    result = op.result(timeout=TIMEOUT)
    assert isinstance(result, run_v2.Service)
    return result


def _new_service(services: run_v2.ServicesClient, prefix: str) -> tuple[str, str, run_v2.Service]:
    """A service of the test's own, created at v1.0.0: (service id, full name, the result)."""
    sid = _unique(prefix)
    return sid, f"{PARENT}/services/{sid}", _create(services, sid)


def _with_image(services: run_v2.ServicesClient, name: str, version: str) -> run_v2.Service:
    """The service as it is now, its container image changed to `version` (not sent yet)."""
    svc = services.get_service(name=name)
    svc.template.containers[0].image = _image(_short(name), version)
    return svc


def _pin(services: run_v2.ServicesClient, name: str, revision: str) -> run_v2.Service:
    """get -> all traffic to `revision` (short name) -> update; returns the operation result."""
    svc = services.get_service(name=name)
    svc.traffic = [run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=100)]
    result: run_v2.Service = services.update_service(service=svc).result(timeout=TIMEOUT)
    return result


def _resume(services: run_v2.ServicesClient, op_name: str) -> operation.Operation:
    """An operation future rebuilt from nothing but the operation's name."""
    raw = services.get_operation(request={"name": op_name})
    return operation.from_gapic(
        raw,
        services._transport.operations_client,
        run_v2.Service,
        metadata_type=run_v2.Service,
    )


def _sim_entry(sim: GcpsimProcess, name: str) -> dict[str, Any]:
    """gcpsim's own view of a service (`python -m gcpsim show --json`)."""
    state = json.loads(sim.cli("show", "--json").stdout)
    [entry] = [s for s in state["services"] if s["name"] == name]
    return entry


def _deploy(
    services: run_v2.ServicesClient, name: str, version: str
) -> tuple[run_v2.Service, run_v2.Service]:
    """get -> new image -> update; returns (service before, operation result)."""
    before = services.get_service(name=name)
    svc = _with_image(services, name, version)
    svc.template.revision = ""
    return before, services.update_service(service=svc).result(timeout=TIMEOUT)


def _short(full: str) -> str:
    return full.rsplit("/", 1)[1]


def _fault(sim: GcpsimProcess, *args: str) -> str:
    out = sim.cli("fault", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[1]  # "fault <id> added: {...}"


@pytest.fixture
def faults(gcpsim: GcpsimProcess) -> Iterator[list[str]]:
    """Fault ids added by a test; removed afterwards (only those, by id)."""
    ids: list[str] = []
    yield ids
    for rule_id in ids:
        gcpsim.cli("fault", "--clear", "--id", rule_id)


# --------------------------------------------------------------------------- services


def test_get_seeded_service(services: run_v2.ServicesClient) -> None:
    svc = services.get_service(name=SEEDED)
    assert svc.name == SEEDED
    assert svc.generation == 1 and svc.observed_generation == 1
    assert not svc.reconciling
    assert svc.terminal_condition.type_ == "Ready"
    assert svc.terminal_condition.state == SUCCEEDED
    assert svc.template.containers[0].image.endswith("/node-server:v1.1.0")
    assert svc.template.scaling.max_instance_count == 3  # dev sizing from deploy.yaml
    assert svc.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL
    assert svc.latest_ready_revision == svc.latest_created_revision
    assert re.fullmatch(r"node-server-dev-\d{5}-[a-z]{3}", _short(svc.latest_ready_revision))
    assert [(t.type_, t.percent) for t in svc.traffic] == [(LATEST, 100)]
    [status] = svc.traffic_statuses
    assert status.percent == 100 and status.revision == _short(svc.latest_ready_revision)
    assert svc.uri and svc.urls == [svc.uri]
    assert svc.etag
    secret = [e for e in svc.template.containers[0].env if e.name == "DATABASE_PASSWORD"]
    assert secret[0].value_source.secret_key_ref.secret == "legal-forms-db-password"


def test_get_missing_service(services: run_v2.ServicesClient) -> None:
    with pytest.raises(exceptions.NotFound, match="does not exist"):
        services.get_service(name=f"{PARENT}/services/no-such-service")


def test_list_services_paged(services: run_v2.ServicesClient) -> None:
    pager = services.list_services(
        request=run_v2.ListServicesRequest(
            parent="projects/legal-forms-dev/locations/us-central1", page_size=1
        )
    )
    pages = list(pager.pages)
    names = [s.name for page in pages for s in page.services]
    assert len(pages) == len(names) >= 2
    assert SEEDED in names
    assert names == sorted(names)


def test_create_get_delete(services: run_v2.ServicesClient) -> None:
    sid, name, created = _new_service(services, "create")
    assert created.name == name
    assert created.latest_ready_revision.startswith(f"{name}/revisions/{sid}-00001-")
    assert created.terminal_condition.state == SUCCEEDED
    assert created.traffic_statuses[0].percent == 100
    with pytest.raises(exceptions.Conflict, match="already exists"):
        _create(services, sid)
    got = services.get_service(name=name)
    assert got.uid == created.uid
    deleted = services.delete_service(name=name).result(timeout=TIMEOUT)
    assert deleted.name == name
    with pytest.raises(exceptions.NotFound):
        services.get_service(name=name)
    with pytest.raises(exceptions.NotFound):
        services.delete_service(name=name)


def test_create_validate_only_and_bad_id(services: run_v2.ServicesClient) -> None:
    sid = _unique("validate")
    svc = run_v2.Service(
        template=run_v2.RevisionTemplate(containers=[run_v2.Container(image=_image(sid, "v1"))])
    )
    req = run_v2.CreateServiceRequest(
        parent=PARENT, service=svc, service_id=sid, validate_only=True
    )
    preview = services.create_service(request=req).result(timeout=TIMEOUT)
    assert preview.name == f"{PARENT}/services/{sid}"
    with pytest.raises(exceptions.NotFound):
        services.get_service(name=f"{PARENT}/services/{sid}")
    with pytest.raises(exceptions.BadRequest, match="serviceId"):
        services.create_service(parent=PARENT, service=svc, service_id="Bad_Name")
    with pytest.raises(exceptions.BadRequest, match="image"):
        services.create_service(parent=PARENT, service=run_v2.Service(), service_id=sid)


def test_delete_with_stale_etag(services: run_v2.ServicesClient) -> None:
    _, name, old = _new_service(services, "deltag")
    _deploy(services, name, "v2.0.0")
    with pytest.raises(exceptions.Conflict, match="etag"):
        services.delete_service(request=run_v2.DeleteServiceRequest(name=name, etag=old.etag))
    current = services.get_service(name=name)
    req = run_v2.DeleteServiceRequest(name=name, etag=current.etag)
    services.delete_service(request=req).result(timeout=TIMEOUT)


def test_update_new_image_creates_revision(
    services: run_v2.ServicesClient, revisions: run_v2.RevisionsClient
) -> None:
    sid, name, first = _new_service(services, "deploy")
    svc = _with_image(services, name, "v2.0.0")
    op = services.update_service(service=svc)
    assert not op.done()  # the PATCH answer: still reconciling
    assert op.metadata.reconciling
    assert op.metadata.latest_ready_revision == first.latest_ready_revision
    assert op.operation.name.startswith(f"{PARENT}/operations/")
    result = op.result(timeout=TIMEOUT)
    assert result.generation == 2 and result.observed_generation == 2
    assert result.latest_ready_revision == result.latest_created_revision
    assert result.latest_ready_revision != first.latest_ready_revision
    assert re.fullmatch(rf"{sid}-00002-[a-z]{{3}}", _short(result.latest_ready_revision))
    assert [(t.revision, t.percent) for t in result.traffic_statuses] == [
        (_short(result.latest_ready_revision), 100)
    ]
    assert not result.reconciling
    assert result.etag != first.etag
    got = services.get_service(name=name)
    assert got.latest_ready_revision == result.latest_ready_revision
    rev = revisions.get_revision(name=result.latest_ready_revision)
    assert rev.containers[0].image == _image(sid, "v2.0.0")
    assert rev.service == sid
    ready = [c for c in rev.conditions if c.type_ == "Ready"]
    assert ready[0].state == SUCCEEDED
    listed = list(revisions.list_revisions(parent=name))
    assert [r.name for r in listed] == [
        result.latest_ready_revision,
        first.latest_ready_revision,
    ]  # newest first


def test_traffic_only_update_creates_no_revision(
    services: run_v2.ServicesClient, revisions: run_v2.RevisionsClient
) -> None:
    sid, name, first = _new_service(services, "traffic")
    rev1 = _short(first.latest_ready_revision)
    svc = services.get_service(name=name)
    svc.traffic = [run_v2.TrafficTarget(type_=REVISION, revision=rev1, percent=100, tag="stable")]
    result = services.update_service(service=svc).result(timeout=TIMEOUT)
    assert result.latest_created_revision == first.latest_created_revision
    assert result.generation == 2
    [status] = result.traffic_statuses
    assert (status.type_, status.revision, status.percent, status.tag) == (
        REVISION,
        rev1,
        100,
        "stable",
    )
    assert status.uri.endswith(f"/{sid}/tag/stable")
    assert len(list(revisions.list_revisions(parent=name))) == 1
    # The same request again changes nothing: no revision, no new generation.
    again = services.update_service(service=services.get_service(name=name)).result(TIMEOUT)
    assert again.generation == 2
    assert again.latest_created_revision == first.latest_created_revision


def test_canary_split_with_tag(services: run_v2.ServicesClient) -> None:
    sid, name, first = _new_service(services, "canary")
    stable = _short(first.latest_ready_revision)
    svc = _with_image(services, name, "v2.0.0")
    svc.template.revision = f"{sid}-v2"
    svc.traffic = [
        run_v2.TrafficTarget(type_=REVISION, revision=stable, percent=90),
        run_v2.TrafficTarget(type_=REVISION, revision=f"{sid}-v2", percent=10, tag="canary"),
    ]
    result = services.update_service(service=svc).result(timeout=TIMEOUT)
    assert _short(result.latest_ready_revision) == f"{sid}-v2"
    split = {(t.revision, t.percent, t.tag) for t in result.traffic_statuses}
    assert split == {(stable, 90, ""), (f"{sid}-v2", 10, "canary")}
    canary = next(t for t in result.traffic_statuses if t.tag == "canary")
    assert canary.uri == f"{result.uri}/tag/canary"
    assert [(t.revision, t.percent) for t in result.traffic] == [(stable, 90), (f"{sid}-v2", 10)]


def _bad_traffic(services: run_v2.ServicesClient, traffic: list[run_v2.TrafficTarget]) -> None:
    _, name, _ = _new_service(services, "badtraffic")
    svc = services.get_service(name=name)
    svc.traffic = traffic
    try:
        services.update_service(service=svc)
    finally:
        after = services.get_service(name=name)
        assert after.generation == 1  # nothing was stored
        services.delete_service(name=name)


def test_percents_must_sum_to_100(services: run_v2.ServicesClient) -> None:
    with pytest.raises(exceptions.BadRequest, match="add up to 100") as err:
        _bad_traffic(services, [run_v2.TrafficTarget(type_=LATEST, percent=90)])
    assert err.value.details  # google.rpc.BadRequest field violation


def test_unknown_revision_in_traffic(services: run_v2.ServicesClient) -> None:
    with pytest.raises(exceptions.BadRequest, match="does not exist"):
        _bad_traffic(
            services, [run_v2.TrafficTarget(type_=REVISION, revision="nope-00009-abc", percent=100)]
        )


def test_duplicate_tag(services: run_v2.ServicesClient) -> None:
    with pytest.raises(exceptions.BadRequest, match="unique"):
        _bad_traffic(
            services,
            [
                run_v2.TrafficTarget(type_=LATEST, percent=100, tag="blue"),
                run_v2.TrafficTarget(type_=LATEST, tag="blue"),
            ],
        )


def test_invalid_tag(services: run_v2.ServicesClient) -> None:
    with pytest.raises(exceptions.BadRequest, match="tag"):
        _bad_traffic(services, [run_v2.TrafficTarget(type_=LATEST, percent=100, tag="Not_DNS")])


def test_stale_etag_conflict(services: run_v2.ServicesClient) -> None:
    sid, name, _ = _new_service(services, "etag")
    stale = services.get_service(name=name)
    _deploy(services, name, "v2.0.0")
    stale.template.containers[0].image = _image(sid, "v3.0.0")
    with pytest.raises(exceptions.Conflict, match="etag") as err:
        services.update_service(service=stale)
    assert err.value.reason == "ETAG_MISMATCH"
    # An empty etag means "no precondition".
    stale.etag = ""
    stale.template.revision = ""
    assert services.update_service(service=stale).result(timeout=TIMEOUT).generation == 3


def test_revision_name_reuse(services: run_v2.ServicesClient) -> None:
    sid, name, _ = _new_service(services, "reuse")
    svc = _with_image(services, name, "v2.0.0")
    svc.template.revision = f"{sid}-blue"
    blue = services.update_service(service=svc).result(timeout=TIMEOUT)
    assert _short(blue.latest_created_revision) == f"{sid}-blue"
    # get -> modify image -> update, forgetting to change template.revision
    svc = services.get_service(name=name)
    assert svc.template.revision == f"{sid}-blue"
    svc.template.containers[0].image = _image(sid, "v3.0.0")
    with pytest.raises(exceptions.Conflict, match="with different configuration already exists"):
        services.update_service(service=svc)
    # Same name, identical template: accepted, nothing created.
    same = services.update_service(service=services.get_service(name=name)).result(TIMEOUT)
    assert same.latest_created_revision == blue.latest_created_revision
    # A name without the service prefix is refused.
    svc = services.get_service(name=name)
    svc.template.revision = "other-prefix-1"
    with pytest.raises(exceptions.BadRequest, match="must start with the service name"):
        services.update_service(service=svc)


def test_broken_image_fails_and_keeps_traffic(
    gcpsim: GcpsimProcess, services: run_v2.ServicesClient, revisions: run_v2.RevisionsClient
) -> None:
    sid, name, first = _new_service(services, "broken")
    out = gcpsim.cli("behavior", sid, "v6.6.6", "--broken")
    assert out.returncode == 0, out.stderr
    before = services.get_service(name=name)
    svc = _with_image(services, name, "v6.6.6")
    svc.traffic = [
        run_v2.TrafficTarget(type_=LATEST, percent=100),
    ]
    op = services.update_service(service=svc)
    with pytest.raises(exceptions.FailedPrecondition, match="is not ready and cannot serve"):
        op.result(timeout=TIMEOUT)
    after = services.get_service(name=name)
    assert after.latest_ready_revision == first.latest_ready_revision
    assert after.latest_created_revision != first.latest_created_revision
    assert list(after.traffic_statuses) == list(before.traffic_statuses)
    assert list(after.traffic) == list(before.traffic)
    assert after.terminal_condition.state == FAILED
    assert after.observed_generation == 1 and after.generation == 2
    failed = revisions.get_revision(name=after.latest_created_revision)
    ready = next(c for c in failed.conditions if c.type_ == "Ready")
    assert ready.state == FAILED
    assert "failed to start and listen on the port" in ready.message
    # Rolling back (get -> pin the stable revision -> update) still works.
    rolled = _pin(services, name, _short(first.latest_ready_revision))
    assert rolled.terminal_condition.state == SUCCEEDED
    assert rolled.traffic_statuses[0].revision == _short(first.latest_ready_revision)


def test_op_error_fault(
    gcpsim: GcpsimProcess, services: run_v2.ServicesClient, faults: list[str]
) -> None:
    _, name, first = _new_service(services, "operr")
    faults.append(
        _fault(gcpsim, "run.services.patch", "--op-error", "--times", "1", "--message", "boom")
    )
    before = services.get_service(name=name)
    svc = _with_image(services, name, "v2.0.0")
    op = services.update_service(service=svc)
    with pytest.raises(exceptions.InternalServerError, match="boom"):
        op.result(timeout=TIMEOUT)
    after = services.get_service(name=name)
    assert after.latest_ready_revision == first.latest_ready_revision
    assert list(after.traffic_statuses) == list(before.traffic_statuses)
    # The fault is spent: the same deploy now goes through.
    ok = _pin(services, name, _short(after.latest_created_revision))
    assert ok.traffic_statuses[0].revision == _short(after.latest_created_revision)


def test_op_error_fault_on_delete(
    gcpsim: GcpsimProcess, services: run_v2.ServicesClient, faults: list[str]
) -> None:
    _, name, _ = _new_service(services, "delerr")
    faults.append(_fault(gcpsim, "run.services.delete", "--op-error", "--times", "1"))
    with pytest.raises(exceptions.InternalServerError, match="simulated failure"):
        services.delete_service(name=name).result(timeout=TIMEOUT)
    assert services.get_service(name=name).name == name  # still there
    services.delete_service(name=name).result(timeout=TIMEOUT)


def test_503_on_get_is_retried(
    gcpsim: GcpsimProcess, services: run_v2.ServicesClient, faults: list[str]
) -> None:
    faults.append(_fault(gcpsim, "run.services.get", "--status", "503", "--times", "2"))
    assert services.get_service(name=SEEDED).name == SEEDED


def test_429_is_not_retried(
    gcpsim: GcpsimProcess, services: run_v2.ServicesClient, faults: list[str]
) -> None:
    faults.append(_fault(gcpsim, "run.services.get", "--status", "429", "--times", "1"))
    with pytest.raises(exceptions.TooManyRequests) as err:
        services.get_service(name=SEEDED)
    assert err.value.reason == "simulatedFault"
    assert services.get_service(name=SEEDED).name == SEEDED


def test_update_fault_not_retried(
    gcpsim: GcpsimProcess, services: run_v2.ServicesClient, faults: list[str]
) -> None:
    faults.append(_fault(gcpsim, "run.services.patch", "--status", "503", "--times", "1"))
    with pytest.raises(exceptions.ServiceUnavailable):
        services.update_service(service=services.get_service(name=SEEDED))


def test_resume_operation_from_its_name(services: run_v2.ServicesClient) -> None:
    _, name, _ = _new_service(services, "resume")
    svc = _with_image(services, name, "v2.0.0")
    op_name = services.update_service(service=svc).operation.name
    # ... an activity retry later, only the name survived:
    future = _resume(services, op_name)
    assert future.operation.name == op_name
    result = future.result(timeout=TIMEOUT)
    assert result.generation == 2 and result.name == name
    waited = services.wait_operation(
        request={"name": op_name, "timeout": duration_pb2.Duration(seconds=5)}
    )
    assert waited.done
    with pytest.raises(exceptions.NotFound):
        services.get_operation(request={"name": f"{PARENT}/operations/{uuid.uuid4()}"})


def test_wait_operation_blocks_until_done(services: run_v2.ServicesClient) -> None:
    _, name, _ = _new_service(services, "wait")
    svc = _with_image(services, name, "v2.0.0")
    op_name = services.update_service(service=svc).operation.name
    waited = services.wait_operation(
        request={"name": op_name, "timeout": duration_pb2.Duration(seconds=20)}
    )
    assert waited.done and waited.HasField("response")


def test_serialized_updates(services: run_v2.ServicesClient) -> None:
    sid, name, _ = _new_service(services, "serial")
    svc = _with_image(services, name, "v2.0.0")
    op1 = services.update_service(service=svc)
    svc = services.get_service(name=name)  # reconciling; spec already v2
    assert svc.reconciling
    svc.template.containers[0].image = _image(sid, "v3.0.0")
    op2 = services.update_service(service=svc)
    r1 = op1.result(timeout=TIMEOUT)
    r2 = op2.result(timeout=TIMEOUT)
    assert r1.observed_generation == 2
    assert r2.observed_generation == 3
    assert _short(r2.latest_ready_revision).startswith(f"{sid}-00003-")
    assert r2.traffic_statuses[0].revision == _short(r2.latest_ready_revision)


def test_update_validate_only_and_allow_missing(services: run_v2.ServicesClient) -> None:
    sid = _unique("upsert")
    name = f"{PARENT}/services/{sid}"
    svc = run_v2.Service(
        name=name,
        template=run_v2.RevisionTemplate(containers=[run_v2.Container(image=_image(sid, "v1"))]),
    )
    with pytest.raises(exceptions.NotFound):
        services.update_service(service=svc)
    req = run_v2.UpdateServiceRequest(service=svc, allow_missing=True, validate_only=True)
    services.update_service(request=req).result(timeout=TIMEOUT)
    with pytest.raises(exceptions.NotFound):
        services.get_service(name=name)
    req = run_v2.UpdateServiceRequest(service=svc, allow_missing=True)
    created = services.update_service(request=req).result(timeout=TIMEOUT)
    assert created.name == name and created.latest_ready_revision
    current = _with_image(services, name, "v2")
    req = run_v2.UpdateServiceRequest(service=current, validate_only=True)
    preview = services.update_service(request=req).result(timeout=TIMEOUT)
    assert preview.generation == 2
    assert services.get_service(name=name).generation == 1


def test_service_scaling_round_trip_and_drain(
    gcpsim: GcpsimProcess, services: run_v2.ServicesClient
) -> None:
    _, name, _ = _new_service(services, "scaling")
    svc = services.get_service(name=name)
    svc.scaling = run_v2.ServiceScaling(min_instance_count=2, max_instance_count=7)
    result = services.update_service(service=svc).result(timeout=TIMEOUT)
    assert (result.scaling.min_instance_count, result.scaling.max_instance_count) == (2, 7)
    svc = services.get_service(name=name)
    svc.scaling = run_v2.ServiceScaling(scaling_mode=run_v2.ServiceScaling.ScalingMode.MANUAL)
    drained = services.update_service(service=svc).result(timeout=TIMEOUT)
    assert drained.scaling.scaling_mode == run_v2.ServiceScaling.ScalingMode.MANUAL
    assert drained.scaling.manual_instance_count == 0
    entry = _sim_entry(gcpsim, name)
    assert entry["drained"] and entry["serving"] == []
    svc = services.get_service(name=name)
    svc.scaling = run_v2.ServiceScaling(
        scaling_mode=run_v2.ServiceScaling.ScalingMode.MANUAL, manual_instance_count=1
    )
    services.update_service(service=svc).result(timeout=TIMEOUT)
    entry = _sim_entry(gcpsim, name)
    assert not entry["drained"] and entry["serving"][0]["percent"] == 100


# --------------------------------------------------------------------------- revisions


def test_list_revisions_paging(
    services: run_v2.ServicesClient, revisions: run_v2.RevisionsClient
) -> None:
    _, name, _ = _new_service(services, "paging")
    _deploy(services, name, "v2.0.0")
    _deploy(services, name, "v3.0.0")
    pager = revisions.list_revisions(request=run_v2.ListRevisionsRequest(parent=name, page_size=1))
    pages = list(pager.pages)
    assert len(pages) == 3 and all(len(p.revisions) == 1 for p in pages)
    names = [_short(p.revisions[0].name) for p in pages]
    assert [n.split("-")[-2] for n in names] == ["00003", "00002", "00001"]
    with pytest.raises(exceptions.NotFound):
        list(revisions.list_revisions(parent=f"{PARENT}/services/no-such-service"))


def test_get_and_delete_revision(
    services: run_v2.ServicesClient, revisions: run_v2.RevisionsClient
) -> None:
    sid, name, first = _new_service(services, "revdel")
    _, second = _deploy(services, name, "v2.0.0")
    old = revisions.get_revision(name=first.latest_ready_revision)
    assert old.name == first.latest_ready_revision
    raw = run_v2.Revision.to_dict(old)
    assert raw["timeout"] == "300s" and raw["create_time"].endswith("Z")
    with pytest.raises(exceptions.NotFound):
        revisions.get_revision(name=f"{name}/revisions/{sid}-00099-zzz")
    with pytest.raises(exceptions.BadRequest, match=r"receiving traffic|latest revision"):
        revisions.delete_revision(name=second.latest_ready_revision)
    deleted = revisions.delete_revision(name=first.latest_ready_revision).result(timeout=TIMEOUT)
    assert isinstance(deleted, run_v2.Revision)
    assert deleted.name == first.latest_ready_revision
    with pytest.raises(exceptions.NotFound):
        revisions.get_revision(name=first.latest_ready_revision)
    assert [r.name for r in revisions.list_revisions(parent=name)] == [second.latest_ready_revision]


# --------------------------------------------------------------------------- persistence


def test_state_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    sim = start_gcpsim(state, "--run-op-seconds", "1.5")
    try:
        services, _ = _clients(sim)
        svc = run_v2.Service(
            template=run_v2.RevisionTemplate(
                containers=[run_v2.Container(image=_image("keep", "v1.0.0"))]
            )
        )
        op = services.create_service(parent=PARENT, service=svc, service_id="keep")
        op_name = op.operation.name
        pending = services.get_service(name=f"{PARENT}/services/keep")
        assert pending.reconciling  # slow operations: still rolling out
        assert not pending.traffic_statuses and not pending.latest_ready_revision
    finally:
        stop_gcpsim(sim)
    assert not (state / "ports.json").exists()
    sim = start_gcpsim(state)
    try:
        services, revisions = _clients(sim)
        result = _resume(services, op_name).result(timeout=TIMEOUT)
        assert result.name == f"{PARENT}/services/keep"
        got = services.get_service(name=f"{PARENT}/services/keep")
        assert got.latest_ready_revision == result.latest_ready_revision
        assert got.traffic_statuses[0].percent == 100
        assert len(list(revisions.list_revisions(parent=got.name))) == 1
    finally:
        stop_gcpsim(sim)
