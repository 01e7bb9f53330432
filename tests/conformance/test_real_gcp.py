"""Issue 9: where real Google Cloud differs from what gcpsim used to accept, through the real
clients and the real activities against gcpsim (which now models the difference). Each test
failed before the product was fixed.

Cloud Run tests create their own services (project CONFORMANCE_PROJECT); Cloud SQL tests use
the seeded `staging` instance and scratch instances named after the test.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from googleapiclient.errors import HttpError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import cloud_sql
from activities.cloud_run import CloudRunActivities
from activities.cloud_sql import CloudSqlActivities
from activities.revision_health import RevisionHealthActivities
from stagecoach.clients import clients_for
from stagecoach.contract import BACKUP_FAILED
from stagecoach.payloads.common import InstanceRef, ServiceRef, Target, TrafficTarget
from stagecoach.payloads.policy import Sizing
from stagecoach.payloads.run import (
    CreateRevisionInput,
    RevisionHealthInput,
    SetScalingInput,
    SetTrafficInput,
)
from stagecoach.payloads.sql import (
    CloneInstanceInput,
    CreateBackupInput,
    DeleteInstanceInput,
    RecoveryWindowInput,
)
from testing.cloudsql import sqladmin
from testing.gcpsim import GcpsimProcess

PROJECT = "stagecoach-conformance"
REGION = "us-central1"
IMAGE = "us-central1-docker.pkg.dev/stagecoach-conformance/apps/web"


@pytest.fixture(scope="module")
def target(gcpsim: GcpsimProcess) -> Target:
    return Target(kind="gcpsim", host="127.0.0.1", port=gcpsim.port, grpc_port=gcpsim.grpc_port)


@pytest.fixture
def env() -> ActivityEnvironment:
    return ActivityEnvironment()


@pytest.fixture(scope="module")
def run_acts() -> CloudRunActivities:
    return CloudRunActivities()


def _base(gcpsim: GcpsimProcess) -> str:
    return f"{gcpsim.url}/v2/projects/{PROJECT}/locations/{REGION}"


def _wait_op(gcpsim: GcpsimProcess, op: dict[str, Any]) -> dict[str, Any]:
    r = requests.post(f"{gcpsim.url}/v2/{op['name']}:wait", json={"timeout": "30s"}, timeout=60)
    r.raise_for_status()
    done: dict[str, Any] = r.json()
    assert done.get("done") and "error" not in done, done
    return done


def raw_service(gcpsim: GcpsimProcess, ref: ServiceRef, ints: bool = False) -> dict[str, Any]:
    """The service as plain REST JSON (what the API stores, unknown fields and all)."""
    params = {"$alt": "json;enum-encoding=int"} if ints else {}
    r = requests.get(f"{_base(gcpsim)}/services/{ref.service}", params=params, timeout=30)
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def make_raw_service(
    gcpsim: GcpsimProcess,
    target: Target,
    *,
    cpu: str = "1",
    service_extra: dict[str, Any] | None = None,
    template_extra: dict[str, Any] | None = None,
) -> ServiceRef:
    """A service created over plain REST, so it may carry fields newer than the installed
    google-cloud-run knows (as a real service deployed by gcloud or the console can)."""
    name = f"real-{uuid.uuid4().hex[:6]}"
    container: dict[str, Any] = {
        "image": f"{IMAGE}:v1.0.0",
        "resources": {"limits": {"cpu": cpu, "memory": "512Mi"}, "cpuIdle": True},
    }
    body: dict[str, Any] = {
        "template": {
            "containers": [container],
            "scaling": {"minInstanceCount": 0, "maxInstanceCount": 4},
            **(template_extra or {}),
        },
        **(service_extra or {}),
    }
    r = requests.post(
        f"{_base(gcpsim)}/services", params={"serviceId": name}, json=body, timeout=30
    )
    r.raise_for_status()
    _wait_op(gcpsim, r.json())
    return ServiceRef(target=target, project=PROJECT, region=REGION, service=name)


def revision_input(
    ref: ServiceRef, version: str, sizing: Sizing | None = None
) -> CreateRevisionInput:
    return CreateRevisionInput(
        ref=ref,
        revision=f"{ref.service}-{version.replace('.', '-')}-{uuid.uuid4().hex[:5]}",
        image=f"{IMAGE}:{version}",
        tag="canary",
        sizing=sizing or Sizing(min_instances=0, max_instances=4, memory="512Mi", cpu="1"),
        ingress="all",
    )


# ----------------------------------------------------------------------------- item 1


NEWER_SERVICE = {"sshEnabled": True}  # Service fields google-cloud-run 0.16.2 does not know
NEWER_TEMPLATE = {"workloadIdentityConfig": {"identity": "wi@example.iam"}}


def _still_has_newer_fields(body: dict[str, Any]) -> None:
    assert body.get("sshEnabled") is True, "a Service field unknown to the client was dropped"
    assert (
        body["template"].get("workloadIdentityConfig") == NEWER_TEMPLATE["workloadIdentityConfig"]
    ), "a RevisionTemplate field unknown to the client was dropped"


def test_updates_send_only_what_changes_and_keep_fields_the_client_does_not_know(
    gcpsim: GcpsimProcess, env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    """Before: every update wrote back the Service as the client had parsed it, dropping the
    newer fields, and SetTraffic echoed the template's revision name with a template that had
    lost a field: 409 "with different configuration already exists" (permanent)."""
    ref = make_raw_service(
        gcpsim, target, service_extra=NEWER_SERVICE, template_extra=NEWER_TEMPLATE
    )
    created = env.run(run_acts.create_revision, revision_input(ref, "v1.1.0"))
    _still_has_newer_fields(raw_service(gcpsim, ref))

    stable = created.before[0].revision
    split = [
        TrafficTarget(type="REVISION", revision=stable, percent=50),
        TrafficTarget(type="REVISION", revision=created.revision, percent=50, tag="canary"),
    ]
    env.run(run_acts.set_traffic, SetTrafficInput(ref=ref, traffic=split))
    _still_has_newer_fields(raw_service(gcpsim, ref))

    env.run(run_acts.set_scaling, SetScalingInput(ref=ref, drained=True))
    _still_has_newer_fields(raw_service(gcpsim, ref))
    resumed = env.run(
        run_acts.set_scaling,
        SetScalingInput(ref=ref, drained=False, min_instances=1, max_instances=3),
    )
    assert (resumed.min_instances, resumed.max_instances) == (1, 3)
    _still_has_newer_fields(raw_service(gcpsim, ref))


def test_gcpsim_answers_409_for_a_changed_template_under_an_existing_revision_name(
    gcpsim: GcpsimProcess, target: Target
) -> None:
    ref = make_raw_service(gcpsim, target, template_extra=NEWER_TEMPLATE)
    svc = raw_service(gcpsim, ref)
    template = dict(svc["template"])
    template.pop("workloadIdentityConfig")  # what a client that does not know it sends back
    template["revision"] = svc["latestCreatedRevision"].rsplit("/", 1)[-1]
    r = requests.patch(
        f"{_base(gcpsim)}/services/{ref.service}", json={"template": template}, timeout=30
    )
    assert r.status_code == 409, r.text
    assert "with different configuration already exists" in r.json()["error"]["message"]


def test_update_mask_changes_only_the_named_fields(gcpsim: GcpsimProcess, target: Target) -> None:
    ref = make_raw_service(gcpsim, target, service_extra=NEWER_SERVICE)
    r = requests.patch(
        f"{_base(gcpsim)}/services/{ref.service}",
        params={"updateMask": "scaling"},
        json={"scaling": {"scalingMode": "MANUAL", "manualInstanceCount": 2}},
        timeout=30,
    )
    r.raise_for_status()
    _wait_op(gcpsim, r.json())
    svc = raw_service(gcpsim, ref)
    assert svc["scaling"]["manualInstanceCount"] == 2
    assert svc["sshEnabled"] is True and svc["template"]["containers"]
    r = requests.patch(
        f"{_base(gcpsim)}/services/{ref.service}",
        params={"updateMask": "uri"},
        json={},
        timeout=30,
    )
    assert r.status_code == 400 and "update mask" in r.text


# ----------------------------------------------------------------------------- item 2


def test_cpu_below_one_gets_concurrency_one_and_cpu_only_during_requests(
    gcpsim: GcpsimProcess, env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    """Before: a 0.5-CPU revision kept the service's concurrency 80; the API refuses that."""
    ref = make_raw_service(gcpsim, target)  # 1 CPU, concurrency 80 (the API's default there)
    assert raw_service(gcpsim, ref)["template"]["maxInstanceRequestConcurrency"] == 80
    half = Sizing(min_instances=0, max_instances=3, memory="512Mi", cpu="0.5")
    created = env.run(run_acts.create_revision, revision_input(ref, "v1.1.0", half))
    r = requests.get(
        f"{_base(gcpsim)}/services/{ref.service}/revisions/{created.revision}", timeout=30
    )
    rev = r.json()
    assert rev["maxInstanceRequestConcurrency"] == 1
    assert rev["containers"][0]["resources"]["cpuIdle"] is True
    assert rev["containers"][0]["resources"]["limits"]["cpu"] == "0.5"


