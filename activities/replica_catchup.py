"""`WaitReplicaCaughtUp`: wait until a new read replica's replication has caught up, read the
way `PromoteReplica` reads it (activities/replicas.py: the newest
`cloudsql.googleapis.com/database/replication/replica_lag` sample in Cloud Monitoring; Cloud SQL
reports the lag nowhere else). The regional drill from a replica
(workflows/dr/drill_replica.py) waits on it between creating its scratch replica and promoting
it, so the rehearsal promotes a replica in the state a configured one is in.

Read-only and idempotent (a retry just polls again).
"""

from __future__ import annotations

import time

from temporalio import activity

from activities.errors import api_errors, permanent
from activities.replicas import ReplicaActivities
from stagecoach.contract import Activity
from stagecoach.payloads.replica_drill import ReplicaLag, WaitReplicaInput


class ReplicaCatchUpActivities(ReplicaActivities):
    @activity.defn(name=Activity.WAIT_REPLICA_CAUGHT_UP)
    @api_errors
    def wait_replica_caught_up(self, input: WaitReplicaInput) -> ReplicaLag:
        """Poll the replica's reported lag every `poll_seconds` (heartbeating) until a sample
        taken at or after `not_before` is at most `max_lag_seconds`. Non-retryable
        `ReplicaBehind` after `timeout_seconds` (the newest lag, or that none was reported,
        in the message)."""
        ref = input.ref
        start = time.monotonic()
        samples = 0
        newest: tuple[float, str] | None = None
        while True:
            activity.heartbeat({"wait_replica": ref.instance, "samples": samples})
            reported = self._replica_lag(ref)
            if reported is not None:
                lag, at = reported
                if input.not_before is None or at >= input.not_before:
                    samples += 1
                    newest = (lag, at.isoformat())
                    if lag <= input.max_lag_seconds:
                        return ReplicaLag(
                            lag_seconds=lag,
                            at=at,
                            waited_seconds=round(time.monotonic() - start, 3),
                            samples=samples,
                        )
            if time.monotonic() - start > input.timeout_seconds:
                seen = (
                    f"the newest reported lag is {newest[0]:g}s ({newest[1]})"
                    if newest
                    else "Cloud Monitoring reported no replication lag for it"
                )
                raise permanent(
                    f"read replica {ref.instance} did not catch up to {input.max_lag_seconds:g}s "
                    f"of lag within {input.timeout_seconds:g}s: {seen}; check the primary's "
                    "write load and the replica's tier, or raise the RPO",
                    "ReplicaBehind",
                )
            time.sleep(max(0.05, input.poll_seconds))
