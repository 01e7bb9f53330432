"""Cloud SQL Admin API v1 activities: on-demand backups, restores, point-in-time clones and
deleting scratch instances.

Cloud SQL runs one admin operation at a time per instance (`409 operationInProgress`, mapped to a
transient error, so Temporal backs off and retries). Every activity waits for its operation
itself, heartbeating; the operation's name and the time of the request are kept in the heartbeat
details, so a retried attempt resumes waiting for the same operation instead of starting another.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from googleapiclient.errors import HttpError
from temporalio import activity

from activities.errors import api_errors, permanent, transient
from stagecoach.clients import Clients, clients_for
from stagecoach.contract import BACKUP_FAILED, Activity
from stagecoach.payloads.common import InstanceRef, Target
from stagecoach.payloads.sql import (
    BackupInfo,
    CloneInstanceInput,
    CreateBackupInput,
    DeleteInstanceInput,
    ListBackupsInput,
    OperationResult,
    RecoveryWindow,
    RecoveryWindowInput,
    RestoreBackupInput,
)

# googleapiclient retries (>= 500, 429, connection errors) for reads only: a retried POST could
# start a second operation.
READ_RETRIES = 3
OPERATION_DEADLINE_SECONDS = 6 * 3600  # backups and restores of big instances take hours
# BackupRun.status values that never change into SUCCESSFUL (sqladmin v1 discovery document).
BACKUP_TERMINAL = {
    "SUCCESSFUL", "FAILED", "SKIPPED", "DELETED", "DELETION_PENDING", "DELETION_FAILED",
}  # fmt: skip
BACKUP_PAGES = 20  # pages of backup runs searched for a description
# The names Stagecoach gives the instances it creates (workflows.dr: drill_instance_name,
# stagecoach.plan.recovery_instance_name): deletion protection is cleared on nothing else.
CREATED_NAME = re.compile(r"-(drill-\d{14}|recovery-\d{12})$")


def parse_time(value: str | None) -> datetime | None:
    """An API timestamp (RFC 3339, `Z` or an offset) -> aware datetime; None when absent or
    unreadable. A timestamp without an offset is taken as UTC."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def rfc3339(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def backup_info(run: dict[str, Any]) -> BackupInfo:
    return BackupInfo(
        id=str(run.get("id", "")),
        status=str(run.get("status", "")),
        type=str(run.get("type", "ON_DEMAND")),
        description=str(run.get("description", "")),
        enqueued_time=parse_time(run.get("enqueuedTime")),
        end_time=parse_time(run.get("endTime")),
        instance=str(run.get("instance", "")),
    )


def _op_error(op: dict[str, Any]) -> str:
    errors = op.get("error", {}).get("errors", [])
    if errors:
        return "; ".join(
            f"{e.get('code', 'ERROR')}: {e.get('message', '')}".strip() for e in errors
        )
    return f"operation {op.get('name')} failed"


