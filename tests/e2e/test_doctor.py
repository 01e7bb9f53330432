"""`starter.py doctor ENV` end to end: the CLI as a subprocess against the seeded gcpsim and the
real Temporal dev server. All pass as seeded; each failure mode, made in gcpsim through its real
APIs or its control surface, is named with its fix; exit codes 0 / 1 / 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from stagecoach.temporal import temporal_binary
from testing.gcpsim import GcpsimProcess
from testing.paths import ROOT

ALL = [
    "credentials", "apis", "iam.project", "services", "iam.run", "instance", "pitr",
    "deletion_protection", "backup", "monitoring", "temporal.namespace",
    "temporal.search_attributes",
]  # fmt: skip


def doctor(
    gcpsim: GcpsimProcess,
    temporal_address: str,
    env: str,
    *args: str,
    config: Path | None = None,
    **environ: str,
) -> tuple[int, dict[str, Any] | None, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("STAGECOACH_", "TEMPORAL_"))}
    e.update(
        TEMPORAL_ADDRESS=temporal_address,
        GCPSIM_PORT=str(gcpsim.port),
        GCPSIM_GRPC_PORT=str(gcpsim.grpc_port),
        STAGECOACH_CONFIG=str(config or ROOT / "deploy.yaml"),
        COLUMNS="250",
    )
    e.update(environ)
    res = subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), "doctor", env, "--json", *args],
        cwd=ROOT, env=e, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    report = json.loads(res.stdout) if res.stdout.strip().startswith("{") else None
    return res.returncode, report, res.stderr


def by_name(report: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    assert report is not None
    return {c["name"]: c for c in report["checks"]}


def failed(report: dict[str, Any] | None) -> set[str]:
    return {n for n, c in by_name(report).items() if not c["ok"]}


def sim_iam(gcpsim: GcpsimProcess, project: str, **settings: list[str]) -> None:
    r = requests.post(f"{gcpsim.url}/_sim/iam", json={"project": project, **settings}, timeout=10)
    r.raise_for_status()


@pytest.fixture
def clean(gcpsim: GcpsimProcess) -> Iterator[None]:
    yield
    for project in ("legal-forms-staging", "legal-forms-prod"):
        sim_iam(gcpsim, project)
    gcpsim.cli("fault", "--clear")


def test_all_checks_pass_on_the_seeded_simulator(
    gcpsim: GcpsimProcess, temporal_address: str
) -> None:
    for env in ("prod", "staging"):
        code, report, err = doctor(gcpsim, temporal_address, env)
        assert code == 0, (report, err)
        assert report is not None and report["ok"]
        assert list(by_name(report)) == ALL
    # the human view: one line per check
    e = {**os.environ, "TEMPORAL_ADDRESS": temporal_address, "GCPSIM_PORT": str(gcpsim.port),
         "GCPSIM_GRPC_PORT": str(gcpsim.grpc_port)}  # fmt: skip
    res = subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), "doctor", "prod"],
        cwd=ROOT, env=e, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("  pass  ") == len(ALL) and "all 12 checks passed" in res.stdout


@pytest.mark.usefixtures("clean")
@pytest.mark.parametrize(
    ("env", "settings", "expect", "fix_words"),
    [
        ("staging", {"disabled_apis": ["monitoring.googleapis.com"]}, {"apis"},
         ["gcloud services enable monitoring.googleapis.com --project legal-forms-staging"]),
        ("staging", {"denied_permissions": ["cloudsql.instances.clone",
                                            "monitoring.timeSeries.list"]},
         {"iam.project"},
         ["add-iam-policy-binding legal-forms-staging", "roles/cloudsql.admin",
          "roles/monitoring.viewer"]),
        ("staging", {"denied_permissions": ["run.services.update"]}, {"iam.run"},
         ["gcloud run services add-iam-policy-binding", "roles/run.admin"]),
        # prod's instance is protected: without cloudsql.instances.update a drill's clone stays
        ("prod", {"denied_permissions": ["cloudsql.instances.update"]},
         {"iam.project", "deletion_protection"}, ["roles/cloudsql.admin"]),
    ],
)  # fmt: skip
def test_project_settings_fail_their_checks_with_the_fix(
    gcpsim: GcpsimProcess,
    temporal_address: str,
    env: str,
    settings: dict[str, list[str]],
    expect: set[str],
    fix_words: list[str],
) -> None:
    sim_iam(gcpsim, f"legal-forms-{env}", **settings)
    code, report, err = doctor(gcpsim, temporal_address, env)
    assert code == 1, err
    assert failed(report) == expect
    fixes = " ".join(by_name(report)[n]["fix"] for n in expect)
    for w in fix_words:
        assert w in fixes, fixes


def _patch_staging(gcpsim: GcpsimProcess, settings: dict[str, Any]) -> None:
    from testing.cloudsql import sqladmin

    sql = sqladmin(gcpsim.url)
    op = (
        sql.instances()
        .patch(
            project="legal-forms-staging",
            instance="legal-forms-db-staging",
            body={"settings": settings},
        )
        .execute()
    )
    for _ in range(600):
        cur = sql.operations().get(project="legal-forms-staging", operation=op["name"]).execute()
        if cur["status"] == "DONE":
            return
        time.sleep(0.1)
    raise AssertionError("patch did not finish")


def test_pitr_off_fails_with_the_command_that_turns_it_on(
    gcpsim: GcpsimProcess, temporal_address: str
) -> None:
    _patch_staging(gcpsim, {"backupConfiguration": {"pointInTimeRecoveryEnabled": False}})
    try:
        code, report, _ = doctor(gcpsim, temporal_address, "staging")
    finally:
        _patch_staging(gcpsim, {"backupConfiguration": {"pointInTimeRecoveryEnabled": True}})
    assert code == 1 and failed(report) == {"pitr"}
    check = by_name(report)["pitr"]
    assert "point-in-time recovery is off" in check["detail"]
    assert "--enable-point-in-time-recovery" in check["fix"]


def test_an_old_backup_fails_the_backup_check(gcpsim: GcpsimProcess, temporal_address: str) -> None:
    code, report, _ = doctor(gcpsim, temporal_address, "staging", "--max-backup-age", "1s")
    assert code == 1 and failed(report) == {"backup"}
    assert "python starter.py backup" in by_name(report)["backup"]["fix"]


@pytest.mark.usefixtures("clean")
def test_monitoring_refusing_fails_the_monitoring_check(
    gcpsim: GcpsimProcess, temporal_address: str
) -> None:
    assert gcpsim.cli("fault", "monitoring.timeSeries.list", "--status", "403").returncode == 0
    code, report, _ = doctor(gcpsim, temporal_address, "staging")
    assert code == 1 and failed(report) == {"monitoring"}
    assert "roles/monitoring.viewer" in by_name(report)["monitoring"]["fix"]


def test_missing_services_and_instance_are_named(
    gcpsim: GcpsimProcess, temporal_address: str, tmp_path: Path
) -> None:
    data = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    data["services"].append({"name": "ghost", "image": "us-docker.pkg.dev/x/ghost"})
    data["environments"]["staging"]["database"]["instance"] = "no-such-instance"
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(yaml.safe_dump(data))
    code, report, _ = doctor(gcpsim, temporal_address, "staging", config=cfg)
    assert code == 1
    checks = by_name(report)
    assert not checks["services"]["ok"] and "ghost-staging" in checks["services"]["detail"]
    assert "gcloud run deploy" in checks["services"]["fix"]
    assert not checks["instance"]["ok"] and "no-such-instance" in checks["instance"]["detail"]


def test_temporal_namespace_and_search_attributes(
    gcpsim: GcpsimProcess, temporal_address: str
) -> None:
    code, report, _ = doctor(gcpsim, temporal_address, "staging", TEMPORAL_NAMESPACE="nope")
    assert code == 1 and failed(report) == {"temporal.namespace"}
    assert "TEMPORAL_NAMESPACE" in by_name(report)["temporal.namespace"]["fix"]

    bare = f"doctor-{uuid.uuid4().hex[:6]}"
    # the temporal CLI (Go), not a short Python script: the Temporal Python client's native
    # threads can crash a short-lived interpreter at exit (SIGABRT/SIGSEGV under load,
    # temporalio/sdk-python#300; starter.py ends with os._exit for that reason)
    res = subprocess.run(
        [temporal_binary(), "operator", "namespace", "create", "--address", temporal_address,
         "--namespace", bare, "--retention", "24h"],
        timeout=60, capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    for _ in range(30):
        code, report, _ = doctor(gcpsim, temporal_address, "staging", TEMPORAL_NAMESPACE=bare)
        if by_name(report)["temporal.namespace"]["ok"]:
            break
        time.sleep(1)
    assert code == 1 and failed(report) == {"temporal.search_attributes"}
    fix = by_name(report)["temporal.search_attributes"]["fix"]
    assert "temporal operator search-attribute create" in fix and "StagecoachPhase" in fix


def test_no_credentials_on_real_gcp_fails_first(
    gcpsim: GcpsimProcess, temporal_address: str, tmp_path: Path
) -> None:
    data = yaml.safe_load((ROOT / "deploy.yaml").read_text())
    data["target"] = "gcp"
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(yaml.safe_dump(data))
    code, report, _ = doctor(
        gcpsim, temporal_address, "staging", config=cfg,
        HOME=str(tmp_path), GOOGLE_APPLICATION_CREDENTIALS="", CLOUDSDK_CONFIG=str(tmp_path),
        GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9",
    )  # fmt: skip
    assert code == 1
    checks = by_name(report)
    assert not checks["credentials"]["ok"]
    assert "gcloud auth application-default login" in checks["credentials"]["fix"]
    assert checks["apis"]["detail"] == "not checked: no credentials"


def test_unreachable_exits_3(gcpsim: GcpsimProcess, temporal_address: str) -> None:
    code, _, err = doctor(gcpsim, temporal_address, "staging", GCPSIM_PORT="9")
    assert code == 3 and err.startswith("error: gcpsim at 127.0.0.1:9 does not answer"), err
    code, _, err = doctor(gcpsim, temporal_address, "staging", TEMPORAL_ADDRESS="127.0.0.1:9")
    assert code == 3 and "Temporal at 127.0.0.1:9 does not answer" in err, err
