"""The regional drill from a replica (`dr-drill ENV --scenario regional --from replica`): the
`ReplicaDrill` workflow's input, status and result, and its WaitReplicaCaughtUp activity.

Extends the `Failover` payloads (a regional drill is a failover rehearsal): the input is a
`FailoverInput` with `mode: drill`, `source: replica`, whose `instance` (and `create_instance`,
for the name, region, tier and availability) is the SCRATCH read replica
`<instance>-dr-<MMDDhhmmss>`; the configured replicas are never touched.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from stagecoach.payloads.base import Payload
from stagecoach.payloads.common import InstanceRef
from stagecoach.payloads.failover import FailoverInput, FailoverStatus

CATCH_UP_TIMEOUT = timedelta(minutes=30)


class WaitReplicaInput(Payload):
    """Wait until Cloud Monitoring reports the read replica `ref`'s replication lag at or
    below `max_lag_seconds` in a sample taken at or after `not_before`."""

    ref: InstanceRef
    max_lag_seconds: float
    not_before: datetime | None = None
    poll_seconds: float = 5.0
    timeout_seconds: float = CATCH_UP_TIMEOUT.total_seconds()


class ReplicaLag(Payload):
    """The sample that showed the replica caught up."""

    lag_seconds: float
    at: datetime  # the sample's time
    waited_seconds: float = 0.0
    samples: int = 0  # lag samples read while waiting


class ReplicaDrillInput(FailoverInput):
    # environments.<env>.database.replicas' replica in to_region, if any: left alone (the
    # drill promotes a scratch replica of its own), said in the report
    configured_replica: str = ""
    # caught up = a reported lag at or below this (default: the RPO), within catch_up_timeout
    max_lag: timedelta | None = None
    catch_up_timeout: timedelta = CATCH_UP_TIMEOUT
    # (a scheduled drill's `rename_scratch_from` and `images_from` are FailoverInput's)


class ReplicaDrillStatus(FailoverStatus):
    """A regional drill's `FailoverStatus` (mode drill, source replica) plus the scratch
    replica's story. `phases` has `replica` (create and catch up: NOT part of a real failover,
    whose replica exists already), then `database` (promote, validate) and `services`;
    `failover_seconds` is the sum of the last two, what a `failover --from replica` takes
    before its DNS move, and `failover_rto_met` compares it with the RTO (`rto_met`, as in
    every regional drill, compares the whole run's `total_seconds`)."""

    scratch_replica: str = ""
    replica_created: bool = False  # CreateReplica returned (the replica was RUNNABLE)
    replica_ready_seconds: float | None = None  # create + catch up (workflow.now() delta)
    caught_up_lag_seconds: float | None = None  # the lag sample that ended the wait
    caught_up_at: datetime | None = None
    replica_promoted: bool = False
    replica_deleted: bool = False
    failover_seconds: float | None = None
    failover_rto_met: bool | None = None
    # the primary's read replicas (names) before the drill; afterwards the same ones must
    # still be RUNNABLE replicas of it, with no operation of the drill on them
    primary_replicas: list[str] = []
    configured_replica: str = ""
    replicas_untouched: bool | None = None
