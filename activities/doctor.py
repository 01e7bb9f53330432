"""`starter.py doctor ENV`: what a release, a restore and a drill of ENV will need from Google
Cloud, checked read-only before the first real release (the Temporal checks are in
`stagecoach.cli.doctor`). Every check says pass/fail, what it found and, failing, the fix.

The calls, all read-only:

| check | API call |
|---|---|
| credentials | `google.auth.default()` (Application Default Credentials) |
| apis | Service Usage v1 `services.get` for run, sqladmin and monitoring.googleapis.com |
| iam.run | Cloud Run v2 `services.testIamPermissions` on each service (RUN_PERMISSIONS) |
| iam.project | Resource Manager v1 `projects.testIamPermissions` (PROJECT_PERMISSIONS) |
| services | Cloud Run v2 `services.get` of every `<service>-<env>` |
| instance | Cloud SQL v1 `instances.get` |
| pitr | backup configuration + `instances.getLatestRecoveryTime` (ReadRecoveryWindow) |
| deletion_protection | settings.deletionProtectionEnabled, with cloudsql.instances.update |
| backup | `backupRuns.list`: the newest SUCCESSFUL run's age |
| monitoring | Monitoring v3 `timeSeries.list` of request_count per service, last hour |

Cloud SQL and Monitoring offer no testIamPermissions of their own: their permissions are tested
on the project.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httplib2
import requests
from google.api_core import exceptions as gexc
from google.cloud import monitoring_v3
from google.iam.v1 import iam_policy_pb2
from googleapiclient.errors import HttpError
from pydantic import BaseModel
from temporalio.exceptions import ApplicationError

from activities.cloud_sql import parse_time
from stagecoach.clients import clients_for
from stagecoach.payloads.common import InstanceRef, ServiceRef, Target
from stagecoach.payloads.sql import RecoveryWindowInput

APIS = ["run.googleapis.com", "sqladmin.googleapis.com", "monitoring.googleapis.com"]
# Cloud Run, tested on each service: read it, change traffic/scaling/template, read revisions
# and wait for operations.
RUN_PERMISSIONS = [
    "run.services.get",
    "run.services.update",
    "run.revisions.get",
    "run.revisions.list",
    "run.operations.get",
]
# Tested on the project, each with the predefined role that grants it.
PROJECT_PERMISSIONS = {
    "cloudsql.instances.get": "roles/cloudsql.admin",
    "cloudsql.instances.update": "roles/cloudsql.admin",  # deletion protection of own clones
    "cloudsql.instances.clone": "roles/cloudsql.admin",
    "cloudsql.instances.create": "roles/cloudsql.admin",  # a clone creates an instance
    "cloudsql.instances.restoreBackup": "roles/cloudsql.admin",
    "cloudsql.instances.delete": "roles/cloudsql.admin",  # drill scratch instances
    "cloudsql.backupRuns.create": "roles/cloudsql.admin",
    "cloudsql.backupRuns.get": "roles/cloudsql.admin",
    "cloudsql.backupRuns.list": "roles/cloudsql.admin",
    "cloudsql.instances.connect": "roles/cloudsql.client",  # validation queries
    "monitoring.timeSeries.list": "roles/monitoring.viewer",  # gate readings
    "iam.serviceAccounts.actAs": "roles/iam.serviceAccountUser",  # revisions run as it
}
REQUEST_COUNT = "run.googleapis.com/request_count"


class DoctorCheck(BaseModel):
    name: str
    ok: bool
    detail: str
    fix: str = ""


class Unreachable(Exception):
    """The API endpoint does not answer at all (exit 3)."""


_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    httplib2.error.ServerNotFoundError,
    ConnectionError,
    socket.timeout,
    gexc.RetryError,
    gexc.ServiceUnavailable,
)


def _message(exc: BaseException) -> str:
    if isinstance(exc, HttpError):
        return f"HTTP {exc.status_code}: {exc.reason}"
    if isinstance(exc, gexc.GoogleAPICallError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, ApplicationError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _t(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if dt else "?"


class Doctor:
    """The Google Cloud checks of one environment (read-only)."""

    def __init__(
        self,
        target: Target,
        project: str,
        region: str,
        services: list[str],
        instance: str | None,
        *,
        rpo: timedelta,
        max_backup_age: timedelta,
    ) -> None:
        self.target = target
        self.project = project
        self.region = region
        self.services = services
        self.instance = instance
        self.rpo = rpo
        self.max_backup_age = max_backup_age
        self.clients = clients_for(target)
        self.who = ""
        self.granted: set[str] | None = None
        self.checks: list[DoctorCheck] = []

    # ------------------------------------------------------------------ plumbing

    def _add(self, name: str, ok: bool, detail: str, fix: str = "") -> None:
        self.checks.append(DoctorCheck(name=name, ok=ok, detail=detail, fix="" if ok else fix))

    def _guard(self, name: str, fn: Callable[[], None], fix: str) -> None:
        """Run one check; an API error fails it (with `fix`), no answer at all is Unreachable."""
        try:
            fn()
        except _CONNECTION_ERRORS as exc:
            raise Unreachable(f"{name}: {_message(exc)}") from exc
        except (HttpError, gexc.GoogleAPICallError, ApplicationError) as exc:
            self._add(name, False, _message(exc), fix)

    def _member(self) -> str:
        return self.who or "WORKER_IDENTITY"

    # ------------------------------------------------------------------ checks

    def credentials(self) -> bool:
        if self.target.kind == "gcpsim":
            self._add(
                "credentials",
                True,
                f"anonymous (gcpsim at {self.target.host}:{self.target.port}); on real Google "
                "Cloud the worker uses Application Default Credentials",
            )
            return True
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            creds, adc_project = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"]
            )
        except DefaultCredentialsError as exc:
            self._add(
                "credentials",
                False,
                f"no Application Default Credentials ({str(exc).splitlines()[0]})",
                "run `gcloud auth application-default login`, or give the worker's host a "
                "service account (GOOGLE_APPLICATION_CREDENTIALS or the metadata server)",
            )
            return False
        email = getattr(creds, "service_account_email", None)
        if email and email != "default":
            self.who = f"serviceAccount:{email}"
            whose = f"service account {email}"
        else:
            whose = type(creds).__name__ + (
                " (user credentials from gcloud auth application-default login)"
                if "oauth2" in type(creds).__module__
                else ""
            )
        self._add("credentials", True, f"{whose}; ADC project {adc_project or '(none)'}", "")
        return True

    def apis(self) -> None:
        def check() -> None:
            api = self.clients.discovery("serviceusage", "v1").services()
            off = []
            for name in APIS:
                got = api.get(name=f"projects/{self.project}/services/{name}").execute()
                if got.get("state") != "ENABLED":
                    off.append(name)
            if off:
                self._add(
                    "apis",
                    False,
                    f"not enabled in {self.project}: {', '.join(off)}",
                    f"gcloud services enable {' '.join(off)} --project {self.project}",
                )
            else:
                self._add("apis", True, f"{', '.join(APIS)} enabled in {self.project}")

        self._guard(
            "apis",
            check,
            f"enable the Service Usage API or grant serviceusage.services.get on {self.project}",
        )

    def iam_project(self) -> None:
        def check() -> None:
            crm = self.clients.discovery("cloudresourcemanager", "v1").projects()
            wanted = list(PROJECT_PERMISSIONS)
            got = crm.testIamPermissions(
                resource=self.project, body={"permissions": wanted}
            ).execute()
            self.granted = set(got.get("permissions") or [])
            missing = [p for p in wanted if p not in self.granted]
            if not missing:
                self._add("iam.project", True, f"all {len(wanted)} permissions on {self.project}")
                return
            roles = sorted({PROJECT_PERMISSIONS[p] for p in missing})
            self._add(
                "iam.project",
                False,
                f"missing on {self.project}: {', '.join(missing)}",
                "; ".join(
                    f"gcloud projects add-iam-policy-binding {self.project} "
                    f"--member={self._member()} --role={r}"
                    for r in roles
                ),
            )

        self._guard("iam.project", check, f"grant resourcemanager.projects.get on {self.project}")

    def _ref(self, service: str) -> ServiceRef:
        return ServiceRef(
            target=self.target, project=self.project, region=self.region, service=service
        )

    def services_and_run_iam(self) -> None:
        found: list[str] = []

        def exist() -> None:
            missing = []
            for s in self.services:
                try:
                    self.clients.services.get_service(name=self._ref(s).name)
                    found.append(s)
                except gexc.NotFound:
                    missing.append(s)
            if missing:
                self._add(
                    "services",
                    False,
                    f"not found in {self.project}/{self.region}: {', '.join(missing)}",
                    "Stagecoach releases existing services: deploy each once (gcloud run deploy "
                    "NAME --image IMAGE --region REGION), or fix services[].name and "
                    "environments.ENV.project/region",
                )
            else:
                self._add("services", True, f"{', '.join(found)} exist")

        self._guard("services", exist, "grant roles/run.viewer to read the services")

        def iam() -> None:
            lacking: dict[str, list[str]] = {}
            for s in found:
                request = iam_policy_pb2.TestIamPermissionsRequest(
                    resource=self._ref(s).name, permissions=RUN_PERMISSIONS
                )
                got = self.clients.services.test_iam_permissions(request=request)
                miss = [p for p in RUN_PERMISSIONS if p not in set(got.permissions)]
                if miss:
                    lacking[s] = miss
            if lacking:
                self._add(
                    "iam.run",
                    False,
                    "; ".join(f"{s} lacks {', '.join(m)}" for s, m in lacking.items()),
                    "; ".join(
                        f"gcloud run services add-iam-policy-binding {s} --region {self.region} "
                        f"--project {self.project} --member={self._member()} "
                        "--role=roles/run.admin"
                        for s in lacking
                    ),
                )
            else:
                self._add(
                    "iam.run", True, f"{', '.join(RUN_PERMISSIONS)} on {len(found)} service(s)"
                )

        if found:
            self._guard("iam.run", iam, "grant run.services.getIamPolicy or roles/run.admin")

    def _sql(self) -> Any:
        return self.clients.sqladmin()

    def database(self) -> None:
        if not self.instance:
            self._add("instance", True, "no database configured for this environment")
            return
        inst: dict[str, Any] = {}

        def exists() -> None:
            try:
                inst.update(
                    self._sql()
                    .instances()
                    .get(project=self.project, instance=self.instance)
                    .execute()
                )
            except HttpError as exc:
                if exc.status_code != 404:
                    raise
                self._add(
                    "instance",
                    False,
                    f"{self.instance} not found in {self.project}",
                    "create it, or fix environments.ENV.database.instance",
                )
                return
            self._add("instance", True, f"{self.instance} is {inst.get('state')}")

        self._guard("instance", exists, "grant roles/cloudsql.viewer (or admin)")
        if not inst:
            return
        self._pitr()
        self._deletion_protection(inst)
        self._guard("backup", self._backup_age, "grant cloudsql.backupRuns.list")

    def _pitr(self) -> None:
        from activities.cloud_sql import CloudSqlActivities

        assert self.instance is not None
        ref = InstanceRef(target=self.target, project=self.project, instance=self.instance)
        enable = (
            f"gcloud sql instances patch {self.instance} --project {self.project} "
            "--enable-point-in-time-recovery --retained-transaction-log-days=7"
        )

        def check() -> None:
            w = CloudSqlActivities().read_recovery_window(RecoveryWindowInput(ref=ref))
            if not w.pitr_enabled:
                self._add(
                    "pitr",
                    False,
                    f"point-in-time recovery is off on {self.instance}: the data-loss window "
                    f"is the time since the last backup, far beyond the RPO "
                    f"{self.rpo.total_seconds() / 60:g} min",
                    enable,
                )
                return
            lag = datetime.now(UTC) - w.latest if w.latest else None
            if lag is None or lag > self.rpo:
                self._add(
                    "pitr",
                    False,
                    f"the latest recoverable time of {self.instance} is {w.latest} "
                    f"({lag} ago), beyond the RPO {self.rpo}",
                    "check the instance's transaction-log uploads (Cloud SQL console, "
                    "Backups) and its health",
                )
                return
            self._add(
                "pitr",
                True,
                f"on; transaction logs kept {w.retention_days} days (recoverable from "
                f"{_t(w.earliest)}); latest recoverable {lag.total_seconds():.0f}s ago, within "
                f"the RPO {self.rpo.total_seconds() / 60:g} min",
            )

        self._guard("pitr", check, f"grant cloudsql.instances.get; {enable}")

    def _deletion_protection(self, inst: dict[str, Any]) -> None:
        protected = bool((inst.get("settings") or {}).get("deletionProtectionEnabled"))
        if not protected:
            self._add(
                "deletion_protection",
                True,
                f"off on {self.instance} (consider `gcloud sql instances patch {self.instance} "
                "--deletion-protection`; drills handle either)",
            )
            return
        can_update = self.granted is None or "cloudsql.instances.update" in self.granted
        self._add(
            "deletion_protection",
            can_update,
            f"on for {self.instance}; its clones (drill scratch, recovery) inherit it and "
            + (
                "Stagecoach turns it off on its own scratch instances before deleting them"
                if can_update
                else "the worker lacks cloudsql.instances.update to turn it off on its own "
                "scratch instances, so a drill would leave its clone running"
            ),
            f"gcloud projects add-iam-policy-binding {self.project} --member={self._member()} "
            "--role=roles/cloudsql.admin",
        )

    def _backup_age(self) -> None:
        assert self.instance is not None
        runs = (
            self._sql()
            .backupRuns()
            .list(project=self.project, instance=self.instance, maxResults=50)
            .execute()
            .get("items", [])
        )
        good = [r for r in runs if r.get("status") == "SUCCESSFUL" and r.get("endTime")]
        take = "python starter.py backup ENV takes one; check settings.backupConfiguration.enabled"
        if not good:
            self._add("backup", False, f"no SUCCESSFUL backup of {self.instance}", take)
            return
        newest = max(t for r in good if (t := parse_time(str(r["endTime"]))) is not None)
        age = datetime.now(UTC) - newest
        hours = age.total_seconds() / 3600
        ok = age <= self.max_backup_age
        self._add(
            "backup",
            ok,
            f"newest SUCCESSFUL backup of {self.instance} ended {hours:.1f} h ago "
            f"(limit {self.max_backup_age.total_seconds() / 3600:g} h)",
            take,
        )

    def monitoring(self) -> None:
        def check() -> None:
            end = datetime.now(UTC).replace(microsecond=0)
            quiet = []
            for s in self.services:
                request = monitoring_v3.ListTimeSeriesRequest(
                    name=f"projects/{self.project}",
                    filter=(
                        f'metric.type = "{REQUEST_COUNT}" AND resource.type = '
                        f'"cloud_run_revision" AND resource.labels.service_name = "{s}"'
                    ),
                    interval=monitoring_v3.TimeInterval(
                        start_time=end - timedelta(hours=1), end_time=end
                    ),
                    aggregation=monitoring_v3.Aggregation(
                        alignment_period=timedelta(hours=1),
                        per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
                        cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
                    ),
                )
                series = self.clients.metrics.list_time_series(
                    request=request, retry=None, timeout=20
                )
                total = sum(int(p.value.int64_value) for ts in series for p in ts.points)
                if not total:
                    quiet.append(s)
            if quiet:
                self._add(
                    "monitoring",
                    False,
                    f"no request_count data in the last hour for {', '.join(quiet)}: the "
                    "gates would read nothing but inconclusive windows",
                    "send the services traffic before a release, or check that the Monitoring "
                    "API is enabled and the worker has roles/monitoring.viewer",
                )
            else:
                self._add("monitoring", True, f"request_count data for {', '.join(self.services)}")

        self._guard(
            "monitoring",
            check,
            f"gcloud projects add-iam-policy-binding {self.project} --member={self._member()} "
            "--role=roles/monitoring.viewer",
        )

    def run_all(self) -> list[DoctorCheck]:
        """Every check in order; Unreachable propagates (nothing answers)."""
        if not self.credentials():
            for name in ("apis", "iam.project", "services", "iam.run", "instance", "monitoring"):
                self._add(name, False, "not checked: no credentials", "fix the credentials first")
            return self.checks
        self.apis()
        self.iam_project()
        self.services_and_run_iam()
        self.database()
        self.monitoring()
        return self.checks
