"""The release policy as a release carries it: steps, gates, sizing, approval, freeze windows.

The same field names and JSON shape as the `deploy.yaml` models in stagecoach.config (which
validate what a person writes), without their constraints and validators: `stagecoach.plan`
converts config to payload once, when a release is planned, and from then on only these
travel through Temporal, so a stricter or renamed config key never stops an in-flight release
from decoding its own input.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from stagecoach.payloads.base import Duration, Payload


class Step(Payload):
    weight: int
    bake: Duration = timedelta(0)


class Gates(Payload):
    max_error_rate: float = 0.05
    max_p95_latency: Duration = timedelta(seconds=10)
    healthy_error_rate: float = 0.01
    healthy_p95_latency: Duration = timedelta(seconds=5)
    max_error_rate_increase: float | None = 0.02
    min_requests: int = 20
    consecutive_breaches: int = 1
    on_inconclusive: Literal["pause", "pass", "fail", "extend"] = "pause"
    max_extensions: int = 3
    on_failure: Literal["rollback", "pause"] = "rollback"
    # the sequential judge (stagecoach/judge.py)
    false_rollback_rate: float = 0.01
    error_tolerance: float = 1.0
    latency_tolerance: float = 1.0
    baseline_window: Duration = timedelta(hours=1)
    metrics_delay: Duration | None = None  # None: 180 s on target gcp, 0 on gcpsim
    metrics_alignment: Duration | None = None  # None: 60 s on target gcp, 1 s on gcpsim


class Sizing(Payload):
    min_instances: int = 0
    max_instances: int = 100
    memory: str = "512Mi"
    cpu: str = "1"


class Approval(Payload):
    before_weight: int = 100
    approvers: list[str]
    proof: Literal["signature", "none"] = "signature"
    forbid_self_approval: bool = False


class FreezeWindow(Payload):
    """One freeze window (formats: stagecoach.freeze); `stagecoach.freeze.frozen_at` reads it."""

    start: str
    end: str
    timezone: str = "UTC"
    reason: str


class FreezeOverride(Payload):
    """`deploy --override-freeze --reason R`: who started a release inside a freeze window, why,
    and which window; the release does not wait for windows before `until`."""

    by: str
    reason: str
    window: str  # the window's reason
    until: datetime  # when that freeze ends (UTC)


# --------------------------------------------------------------------------- the worker's policy


class TargetClaim(Payload):
    """Where an input says a workflow will send API calls; the worker checks each claim."""

    what: str  # for the message, e.g. "service node-server-prod"
    kind: str
    host: str = ""
    project: str
    region: str = ""  # "" for a Cloud SQL instance (no region in its reference)


class LoadPolicyInput(Payload):
    env: str
    claims: list[TargetClaim] = []


class WorkerPolicy(Payload):
    """What the worker enforces for one environment (the `LoadPolicy` activity's result; see
    stagecoach.trust). Its approval is the payload twin of the worker config's."""

    env: str
    source: str  # the worker's config file (and key file), for the record
    approval: Approval | None = None  # release approval
    restore_requires_approval: bool = False
    proof: Literal["signature", "none"] = "signature"
    forbid_self_approval: bool = False
    keys: dict[str, str] = {}  # approver -> "ed25519:<base64 public key>" (approvers only)

    @property
    def approvers(self) -> list[str]:
        return list(self.approval.approvers) if self.approval else []
