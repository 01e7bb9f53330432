"""Cloud Monitoring v3 `ListTimeSeries` requests as gcpsim reads them: the metric types it
serves, the filter language, interval, aggregation and paging (see gcpsim.api.monitoring)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from google.api import metric_pb2
from google.cloud.monitoring_v3.types import common, metric_service
from google.cloud.monitoring_v3.types import metric as metric_types

from gcpsim.errors import ApiError
from gcpsim.model import metrics_dist

SERVICE_NAME = "google.monitoring.v3.MetricService"


FAULT_METHOD = "monitoring.timeSeries.list"


RESOURCE_TYPE = "cloud_run_revision"


RESOURCE_LABELS = ("project_id", "service_name", "revision_name", "location", "configuration_name")


METRIC_LABELS = ("response_code", "response_code_class")


LOG_METRIC_LABELS = ("log", "severity")


MIN_ALIGNMENT_SECONDS = 1  # the real API: 60 (see the module docstring)


MAX_PAGE_SIZE = 100_000


NS = 1_000_000_000


MAX_POINTS = 1_000_000  # periods per series (bounds the work of one request)


RequestPb: Any = metric_service.ListTimeSeriesRequest.pb()


ResponsePb: Any = metric_service.ListTimeSeriesResponse.pb()


TimeSeriesPb: Any = metric_types.TimeSeries.pb()


PointPb: Any = metric_types.Point.pb()


DELTA = metric_pb2.MetricDescriptor.MetricKind.DELTA


GAUGE = metric_pb2.MetricDescriptor.MetricKind.GAUGE


INT64 = metric_pb2.MetricDescriptor.ValueType.INT64


DOUBLE = metric_pb2.MetricDescriptor.ValueType.DOUBLE


DISTRIBUTION = metric_pb2.MetricDescriptor.ValueType.DISTRIBUTION


Aligner = common.Aggregation.Aligner


Reducer = common.Aggregation.Reducer


PERCENTILES = {"99": 99.0, "95": 95.0, "50": 50.0, "05": 5.0}


_ALIGNERS = {"ALIGN_NONE", "ALIGN_DELTA", "ALIGN_SUM", "ALIGN_RATE", "ALIGN_MEAN"} | {
    f"ALIGN_PERCENTILE_{p}" for p in PERCENTILES
}


_REDUCERS = (
    {"REDUCE_NONE", "REDUCE_SUM", "REDUCE_MEAN", "REDUCE_MIN", "REDUCE_MAX"}
    | {"REDUCE_COUNT"}
    | {f"REDUCE_PERCENTILE_{p}" for p in PERCENTILES}
)


@dataclass(frozen=True)
class MetricSpec:
    kind: int
    value_type: int
    unit: str


LOG_ENTRY_COUNT = "logging.googleapis.com/log_entry_count"


METRICS = {
    "run.googleapis.com/request_count": MetricSpec(DELTA, INT64, "1"),
    "run.googleapis.com/request_latencies": MetricSpec(DELTA, DISTRIBUTION, "ms"),
    LOG_ENTRY_COUNT: MetricSpec(DELTA, INT64, "1"),
}


Value = int | float | metrics_dist.Dist


def invalid_argument(field_name: str, value: str, reason: str) -> ApiError:
    return ApiError(400, f'Field {field_name} had an invalid value of "{value}": {reason}')


@dataclass(frozen=True)
class Clause:
    scope: str  # "metric.type", "resource.type", "resource", "metric"
    label: str  # label name for the "resource"/"metric" scopes, "" otherwise
    op: str  # "=" or "!="
    value: str

    def accepts(self, actual: str) -> bool:
        return (actual == self.value) == (self.op == "=")


@dataclass
class Filter:
    clauses: list[Clause] = field(default_factory=list)

    def metric_types(self) -> list[str]:
        return [c.value for c in self.clauses if c.scope == "metric.type" and c.op == "="]

    def accepts(self, scope: str, labels: dict[str, str], only: set[str] | None = None) -> bool:
        """Whether `labels` pass the clauses of `scope`; `only` limits the labels checked."""
        for c in self.clauses:
            if c.scope != scope or (only is not None and c.label not in only):
                continue
            if not c.accepts(labels.get(c.label, "")):
                return False
        return True

    def accepts_type(self, scope: str, value: str) -> bool:
        return all(c.accepts(value) for c in self.clauses if c.scope == scope)


_CLAUSE = re.compile(r'\s*(?P<lhs>[A-Za-z_][\w.]*)\s*(?P<op>!=|=)\s*"(?P<val>(?:[^"\\]|\\.)*)"\s*')


_AND = re.compile(r"AND(?=[\s])", re.IGNORECASE)


_LHS_LABEL = re.compile(r"^(resource|metric)\.labels?\.([A-Za-z_][\w]*)$")


def _lhs(lhs: str) -> tuple[str, str] | None:
    if lhs in ("metric.type", "resource.type"):
        return lhs, ""
    if lhs == "project":
        return "resource", "project_id"
    m = _LHS_LABEL.match(lhs)
    if m:
        return m.group(1), m.group(2)
    return None


def parse_filter(text: str) -> Filter:
    """Parse `A = "x" AND b.labels.c != "y" ...`; raises ApiError(400) like the real API."""
    flt = Filter()
    pos, n = 0, len(text)
    if not text.strip():
        raise invalid_argument("filter", text, "A filter must specify a metric type (metric.type).")
    while True:
        m = _CLAUSE.match(text, pos)
        if not m:
            raise invalid_argument("filter", text, f"Could not parse filter at column {pos + 1}.")
        target = _lhs(m.group("lhs"))
        if target is None:
            raise invalid_argument(
                "filter", text, f"The filter references an unknown field {m.group('lhs')!r}."
            )
        value = re.sub(r"\\(.)", r"\1", m.group("val"))
        flt.clauses.append(Clause(target[0], target[1], m.group("op"), value))
        pos = m.end()
        if pos >= n:
            break
        a = _AND.match(text, pos)
        if not a:
            raise invalid_argument("filter", text, f"Could not parse filter at column {pos + 1}.")
        pos = a.end()
    if not flt.metric_types():
        raise invalid_argument("filter", text, "A filter must specify a metric type (metric.type).")
    return flt


@dataclass
class Query:
    project: str
    flt: Filter
    spec: MetricSpec
    metric_type: str
    start_ns: int
    end_ns: int
    aligner: str
    reducer: str
    period_ns: int
    group_by: list[tuple[str, str]]
    headers_only: bool
    page_size: int
    offset: int


def ts_ns(ts: Any) -> int:
    return int(ts.seconds) * NS + int(ts.nanos)


def _group_field(text: str) -> tuple[str, str] | None:
    t = text.strip()
    if t in ("resource.type", "metric.type"):
        return None  # always implicit
    target = _lhs(t)
    if target is None or target[0] not in ("resource", "metric"):
        raise invalid_argument("aggregation.groupByFields", text, "Unsupported group-by field.")
    return target


def parse_request(req: Any) -> Query:
    m = re.fullmatch(r"projects/([^/]+)", req.name)
    if not m:
        raise invalid_argument(
            "name", req.name, "Expected a name of the form projects/[PROJECT_ID]."
        )
    project = m.group(1)
    flt = parse_filter(req.filter)
    types = set(flt.metric_types())
    if len(types) > 1:
        raise invalid_argument("filter", req.filter, "A filter must specify a single metric type.")
    metric_type = types.pop()
    spec = METRICS.get(metric_type)
    if spec is None:
        raise ApiError(404, f'Cannot find metric(s) that match type = "{metric_type}".')

    if not req.HasField("interval") or not req.interval.HasField("end_time"):
        raise ApiError(400, "Field interval.endTime is required.")
    end_ns = ts_ns(req.interval.end_time)
    start_ns = ts_ns(req.interval.start_time) if req.interval.HasField("start_time") else end_ns
    if start_ns > end_ns:
        raise ApiError(
            400, "Field interval.startTime had an invalid value: it is later than endTime."
        )

    agg = req.aggregation
    aligner = Aligner(agg.per_series_aligner).name
    reducer = Reducer(agg.cross_series_reducer).name
    if aligner not in _ALIGNERS:
        raise invalid_argument(
            "aggregation.perSeriesAligner", aligner, "This aligner is not supported by gcpsim."
        )
    if reducer not in _REDUCERS:
        raise invalid_argument(
            "aggregation.crossSeriesReducer", reducer, "This reducer is not supported by gcpsim."
        )
    period_ns = ts_ns(agg.alignment_period) if agg.HasField("alignment_period") else 0
    if aligner == "ALIGN_NONE":
        if reducer != "REDUCE_NONE":
            raise invalid_argument(
                "aggregation.perSeriesAligner",
                aligner,
                "A cross-series reducer requires a per-series aligner other than ALIGN_NONE.",
            )
    else:
        if period_ns <= 0:
            raise ApiError(
                400,
                "Field aggregation.alignmentPeriod is required when a per-series aligner is set.",
            )
        if period_ns < MIN_ALIGNMENT_SECONDS * NS:
            raise invalid_argument(
                "aggregation.alignmentPeriod",
                f"{period_ns / 1e9:g}s",
                f"The alignment period must be at least {MIN_ALIGNMENT_SECONDS} second "
                "(gcpsim; the real API requires 60 seconds).",
            )
        if (end_ns - start_ns) // period_ns > MAX_POINTS:
            raise ApiError(400, "Too many alignment periods in the interval.")
    mismatch = check_types(spec, aligner, reducer)
    if mismatch:
        raise invalid_argument("aggregation", f"{aligner}/{reducer}", mismatch)

    group_by = [g for g in (_group_field(f) for f in agg.group_by_fields) if g is not None]
    if req.page_size < 0:
        raise invalid_argument("pageSize", str(req.page_size), "Must not be negative.")
    page_size = min(req.page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    offset = 0
    if req.page_token:
        if not req.page_token.isdigit():
            raise invalid_argument("pageToken", req.page_token, "Invalid page token.")
        offset = int(req.page_token)
    headers_only = req.view == RequestPb.TimeSeriesView.HEADERS
    return Query(
        project, flt, spec, metric_type, start_ns, end_ns, aligner, reducer, period_ns,
        group_by, headers_only, page_size, offset,
    )  # fmt: skip


def check_types(spec: MetricSpec, aligner: str, reducer: str) -> str | None:
    """A reason the aligner/reducer do not fit the metric, or None."""
    dist = spec.value_type == DISTRIBUTION
    if (aligner.startswith("ALIGN_PERCENTILE") or aligner == "ALIGN_MEAN") and not dist:
        return f"The aligner {aligner} is only valid for distribution values."
    if aligner == "ALIGN_RATE" and dist:
        return "The aligner ALIGN_RATE is only valid for numeric values."
    aligned_dist = dist and aligner in ("ALIGN_NONE", "ALIGN_DELTA", "ALIGN_SUM")
    if reducer in ("REDUCE_MIN", "REDUCE_MAX") and aligned_dist:
        return f"The reducer {reducer} is only valid for numeric values."
    return None
