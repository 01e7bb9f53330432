"""Cloud Monitoring v3 activity: request counts, 5xx errors and p95 latency of the canary
revision and of the stable revisions over a look-back window.

Two ListTimeSeries calls, each aligned with ALIGN_DELTA over one period equal to the window and
reduced with REDUCE_SUM:

- `run.googleapis.com/request_count` grouped by revision and response code class;
- `run.googleapis.com/request_latencies` (a distribution, ms) grouped by revision; the p95 comes
  from the merged buckets (`stagecoach.distribution`), so stable revisions combine correctly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import monitoring_v3
from temporalio import activity

from activities.errors import api_errors
from stagecoach.clients import Clients, clients_for
from stagecoach.distribution import bucket_options_from, merge_counts, percentile
from stagecoach.models import (
    CanaryMetrics,
    MetricWindow,
    ReadCanaryMetricsInput,
    ServiceRef,
    Target,
)

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
REVISION_LABEL = "resource.labels.revision_name"
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

    @activity.defn(name="ReadCanaryMetrics")
    @api_errors
    def read_canary_metrics(self, input: ReadCanaryMetricsInput) -> CanaryMetrics:
        """Requests, 5xx errors and p95 latency of canary and stable over [now - window, now]."""
        ref = input.ref
        end = datetime.now(UTC).replace(microsecond=0)
        window = max(input.window, timedelta(seconds=1))
        start = end - window
        period = window
        if ref.target.kind == "gcp":
            period = max(timedelta(seconds=round(window.total_seconds())), MIN_GCP_ALIGNMENT)
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

        canary = MetricWindow(
            requests=requests[input.canary_revision],
            errors=errors[input.canary_revision],
            p95_ms=latency[input.canary_revision].p95(),
        )
        stable_window: MetricWindow | None = None
        if stable:
            merged = _Latency()
            for rev in stable:
                for opts, counts in latency[rev].groups.items():
                    merged.groups[opts] = merge_counts(merged.groups.get(opts, []), counts)
            stable_window = MetricWindow(
                requests=sum(requests[r] for r in stable),
                errors=sum(errors[r] for r in stable),
                p95_ms=merged.p95(),
            )
        activity.logger.info(
            "metrics of %s over %ss: canary %s, stable %s",
            ref.service,
            window.total_seconds(),
            canary.model_dump(),
            stable_window.model_dump() if stable_window else None,
        )
        return CanaryMetrics(start=start, end=end, canary=canary, stable=stable_window)