def test_gcpsim_rejects_cpu_below_one_with_concurrency_or_cpu_always_allocated(
    gcpsim: GcpsimProcess,
) -> None:
    def create(resources: dict[str, Any], concurrency: int | None) -> requests.Response:
        template: dict[str, Any] = {
            "containers": [{"image": f"{IMAGE}:v1", "resources": resources}]
        }
        if concurrency is not None:
            template["maxInstanceRequestConcurrency"] = concurrency
        return requests.post(
            f"{_base(gcpsim)}/services",
            params={"serviceId": f"cpu-{uuid.uuid4().hex[:6]}", "validateOnly": "true"},
            json={"template": template},
            timeout=30,
        )

    half = {"limits": {"cpu": "500m"}, "cpuIdle": True}
    assert create(half, 80).status_code == 400
    assert "concurrency" in create(half, 80).json()["error"]["message"]
    always = create({"limits": {"cpu": "0.5"}}, 1)
    assert always.status_code == 400 and "cpu_idle" in always.json()["error"]["message"]
    assert create(half, 1).status_code == 200
    assert create(half, None).status_code == 200  # the default below 1 CPU is 1


# ----------------------------------------------------------------------------- item 9 (enums)


def test_plain_rest_json_carries_enum_names_unless_asked_for_numbers(
    gcpsim: GcpsimProcess, target: Target
) -> None:
    ref = make_raw_service(gcpsim, target)
    plain = raw_service(gcpsim, ref)
    assert plain["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert plain["launchStage"] == "GA"
    assert plain["traffic"][0]["type"] == "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    assert plain["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
    ints = raw_service(gcpsim, ref, ints=True)
    assert ints["ingress"] == 1 and ints["traffic"][0]["type"] == 1


# ----------------------------------------------------------------------------- Cloud SQL

SQL_PROJECT = "legal-forms-staging"
SQL_INSTANCE = "legal-forms-db-staging"


@pytest.fixture(scope="module")
def sql_acts() -> CloudSqlActivities:
    return CloudSqlActivities()


def sql_ref(target: Target, instance: str = SQL_INSTANCE) -> InstanceRef:
    return InstanceRef(target=target, project=SQL_PROJECT, instance=instance)


def sql_wait(target: Target, project: str, op: dict[str, Any]) -> dict[str, Any]:
    sql = clients_for(target).sqladmin()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cur: dict[str, Any] = sql.operations().get(project=project, operation=op["name"]).execute()
        if cur["status"] == "DONE":
            return cur
        time.sleep(0.1)
    raise AssertionError(f"operation {op['name']} not done")


# ----------------------------------------------------------------------------- item 9 (backups)


def test_a_backup_whose_deletion_failed_is_terminal_not_waited_for(
    gcpsim: GcpsimProcess,
    env: ActivityEnvironment,
    sql_acts: CloudSqlActivities,
    target: Target,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: DELETION_FAILED was not terminal, so CreateBackup finding such a run (a retry,
    by its description) waited for it until the operation deadline (6 h)."""
    monkeypatch.setattr(cloud_sql, "OPERATION_DEADLINE_SECONDS", 8)
    ref = sql_ref(target)
    description = f"issue 9 deletion-failed {uuid.uuid4().hex[:6]}"
    backup = env.run(sql_acts.create_backup, CreateBackupInput(ref=ref, description=description))
    sql = clients_for(target).sqladmin()
    assert (
        gcpsim.cli("fault", "sql.backupRuns.delete", "--op-error", "--times", "1").returncode == 0
    )
    try:
        op = sql.backupRuns().delete(project=SQL_PROJECT, instance=SQL_INSTANCE, id=backup.id)
        done = sql_wait(target, SQL_PROJECT, op.execute())
    finally:
        gcpsim.cli("fault", "--clear")
    assert done.get("error")
    run = sql.backupRuns().get(project=SQL_PROJECT, instance=SQL_INSTANCE, id=backup.id).execute()
    assert run["status"] == "DELETION_FAILED"
    with pytest.raises(ApplicationError) as info:
        env.run(sql_acts.create_backup, CreateBackupInput(ref=ref, description=description))
    assert info.value.type == BACKUP_FAILED and info.value.non_retryable
    assert "DELETION_FAILED" in info.value.message


# ----------------------------------------------------------------------------- item 4

PROD_PROJECT = "legal-forms-prod"
PROD_INSTANCE = "legal-forms-db-prod"  # REGIONAL: seeded with deletion protection


def test_a_clone_inherits_deletion_protection_and_only_our_own_is_unprotected_and_deleted(
    env: ActivityEnvironment, sql_acts: CloudSqlActivities, target: Target
) -> None:
    """Before: DeleteInstance of a drill's scratch clone of a protected instance failed
    (400 instanceProtected) and the scratch instance stayed, billing."""
    prod = InstanceRef(target=target, project=PROD_PROJECT, instance=PROD_INSTANCE)
    sql = clients_for(target).sqladmin()
    source = sql.instances().get(project=PROD_PROJECT, instance=PROD_INSTANCE).execute()
    assert source["settings"]["deletionProtectionEnabled"] is True
    scratch = f"{PROD_INSTANCE}-drill-{datetime.now(UTC):%Y%m%d%H%M%S}"
    env.run(sql_acts.clone_instance, CloneInstanceInput(ref=prod, destination=scratch))
    clone = sql.instances().get(project=PROD_PROJECT, instance=scratch).execute()
    assert clone["settings"]["deletionProtectionEnabled"] is True  # inherited

    scratch_ref = prod.model_copy(update={"instance": scratch})
    # Not said to be ours: refused with the fix, nothing changed.
    with pytest.raises(ApplicationError) as info:
        env.run(sql_acts.delete_instance, DeleteInstanceInput(ref=scratch_ref))
    assert info.value.non_retryable and "--no-deletion-protection" in info.value.message
    # Ours: protection off, then deleted.
    env.run(
        sql_acts.delete_instance,
        DeleteInstanceInput(ref=scratch_ref, created_by_stagecoach=True),
    )
    with pytest.raises(HttpError) as gone:
        sql.instances().get(project=PROD_PROJECT, instance=scratch).execute()
    assert gone.value.status_code == 404
    # Never on an instance Stagecoach did not create, whatever the caller says.
    with pytest.raises(ApplicationError) as refused:
        env.run(sql_acts.delete_instance, DeleteInstanceInput(ref=prod, created_by_stagecoach=True))
    assert refused.value.type == "FailedPrecondition"
    assert sql.instances().get(project=PROD_PROJECT, instance=PROD_INSTANCE).execute()


def test_gcpsim_refuses_to_delete_a_protected_instance(target: Target) -> None:
    sql = clients_for(target).sqladmin()
    with pytest.raises(HttpError) as info:
        sql.instances().delete(project=PROD_PROJECT, instance=PROD_INSTANCE).execute()
    assert info.value.status_code == 400 and "deletion protection" in str(info.value)


# ----------------------------------------------------------------------------- item 6


def patch_settings(target: Target, project: str, instance: str, settings: dict[str, Any]) -> None:
    sql = sqladmin(f"http://{target.host}:{target.port}")  # its own connection for a PATCH
    op = sql.instances().patch(project=project, instance=instance, body={"settings": settings})
    done = sql_wait(target, project, op.execute())
    assert not done.get("error"), done


def test_recovery_window_from_get_latest_recovery_time_and_the_backup_configuration(
    env: ActivityEnvironment, sql_acts: CloudSqlActivities, target: Target
) -> None:
    ref = sql_ref(target)
    w = env.run(sql_acts.read_recovery_window, RecoveryWindowInput(ref=ref))
    assert w.pitr_enabled and w.retention_days == 7 and not w.problem
    assert w.earliest is not None and w.latest is not None
    assert w.latest - w.earliest <= timedelta(days=7)
    assert abs((datetime.now(UTC) - w.latest).total_seconds()) < 60

    inside = env.run(
        sql_acts.read_recovery_window,
        RecoveryWindowInput(ref=ref, point_in_time=w.latest - timedelta(seconds=5)),
    )
    assert not inside.problem
    old = env.run(
        sql_acts.read_recovery_window,
        RecoveryWindowInput(ref=ref, point_in_time=w.earliest - timedelta(minutes=1)),
    )
    assert "before the earliest recoverable time" in old.problem and "--backup-id" in old.problem

    patch_settings(
        target,
        SQL_PROJECT,
        SQL_INSTANCE,
        {"backupConfiguration": {"transactionLogRetentionDays": 1}},
    )
    try:
        short = env.run(
            sql_acts.read_recovery_window,
            RecoveryWindowInput(ref=ref, point_in_time=datetime.now(UTC) - timedelta(days=2)),
        )
        assert short.retention_days == 1 and "kept 1 days" in short.problem
        patch_settings(
            target,
            SQL_PROJECT,
            SQL_INSTANCE,
            {"backupConfiguration": {"pointInTimeRecoveryEnabled": False}},
        )
        off = env.run(sql_acts.read_recovery_window, RecoveryWindowInput(ref=ref))
        assert not off.pitr_enabled and "not enabled" in off.problem
        # the API itself refuses both getLatestRecoveryTime and a point-in-time clone
        sql = clients_for(target).sqladmin()
        with pytest.raises(HttpError) as info:
            sql.projects().instances().getLatestRecoveryTime(
                project=SQL_PROJECT, instance=SQL_INSTANCE
            ).execute()
        assert info.value.status_code == 400
    finally:
        patch_settings(
            target,
            SQL_PROJECT,
            SQL_INSTANCE,
            {
                "backupConfiguration": {
                    "pointInTimeRecoveryEnabled": True,
                    "transactionLogRetentionDays": 7,
                }
            },
        )


# ----------------------------------------------------------------------------- item 5


def sim_service(gcpsim: GcpsimProcess, ref: ServiceRef) -> dict[str, Any]:
    state = requests.get(f"{gcpsim.url}/_sim/state", timeout=30).json()
    return next(s for s in state["services"] if s["service"] == ref.service)


def test_drain_stops_every_instance_and_resume_puts_back_exactly_what_was_set(
    gcpsim: GcpsimProcess, env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    """Before: the drain left a tag-only revision with revision-level min instances running
    (writing to the database), and since Cloud Run unsets service-level min/max when it
    switches to manual scaling, the resume came back without them."""
    ref = make_raw_service(
        gcpsim,
        target,
        service_extra={"scaling": {"minInstanceCount": 1, "maxInstanceCount": 6}},
    )
    warm = revision_input(ref, "v1.1.0", Sizing(min_instances=1, max_instances=4, cpu="1"))
    created = env.run(run_acts.create_revision, warm)  # tagged, 0%, min 1: instances run
    assert created.revision in sim_service(gcpsim, ref)["warm"]

    live = env.run(run_acts.get_service_state, ref)
    rec = live.scaling
    assert rec is not None and (rec.mode, rec.min_instances, rec.max_instances) == ("", 1, 6)
    assert [(t.revision, t.tag) for t in rec.tags] == [(created.revision, "canary")]

    drain = SetScalingInput(ref=ref, drained=True, record=rec)
    drained = env.run(run_acts.set_scaling, drain)
    assert drained.drained
    assert sim_service(gcpsim, ref)["warm"] == []  # nothing left running
    assert env.run(run_acts.set_scaling, drain).drained  # idempotent

    resume = SetScalingInput(
        ref=ref,
        drained=False,
        min_instances=live.min_instances,
        max_instances=live.max_instances,
        record=rec,
    )
    back = env.run(run_acts.set_scaling, resume)
    assert not back.drained and back.scaling is not None
    assert (back.scaling.min_instances, back.scaling.max_instances) == (1, 6)
    assert [(t.revision, t.tag) for t in back.scaling.tags] == [(created.revision, "canary")]
    assert created.revision in sim_service(gcpsim, ref)["warm"]


def test_gcpsim_manual_scaling_unsets_the_service_min_and_max(
    gcpsim: GcpsimProcess, target: Target
) -> None:
    ref = make_raw_service(
        gcpsim, target, service_extra={"scaling": {"minInstanceCount": 2, "maxInstanceCount": 5}}
    )
    url = f"{_base(gcpsim)}/services/{ref.service}"

    def patch(scaling: dict[str, Any]) -> dict[str, Any]:
        r = requests.patch(url, params={"updateMask": "scaling"}, json={"scaling": scaling})
        r.raise_for_status()
        _wait_op(gcpsim, r.json())
        got: dict[str, Any] = raw_service(gcpsim, ref).get("scaling", {})
        return got

    manual = patch({"scalingMode": "MANUAL", "manualInstanceCount": 3})
    assert manual == {"scalingMode": "MANUAL", "manualInstanceCount": 3}
    # back to automatic without a minimum: the manual count is inherited
    assert patch({"scalingMode": "AUTOMATIC"}) == {
        "scalingMode": "AUTOMATIC",
        "minInstanceCount": 3,
    }


# ----------------------------------------------------------------------------- item 3


def test_gcpsim_honours_ingress_for_callers_outside_the_vpc(gcpsim: GcpsimProcess) -> None:
    base = f"{gcpsim.url}/_url/legal-forms-dev/{REGION}"
    internal = f"{base}/python-pipeline-dev/healthz"  # ingress internal
    public = f"{base}/node-server-dev/health"  # ingress all
    r = requests.get(internal, timeout=10)
    assert r.status_code == 404 and "outside the VPC" in r.json()["reason"]
    assert requests.get(public, timeout=10).status_code == 200
    requests.post(f"{gcpsim.url}/_sim/network", json={"inside_vpc": True}, timeout=10)
    try:
        assert requests.get(internal, timeout=10).status_code == 200
    finally:
        requests.post(f"{gcpsim.url}/_sim/network", json={"inside_vpc": False}, timeout=10)


# ----------------------------------------------------------------------------- item 8


def test_check_revision_health_says_when_a_canary_cannot_serve(
    gcpsim: GcpsimProcess, env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    """A revision that never became ready gets no requests at all: request_count alone would
    read it as quiet. CheckRevisionHealth says it cannot serve, and why."""
    ref = make_raw_service(gcpsim, target)
    stable = raw_service(gcpsim, ref)["latestReadyRevision"].rsplit("/", 1)[-1]
    assert gcpsim.cli("behavior", ref.service, "v6.6.6", "--broken").returncode == 0
    broken = revision_input(ref, "v6.6.6")
    with pytest.raises(ApplicationError) as info:
        env.run(run_acts.create_revision, broken)
    assert info.value.type == "RevisionNotReady"

    health = RevisionHealthActivities()
    bad = env.run(
        health.check_revision_health, RevisionHealthInput(ref=ref, revision=broken.revision)
    )
    assert not bad.ready and not bad.can_serve and "failed to start" in bad.reason
    good = env.run(health.check_revision_health, RevisionHealthInput(ref=ref, revision=stable))
    assert good.ready and good.can_serve and good.max_instances == 4
    assert good.instances is not None and 1 <= good.instances < 4 and not good.at_max_instances


def test_check_revision_health_says_when_a_canary_is_at_max_instances(
    gcpsim: GcpsimProcess, env: ActivityEnvironment, target: Target
) -> None:
    """At max instances the requests beyond them never reach an instance and are not in
    request_count: a saturated canary must not read as a quiet one."""
    ref = make_raw_service(
        gcpsim,
        target,
        template_extra={
            "scaling": {"maxInstanceCount": 1},
            "maxInstanceRequestConcurrency": 1,
        },
    )
    rev = raw_service(gcpsim, ref)["latestReadyRevision"].rsplit("/", 1)[-1]
    got = env.run(
        RevisionHealthActivities().check_revision_health,
        RevisionHealthInput(ref=ref, revision=rev),
    )
    assert got.ready and got.instances == 1 and got.max_instances == 1
    assert got.at_max_instances and not got.can_serve
    assert "never reach an instance" in got.reason


def test_a_masked_update_also_clears_what_the_config_no_longer_sets(
    gcpsim: GcpsimProcess, env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    connector = f"projects/{PROJECT}/locations/{REGION}/connectors/old-connector"
    ref = make_raw_service(
        gcpsim, target, template_extra={"vpcAccess": {"connector": connector, "egress": 2}}
    )
    created = env.run(run_acts.create_revision, revision_input(ref, "v1.1.0"))  # no connector
    r = requests.get(
        f"{_base(gcpsim)}/services/{ref.service}/revisions/{created.revision}", timeout=30
    )
    assert "connector" not in (r.json().get("vpcAccess") or {})
