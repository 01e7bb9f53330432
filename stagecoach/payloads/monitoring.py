"""Canary metrics (the ReadCanaryMetrics activity) and the gate readings a release keeps."""

from __future__ import annotations

from datetime import datetime, timedelta

from stagecoach.payloads.base import Payload
from stagecoach.payloads.common import ServiceRef, Verdict


class MetricWindow(Payload):
    requests: int = 0
    errors: int = 0  # 5xx
    p95_ms: float | None = None
    error_logs: int = 0  # log entries of severity ERROR or worse
    latency: list[int] = []  # request_latencies bucket counts (layout: CanaryMetrics.bounds)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


class ReadCanaryMetricsInput(Payload):
    ref: ServiceRef
    canary_revision: str
    stable_revisions: list[str]
    window: timedelta  # look-back from now (when `start` is not set)
    # complete data only: the window runs from `start` to the newest complete sample, i.e.
    # now - delay aligned down to `alignment` (or to `end` when set, for a baseline)
    start: datetime | None = None
    end: datetime | None = None
    delay: timedelta = timedelta(0)
    alignment: timedelta = timedelta(seconds=1)


class CanaryMetrics(Payload):
    start: datetime
    end: datetime
    canary: MetricWindow
    stable: MetricWindow | None = None
    bounds: list[float] = []  # upper bounds (ms) of latency buckets 0..N-2 (N-1: overflow)


class GateResult(Payload):
    verdict: Verdict
    reasons: list[str]


class Reading(Payload):
    """One gate reading as kept in status and result."""

    at: datetime
    service: str
    weight: int
    canary_requests: int
    canary_error_rate: float | None
    canary_p95_ms: float | None
    stable_requests: int = 0
    stable_error_rate: float | None = None
    stable_p95_ms: float | None = None
    verdict: Verdict
    reasons: list[str] = []
    # the sequential judge: the window read, and each test's standing over the cumulative evidence
    window_start: datetime | None = None
    window_end: datetime | None = None
    canary_errors: int = 0
    canary_error_logs: int = 0
    stable_errors: int = 0
    stable_error_logs: int = 0
    evidence: list[str] = []
