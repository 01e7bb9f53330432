"""The time series a `ListTimeSeries` query answers: raw series from the synthetic metrics
(gcpsim.model.metrics), aligned, reduced and grouped, and the protobuf point values."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gcpsim import store as gstore
from gcpsim.api.monitoring_query import (
    DISTRIBUTION,
    DOUBLE,
    GAUGE,
    INT64,
    LOG_ENTRY_COUNT,
    NS,
    PERCENTILES,
    RESOURCE_TYPE,
    Query,
    Value,
    ts_ns,
)
from gcpsim.model import metrics, metrics_dist, outage
from gcpsim.sim import Sim


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
                elif isinstance(v, metrics_dist.Dist):
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
        assert not isinstance(v, metrics_dist.Dist)
        return float(v) / (q.period_ns / 1e9)
    assert isinstance(v, metrics_dist.Dist)
    if a == "ALIGN_MEAN":
        return v.mean
    return v.percentile(PERCENTILES[a.rsplit("_", 1)[1]])


def _aligned_type(q: Query) -> tuple[int, int]:
    a = q.aligner
    if a in ("ALIGN_NONE", "ALIGN_DELTA", "ALIGN_SUM"):
        return q.spec.kind, q.spec.value_type
    return GAUGE, DOUBLE


def _reduce(r: str, vals: list[Value]) -> Value:
    if r == "REDUCE_COUNT":
        return len(vals)
    dists = [v for v in vals if isinstance(v, metrics_dist.Dist)]
    if dists:
        merged = metrics_dist.Dist()
        for d in dists:
            merged.merge(d)
        if r == "REDUCE_SUM":
            return merged
        if r == "REDUCE_MEAN":
            return merged.mean
        return merged.percentile(PERCENTILES[r.rsplit("_", 1)[1]])
    nums = [v for v in vals if not isinstance(v, metrics_dist.Dist)]
    if r == "REDUCE_SUM":
        return sum(nums)
    if r == "REDUCE_MEAN":
        return float(sum(nums)) / len(nums)
    if r == "REDUCE_MIN":
        return min(nums)
    if r == "REDUCE_MAX":
        return max(nums)
    return _percentile([float(x) for x in nums], PERCENTILES[r.rsplit("_", 1)[1]])


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
            series = group_series(q, series)
            kind, vtype = _reduced_type(q.reducer, kind, vtype)
    series.sort(key=lambda s: (sorted(s.resource.items()), sorted(s.metric.items())))
    return series, kind, vtype


def group_series(q: Query, series: list[Series]) -> list[Series]:
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


def set_ts(ts: Any, ns: int) -> None:
    ts.seconds, ts.nanos = divmod(ns, NS)


def gauge_window(req: Any, end_ns: int) -> tuple[int, int, int]:
    """(start, end, period) in ns of a ListTimeSeries request for a gcpsim gauge that ends at
    `end_ns`: the start defaults to the end, the period to 60 s, and the end stops at now."""
    start_ns = ts_ns(req.interval.start_time) if req.interval.HasField("start_time") else 0
    agg = req.aggregation
    period_ns = ts_ns(agg.alignment_period) if agg.HasField("alignment_period") else 60 * NS
    return start_ns or end_ns, min(end_ns, int(gstore.now() * NS)), period_ns


def add_gauge_series(
    resp: Any, metric: tuple[str, dict[str, str]], resource: tuple[str, dict[str, str]],
    value_type: int, value: Value, window: tuple[int, int, int],
) -> None:  # fmt: skip
    """Add to `resp` a GAUGE series of `metric` (type, labels) on `resource` (type, labels)
    with `value` at every point of `window` (start, end, period in ns): one point per period,
    newest first, from the end back to just after the start, and always the one at the end."""
    start_ns, end_ns, period_ns = window
    ts = resp.time_series.add()
    ts.metric.type = metric[0]
    ts.metric.labels.update(metric[1])
    ts.resource.type = resource[0]
    ts.resource.labels.update(resource[1])
    ts.metric_kind = GAUGE
    ts.value_type = value_type
    t = end_ns
    while t > start_ns or t == end_ns:
        p = ts.points.add()
        set_ts(p.interval.end_time, t)
        set_ts(p.interval.start_time, t)
        set_value(p.value, value_type, value)
        t -= period_ns


def set_value(value_pb: Any, vtype: int, v: Value) -> None:
    if vtype == DISTRIBUTION:
        assert isinstance(v, metrics_dist.Dist)
        d: Any = value_pb.distribution_value
        d.count = v.count
        d.mean = v.mean
        d.sum_of_squared_deviation = v.sum_of_squared_deviation
        eb = d.bucket_options.exponential_buckets
        eb.num_finite_buckets = metrics_dist.NUM_FINITE_BUCKETS
        eb.growth_factor = metrics_dist.GROWTH_FACTOR
        eb.scale = metrics_dist.SCALE
        d.bucket_counts.extend(v.bucket_counts())
    elif vtype == INT64:
        assert not isinstance(v, metrics_dist.Dist)
        value_pb.int64_value = int(v)
    else:
        assert not isinstance(v, metrics_dist.Dist)
        value_pb.double_value = float(v)
