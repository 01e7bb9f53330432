"""Cloud SQL cross-region read replicas: `PromoteReplica`, for `failover --from replica`.

The replica's replication lag is read from Cloud Monitoring first (Cloud SQL reports it only
there: `cloudsql.googleapis.com/database/replication/replica_lag`), because it is the data-loss
window the promotion has; then `instances.promoteReplica` is called and its operation waited
for. Promotion cannot be undone: the activity is idempotent by looking first (a replica that is
already a standalone primary is adopted, an earlier attempt's operation is resumed from the
heartbeat), never by calling twice.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import monitoring_v3
from googleapiclient.errors import HttpError
from temporalio import activity

from activities.cloud_sql import CloudSqlActivities
from activities.errors import api_errors, permanent
from stagecoach.contract import Activity
from stagecoach.payloads.common import InstanceRef
from stagecoach.payloads.failover import PromoteReplicaInput, PromoteReplicaResult

REPLICA_LAG = "cloudsql.googleapis.com/database/replication/replica_lag"
READ_REPLICA = "READ_REPLICA_INSTANCE"
LAG_LOOKBACK = timedelta(minutes=10)  # Monitoring samples every 60 s and shows them late


def _as_datetime(t: Any) -> datetime:
    """A proto-plus timestamp (DatetimeWithNanoseconds, or a raw Timestamp) as a datetime."""
    return t if isinstance(t, datetime) else t.ToDatetime(tzinfo=UTC)


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