class CloudSqlActivities:
    """Cloud SQL activities. Holds nothing but the client factory."""

    def __init__(self, clients: Callable[[Target], Clients] = clients_for) -> None:
        self._clients = clients

    # ------------------------------------------------------------------ helpers

    def _sql(self, ref: InstanceRef) -> Any:
        return self._clients(ref.target).sqladmin()

    @staticmethod
    def _prior(**expect: Any) -> dict[str, Any]:
        """Heartbeat details of an earlier attempt, if they were for the same request."""
        details = activity.info().heartbeat_details
        if details and isinstance(details[0], dict):
            d = dict(details[0])
            if all(d.get(k) == v for k, v in expect.items()):
                return d
        return {}

    def _get_instance(self, ref: InstanceRef, name: str) -> dict[str, Any] | None:
        try:
            inst: dict[str, Any] = (
                self._sql(ref)
                .instances()
                .get(project=ref.project, instance=name)
                .execute(num_retries=READ_RETRIES)
            )
            return inst
        except HttpError as e:
            if e.status_code == 404:
                return None
            raise

    def _wait_op(
        self,
        ref: InstanceRef,
        name: str,
        details: dict[str, Any],
        failure_type: str = "OperationFailed",
    ) -> dict[str, Any]:
        """Poll a sqladmin operation until DONE, heartbeating. DONE + error -> non-retryable."""
        start = time.monotonic()
        delay = 0.25
        while True:
            activity.heartbeat(details)
            op: dict[str, Any] = (
                self._sql(ref)
                .operations()
                .get(project=ref.project, operation=name)
                .execute(num_retries=READ_RETRIES)
            )
            if op.get("status") == "DONE":
                if op.get("error"):
                    raise permanent(_op_error(op), failure_type, operation=name)
                return op
            if time.monotonic() - start > OPERATION_DEADLINE_SECONDS:
                raise transient(f"operation {name} still {op.get('status')}", "Timeout")
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)

    def _resume_op(
        self,
        ref: InstanceRef,
        name: str,
        details: dict[str, Any],
        failure_type: str = "OperationFailed",
    ) -> bool:
        """Wait for an earlier attempt's operation; False when the API no longer knows it."""
        activity.logger.info("resuming operation %s", name)
        try:
            self._wait_op(ref, name, details, failure_type)
        except HttpError as e:
            if e.status_code == 404:
                return False
            raise
        return True

    def _wait_instance(
        self, ref: InstanceRef, name: str, details: dict[str, Any], *, gone: bool
    ) -> dict[str, Any] | None:
        """Poll instances.get until RUNNABLE (gone=False) or 404 (gone=True)."""
        start = time.monotonic()
        delay = 0.25
        while True:
            activity.heartbeat(details)
            inst = self._get_instance(ref, name)
            if gone and inst is None:
                return None
            if not gone and inst is not None:
                if inst.get("state") == "RUNNABLE":
                    return inst
                if inst.get("state") == "FAILED":
                    raise permanent(f"instance {name} is FAILED", "OperationFailed")
            if time.monotonic() - start > OPERATION_DEADLINE_SECONDS:
                raise transient(f"instance {name} did not settle", "Timeout")
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)

    def _backup_runs(self, ref: InstanceRef, limit: int) -> list[dict[str, Any]]:
        """Backup runs, newest first, up to `limit`."""
        api = self._sql(ref).backupRuns()
        req = api.list(project=ref.project, instance=ref.instance, maxResults=min(limit, 500))
        runs: list[dict[str, Any]] = []
        pages = 0
        while req is not None and len(runs) < limit and pages < BACKUP_PAGES:
            resp = req.execute(num_retries=READ_RETRIES)
            runs.extend(resp.get("items", []))
            req = api.list_next(req, resp)
            pages += 1
        return runs[:limit]

    def _get_backup_run(self, ref: InstanceRef, backup_id: str) -> dict[str, Any]:
        run: dict[str, Any] = (
            self._sql(ref)
            .backupRuns()
            .get(project=ref.project, instance=ref.instance, id=backup_id)
            .execute(num_retries=READ_RETRIES)
        )
        return run

    def _find_backup(self, ref: InstanceRef, description: str) -> dict[str, Any] | None:
        for run in self._backup_runs(ref, 500 * BACKUP_PAGES):
            if run.get("description") == description:
                return run
        return None

    def _settle_backup(
        self, ref: InstanceRef, run: dict[str, Any], details: dict[str, Any]
    ) -> BackupInfo:
        """Wait until a backup run is terminal; SUCCESSFUL -> info, otherwise non-retryable."""
        delay = 0.25
        start = time.monotonic()
        while run.get("status") not in BACKUP_TERMINAL:
            activity.heartbeat({**details, "backup_id": run.get("id")})
            if time.monotonic() - start > OPERATION_DEADLINE_SECONDS:
                raise transient(f"backup {run.get('id')} still {run.get('status')}", "Timeout")
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)
            run = self._get_backup_run(ref, str(run["id"]))
        if run.get("status") != "SUCCESSFUL":
            message = (run.get("error") or {}).get("message") or ""
            raise permanent(
                f"backup {run.get('id')} ({run.get('description', '')}) is {run.get('status')}"
                + (f": {message}" if message else ""),
                BACKUP_FAILED,
                backup_id=str(run.get("id")),
            )
        return backup_info(run)

    @staticmethod
    def _result(op_name: str, started: float) -> OperationResult:
        return OperationResult(operation=op_name, seconds=round(time.time() - started, 3))

    # ------------------------------------------------------------------ CreateBackup

    @activity.defn(name=Activity.CREATE_BACKUP)
    @api_errors
    def create_backup(self, input: CreateBackupInput) -> BackupInfo:
        """An on-demand backup described `input.description`, waited for until SUCCESSFUL.

        Idempotent: an existing backup run with exactly this description is reused.
        """
        ref = input.ref
        details: dict[str, Any] = {"description": input.description}
        prior = self._prior(description=input.description)
        if prior.get("op"):
            self._resume_op(ref, str(prior["op"]), prior, failure_type=BACKUP_FAILED)

        run = self._find_backup(ref, input.description)
        if run is not None:
            activity.logger.info("reusing backup run %s (%s)", run.get("id"), input.description)
            return self._settle_backup(ref, run, details)

        op = (
            self._sql(ref)
            .backupRuns()
            .insert(
                project=ref.project,
                instance=ref.instance,
                body={"description": input.description},
            )
            .execute()
        )
        details = {**details, "op": op["name"]}
        op = self._wait_op(ref, op["name"], details, failure_type=BACKUP_FAILED)
        backup_id = (op.get("backupContext") or {}).get("backupId")
        if backup_id:
            run = self._get_backup_run(ref, str(backup_id))
        else:
            run = self._find_backup(ref, input.description)
        if run is None:
            raise transient(
                f"backup {input.description!r} finished but is not listed yet", "NotListed"
            )
        return self._settle_backup(ref, run, details)

    # ------------------------------------------------------------------ ListBackups

    @activity.defn(name=Activity.LIST_BACKUPS)
    @api_errors
    def list_backups(self, input: ListBackupsInput) -> list[BackupInfo]:
        """Backup runs of the instance, newest first (at most `input.limit`)."""
        return [backup_info(r) for r in self._backup_runs(input.ref, max(input.limit, 1))]

    # ------------------------------------------------------------------ RestoreBackup

    @activity.defn(name=Activity.RESTORE_BACKUP)
    @api_errors
    def restore_backup(self, input: RestoreBackupInput) -> OperationResult:
        """Overwrite `input.ref.instance` with backup run `input.backup_id` of `source_instance`.

        A retried attempt resumes the operation recorded in its heartbeat details.
        """
        ref = input.ref
        key = {"restore": input.backup_id, "instance": ref.instance}
        prior = self._prior(**key)
        if prior.get("op") and self._resume_op(ref, str(prior["op"]), prior):
            return self._result(str(prior["op"]), float(prior["started"]))
        started = time.time()
        name = self._restore(ref, ref.instance, input.backup_id, input.source_instance)
        details = {**key, "op": name, "started": started}
        self._wait_op(ref, name, details)
        return self._result(name, started)

    def _restore(self, ref: InstanceRef, target: str, backup_id: str, source: str) -> str:
        op = (
            self._sql(ref)
            .instances()
            .restoreBackup(
                project=ref.project,
                instance=target,
                body={
                    "restoreBackupContext": {
                        "backupRunId": backup_id,
                        "instanceId": source,
                        "project": ref.project,
                    }
                },
            )
            .execute()
        )
        return str(op["name"])

    # ------------------------------------------------------------------ ReadRecoveryWindow

    @activity.defn(name=Activity.READ_RECOVERY_WINDOW)
    @api_errors
    def read_recovery_window(self, input: RecoveryWindowInput) -> RecoveryWindow:
        """Whether point-in-time recovery is on, the transaction-log retention and the
        recoverable window (`instances.getLatestRecoveryTime`); with `point_in_time`, whether
        it lies inside (`problem` says why not, and what to do instead). Read-only."""
        ref = input.ref
        inst = self._get_instance(ref, ref.instance)
        if inst is None:
            raise permanent(
                f"instance {ref.instance} not found in project {ref.project}", "NotFound"
            )
        backup_cfg = (inst.get("settings") or {}).get("backupConfiguration") or {}
        enabled = bool(backup_cfg.get("pointInTimeRecoveryEnabled"))
        days = int(backup_cfg.get("transactionLogRetentionDays") or 0)
        out = RecoveryWindow(instance=ref.instance, pitr_enabled=enabled, retention_days=days)
        if not enabled:
            out.problem = (
                f"point-in-time recovery is not enabled on {ref.instance} "
                "(settings.backupConfiguration.pointInTimeRecoveryEnabled): restore a backup "
                "instead (restore --backup-id), and enable it for next time "
                f"(gcloud sql instances patch {ref.instance} --enable-point-in-time-recovery)"
            )
            return out
        times: dict[str, Any] = (
            self._sql(ref)
            .projects()
            .instances()
            .getLatestRecoveryTime(project=ref.project, instance=ref.instance)
            .execute(num_retries=READ_RETRIES)
        )
        out.latest = parse_time(times.get("latestRecoveryTime"))
        out.earliest = parse_time(times.get("earliestRecoveryTime"))
        if out.earliest is None and out.latest is not None and days:
            out.earliest = out.latest - timedelta(days=days)
        at = input.point_in_time
        if at is None:
            return out
        if out.latest is not None and at > out.latest:
            out.problem = (
                f"{rfc3339(at)} is after the latest recoverable time of {ref.instance}, "
                f"{rfc3339(out.latest)}: choose a time at or before it"
            )
        elif out.earliest is not None and at < out.earliest:
            out.problem = (
                f"{rfc3339(at)} is before the earliest recoverable time of {ref.instance}, "
                f"{rfc3339(out.earliest)} (transaction logs are kept {days} days): restore a "
                "backup instead (restore --backup-id; `backups` lists them)"
            )
        return out

    # ------------------------------------------------------------------ CloneInstance

    @activity.defn(name=Activity.CLONE_INSTANCE)
    @api_errors
    def clone_instance(self, input: CloneInstanceInput) -> OperationResult:
        """Create `input.destination` as a clone of `input.ref.instance`.

        - with `point_in_time`: a point-in-time (PITR) clone at that instant;
        - with `backup_id`: a clone, then that backup run of the source restored into it;
        - with neither: a clone of the current state.

        Idempotent: a destination that already exists and is RUNNABLE counts as done (for a
        backup clone, the restore is then (re)applied unless this activity already finished it).
        """
        ref = input.ref
        key = {"clone": input.destination, "backup": input.backup_id}
        prior = self._prior(**key)
        started = float(prior.get("started", time.time()))
        details: dict[str, Any] = {**key, "started": started}

        op_name = str(prior.get("op") or "")
        if op_name and self._resume_op(ref, op_name, prior) and prior.get("phase") == "restore":
            return self._result(op_name, started)

        existing = self._get_instance(ref, input.destination)
        if existing is None:
            op_name = self._clone(ref, input)
            if op_name:
                self._wait_op(ref, op_name, {**details, "phase": "clone", "op": op_name})
            self._wait_instance(ref, input.destination, details, gone=False)
        elif existing.get("state") != "RUNNABLE":
            self._wait_instance(ref, input.destination, details, gone=False)

        if input.backup_id:
            target = InstanceRef(target=ref.target, project=ref.project, instance=input.destination)
            op_name = self._restore(target, input.destination, input.backup_id, ref.instance)
            self._wait_op(ref, op_name, {**details, "phase": "restore", "op": op_name})
        return self._result(op_name, started)

    def _clone(self, ref: InstanceRef, input: CloneInstanceInput) -> str:
        context: dict[str, Any] = {"destinationInstanceName": input.destination}
        if input.point_in_time is not None and not input.backup_id:
            context["pointInTime"] = rfc3339(input.point_in_time)
        try:
            op = (
                self._sql(ref)
                .instances()
                .clone(project=ref.project, instance=ref.instance, body={"cloneContext": context})
                .execute()
            )
        except HttpError as e:
            if e.status_code == 409 and self._get_instance(ref, input.destination) is not None:
                return ""  # created concurrently (an earlier attempt): wait for it instead
            raise
        return str(op["name"])

    # ------------------------------------------------------------------ DeleteInstance

    def _unprotect(
        self, ref: InstanceRef, input: DeleteInstanceInput, details: dict[str, Any]
    ) -> None:
        """Turn deletion protection off on an instance Stagecoach created (a clone inherits
        it from its source); anything else is refused, never unprotected."""
        if not (input.created_by_stagecoach and CREATED_NAME.search(ref.instance)):
            raise permanent(
                f"instance {ref.instance} has deletion protection and was not created by this "
                "Stagecoach run; Stagecoach turns protection off only on its own scratch and "
                "recovery instances: turn it off yourself "
                f"(gcloud sql instances patch {ref.instance} --no-deletion-protection) "
                "if it really should go",
                "FailedPrecondition",
            )
        activity.logger.info("turning deletion protection off on %s", ref.instance)
        op = (
            self._sql(ref)
            .instances()
            .patch(
                project=ref.project,
                instance=ref.instance,
                body={"settings": {"deletionProtectionEnabled": False}},
            )
            .execute()
        )
        self._wait_op(ref, str(op["name"]), {**details, "unprotect": op["name"]})

    @activity.defn(name=Activity.DELETE_INSTANCE)
    @api_errors
    def delete_instance(self, input: DeleteInstanceInput) -> OperationResult:
        """Delete the instance; one that is already gone (404) counts as deleted."""
        ref = input.ref
        key = {"delete": ref.instance}
        prior = self._prior(**key)
        started = float(prior.get("started", time.time()))
        details: dict[str, Any] = {**key, "started": started}
        if prior.get("op"):
            self._resume_op(ref, str(prior["op"]), prior)
            self._wait_instance(ref, ref.instance, details, gone=True)
            return self._result(str(prior["op"]), started)

        inst = self._get_instance(ref, ref.instance)
        if inst is None:
            return OperationResult(operation="", seconds=0.0)
        if inst.get("state") == "PENDING_DELETE":
            self._wait_instance(ref, ref.instance, details, gone=True)
            return self._result("", started)
        if (inst.get("settings") or {}).get("deletionProtectionEnabled"):
            self._unprotect(ref, input, details)
        try:
            op = (
                self._sql(ref)
                .instances()
                .delete(project=ref.project, instance=ref.instance)
                .execute()
            )
        except HttpError as e:
            if e.status_code == 404:
                return OperationResult(operation="", seconds=round(time.time() - started, 3))
            raise
        name = str(op["name"])
        self._wait_op(ref, name, {**details, "op": name})
        self._wait_instance(ref, ref.instance, details, gone=True)
        return self._result(name, started)
