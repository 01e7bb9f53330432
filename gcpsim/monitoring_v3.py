"""Cloud Monitoring API v3 `ListTimeSeries` over plaintext gRPC (contract section 5.5, option C).

The real `MetricServiceClient` talks to this server through
`MetricServiceGrpcTransport(channel=grpc.insecure_channel("127.0.0.1:PORT"))`. The server is a
grpcio server with a generic handler for `google.monitoring.v3.MetricService/ListTimeSeries`
(every other method answers UNIMPLEMENTED). Data comes from the synthetic metrics model
(`gcpsim.metrics`).

Supported:
- metrics `run.googleapis.com/request_count` (DELTA INT64, unit "1") and
  `run.googleapis.com/request_latencies` (DELTA DISTRIBUTION, unit "ms", exponential buckets),
  both with metric labels `response_code`, `response_code_class`, on resource
  `cloud_run_revision` (labels project_id, service_name, revision_name, location,
  configuration_name). An unknown metric type answers NOT_FOUND, as the real API does.
- metric `logging.googleapis.com/log_entry_count` (DELTA INT64, unit "1") with metric labels
  `log` (`run.googleapis.com/requests`, `run.googleapis.com/stderr`, `run.googleapis.com/stdout`)
  and `severity` (INFO, WARNING, ERROR), on the same resource (`gcpsim.metrics`, "Logs").
- metric `run.googleapis.com/container/instance_count` (gcpsim.instances) and
  `cloudsql.googleapis.com/database/replication/replica_lag` (gcpsim.api.monitoring_sql).
- Cloud Monitoring's timing: each service's samples (period P, aligned on epoch multiples of P)
  are visible from P + delay seconds after they start (`gcpsim.metrics.Timing`); reads see only
  visible data, so a point reaching past the newest visible sample holds its visible part, and
  ALIGN_NONE returns one point per visible sample. Defaults (P = 1 s, no delay): live.
- filter: `AND`-joined clauses `LHS = "value"` or `LHS != "value"`, LHS one of `metric.type`,
  `resource.type`, `project`, `resource.labels.X` / `resource.label.X`, `metric.labels.X` /
  `metric.label.X`. A `metric.type = "..."` clause is required. Anything else: INVALID_ARGUMENT.
- interval: endTime required, startTime defaults to endTime.
- aggregation: perSeriesAligner ALIGN_NONE, ALIGN_DELTA, ALIGN_SUM, ALIGN_RATE, ALIGN_MEAN
  (distributions), ALIGN_PERCENTILE_99/95/50/05 (distributions; output GAUGE DOUBLE);
  crossSeriesReducer REDUCE_NONE, REDUCE_SUM, REDUCE_MEAN, REDUCE_MIN, REDUCE_MAX, REDUCE_COUNT,
  REDUCE_PERCENTILE_99/95/50/05; groupByFields (`metric.labels.X`, `resource.labels.X`).
  A reduced series keeps the grouped labels plus resource label project_id; with no groupBy all
  series collapse into one.
- One point per alignment period, the newest ending at endTime, going back until the period
  that contains startTime; points newest first; periods without requests have no point.
  ALIGN_NONE returns the raw points (one per sample: 1 s by default).
- view FULL / HEADERS, pageSize / pageToken (over time series), fault method
  `monitoring.timeSeries.list` (ApiError.status mapped to the gRPC code).
- Percentiles of a distribution interpolate linearly inside the bucket holding the rank.
- Each call first applies Cloud Run operations whose time has come (`run_v2.settle`), so a
  finished traffic change is in the timeline even if nobody polled its operation.

SIMULATOR RELAXATION: the real API requires alignmentPeriod >= 60 s when an aligner is set.
gcpsim accepts any period down to 1 s (its metrics have 1 s resolution), so tests with
second-long bakes work; shorter periods answer INVALID_ARGUMENT.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.api import metric_pb2
from google.cloud.monitoring_v3.types import common, metric_service
from google.cloud.monitoring_v3.types import metric as metric_types

from gcpsim import metrics, outage, run_v2
from gcpsim import store as gstore
from gcpsim.errors import ApiError
from gcpsim.sim import Sim

log = logging.getLogger(__name__)

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

_PERCENTILES = {"99": 99.0, "95": 95.0, "50": 50.0, "05": 5.0}
_ALIGNERS = {"ALIGN_NONE", "ALIGN_DELTA", "ALIGN_SUM", "ALIGN_RATE", "ALIGN_MEAN"} | {
    f"ALIGN_PERCENTILE_{p}" for p in _PERCENTILES
}
_REDUCERS = (
    {"REDUCE_NONE", "REDUCE_SUM", "REDUCE_MEAN", "REDUCE_MIN", "REDUCE_MAX"}
    | {"REDUCE_COUNT"}
    | {f"REDUCE_PERCENTILE_{p}" for p in _PERCENTILES}
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

Value = int | float | metrics.Dist


def _invalid(field_name: str, value: str, reason: str) -> ApiError:
    return ApiError(400, f'Field {field_name} had an invalid value of "{value}": {reason}')


# --------------------------------------------------------------------------- filter


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
        raise _invalid("filter", text, "A filter must specify a metric type (metric.type).")
    while True:
        m = _CLAUSE.match(text, pos)
        if not m:
            raise _invalid("filter", text, f"Could not parse filter at column {pos + 1}.")
        target = _lhs(m.group("lhs"))
        if target is None:
            raise _invalid(
                "filter", text, f"The filter references an unknown field {m.group('lhs')!r}."
            )
        value = re.sub(r"\\(.)", r"\1", m.group("val"))
        flt.clauses.append(Clause(target[0], target[1], m.group("op"), value))
        pos = m.end()
        if pos >= n:
            break
        a = _AND.match(text, pos)
        if not a:
            raise _invalid("filter", text, f"Could not parse filter at column {pos + 1}.")
        pos = a.end()
    if not flt.metric_types():
        raise _invalid("filter", text, "A filter must specify a metric type (metric.type).")
    return flt


# --------------------------------------------------------------------------- request parsing


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


def _ts_ns(ts: Any) -> int:
    return int(ts.seconds) * NS + int(ts.nanos)


def _group_field(text: str) -> tuple[str, str] | None:
    t = text.strip()
    if t in ("resource.type", "metric.type"):
        return None  # always implicit
    target = _lhs(t)
    if target is None or target[0] not in ("resource", "metric"):
        raise _invalid("aggregation.groupByFields", text, "Unsupported group-by field.")
    return target


def parse_request(req: Any) -> Query:
    m = re.fullmatch(r"projects/([^/]+)", req.name)
    if not m:
        raise _invalid("name", req.name, "Expected a name of the form projects/[PROJECT_ID].")
    project = m.group(1)
    flt = parse_filter(req.filter)
    types = set(flt.metric_types())
    if len(types) > 1:
        raise _invalid("filter", req.filter, "A filter must specify a single metric type.")
    metric_type = types.pop()
    spec = METRICS.get(metric_type)
    if spec is None:
        raise ApiError(404, f'Cannot find metric(s) that match type = "{metric_type}".')

    if not req.HasField("interval") or not req.interval.HasField("end_time"):
        raise ApiError(400, "Field interval.endTime is required.")
    end_ns = _ts_ns(req.interval.end_time)
    start_ns = _ts_ns(req.interval.start_time) if req.interval.HasField("start_time") else end_ns
    if start_ns > end_ns:
        raise ApiError(
            400, "Field interval.startTime had an invalid value: it is later than endTime."
        )

    agg = req.aggregation
    aligner = Aligner(agg.per_series_aligner).name
    reducer = Reducer(agg.cross_series_reducer).name
    if aligner not in _ALIGNERS:
        raise _invalid(
            "aggregation.perSeriesAligner", aligner, "This aligner is not supported by gcpsim."
        )
    if reducer not in _REDUCERS:
        raise _invalid(
            "aggregation.crossSeriesReducer", reducer, "This reducer is not supported by gcpsim."
        )
    period_ns = _ts_ns(agg.alignment_period) if agg.HasField("alignment_period") else 0
    if aligner == "ALIGN_NONE":
        if reducer != "REDUCE_NONE":
            raise _invalid(
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
            raise _invalid(
                "aggregation.alignmentPeriod",
                f"{period_ns / 1e9:g}s",
                f"The alignment period must be at least {MIN_ALIGNMENT_SECONDS} second "
                "(gcpsim; the real API requires 60 seconds).",
            )
        if (end_ns - start_ns) // period_ns > MAX_POINTS:
            raise ApiError(400, "Too many alignment periods in the interval.")
    mismatch = _check_types(spec, aligner, reducer)
    if mismatch:
        raise _invalid("aggregation", f"{aligner}/{reducer}", mismatch)

    group_by = [g for g in (_group_field(f) for f in agg.group_by_fields) if g is not None]
    if req.page_size < 0:
        raise _invalid("pageSize", str(req.page_size), "Must not be negative.")
    page_size = min(req.page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    offset = 0
    if req.page_token:
        if not req.page_token.isdigit():
            raise _invalid("pageToken", req.page_token, "Invalid page token.")
        offset = int(req.page_token)
    headers_only = req.view == RequestPb.TimeSeriesView.HEADERS
    return Query(
        project, flt, spec, metric_type, start_ns, end_ns, aligner, reducer, period_ns,
        group_by, headers_only, page_size, offset,
    )  # fmt: skip


def _check_types(spec: MetricSpec, aligner: str, reducer: str) -> str | None:
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


# --------------------------------------------------------------------------- series


@dataclass
class Series:
    resource: dict[str, str]
    metric: dict[str, str]
    values: dict[int, Value]  # aligned: period index (0 = newest); raw: sample start second
    sample_period: int = 1  # raw points: seconds per point (the service's Monitoring sample)


# The buckets a query reads under a service's timing: (lo, hi, index(bucket) -> point key).
Window = Callable[[metrics.Timing], tuple[int, int, Callable[[int], int]]]


def _raw_series(sim: Sim, q: Query, window: Window) -> list[Series]:
    """Per (revision, response code) series of the visible buckets, folded by the window's
    `index(bucket)`. Each service's Monitoring timing hides its samples that are not yet
    visible (`metrics.Timing.visible_until`)."""
    is_count = q.spec.value_type == INT64
    logs = q.metric_type == LOG_ENTRY_COUNT
    source = metrics.log_buckets if logs else metrics.buckets
    out: dict[tuple[str, str, Any], Series] = {}
    rejected: set[Any] = set()  # response codes / (log, severity) the metric clauses reject
    if not q.flt.accepts_type("resource.type", RESOURCE_TYPE):
        return []
    now = gstore.now()
    rules = metrics.timing_rules(sim)
    for key in metrics.service_keys(sim, q.project):
        project, location, service = metrics.split_key(key)
        if outage.is_out(sim, location):
            continue  # a regional outage: the region's metrics stop
        res = {"project_id": project, "service_name": service, "location": location}
        res["configuration_name"] = service
        if not q.flt.accepts("resource", res, only=set(res)):
            continue

        def want(rev: str, res: dict[str, str] = res) -> bool:
            return q.flt.accepts("resource", {**res, "revision_name": rev})

        timing = metrics.timing_for(sim, service, rules)
        lo, hi, index = window(timing)
        until = timing.visible_until(now)
        rows: Any = source(sim, key, lo, hi, now=until, want=want)
        for b, rev, _image, stats in rows:
            i = index(b)
            for sub, x in stats.items():  # code -> Dist, or (log, severity) -> entries
                sk = (key, rev, sub)
                s = out.get(sk)
                if s is None:
                    if sub in rejected:
                        continue
                    mlabels = _log_labels(sub) if logs else _code_labels(sub)
                    if not q.flt.accepts("metric", mlabels):
                        rejected.add(sub)
                        continue
                    s = out[sk] = Series(
                        {**res, "revision_name": rev}, mlabels, {}, timing.sample_period
                    )
                v = s.values.get(i)
                if is_count:
                    n = x if isinstance(x, int) else x.count
                    s.values[i] = (v if isinstance(v, int) else 0) + n
                elif isinstance(v, metrics.Dist):
                    v.merge(x)
                else:
                    s.values[i] = x.copy()
    return list(out.values())


def _code_labels(code: int) -> dict[str, str]:
    return {"response_code": str(code), "response_code_class": f"{code // 100}xx"}


def _log_labels(sub: tuple[str, str]) -> dict[str, str]:
    return {"log": sub[0], "severity": sub[1]}


def _percentile(values: list[float], q: float) -> float:
    xs = sorted(values)
    if not xs:
        return 0.0
    pos = q / 100.0 * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _align(q: Query, v: Value) -> Value:
    a = q.aligner
    if a in ("ALIGN_DELTA", "ALIGN_SUM", "ALIGN_NONE"):
        return v
    if a == "ALIGN_RATE":
        assert not isinstance(v, metrics.Dist)
        return float(v) / (q.period_ns / 1e9)
    assert isinstance(v, metrics.Dist)
    if a == "ALIGN_MEAN":
        return v.mean
    return v.percentile(_PERCENTILES[a.rsplit("_", 1)[1]])


def _aligned_type(q: Query) -> tuple[int, int]:
    a = q.aligner
    if a in ("ALIGN_NONE", "ALIGN_DELTA", "ALIGN_SUM"):
        return q.spec.kind, q.spec.value_type
    return GAUGE, DOUBLE


def _reduce(r: str, vals: list[Value]) -> Value:
    if r == "REDUCE_COUNT":
        return len(vals)
    dists = [v for v in vals if isinstance(v, metrics.Dist)]
    if dists:
        merged = metrics.Dist()
        for d in dists:
            merged.merge(d)
        if r == "REDUCE_SUM":
            return merged
        if r == "REDUCE_MEAN":
            return merged.mean
        return merged.percentile(_PERCENTILES[r.rsplit("_", 1)[1]])
    nums = [v for v in vals if not isinstance(v, metrics.Dist)]
    if r == "REDUCE_SUM":
        return sum(nums)
    if r == "REDUCE_MEAN":
        return float(sum(nums)) / len(nums)
    if r == "REDUCE_MIN":
        return min(nums)
    if r == "REDUCE_MAX":
        return max(nums)
    return _percentile([float(x) for x in nums], _PERCENTILES[r.rsplit("_", 1)[1]])


def _reduced_type(r: str, kind: int, value_type: int) -> tuple[int, int]:
    if r in ("REDUCE_SUM", "REDUCE_MIN", "REDUCE_MAX"):
        return kind, value_type
    if r == "REDUCE_COUNT":
        return kind, INT64
    return GAUGE, DOUBLE


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _ceil_s(ns: int) -> int:
    return _ceil_div(ns, NS)


def compute(sim: Sim, q: Query) -> tuple[list[Series], int, int]:
    """The result series (all pages) and their metric kind and value type."""
    if q.aligner == "ALIGN_NONE":

        def raw_window(t: metrics.Timing) -> tuple[int, int, Callable[[int], int]]:
            # Every sample that overlaps the interval (the one holding endTime if start == end).
            p_ns = t.sample_period * NS
            lo = q.start_ns // p_ns * t.sample_period
            hi = (
                _ceil_div(q.end_ns, p_ns) if q.start_ns < q.end_ns else q.end_ns // p_ns + 1
            ) * t.sample_period
            return lo, hi, t.sample_start

        series = _raw_series(sim, q, raw_window)
        kind, vtype = q.spec.kind, q.spec.value_type
    else:
        periods = max(1, _ceil_div(q.end_ns - q.start_ns, q.period_ns))
        lo = _ceil_s(q.end_ns - periods * q.period_ns)
        hi = _ceil_s(q.end_ns)
        p_ns, e_ns = q.period_ns, q.end_ns

        def index(b: int) -> int:
            # Period k covers [end - (k+1)P, end - kP); bucket b belongs where its start falls.
            return (e_ns - b * NS - 1) // p_ns

        series = _raw_series(sim, q, lambda _t: (lo, hi, index))
        for s in series:
            s.values = {k: _align(q, v) for k, v in s.values.items()}
        kind, vtype = _aligned_type(q)
        if q.reducer != "REDUCE_NONE":
            series = _group(q, series)
            kind, vtype = _reduced_type(q.reducer, kind, vtype)
    series.sort(key=lambda s: (sorted(s.resource.items()), sorted(s.metric.items())))
    return series, kind, vtype


def _group(q: Query, series: list[Series]) -> list[Series]:
    groups: dict[tuple[str, ...], tuple[dict[str, str], dict[str, str], dict[int, list[Value]]]]
    groups = {}
    for s in series:
        res = {"project_id": s.resource["project_id"]}
        met: dict[str, str] = {}
        for scope, label in q.group_by:
            if scope == "resource" and label in s.resource:
                res[label] = s.resource[label]
            elif scope == "metric" and label in s.metric:
                met[label] = s.metric[label]
        gk = tuple(f"r:{k}={v}" for k, v in sorted(res.items())) + tuple(
            f"m:{k}={v}" for k, v in sorted(met.items())
        )
        g = groups.setdefault(gk, (res, met, {}))
        for k, v in s.values.items():
            g[2].setdefault(k, []).append(v)
    return [
        Series(res, met, {k: _reduce(q.reducer, vals) for k, vals in points.items()})
        for res, met, points in groups.values()
    ]


# --------------------------------------------------------------------------- response


def _set_ts(ts: Any, ns: int) -> None:
    ts.seconds, ts.nanos = divmod(ns, NS)


def _set_value(value_pb: Any, vtype: int, v: Value) -> None:
    if vtype == DISTRIBUTION:
        assert isinstance(v, metrics.Dist)
        d: Any = value_pb.distribution_value
        d.count = v.count
        d.mean = v.mean
        d.sum_of_squared_deviation = v.sum_of_squared_deviation
        eb = d.bucket_options.exponential_buckets
        eb.num_finite_buckets = metrics.NUM_FINITE_BUCKETS
        eb.growth_factor = metrics.GROWTH_FACTOR
        eb.scale = metrics.SCALE
        d.bucket_counts.extend(v.bucket_counts())
    elif vtype == INT64:
        assert not isinstance(v, metrics.Dist)
        value_pb.int64_value = int(v)
    else:
        assert not isinstance(v, metrics.Dist)
        value_pb.double_value = float(v)


def list_time_series(sim: Sim, req: Any) -> Any:
    """Answer a ListTimeSeriesRequest (protobuf) with a ListTimeSeriesResponse (protobuf)."""
    from gcpsim import instances  # container/instance_count lives there (issue 9 item 8)
    from gcpsim.api import monitoring_sql  # Cloud SQL replica_lag

    for other in (instances, monitoring_sql):
        answered = other.list_time_series(sim, req)
        if answered is not None:
            return answered
    q = parse_request(req)
    run_v2.settle(sim)  # apply Cloud Run operations that finished meanwhile (traffic changes)
    series, kind, vtype = compute(sim, q)
    series = [s for s in series if s.values]
    resp = ResponsePb(unit=q.spec.unit)
    page = series[q.offset : q.offset + q.page_size]
    if q.offset + q.page_size < len(series):
        resp.next_page_token = str(q.offset + q.page_size)
    raw = q.aligner == "ALIGN_NONE"
    now_ns = int(gstore.now() * 1e9)
    for s in page:
        ts = resp.time_series.add()
        ts.metric.type = q.metric_type
        ts.metric.labels.update(s.metric)
        ts.resource.type = RESOURCE_TYPE
        ts.resource.labels.update(s.resource)
        ts.metric_kind = kind
        ts.value_type = vtype
        if q.headers_only:
            continue
        for k in sorted(s.values, reverse=raw):
            p = ts.points.add()
            if raw:  # one point per sample; live (1 s, no delay): the running one ends now
                p_start = k * NS
                p_end = min(p_start + s.sample_period * NS, max(now_ns, p_start))
            else:
                p_end = q.end_ns - k * q.period_ns
                p_start = p_end - q.period_ns
            _set_ts(p.interval.start_time, p_start)
            _set_ts(p.interval.end_time, p_end)
            _set_value(p.value, vtype, s.values[k])
    return resp


# --------------------------------------------------------------------------- server


def _status_code(err: ApiError) -> grpc.StatusCode:
    try:
        return grpc.StatusCode[err.rpc_status]
    except KeyError:
        return grpc.StatusCode.UNKNOWN


def handler(sim: Sim) -> grpc.GenericRpcHandler:
    def list_ts(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            sim.faults.apply(FAULT_METHOD)
            return list_time_series(sim, request)
        except ApiError as e:
            context.abort(_status_code(e), e.message)
        except Exception as e:
            log.exception("ListTimeSeries failed")
            context.abort(grpc.StatusCode.INTERNAL, f"gcpsim: {type(e).__name__}: {e}")

    return grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                list_ts,
                request_deserializer=RequestPb.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            )
        },
    )


def serve(sim: Sim, port: int, max_workers: int = 16) -> tuple[grpc.Server, int]:
    """Start the plaintext gRPC server on sim.settings.host:port (0 = a free port)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="gcpsim-grpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    server.add_generic_rpc_handlers((handler(sim),))
    host = sim.settings.host or "127.0.0.1"
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as e:
        raise RuntimeError(f"cannot bind the Monitoring gRPC port {host}:{port}: {e}") from e
    if not bound:
        raise RuntimeError(f"cannot bind the Monitoring gRPC port {host}:{port}")
    server.start()
    return server, bound
