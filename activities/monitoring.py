"""Cloud Monitoring v3 activity: request counts, 5xx errors, latency buckets and ERROR log
entries of the canary revision and of the stable revisions over a window.

ListTimeSeries calls, each aligned with ALIGN_DELTA over one period equal to the window and
reduced with REDUCE_SUM:

- `run.googleapis.com/request_count` grouped by revision and response code class;
- `run.googleapis.com/request_latencies` (a distribution, ms) grouped by revision; the buckets
  of the stable revisions are merged (`stagecoach.distribution`), so they combine correctly;
- `logging.googleapis.com/log_entry_count` grouped by revision and severity (ERROR and worse
  count), for windows of the sequential judge.

Complete data only: Cloud Run samples its metrics every 60 s and a sample becomes visible up to
180 s after it ends, so the sequential judge reads from the end of its previous window to the
newest complete sample (`complete_window`), never a window ending at "now".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import monitoring_v3
from temporalio import activity

from activities.errors import api_errors
from stagecoach.clients import Clients, clients_for
from stagecoach.contract import Activity
from stagecoach.distribution import (
    BucketOptions,
    bucket_bounds,
    bucket_options_from,
    merge_counts,
    num_buckets,
    percentile,
)
from stagecoach.payloads.common import ServiceRef, Target
from stagecoach.payloads.monitoring import CanaryMetrics, MetricWindow, ReadCanaryMetricsInput

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
LOG_ENTRY_COUNT = "logging.googleapis.com/log_entry_count"
ERROR_SEVERITIES = frozenset({"ERROR", "CRITICAL", "ALERT", "EMERGENCY"})
REVISION_LABEL = "resource.labels.revision_name"
SEVERITY_LABEL = "metric.labels.severity"
CLASS_LABEL = "metric.labels.response_code_class"
MIN_GCP_ALIGNMENT = timedelta(seconds=60)  # the real API rejects shorter alignment periods
P95 = 95.0

_Aligner = monitoring_v3.Aggregation.Aligner
_Reducer = monitoring_v3.Aggregation.Reducer


def _filter(ref: ServiceRef, metric_type: str) -> str:
    return (
        f'metric.type = "{metric_type}" AND resource.type = "cloud_run_revision" '
        f'AND resource.labels.service_name = "{ref.service}" '
        f'AND resource.labels.location = "{ref.region}"'
    )


def _point_int(value: Any) -> int:
    if value.int64_value:
        return int(value.int64_value)
    if value.double_value:
        return round(value.double_value)
    return 0


def _in_window(point: Any, start: datetime) -> bool:
    """A point whose period ends at or before the window's start belongs to the one before."""
    end = point.interval.end_time
    return end is None or not isinstance(end, datetime) or end > start


class _Latency:
    """Merged latency buckets of a set of revisions, grouped by identical bucket options."""

    def __init__(self) -> None:
        self.groups: dict[Any, list[int]] = {}

    def add(self, dist: Any) -> None:
        if not dist.count:
            return
        options = bucket_options_from(dist.bucket_options)
        counts = list(dist.bucket_counts)
        self.groups[options] = merge_counts(self.groups.get(options, []), counts)

    def counts(self, layout: BucketOptions | None) -> list[int]:
        """Bucket counts in `layout` (distributions of another layout are left out)."""
        return list(self.groups.get(layout, [])) if layout is not None else []

    def p95(self) -> float | None:
        # Normally one group (Cloud Run uses one bucket layout); otherwise the worst p95.
        values = [percentile(opts, counts, P95) for opts, counts in self.groups.items()]
        present = [v for v in values if v is not None]
        return max(present) if present else None


