"""Cloud SQL cross-region read replicas: `PromoteReplica`, for `failover --from replica`;
`ListReplicas`, `DeleteReplica` and `CreateReplica`, for a `restore` into an instance that has
replicas (Cloud SQL restores no backup into such an instance: its replicas are deleted first and
recreated from the restored instance afterwards).

The replica's replication lag is read from Cloud Monitoring first (Cloud SQL reports it only
there: `cloudsql.googleapis.com/database/replication/replica_lag`), because it is the data-loss
window the promotion has; then `instances.promoteReplica` is called and its operation waited
for. Promotion cannot be undone: the activity is idempotent by looking first (a replica that is
already a standalone primary is adopted, an earlier attempt's operation is resumed from the
heartbeat), never by calling twice.

DeleteReplica and CreateReplica are idempotent the same way: an earlier attempt's operation is
resumed from the heartbeat; a replica already gone (or being deleted) counts as deleted, one that
exists already as a replica of the same primary (being created or RUNNABLE) is adopted. Neither
ever touches an instance that is not a read replica of the given primary.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import monitoring_v3
from googleapiclient.errors import HttpError
from temporalio import activity

from activities.cloud_sql import CloudSqlActivities
from activities.errors import api_errors, permanent, transient
from stagecoach.contract import Activity
from stagecoach.payloads.common import InstanceRef
from stagecoach.payloads.failover import PromoteReplicaInput, PromoteReplicaResult
from stagecoach.payloads.sql import OperationResult, ReplicaInfo, ReplicaInput

REPLICA_LAG = "cloudsql.googleapis.com/database/replication/replica_lag"
READ_REPLICA = "READ_REPLICA_INSTANCE"
LAG_LOOKBACK = timedelta(minutes=10)  # Monitoring samples every 60 s and shows them late


def _as_datetime(t: Any) -> datetime:
    """A proto-plus timestamp (DatetimeWithNanoseconds, or a raw Timestamp) as a datetime."""
    return t if isinstance(t, datetime) else t.ToDatetime(tzinfo=UTC)


def replica_info(inst: dict[str, Any], project: str) -> ReplicaInfo:
    """`instances.get` of a read replica -> what recreating it needs."""
    settings = inst.get("settings") or {}
    labels = settings.get("userLabels") or {}
    return ReplicaInfo(
        name=str(inst.get("name", "")),
        project=str(inst.get("project") or project),
        region=str(inst.get("region", "")),
        tier=str(settings.get("tier", "")),
        availability=str(settings.get("availabilityType", "")),
        database_version=str(inst.get("databaseVersion", "")),
        state=str(inst.get("state", "")),
        deletion_protection=bool(settings.get("deletionProtectionEnabled")),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
    )


def master_name(primary: InstanceRef, replica_project: str) -> str:
    """`masterInstanceName` of a replica of `primary`: `name`, or `project:name` across
    projects."""
    if primary.project == replica_project:
        return primary.instance
    return f"{primary.project}:{primary.instance}"


def replicates_from(inst: dict[str, Any], primary: InstanceRef) -> bool:
    """`inst` is a read replica of `primary`."""
    if inst.get("instanceType") != READ_REPLICA:
        return False
    master = str(inst.get("masterInstanceName") or "")
    project, _, name = master.rpartition(":")
    return (project or str(inst.get("project") or primary.project), name) == (
        primary.project,
        primary.instance,
    )


def create_command(primary: InstanceRef, r: ReplicaInfo) -> str:
    """The gcloud command that recreates `r` by hand."""
    cmd = (
        f"gcloud sql instances create {r.name} --project={r.project} "
        f"--master-instance-name={master_name(primary, r.project)} --region={r.region}"
    )
    return cmd + (f" --tier={r.tier}" if r.tier else "")


class ReplicaActivities(CloudSqlActivities):
    """Read replicas (the Cloud SQL helpers are CloudSqlActivities')."""

    def _replica_lag(self, ref: InstanceRef) -> tuple[float, datetime] | None:
        """The newest reported replication lag of `ref` and its time, or None."""
        end = datetime.now(UTC)
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{ref.project}",
            filter=(
                f'metric.type = "{REPLICA_LAG}" AND '
                f'resource.labels.database_id = "{ref.project}:{ref.instance}"'
            ),
            interval=monitoring_v3.TimeInterval(start_time=end - LAG_LOOKBACK, end_time=end),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        newest: tuple[float, datetime] | None = None
        for ts in self._clients(ref.target).metrics.list_time_series(request=request):
            for point in ts.points:
                at = _as_datetime(point.interval.end_time)
                value = float(point.value.double_value or point.value.int64_value)
                if newest is None or at > newest[1]:
                    newest = (value, at)
        return newest

    @activity.defn(name=Activity.PROMOTE_REPLICA)
    @api_errors
    def promote_replica(self, input: PromoteReplicaInput) -> PromoteReplicaResult:
        """Promote the read replica `input.ref` in `input.region`, waited until RUNNABLE as a
        standalone primary. Non-retryable: `ReplicaNotFound` (no such instance),
        `ReplicaElsewhere` (it is in another region), `NotAReplica` (the primary itself, or an
        instance with replicas of its own)."""
        ref = input.ref
        started = time.time()
        details: dict[str, Any] = {"promote": ref.instance}
        prior = self._prior(**details)
        lag = prior.get("lag")
        lag_at = prior.get("lag_at")
        if prior.get("op") and self._resume_op(ref, str(prior["op"]), prior):
            self._wait_instance(ref, ref.instance, details, gone=False)
            return self._promoted(input, True, lag, lag_at, float(prior.get("started", started)))
        inst = self._get_instance(ref, ref.instance)
        if inst is None:
            raise permanent(
                f"no Cloud SQL instance {ref.instance} in project {ref.project}: create the read "
                "replica (environments.<env>.database.replicas) or fail over --from backup",
                "ReplicaNotFound",
            )
        if inst.get("region") != input.region:
            raise permanent(
                f"instance {ref.instance} is in {inst.get('region')}, not in {input.region}; "
                "fix environments.<env>.database.replicas",
                "ReplicaElsewhere",
            )
        if inst.get("instanceType") != READ_REPLICA:
            if ref.instance == input.primary or inst.get("replicaNames"):
                raise permanent(
                    f"instance {ref.instance} is a primary, not a read replica; fix "
                    "environments.<env>.database.replicas",
                    "NotAReplica",
                )
            # a standalone primary already: an earlier attempt (or a person) promoted it
            self._wait_instance(ref, ref.instance, details, gone=False)
            return self._promoted(input, False, lag, lag_at, started)
        reported = self._replica_lag(ref)
        if reported is not None:
            lag, lag_at = reported[0], reported[1].isoformat()
        details.update(lag=lag, lag_at=lag_at, started=started)
        activity.heartbeat(details)
        try:
            op = (
                self._sql(ref)
                .instances()
                .promoteReplica(project=ref.project, instance=ref.instance)
                .execute()
            )
        except HttpError as e:
            # promoted meanwhile by an attempt that died before recording its operation
            inst = self._get_instance(ref, ref.instance)
            if e.status_code in (400, 409) and inst and inst.get("instanceType") != READ_REPLICA:
                self._wait_instance(ref, ref.instance, details, gone=False)
                return self._promoted(input, True, lag, lag_at, started)
            raise
        name = str(op["name"])
        self._wait_op(ref, name, {**details, "op": name})
        self._wait_instance(ref, ref.instance, details, gone=False)
        return self._promoted(input, True, lag, lag_at, started)

    @staticmethod
    def _promoted(
        input: PromoteReplicaInput, promoted: bool, lag: Any, lag_at: Any, started: float
    ) -> PromoteReplicaResult:
        return PromoteReplicaResult(
            instance=input.ref.instance,
            region=input.region,
            promoted=promoted,
            lag_seconds=None if lag is None else float(lag),
            lag_at=datetime.fromisoformat(lag_at) if isinstance(lag_at, str) else None,
            seconds=round(time.time() - started, 3),
        )

    # ------------------------------------------------ restore: list, delete, recreate

    def _replica_ref(self, primary: InstanceRef, r: ReplicaInfo) -> InstanceRef:
        return InstanceRef(target=primary.target, project=r.project, instance=r.name)

    @activity.defn(name=Activity.LIST_REPLICAS)
    @api_errors
    def list_replicas(self, input: InstanceRef) -> list[ReplicaInfo]:
        """The read replicas of `input` as Cloud SQL reports them (`replicaNames` of the
        primary, then `instances.get` of each). Read-only. Non-retryable: `NotFound` (no such
        primary)."""
        inst = self._get_instance(input, input.instance)
        if inst is None:
            raise permanent(
                f"instance {input.instance} not found in project {input.project}", "NotFound"
            )
        out: list[ReplicaInfo] = []
        for full in inst.get("replicaNames") or []:
            project, _, name = str(full).rpartition(":")
            project = project or input.project
            ref = InstanceRef(target=input.target, project=project, instance=name)
            replica = self._get_instance(ref, name)
            if replica is not None:  # else deleted since the primary was read
                out.append(replica_info(replica, project))
        return out

    @activity.defn(name=Activity.DELETE_REPLICA)
    @api_errors
    def delete_replica(self, input: ReplicaInput) -> OperationResult:
        """Delete the read replica `input.replica` of `input.primary`, waited until it is gone.
        Gone already: done (operation ""). Non-retryable: `NotAReplica` (the instance is not a
        read replica of that primary: nothing is deleted), `FailedPrecondition` (deletion
        protection is on: turned off by no one but a person)."""
        primary, r = input.primary, input.replica
        ref = self._replica_ref(primary, r)
        key = {"delete_replica": f"{r.project}:{r.name}"}
        prior = self._prior(**key)
        started = float(prior.get("started", time.time()))
        details: dict[str, Any] = {**key, "started": started}
        if prior.get("op") and self._resume_op(ref, str(prior["op"]), prior):
            self._wait_instance(ref, r.name, details, gone=True)
            return self._result(str(prior["op"]), started)
        inst = self._get_instance(ref, r.name)
        if inst is None:
            return OperationResult(operation="", seconds=0.0)
        if not replicates_from(inst, primary):
            raise permanent(
                f"instance {r.name} is not a read replica of {primary.instance} (any more); "
                "nothing was deleted: check it, then rerun the restore or failback",
                "NotAReplica",
            )
        if inst.get("state") == "PENDING_DELETE":
            self._wait_instance(ref, r.name, details, gone=True)
            return self._result("", started)
        if (inst.get("settings") or {}).get("deletionProtectionEnabled"):
            raise permanent(
                f"read replica {r.name} has deletion protection; turn it off (gcloud sql "
                f"instances patch {r.name} --no-deletion-protection) and rerun",
                "FailedPrecondition",
            )
        activity.heartbeat(details)
        try:
            op = self._sql(ref).instances().delete(project=r.project, instance=r.name).execute()
        except HttpError as e:
            if e.status_code == 404:
                return self._result("", started)
            raise
        name = str(op["name"])
        details["op"] = name
        self._wait_op(ref, name, details)
        self._wait_instance(ref, r.name, details, gone=True)
        return self._result(name, started)

    @activity.defn(name=Activity.CREATE_REPLICA)
    @api_errors
    def create_replica(self, input: ReplicaInput) -> ReplicaInfo:
        """Create `input.replica` as a read replica of `input.primary` (`instances.insert` with
        `masterInstanceName`; same name, region, tier, availability, database version and
        labels), waited until RUNNABLE. A replica of that primary with that name already there
        (being created, or RUNNABLE) is adopted; one being deleted is waited out first.
        Non-retryable: `NameTaken` (an instance of that name that is not a replica of the
        primary), `OperationFailed` (Cloud SQL could not create it)."""
        primary, r = input.primary, input.replica
        ref = self._replica_ref(primary, r)
        key = {"create_replica": f"{r.project}:{r.name}"}
        prior = self._prior(**key)
        started = float(prior.get("started", time.time()))
        details: dict[str, Any] = {**key, "started": started}
        if prior.get("op"):
            self._resume_op(ref, str(prior["op"]), prior)
        inst = self._get_instance(ref, r.name)
        if inst is not None and inst.get("state") == "PENDING_DELETE":
            self._wait_instance(ref, r.name, details, gone=True)
            inst = None
        if inst is None:
            inst = self._insert_replica(ref, primary, r, details)
        if not replicates_from(inst, primary):
            raise permanent(
                f"instance {r.name} exists and is not a read replica of {primary.instance}; "
                f"delete or rename it, then recreate the replica: {create_command(primary, r)}",
                "NameTaken",
            )
        done = self._wait_instance(ref, r.name, details, gone=False)
        assert done is not None
        return replica_info(done, r.project)

    def _insert_replica(
        self, ref: InstanceRef, primary: InstanceRef, r: ReplicaInfo, details: dict[str, Any]
    ) -> dict[str, Any]:
        """instances.insert of the replica, its operation waited for; the instance as created
        (or as found, when an earlier attempt created it meanwhile)."""
        settings: dict[str, Any] = {}
        if r.tier:
            settings["tier"] = r.tier
        if r.availability:
            settings["availabilityType"] = r.availability
        if r.labels:
            settings["userLabels"] = dict(r.labels)
        body: dict[str, Any] = {
            "name": r.name,
            "region": r.region,
            "masterInstanceName": master_name(primary, r.project),
            "instanceType": READ_REPLICA,
            "replicaConfiguration": {},
            "settings": settings,
        }
        if r.database_version:
            body["databaseVersion"] = r.database_version
        activity.heartbeat(details)
        try:
            op = self._sql(ref).instances().insert(project=r.project, body=body).execute()
        except HttpError as e:
            found = self._get_instance(ref, r.name) if e.status_code == 409 else None
            if found is None:
                raise
            return found  # created by an attempt that died before recording its operation
        name = str(op["name"])
        details["op"] = name
        self._wait_op(ref, name, details)
        created = self._get_instance(ref, r.name)
        if created is None:
            raise transient(f"replica {r.name} created but not found yet", "NotListed")
        return created
