"""Database bindings: what releases bind, how drift is judged, what a switch release holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import run_v2

from activities.cloud_run import CloudRunActivities, bound_connection
from stagecoach.bindings import check_serving
from stagecoach.config import ConfigError
from stagecoach.config_file import load_config
from stagecoach.payloads.release import ServicePlan
from stagecoach.payloads.run import ServingRevision
from stagecoach.plan import build_release, build_switch_release, database_binding
from testing.paths import ROOT

CFG = load_config(ROOT / "deploy.yaml")
PROD_DB = "legal-forms-prod:us-central1:legal-forms-db-prod"
RECOVERY = "legal-forms-prod:us-central1:legal-forms-db-prod-recovery-202611230930"


def plan(name: str, *, keep_image: bool = False) -> ServicePlan:
    release = build_release(CFG, "prod", "v1.2.0", "abcde")
    p = next(p for p in release.services if p.name == name)
    return p.model_copy(update={"image": ""}) if keep_image else p


def serving(*entries: tuple[str, int, str, str]) -> list[ServingRevision]:
    return [
        ServingRevision(revision=r, percent=pct, image=img, connection_name=conn)
        for r, pct, img, conn in entries
    ]


def test_releases_bind_only_the_services_that_use_the_database() -> None:
    release = build_release(CFG, "prod", "v1.2.0", "abcde")
    by_name = {p.name: p for p in release.services}
    assert by_name["python-pipeline"].database is None
    db = by_name["node-server"].database
    assert db is not None
    assert db.env_var == "INSTANCE_CONNECTION_NAME"
    assert db.connection_name == PROD_DB
    assert db.instance == "legal-forms-db-prod"
    assert not release.switch_database


def test_bound_to_the_configured_instance_or_unbound_is_fine() -> None:
    p = plan("node-server")
    for conn in (PROD_DB, ""):
        check = check_serving(p, serving(("r1", 100, "img:v1", conn)), "prod", switch=False)
        assert check.problem == ""
        assert check.image == ""  # the plan's own image is deployed


def test_drift_stops_the_release_and_names_both_fixes() -> None:
    p = plan("node-server")
    now = serving(("r2", 90, "img:v1", RECOVERY), ("r1", 10, "img:v1", PROD_DB))
    check = check_serving(p, now, "prod", switch=False)
    assert "serves from database instance legal-forms-db-prod-recovery-202611230930" in (
        check.problem
    )
    assert "environments.prod.database.instance" in check.problem
    assert "--switch-database" in check.problem
    assert check.before == "legal-forms-db-prod, legal-forms-db-prod-recovery-202611230930"
    # asked to switch: the same state is what the release is for
    assert check_serving(p, now, "prod", switch=True).problem == ""


def test_a_service_without_a_database_ignores_bindings() -> None:
    p = plan("python-pipeline")
    assert check_serving(p, serving(("r1", 100, "i", RECOVERY)), "prod", False).problem == ""


def test_keep_image_takes_the_image_serving_most_traffic() -> None:
    p = plan("node-server", keep_image=True)
    now = serving(("r2", 90, "img:v2", PROD_DB), ("r1", 10, "img:v1", PROD_DB))
    assert check_serving(p, now, "prod", switch=True).image == "img:v2"
    empty = check_serving(p, [], "prod", switch=True)
    assert "nothing to keep" in empty.problem


def test_switch_release_targets_the_recovery_instance_of_that_minute() -> None:
    at = datetime(2026, 11, 23, 9, 30, 41, tzinfo=UTC)
    r = build_switch_release(CFG, "prod", at, "abcde", bake=timedelta(seconds=2))
    assert [p.name for p in r.services] == ["node-server"]  # uses_database only
    p = r.services[0]
    assert p.image == ""  # keeps what serves
    assert p.database is not None and p.database.connection_name == RECOVERY
    assert p.revision == "node-server-prod-recovery-202611230930-abcde"
    assert r.switch_database and r.backup is None
    assert r.recovery is not None
    assert r.recovery.recovery_instance == "legal-forms-db-prod-recovery-202611230930"
    assert r.recovery.source_instance == "legal-forms-db-prod"
    # prod: restore_requires_approval -> approval before the first traffic step
    assert r.approval is not None and r.approval.before_weight == r.steps[0].weight == 10
    assert [s.bake for s in r.steps[:-1]] == [timedelta(seconds=2)] * 2


def test_switch_release_needs_a_service_that_uses_the_database() -> None:
    services = [s.model_copy(update={"uses_database": False}) for s in CFG.services]
    cfg = CFG.model_copy(update={"services": services})
    with pytest.raises(ConfigError, match="uses_database"):
        build_switch_release(cfg, "prod", datetime.now(UTC), "abcde")
    with pytest.raises(ConfigError, match="--switch-database"):
        build_release(cfg, "prod", "v1.2.0", "abcde", switch_database=True)


def test_the_binding_written_to_a_template_is_the_binding_read_back() -> None:
    svc = run_v2.Service(
        template=run_v2.RevisionTemplate(
            containers=[run_v2.Container(image="old")],
            volumes=[run_v2.Volume(name="other", empty_dir=run_v2.EmptyDirVolumeSource())],
        )
    )
    release = build_switch_release(CFG, "prod", datetime(2026, 11, 23, 9, 30, tzinfo=UTC), "x1")
    p = release.services[0]
    inp = p.create_input("canary", image="img:v1")
    CloudRunActivities._apply_template(svc, inp)
    assert bound_connection(svc.template, "INSTANCE_CONNECTION_NAME") == RECOVERY
    assert bound_connection(svc.template, "") == RECOVERY  # from the Cloud SQL volume alone
    assert [v.name for v in svc.template.volumes] == ["other", "cloudsql"]
    assert [m.mount_path for m in svc.template.containers[0].volume_mounts] == ["/cloudsql"]
    # a second apply does not stack volumes; no database removes the Cloud SQL volume
    CloudRunActivities._apply_template(svc, inp)
    assert [v.name for v in svc.template.volumes] == ["other", "cloudsql"]
    CloudRunActivities._apply_template(svc, inp.model_copy(update={"database": None}))
    assert [v.name for v in svc.template.volumes] == ["other"]
    assert bound_connection(svc.template, "INSTANCE_CONNECTION_NAME") == ""
    assert database_binding(CFG, "prod").connection_name == PROD_DB