class MonitoringActivities:
    """Cloud Monitoring activities. Holds nothing but the client factory."""

    def __init__(self, clients: Callable[[Target], Clients] = clients_for) -> None:
        self._clients = clients

    def _list(
        self,
        ref: ServiceRef,
        metric_type: str,
        group_by: list[str],
        start: datetime,
        end: datetime,
        period: timedelta,
    ) -> Iterable[Any]:
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{ref.project}",
            filter=_filter(ref, metric_type),
            interval=monitoring_v3.TimeInterval(start_time=start, end_time=end),
            aggregation=monitoring_v3.Aggregation(
                alignment_period=period,
                per_series_aligner=_Aligner.ALIGN_DELTA,
                cross_series_reducer=_Reducer.REDUCE_SUM,
                group_by_fields=group_by,
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        return self._clients(ref.target).metrics.list_time_series(request=request)

    @activity.defn(name=Activity.READ_CANARY_METRICS)
    @api_errors
    def read_canary_metrics(self, input: ReadCanaryMetricsInput) -> CanaryMetrics:
        """Canary and stable over a window: requests, 5xx, p95, latency buckets, ERROR logs.

        With `start` set, the window runs from `start` to the newest complete sample (now minus
        the delay, aligned down), so a reading never counts data Monitoring has not delivered as
        no traffic; an empty window (nothing complete yet) is returned as such, without a call.
        Without `start`, the window is [now - window, now] (how releases read before the
        sequential judge; kept for their histories)."""
        ref = input.ref
        now = datetime.now(UTC).replace(microsecond=0)
        if input.start is None:
            window = max(input.window, timedelta(seconds=1))
            start, end = now - window, now
            period = window
            if ref.target.kind == "gcp":
                period = max(timedelta(seconds=round(window.total_seconds())), MIN_GCP_ALIGNMENT)
            logs = False
        else:
            start, end = complete_window(
                input.start, input.end or now - input.delay, input.alignment
            )
            if end <= start:
                return CanaryMetrics(start=start, end=start, canary=MetricWindow())
            period = end - start
            logs = True
        result = self._collect(input, start, end, period, logs)
        activity.logger.info(
            "metrics of %s over [%s, %s]: canary %s, stable %s",
            ref.service,
            start.isoformat(),
            end.isoformat(),
            result.canary.model_dump(exclude={"latency"}),
            result.stable.model_dump(exclude={"latency"}) if result.stable else None,
        )
        return result

    def _collect(
        self,
        input: ReadCanaryMetricsInput,
        start: datetime,
        end: datetime,
        period: timedelta,
        logs: bool,
    ) -> CanaryMetrics:
        ref = input.ref
        stable = set(input.stable_revisions) - {input.canary_revision}
        requests: dict[str, int] = defaultdict(int)
        errors: dict[str, int] = defaultdict(int)
        for ts in self._list(ref, REQUEST_COUNT, [REVISION_LABEL, CLASS_LABEL], start, end, period):
            revision = ts.resource.labels.get("revision_name", "")
            code_class = ts.metric.labels.get("response_code_class", "")
            n = sum(_point_int(p.value) for p in ts.points if _in_window(p, start))
            requests[revision] += n
            if code_class == "5xx":
                errors[revision] += n

        latency: dict[str, _Latency] = defaultdict(_Latency)
        for ts in self._list(ref, REQUEST_LATENCIES, [REVISION_LABEL], start, end, period):
            revision = ts.resource.labels.get("revision_name", "")
            for p in ts.points:
                if _in_window(p, start):
                    latency[revision].add(p.value.distribution_value)

        error_logs: dict[str, int] = defaultdict(int)
        if logs:
            group = [REVISION_LABEL, SEVERITY_LABEL]
            for ts in self._list(ref, LOG_ENTRY_COUNT, group, start, end, period):
                if ts.metric.labels.get("severity", "") not in ERROR_SEVERITIES:
                    continue
                revision = ts.resource.labels.get("revision_name", "")
                error_logs[revision] += sum(
                    _point_int(p.value) for p in ts.points if _in_window(p, start)
                )

        canary_lat = latency[input.canary_revision] if input.canary_revision else _Latency()
        stable_lat = _Latency()
        for rev in stable:
            for opts, counts in latency[rev].groups.items():
                stable_lat.groups[opts] = merge_counts(stable_lat.groups.get(opts, []), counts)
        layout = _dominant_layout(canary_lat, stable_lat)
        canary = MetricWindow(
            requests=requests[input.canary_revision] if input.canary_revision else 0,
            errors=errors[input.canary_revision] if input.canary_revision else 0,
            p95_ms=canary_lat.p95(),
            error_logs=error_logs[input.canary_revision] if input.canary_revision else 0,
            latency=canary_lat.counts(layout),
        )
        stable_window: MetricWindow | None = None
        if stable:
            stable_window = MetricWindow(
                requests=sum(requests[r] for r in stable),
                errors=sum(errors[r] for r in stable),
                p95_ms=stable_lat.p95(),
                error_logs=sum(error_logs[r] for r in stable),
                latency=stable_lat.counts(layout),
            )
        return CanaryMetrics(
            start=start, end=end, canary=canary, stable=stable_window, bounds=upper_bounds(layout)
        )


def complete_window(
    start: datetime, end: datetime, alignment: timedelta
) -> tuple[datetime, datetime]:
    """[start, end] aligned down to whole alignment periods (epoch-aligned, like the samples)."""
    a = max(alignment.total_seconds(), 1.0)

    def down(t: datetime) -> datetime:
        return datetime.fromtimestamp(math.floor(t.timestamp() / a) * a, UTC)

    return down(start), down(end)


def upper_bounds(layout: BucketOptions | None) -> list[float]:
    """Upper bounds of buckets 0..N-2 of a layout (bucket N-1 is the overflow)."""
    if layout is None:
        return []
    return [bucket_bounds(layout, i)[1] for i in range(num_buckets(layout) - 1)]


def _dominant_layout(*latencies: _Latency) -> BucketOptions | None:
    """The bucket layout holding most requests (Cloud Run reports one layout)."""
    totals: dict[Any, int] = defaultdict(int)
    for lat in latencies:
        for opts, counts in lat.groups.items():
            totals[opts] += sum(counts)
    return max(totals, key=lambda o: totals[o]) if totals else None
