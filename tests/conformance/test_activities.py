"""The activities, run through `ActivityEnvironment`: real activity code, real Google clients,
real gcpsim (the session `gcpsim` fixture). No mocks.

Cloud Run tests create their own services (project CONFORMANCE_PROJECT), so other test modules
sharing the simulator are not disturbed; Cloud SQL tests use the seeded `staging` instance and
scratch instances named after the test.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import run_v2
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import all_activities
from activities.cloud_run import CloudRunActivities
from activities.cloud_sql import CloudSqlActivities
from activities.db_verify import DatabaseActivities
from activities.monitoring import MonitoringActivities
from activities.notify import WEBHOOK_ENV, notify
from activities.smoke import smoke_test
from stagecoach.clients import clients_for
from stagecoach.payloads.common import (
    DatabaseBinding,
    InstanceRef,
    NotifyInput,
    ServiceRef,
    Target,
    TrafficTarget,
)
from stagecoach.payloads.monitoring import ReadCanaryMetricsInput
from stagecoach.payloads.policy import Sizing
from stagecoach.payloads.run import (
    CreateRevisionInput,
    ReadServingInput,
    SetScalingInput,
    SetTrafficInput,
    SmokeTestInput,
)
from stagecoach.payloads.sql import (
    CloneInstanceInput,
    CreateBackupInput,
    DeleteInstanceInput,
    ListBackupsInput,
    RestoreBackupInput,
    ValidateDatabaseInput,
)
from testing.gcpsim import GcpsimProcess

CONFORMANCE_PROJECT = "stagecoach-conformance"
REGION = "us-central1"
IMAGE = "us-central1-docker.pkg.dev/stagecoach-conformance/apps/web"
SIZING = Sizing(min_instances=0, max_instances=4, memory="1Gi", cpu="1")
SQL_PROJECT = "legal-forms-staging"
SQL_INSTANCE = "legal-forms-db-staging"
TABLES = ["cases", "parties", "party_issue_selections"]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def target(gcpsim: GcpsimProcess) -> Target:
    return Target(kind="gcpsim", host="127.0.0.1", port=gcpsim.port, grpc_port=gcpsim.grpc_port)


@pytest.fixture(autouse=True)
def _no_leftover_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "gcpsim" in request.fixturenames:
        request.getfixturevalue("gcpsim").cli("fault", "--clear")


@pytest.fixture
def env() -> ActivityEnvironment:
    return ActivityEnvironment()


@pytest.fixture(scope="module")
def run_acts() -> CloudRunActivities:
    return CloudRunActivities()


@pytest.fixture(scope="module")
def sql_acts() -> CloudSqlActivities:
    return CloudSqlActivities()


def _short_id() -> str:
    return uuid.uuid4().hex[:6]


def make_service(target: Target, version: str = "v1.0.0") -> ServiceRef:
    """A new Cloud Run service of our own, one ready revision serving 100% (LATEST)."""
    name = f"conf-{_short_id()}"
    services = clients_for(target).services
    op = services.create_service(
        parent=f"projects/{CONFORMANCE_PROJECT}/locations/{REGION}",
        service=run_v2.Service(
            template=run_v2.RevisionTemplate(
                containers=[run_v2.Container(image=f"{IMAGE}:{version}")],
                scaling=run_v2.RevisionScaling(min_instance_count=0, max_instance_count=4),
            )
        ),
        service_id=name,
    )
    op.result(timeout=60)
    return ServiceRef(target=target, project=CONFORMANCE_PROJECT, region=REGION, service=name)


def revision_input(ref: ServiceRef, version: str, tag: str = "canary") -> CreateRevisionInput:
    return CreateRevisionInput(
        ref=ref,
        revision=f"{ref.service}-{version.replace('.', '-')}-{_short_id()}",
        image=f"{IMAGE}:{version}",
        tag=tag,
        sizing=SIZING,
        env={"LOG_LEVEL": "debug"},
        secrets={"DATABASE_PASSWORD": "db-password"},
        ingress="all",
        vpc_connector="conf-connector",
    )


def revisions_of(ref: ServiceRef) -> list[str]:
    request = run_v2.ListRevisionsRequest(parent=ref.name, page_size=100)
    revisions = clients_for(ref.target).revisions.list_revisions(request=request)
    return sorted(str(r.name).rsplit("/", 1)[-1] for r in revisions)


def expect_app_error(fn: Any, *args: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as info:
        fn(*args)
    return info.value


# ---------------------------------------------------------------------------- registry


def test_all_activities_are_named_and_unique() -> None:
    from temporalio import activity

    from stagecoach.contract import Activity
    from stagecoach.payloads.base import Payload

    defs = [activity._Definition.must_from_callable(fn) for fn in all_activities()]
    # the lock activities are async: they use the worker's own (async) Temporal client
    uses_temporal = {"AcquireServiceLocks", "ReleaseServiceLocks"}
    for d in defs:  # one payload model in (the pydantic converter needs the type), sync
        assert d.arg_types and len(d.arg_types) == 1, d.name
        assert issubclass(d.arg_types[0], Payload), d.name
        assert d.is_async == (d.name in uses_temporal), d.name
    names = [str(d.name) for d in defs]
    contract_names = [v for k, v in vars(Activity).items() if not k.startswith("_")]
    assert sorted(names) == sorted(contract_names)
    # the names recorded in histories, spelled out: a renamed contract entry fails here
    assert sorted(names) == sorted(
        [
            "GetServiceState", "ReadServing", "CreateRevision", "SetTraffic", "SetScaling",
            "FindPreviousRevision", "SmokeTest", "CheckRevisionHealth",
            "ReadCanaryMetrics", "CreateBackup", "ListBackups", "RestoreBackup",
            "ReadRecoveryWindow", "CloneInstance", "DeleteInstance", "ValidateDatabase",
            "Notify", "LoadPolicy", "AcquireServiceLocks", "ReleaseServiceLocks",
            "CreateInstance", "PromoteReplica", "DeployService", "DeleteService", "ReadDns",
            "MoveDns", "VerifyDns", "StartHook", "ReadHookExecution", "CancelHookExecution",
            "ListReplicas", "DeleteReplica", "CreateReplica", "WaitReplicaCaughtUp",
        ]
    )  # fmt: skip


# ---------------------------------------------------------------------------- Cloud Run


def test_get_service_state_of_a_seeded_service(
    env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    ref = ServiceRef(target=target, project="legal-forms-dev", region=REGION,
                     service="node-server-dev")  # fmt: skip
    state = env.run(run_acts.get_service_state, ref)
    assert state.image.endswith("/node-server:v1.1.0")
    assert sum(t.percent for t in state.traffic) == 100
    assert state.latest_ready_revision.startswith("node-server-dev-")
    assert "/" not in state.latest_ready_revision
    assert state.uri.startswith("http://127.0.0.1:")
    assert not state.drained


def test_read_serving_reports_images_and_database_bindings(
    env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    dev = "legal-forms-dev:us-central1:legal-forms-db-dev"

    def ref(service: str) -> ServiceRef:
        return ServiceRef(target=target, project="legal-forms-dev", region=REGION, service=service)

    [node] = env.run(
        run_acts.read_serving, ReadServingInput(ref=ref("node-server-dev"), env_var="X_DB")
    )
    assert node.percent == 100 and node.image.endswith("/node-server:v1.1.0")
    assert node.connection_name == dev  # from the Cloud SQL volume (no X_DB variable)
    [pipeline] = env.run(run_acts.read_serving, ReadServingInput(ref=ref("python-pipeline-dev")))
    assert pipeline.connection_name == ""  # uses no database

    # a split: both revisions, most traffic first, each with its own binding
    svc = make_service(target)
    inp = revision_input(svc, "v2.0.0").model_copy(
        update={"database": DatabaseBinding(env_var="X_DB", connection_name="p:r:other")}
    )
    stable = env.run(run_acts.get_service_state, svc).latest_ready_revision
    created = env.run(run_acts.create_revision, inp)
    env.run(
        run_acts.set_traffic,
        SetTrafficInput(
            ref=svc,
            traffic=[
                TrafficTarget(revision=stable, percent=70),
                TrafficTarget(revision=created.revision, percent=30, tag="canary"),
            ],
        ),
    )
    split = env.run(run_acts.read_serving, ReadServingInput(ref=svc, env_var="X_DB"))
    assert [(s.revision, s.percent, s.connection_name) for s in split] == [
        (stable, 70, ""),
        (created.revision, 30, "p:r:other"),
    ]
    assert split[1].image == inp.image


def test_create_revision_is_idempotent(
    env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    ref = make_service(target)
    before = env.run(run_acts.get_service_state, ref)
    assert [t.type for t in before.traffic] == ["LATEST"]
    stable = before.latest_ready_revision
    inp = revision_input(ref, "v2.0.0")

    first = env.run(run_acts.create_revision, inp)
    assert first.created and first.revision == inp.revision
    assert first.tag_url.startswith("http://")
    # the traffic it found, LATEST pinned: what a rollback restores
    assert first.before == [TrafficTarget(type="REVISION", revision=stable, percent=100)]

    state = env.run(run_acts.get_service_state, ref)
    by_rev = {t.revision: t for t in state.traffic}
    # LATEST was pinned to the stable revision, so the new one gets no traffic.
    assert by_rev[stable].percent == 100 and by_rev[stable].type == "REVISION"
    assert by_rev[inp.revision].percent == 0 and by_rev[inp.revision].tag == "canary"
    assert state.image == inp.image
    assert (state.min_instances, state.max_instances) == (0, 4)

    rev = clients_for(target).revisions.get_revision(name=f"{ref.name}/revisions/{inp.revision}")
    container = rev.containers[0]
    env_vars = {e.name: e for e in container.env}
    assert env_vars["LOG_LEVEL"].value == "debug"
    assert env_vars["DATABASE_PASSWORD"].value_source.secret_key_ref.secret == "db-password"
    assert env_vars["DATABASE_PASSWORD"].value_source.secret_key_ref.version == "latest"
    assert container.resources.limits["memory"] == "1Gi"
    assert rev.vpc_access.connector.endswith("/connectors/conf-connector")

    retry = ActivityEnvironment()  # how Temporal runs a retry: attempt 2
    retry.info = dataclasses.replace(retry.info, attempt=2)
    again = retry.run(run_acts.create_revision, inp)
    assert not again.created
    assert again.tag_url == first.tag_url
    assert again.before == first.before  # the canary's own 0% entry taken out
    assert revisions_of(ref) == sorted([stable, inp.revision])

    # a first attempt that meets the revision anyway (a reset workflow) adopts it as well
    reset = env.run(run_acts.create_revision, inp)
    assert reset.before == first.before
    assert revisions_of(ref) == sorted([stable, inp.revision])
    clash = inp.model_copy(update={"image": inp.image + "-other"})
    err = expect_app_error(lambda i: env.run(run_acts.create_revision, i), clash)
    assert err.type == "AlreadyExists" and err.non_retryable


def test_create_revision_resumes_the_operation_in_its_heartbeat(
    run_acts: CloudRunActivities, target: Target
) -> None:
    ref = make_service(target)
    inp = revision_input(ref, "v2.1.0")
    beats: list[Any] = []
    first_env = ActivityEnvironment()
    first_env.on_heartbeat = lambda *details: beats.append(details)
    first = first_env.run(run_acts.create_revision, inp)
    op_details = [d[0] for d in beats if d and isinstance(d[0], dict) and d[0].get("op")]
    assert op_details, "the operation name was not heartbeated"

    # A retried attempt that finds the operation in its heartbeat details resumes it.
    retry_env = ActivityEnvironment()
    retry_env.info = dataclasses.replace(
        retry_env.info, attempt=2, heartbeat_details=[op_details[-1]]
    )
    resumed = retry_env.run(run_acts.create_revision, inp)
    assert resumed.revision == inp.revision
    assert resumed.tag_url == first.tag_url
    assert len(revisions_of(ref)) == 2


def test_broken_revision_is_not_ready_and_not_retryable(
    gcpsim: GcpsimProcess, env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    ref = make_service(target)
    before = env.run(run_acts.get_service_state, ref)
    gcpsim.cli("behavior", ref.service, "v6.6.6", "--broken")
    err = expect_app_error(env.run, run_acts.create_revision, revision_input(ref, "v6.6.6"))
    assert err.type == "RevisionNotReady"
    assert err.non_retryable
    assert "not ready" in err.message
    after = env.run(run_acts.get_service_state, ref)
    assert after.latest_ready_revision == before.latest_ready_revision
    serving = {t.revision for t in after.traffic if t.percent}
    assert serving <= {before.latest_ready_revision, ""}


def test_set_traffic_split_and_back(
    env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    ref = make_service(target)
    stable = env.run(run_acts.get_service_state, ref).latest_ready_revision
    canary = env.run(run_acts.create_revision, revision_input(ref, "v3.0.0")).revision
    split = [
        TrafficTarget(revision=stable, percent=90),
        TrafficTarget(revision=canary, percent=10, tag="canary"),
    ]
    result = env.run(run_acts.set_traffic, SetTrafficInput(ref=ref, traffic=split, reason="t"))
    assert result.changed
    state = env.run(run_acts.get_service_state, ref)
    assert {(t.revision, t.percent, t.tag) for t in state.traffic} == {
        (stable, 90, ""),
        (canary, 10, "canary"),
    }
    # Same list, other order: nothing to do.
    same = env.run(run_acts.set_traffic, SetTrafficInput(ref=ref, traffic=split[::-1]))
    assert not same.changed

    back = [
        TrafficTarget(revision=stable, percent=100),
        TrafficTarget(revision=canary, percent=0, tag="canary"),
    ]
    result = env.run(run_acts.set_traffic, SetTrafficInput(ref=ref, traffic=back))
    assert result.changed
    state = env.run(run_acts.get_service_state, ref)
    assert {(t.revision, t.percent) for t in state.traffic if t.percent} == {(stable, 100)}
    assert len(revisions_of(ref)) == 2  # traffic-only updates create no revision


def test_set_traffic_rereads_after_a_concurrent_modification(
    gcpsim: GcpsimProcess, env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    ref = make_service(target)
    stable = env.run(run_acts.get_service_state, ref).latest_ready_revision
    canary = env.run(run_acts.create_revision, revision_input(ref, "v3.1.0")).revision
    split = [
        TrafficTarget(revision=stable, percent=50),
        TrafficTarget(revision=canary, percent=50, tag="canary"),
    ]
    # 409 ABORTED (what a stale etag gets): re-read and try again inside the same attempt.
    assert (
        gcpsim.cli("fault", "run.services.patch", "--status", "409", "--times", "1").returncode == 0
    )
    result = env.run(run_acts.set_traffic, SetTrafficInput(ref=ref, traffic=split))
    assert result.changed
    assert {(t.revision, t.percent) for t in result.traffic} == {(stable, 50), (canary, 50)}


def test_invalid_traffic_is_a_permanent_error(
    env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    ref = make_service(target)
    stable = env.run(run_acts.get_service_state, ref).latest_ready_revision
    bad = [TrafficTarget(revision=stable, percent=90)]
    err = expect_app_error(env.run, run_acts.set_traffic, SetTrafficInput(ref=ref, traffic=bad))
    assert err.non_retryable
    assert err.type == "InvalidArgument"
    assert "100" in err.message


def test_drain_and_resume_scaling(
    env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    ref = make_service(target)
    before = env.run(run_acts.get_service_state, ref)
    drained = env.run(run_acts.set_scaling, SetScalingInput(ref=ref, drained=True))
    assert drained.drained
    assert env.run(run_acts.get_service_state, ref).drained
    again = env.run(run_acts.set_scaling, SetScalingInput(ref=ref, drained=True))
    assert again.drained

    resume = SetScalingInput(
        ref=ref,
        drained=False,
        min_instances=before.min_instances,
        max_instances=before.max_instances,
    )
    resumed = env.run(run_acts.set_scaling, resume)
    assert not resumed.drained
    assert (resumed.min_instances, resumed.max_instances) == (
        before.min_instances,
        before.max_instances,
    )
    assert env.run(run_acts.set_scaling, resume) == resumed
    assert revisions_of(ref) == [before.latest_ready_revision]  # no new revision


def test_unknown_service_is_not_found_and_not_retryable(
    env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    ref = ServiceRef(target=target, project=CONFORMANCE_PROJECT, region=REGION,
                     service="no-such-service")  # fmt: skip
    err = expect_app_error(env.run, run_acts.get_service_state, ref)
    assert err.type == "NotFound"
    assert err.non_retryable
    assert "no-such-service" in err.message


def test_a_single_503_is_absorbed_and_a_failed_update_is_transient(
    gcpsim: GcpsimProcess, env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    ref = make_service(target)
    # get_service retries a 503 itself (the client's default retry).
    assert (
        gcpsim.cli("fault", "run.services.get", "--status", "503", "--times", "1").returncode == 0
    )
    state = env.run(run_acts.get_service_state, ref)
    assert state.latest_ready_revision

    # update_service does not: the activity fails with a retryable error, Temporal retries.
    assert (
        gcpsim.cli("fault", "run.services.patch", "--status", "503", "--times", "1").returncode == 0
    )
    err = expect_app_error(env.run, run_acts.set_scaling, SetScalingInput(ref=ref, drained=True))
    assert not err.non_retryable
    assert (err.type or "").startswith("Transient")
    # ... and the retry succeeds.
    assert env.run(run_acts.set_scaling, SetScalingInput(ref=ref, drained=True)).drained


# ---------------------------------------------------------------------------- smoke test


def test_smoke_test_passes_then_fails_with_a_503(
    gcpsim: GcpsimProcess, env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    ref = make_service(target)
    created = env.run(run_acts.create_revision, revision_input(ref, "v4.0.0"))
    ok = env.run(smoke_test, SmokeTestInput(url=created.tag_url, path="/healthz"))
    assert ok.ok and ok.status == 200

    assert gcpsim.cli("behavior", ref.service, "v4.0.0", "--smoke-fail").returncode == 0
    bad = env.run(smoke_test, SmokeTestInput(url=created.tag_url, path="/healthz", attempts=2))
    assert not bad.ok
    assert bad.status == 503
    assert "503" in bad.detail


def test_smoke_test_reports_an_unreachable_url(env: ActivityEnvironment) -> None:
    result = env.run(smoke_test, SmokeTestInput(url="http://127.0.0.1:9", attempts=1))
    assert not result.ok and result.status == 0 and result.detail


# ---------------------------------------------------------------------------- monitoring


def test_read_canary_metrics_after_shifting_traffic(
    env: ActivityEnvironment, run_acts: CloudRunActivities, target: Target
) -> None:
    ref = make_service(target)
    stable = env.run(run_acts.get_service_state, ref).latest_ready_revision
    canary = env.run(run_acts.create_revision, revision_input(ref, "v5.0.0")).revision
    split = [
        TrafficTarget(revision=stable, percent=50),
        TrafficTarget(revision=canary, percent=50, tag="canary"),
    ]
    env.run(run_acts.set_traffic, SetTrafficInput(ref=ref, traffic=split))
    acts = MonitoringActivities()
    inp = ReadCanaryMetricsInput(
        ref=ref, canary_revision=canary, stable_revisions=[stable], window=timedelta(seconds=5)
    )
    deadline = time.monotonic() + 60
    metrics = env.run(acts.read_canary_metrics, inp)
    while time.monotonic() < deadline and not (
        metrics.canary.requests > 0 and metrics.stable and metrics.stable.requests > 0
    ):
        time.sleep(1)
        metrics = env.run(acts.read_canary_metrics, inp)
    assert metrics.canary.requests > 0
    assert metrics.stable is not None and metrics.stable.requests > 0
    assert 0 <= metrics.canary.errors <= metrics.canary.requests
    assert metrics.canary.p95_ms is not None and metrics.canary.p95_ms > 0
    assert metrics.stable.p95_ms is not None and metrics.stable.p95_ms > 0
    assert metrics.end - metrics.start == timedelta(seconds=5)

    no_stable = env.run(acts.read_canary_metrics, inp.model_copy(update={"stable_revisions": []}))
    assert no_stable.stable is None


# ---------------------------------------------------------------------------- Cloud SQL


def sql_ref(target: Target, instance: str = SQL_INSTANCE) -> InstanceRef:
    return InstanceRef(target=target, project=SQL_PROJECT, instance=instance)


def test_create_backup_is_idempotent_and_listed(
    env: ActivityEnvironment, sql_acts: CloudSqlActivities, target: Target
) -> None:
    ref = sql_ref(target)
    description = f"Pre-deployment backup v9.9.{_short_id()} {datetime.now(UTC):%Y-%m-%dT%H:%MZ}"
    first = env.run(sql_acts.create_backup, CreateBackupInput(ref=ref, description=description))
    assert first.status == "SUCCESSFUL"
    assert first.description == description
    again = env.run(sql_acts.create_backup, CreateBackupInput(ref=ref, description=description))
    assert again.id == first.id

    backups = env.run(sql_acts.list_backups, ListBackupsInput(ref=ref, limit=50))
    assert [b.id for b in backups].count(first.id) == 1
    assert sum(1 for b in backups if b.description == description) == 1
    assert len([b for b in backups if b.type == "AUTOMATED"]) >= 1


def test_list_backups_respects_the_limit(
    env: ActivityEnvironment, sql_acts: CloudSqlActivities, target: Target
) -> None:
    backups = env.run(sql_acts.list_backups, ListBackupsInput(ref=sql_ref(target), limit=2))
    assert len(backups) == 2
    assert all(b.id and b.status for b in backups)


def test_restore_clone_validate_and_delete(
    env: ActivityEnvironment, sql_acts: CloudSqlActivities, target: Target
) -> None:
    ref = sql_ref(target)
    db = DatabaseActivities()
    backups = env.run(sql_acts.list_backups, ListBackupsInput(ref=ref, limit=10))
    latest = next(b for b in backups if b.status == "SUCCESSFUL")

    # Point-in-time clone (a minute ago), validate it, delete it (twice: idempotent).
    scratch = f"{SQL_INSTANCE}-pitr-{_short_id()}"
    clone = CloneInstanceInput(
        ref=ref, destination=scratch, point_in_time=datetime.now(UTC) - timedelta(seconds=1)
    )
    result = env.run(sql_acts.clone_instance, clone)
    assert result.seconds >= 0
    again = env.run(sql_acts.clone_instance, clone)  # exists and RUNNABLE: done
    assert again.seconds >= 0

    report = env.run(
        db.validate_database,
        ValidateDatabaseInput(ref=sql_ref(target, scratch), database="legalforms", tables=TABLES),
    )
    assert report.instance == scratch
    assert [t.table for t in report.tables] == TABLES
    assert all(t.rows > 0 for t in report.tables), report
    assert report.ok, report.problems
    assert report.newest is not None

    deleted = env.run(sql_acts.delete_instance, DeleteInstanceInput(ref=sql_ref(target, scratch)))
    assert deleted.operation
    gone = env.run(sql_acts.delete_instance, DeleteInstanceInput(ref=sql_ref(target, scratch)))
    assert gone.operation == ""

    # Restore the latest backup into a scratch clone created from that backup.
    drill = f"{SQL_INSTANCE}-drill-{_short_id()}"
    from_backup = CloneInstanceInput(ref=ref, destination=drill, backup_id=latest.id)
    assert env.run(sql_acts.clone_instance, from_backup).operation
    restore = RestoreBackupInput(
        ref=sql_ref(target, drill), backup_id=latest.id, source_instance=SQL_INSTANCE
    )
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    restored = env.run(sql_acts.restore_backup, restore)
    assert restored.operation and restored.seconds >= 0
    assert beats and beats[-1][0]["op"] == restored.operation

    # A retried attempt resumes the operation in its heartbeat details (no second restore) ...
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=[beats[-1][0]])
    assert retry.run(sql_acts.restore_backup, restore).operation == restored.operation
    # ... and one whose operation the API no longer knows starts a new one.
    stale = {**beats[-1][0], "op": "00000000-0000-0000-0000-000000000000"}
    retry.info = dataclasses.replace(retry.info, heartbeat_details=[stale])
    again = retry.run(sql_acts.restore_backup, restore)
    assert again.operation and again.operation != restored.operation
    report = env.run(
        db.validate_database,
        ValidateDatabaseInput(ref=sql_ref(target, drill), database="legalforms", tables=TABLES),
    )
    assert all(t.rows > 0 for t in report.tables), report
    env.run(sql_acts.delete_instance, DeleteInstanceInput(ref=sql_ref(target, drill)))


def test_validate_reports_problems_instead_of_failing(
    env: ActivityEnvironment, target: Target
) -> None:
    report = env.run(
        DatabaseActivities().validate_database,
        ValidateDatabaseInput(
            ref=sql_ref(target), database="legalforms", tables=["cases", 'no_such"table']
        ),
    )
    assert not report.ok
    assert [t.table for t in report.tables] == ["cases"]
    assert any("no_such" in p for p in report.problems)


def test_unknown_instance_is_not_found(
    env: ActivityEnvironment, sql_acts: CloudSqlActivities, target: Target
) -> None:
    err = expect_app_error(
        env.run, sql_acts.list_backups, ListBackupsInput(ref=sql_ref(target, "no-such-db"))
    )
    assert err.type == "NotFound" and err.non_retryable


def test_operation_in_progress_is_transient(
    env: ActivityEnvironment, sql_acts: CloudSqlActivities, target: Target
) -> None:
    ref = sql_ref(target)
    sql = clients_for(target).sqladmin()
    op = sql.backupRuns().insert(project=SQL_PROJECT, instance=SQL_INSTANCE,
                                 body={"description": f"busy {_short_id()}"}).execute()  # fmt: skip
    try:
        err = expect_app_error(
            env.run,
            sql_acts.create_backup,
            CreateBackupInput(ref=ref, description=f"while busy {_short_id()}"),
        )
        assert not err.non_retryable
        assert err.type == "TransientOperationInProgress"
    finally:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = sql.operations().get(project=SQL_PROJECT, operation=op["name"]).execute()
            if got["status"] == "DONE":
                break
            time.sleep(0.2)


# ---------------------------------------------------------------------------- notify


def test_notify_without_a_webhook_is_a_no_op(
    env: ActivityEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    assert env.run(notify, NotifyInput(event="started", text="hello")) is None


def test_notify_posts_slack_json_and_never_fails(
    env: ActivityEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/hook")
        env.run(notify, NotifyInput(event="promoted", text="legal-forms v1.2.0 promoted"))
        assert len(received) == 1 and "legal-forms v1.2.0 promoted" in received[0]["text"]
    finally:
        server.shutdown()
        server.server_close()
    # The server is gone: the notification is logged as undelivered, the activity returns.
    assert env.run(notify, NotifyInput(event="failed", text="x")) is None


# ---------------------------------------------------------------------------- error mapping


def _http_error(status: int, reason: str, message: str = "boom") -> Exception:
    import json

    import httplib2
    from googleapiclient.errors import HttpError

    detail = {"message": message, "domain": "global", "reason": reason}
    body = {"error": {"code": status, "message": message, "errors": [detail]}}
    return HttpError(httplib2.Response({"status": status}), json.dumps(body).encode())


@pytest.mark.parametrize(
    ("exc", "type_", "retryable"),
    [
        (_http_error(409, "operationInProgress"), "TransientOperationInProgress", True),
        (_http_error(409, "instanceAlreadyExists"), "Conflict", False),
        (_http_error(404, "instanceDoesNotExist"), "NotFound", False),
        (_http_error(403, "notAuthorized"), "PermissionDenied", False),
        (_http_error(403, "rateLimitExceeded"), "TransientRateLimited", True),
        (_http_error(503, "backendError"), "TransientUnavailable", True),
        (_http_error(429, "rateLimitExceeded"), "TransientResourceExhausted", True),
        (_http_error(400, "invalid"), "InvalidArgument", False),
    ],
)
def test_sqladmin_errors_map_by_status_and_reason(
    exc: Exception, type_: str, retryable: bool
) -> None:
    from activities.errors import to_application_error

    err = to_application_error(exc)
    assert err is not None
    assert (err.type, not err.non_retryable) == (type_, retryable)
    assert err.message == "boom"


def test_api_core_errors_map_by_grpc_status() -> None:
    import concurrent.futures

    from google.api_core import exceptions as gexc
    from google.auth.exceptions import DefaultCredentialsError

    from activities.errors import to_application_error

    cases: list[tuple[BaseException, str, bool]] = [
        (gexc.NotFound("gone"), "NotFound", False),
        (gexc.FailedPrecondition("not ready"), "FailedPrecondition", False),
        (gexc.Aborted("concurrent"), "TransientAborted", True),
        (gexc.AlreadyExists("exists"), "AlreadyExists", False),
        (gexc.ServiceUnavailable("down"), "TransientUnavailable", True),
        (gexc.TooManyRequests("slow down"), "TransientResourceExhausted", True),
        (
            gexc.RetryError("deadline", gexc.ServiceUnavailable("x")),
            "TransientRetryExhausted",
            True,
        ),
        (concurrent.futures.TimeoutError(), "TransientTimeout", True),
        (ConnectionRefusedError("refused"), "TransientConnection", True),
        (DefaultCredentialsError("no ADC"), "Unauthenticated", False),
    ]
    for exc, type_, retryable in cases:
        err = to_application_error(exc)
        assert err is not None, exc
        assert (err.type, not err.non_retryable) == (type_, retryable), exc
    assert to_application_error(ApplicationError("mine", type="X")) is None
    assert to_application_error(KeyError("bug")) is None
