"""Properties of gcpsim's synthetic metrics model and its ListTimeSeries query engine."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gcpsim.api import monitoring, monitoring_query
from gcpsim.errors import ApiError
from gcpsim.model import metrics, metrics_dist, traffic
from gcpsim.model.behavior import set_behavior
from gcpsim.sim import Settings, Sim

T0 = 1_700_000_000.0  # a fixed past instant: the model is given `now` explicitly
NOW = T0 + 100_000
KEY = traffic.service_key("proj", "us-central1", "svc")
IMG = "us-docker.pkg.dev/proj/app/svc"


def new_sim(path: Path, **kw: Any) -> Sim:
    return Sim.open(path, Settings(**kw))


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return new_sim(tmp_path)


def canary(sim: Sim, pct: int, at: float = T0, key: str = KEY) -> None:
    split = [("svc-00001", 100 - pct, f"{IMG}:v1.0.0"), ("svc-00002", pct, f"{IMG}:v1.1.0")]
    traffic.record_split(sim, key, split, at)


def poisson_ok(observed: int, expected: float, sds: float = 5.0) -> bool:
    return abs(observed - expected) <= sds * math.sqrt(max(expected, 1.0)) + 1


# --------------------------------------------------------------------------- traffic -> counts


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pct=st.integers(min_value=1, max_value=99), seconds=st.integers(10, 300))
def test_counts_scale_with_percent(pct: int, seconds: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        sim = new_sim(Path(d))
        canary(sim, pct)
        exp = metrics.expected_requests(sim, KEY, T0, T0 + seconds, now=NOW)
        assert exp["svc-00002"] == pytest.approx(50.0 * seconds * pct / 100)
        assert exp["svc-00001"] == pytest.approx(50.0 * seconds * (100 - pct) / 100)
        got = metrics.summarize(sim, KEY, T0, T0 + seconds, now=NOW)
        for rev, e in exp.items():
            assert poisson_ok(got[rev].requests if rev in got else 0, e)


def test_ten_percent_canary_at_50_rps_gets_about_5_rps(sim: Sim) -> None:
    canary(sim, 10)
    got = metrics.summarize(sim, KEY, T0, T0 + 600, now=NOW)
    assert got["svc-00002"].requests / 600 == pytest.approx(5.0, rel=0.1)
    assert got["svc-00001"].requests / 600 == pytest.approx(45.0, rel=0.05)


def test_request_rate_setting_scales_counts(tmp_path: Path) -> None:
    sim = new_sim(tmp_path, request_rate=200.0)
    canary(sim, 50)
    got = metrics.summarize(sim, KEY, T0, T0 + 60, now=NOW)
    assert poisson_ok(got["svc-00002"].requests, 200 * 60 * 0.5)


def test_service_rate_rule_sets_the_total(sim: Sim) -> None:
    canary(sim, 10)
    traffic.set_rate(sim, "svc", "*", 400.0)
    traffic.set_rate(sim, "other", "*", 1.0)  # another service: no effect
    exp = metrics.expected_requests(sim, KEY, T0, T0 + 100, now=NOW)
    assert exp == pytest.approx({"svc-00001": 400 * 100 * 0.9, "svc-00002": 400 * 100 * 0.1})
    got = metrics.summarize(sim, KEY, T0, T0 + 100, now=NOW)
    assert poisson_ok(got["svc-00001"].requests, 36_000)


def test_version_rate_rule_overrides_the_share_of_that_version(sim: Sim) -> None:
    canary(sim, 10)
    traffic.set_rate(sim, "svc", "v1.1.0", 1000.0)  # set before the service-level rule
    traffic.set_rate(sim, "s*", "*", 20.0)  # a glob
    exp = metrics.expected_requests(sim, KEY, T0, T0 + 100, now=NOW)
    assert exp["svc-00001"] == pytest.approx(20 * 100 * 0.9)  # v1.0.0: the service rate
    assert exp["svc-00002"] == pytest.approx(1000 * 100 * 0.1)  # v1.1.0: its own rate
    by_bucket = metrics.expected_by_bucket(sim, KEY, int(T0), int(T0) + 2, now=NOW)
    assert by_bucket[int(T0)]["svc-00002"][0] == pytest.approx(100.0)
    # Replacing a rule, clearing one, clearing all.
    traffic.set_rate(sim, "svc", "v1.1.0", 0.0)
    assert "svc-00002" not in metrics.summarize(sim, KEY, T0, T0 + 100, now=NOW)
    assert traffic.clear_rates(sim, "svc", "v1.1.0") == 1
    assert metrics.expected_requests(sim, KEY, T0, T0 + 1, now=NOW)["svc-00002"] == (
        pytest.approx(20 * 0.1)
    )
    assert traffic.clear_rates(sim) == 1
    assert traffic.rates(sim) == []
    assert metrics.expected_requests(sim, KEY, T0, T0 + 1, now=NOW)["svc-00002"] == (
        pytest.approx(50 * 0.1)
    )


def test_a_quiet_service_next_to_a_busy_one(sim: Sim) -> None:
    busy = traffic.service_key("proj", "us-central1", "busy")
    canary(sim, 10)
    traffic.record_split(sim, busy, [("busy-00001", 100, f"{IMG}:v1.0.0")], T0)
    traffic.set_rate(sim, "svc", "*", 0.05)
    traffic.set_rate(sim, "busy", "*", 500.0)
    quiet = metrics.summarize(sim, KEY, T0, T0 + 3600, now=NOW)
    n = sum(s.requests for s in quiet.values())
    assert poisson_ok(n, 0.05 * 3600)  # about 180 requests an hour
    assert quiet.get("svc-00002") is None or quiet["svc-00002"].requests < 60
    loud = metrics.summarize(sim, busy, T0, T0 + 60, now=NOW)
    assert poisson_ok(loud["busy-00001"].requests, 500 * 60)
    again = metrics.summarize(sim, KEY, T0, T0 + 3600, now=NOW)
    assert again == quiet  # deterministic


def test_windows_that_tile_time_add_up(sim: Sim) -> None:
    canary(sim, 30)
    whole = metrics.summarize(sim, KEY, T0 + 0.25, T0 + 120.25, now=NOW)
    parts = [metrics.summarize(sim, KEY, T0 + a, T0 + b, now=NOW) for a, b in
             ((0.25, 37.7), (37.7, 90.0), (90.0, 120.25))]  # fmt: skip
    for rev, s in whole.items():
        assert s.requests == sum(p[rev].requests for p in parts if rev in p)
        assert s.errors == sum(p[rev].errors for p in parts if rev in p)


def test_no_traffic_before_the_first_split_or_while_drained(sim: Sim) -> None:
    canary(sim, 50, at=T0)
    traffic.record_split(sim, KEY, [], T0 + 100)  # drained
    assert metrics.summarize(sim, KEY, T0 - 500, T0, now=NOW) == {}
    assert metrics.summarize(sim, KEY, T0 + 100, T0 + 400, now=NOW) == {}
    assert metrics.summarize(sim, KEY, T0, T0 + 100, now=NOW)


def test_only_the_past_has_data(sim: Sim) -> None:
    canary(sim, 50)
    now = T0 + 30
    got = metrics.summarize(sim, KEY, T0, T0 + 600, now=now)
    total = sum(s.requests for s in got.values())
    assert poisson_ok(total, 50 * 30)
    assert metrics.summarize(sim, KEY, now + 1, now + 600, now=now) == {}


def test_partial_current_bucket_counts_only_its_elapsed_part(sim: Sim) -> None:
    canary(sim, 100)
    exp = metrics.expected_by_bucket(sim, KEY, int(T0), int(T0) + 10, now=T0 + 5.5)
    assert sorted(exp) == list(range(int(T0), int(T0) + 6))
    assert exp[int(T0) + 5]["svc-00002"][0] == pytest.approx(25.0)
    assert exp[int(T0) + 4]["svc-00002"][0] == pytest.approx(50.0)


def test_a_traffic_change_shows_up_in_the_next_window(sim: Sim) -> None:
    canary(sim, 0)
    t1 = T0 + 300.4  # mid-bucket
    canary(sim, 50, at=t1)
    before = metrics.summarize(sim, KEY, t1 - 60, t1 - 1, now=NOW)
    after = metrics.summarize(sim, KEY, t1 + 1, t1 + 61, now=NOW)
    assert "svc-00002" not in before
    assert after["svc-00002"].requests == pytest.approx(1500, rel=0.15)
    assert after["svc-00001"].requests == pytest.approx(1500, rel=0.15)
    # The bucket in which the change happened is split by the overlap.
    exp = metrics.expected_by_bucket(sim, KEY, int(t1), int(t1) + 1, now=NOW)
    assert exp[int(t1)]["svc-00002"][0] == pytest.approx(50 * 0.6 * 0.5)


def test_out_of_order_splits_are_integrated_in_time_order(sim: Sim) -> None:
    canary(sim, 50, at=T0 + 100)
    canary(sim, 0, at=T0)  # recorded later, happened earlier (a lazily settled operation)
    exp = metrics.expected_requests(sim, KEY, T0, T0 + 200, now=NOW)
    assert exp["svc-00002"] == pytest.approx(50 * 100 * 0.5)


# --------------------------------------------------------------------------- behaviour


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(error_rate=st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.2, 0.5, 0.9, 1.0]))
def test_error_fraction_converges_to_the_behaviour(error_rate: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        sim = new_sim(Path(d))
        canary(sim, 100)
        set_behavior(sim, "svc", "v1.1.0", error_rate=error_rate)
        s = metrics.summarize(sim, KEY, T0, T0 + 1200, now=NOW)["svc-00002"]
        n = s.requests
        assert n > 50_000
        sd = math.sqrt(error_rate * (1 - error_rate) / n)
        assert abs(s.error_rate - error_rate) <= 5 * sd + 1e-4
        # 5xx are 500 and 503; 4xx are not errors; the rest 200.
        assert set(s.codes) <= {200, 404, 500, 503}
        if 0 < error_rate < 1:
            assert s.codes[500].count > s.codes[503].count > 0


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    p50=st.sampled_from([5.0, 40.0, 250.0, 1200.0]),
    spread=st.sampled_from([1.5, 3.0, 8.0]),
)
def test_latency_percentiles_follow_the_behaviour(p50: float, spread: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        sim = new_sim(Path(d))
        canary(sim, 100)
        set_behavior(sim, "svc", "v1.1.0", p50_ms=p50, p95_ms=p50 * spread)
        lat = metrics.summarize(sim, KEY, T0, T0 + 600, now=NOW)["svc-00002"].latency
        # Exponential buckets (x1.4) and in-bucket interpolation: within ~12%.
        assert lat.percentile(95) == pytest.approx(p50 * spread, rel=0.12)
        assert lat.percentile(50) == pytest.approx(p50, rel=0.12)
        assert sum(lat.bucket_counts()) == lat.count


def test_behaviour_is_read_at_query_time(sim: Sim) -> None:
    canary(sim, 10)
    good = metrics.summarize(sim, KEY, T0, T0 + 300, now=NOW)["svc-00002"]
    set_behavior(sim, "sv*", "v1.1.0", error_rate=0.5)  # a glob, set after the fact
    set_behavior(sim, "svc", "v1.1.0", p95_ms=3000.0)
    bad = metrics.summarize(sim, KEY, T0, T0 + 300, now=NOW)
    assert bad["svc-00002"].requests == good.requests  # counts do not depend on behaviour
    assert good.error_rate < 0.02
    assert bad["svc-00002"].error_rate == pytest.approx(0.5, abs=0.07)
    assert bad["svc-00002"].latency.percentile(95) > 2000
    assert bad["svc-00001"].error_rate < 0.02  # the stable revision is untouched


# --------------------------------------------------------------------------- determinism


def test_repeated_reads_give_the_same_numbers(tmp_path: Path) -> None:
    sim = new_sim(tmp_path)
    canary(sim, 20)
    set_behavior(sim, "svc", "v1.1.0", error_rate=0.1)
    a = metrics.summarize(sim, KEY, T0, T0 + 120, now=NOW)
    b = metrics.summarize(sim, KEY, T0, T0 + 120, now=NOW)
    assert a == b
    metrics._cache.clear()  # a restarted simulator on the same state gives the same numbers
    reopened = new_sim(tmp_path)
    assert metrics.summarize(reopened, KEY, T0, T0 + 120, now=NOW) == a
    other = new_sim(tmp_path / "other", seed=1)
    canary(other, 20)
    set_behavior(other, "svc", "v1.1.0", error_rate=0.1)
    assert metrics.summarize(other, KEY, T0, T0 + 120, now=NOW) != a


def test_distribution_merge_and_percentile() -> None:
    d = metrics_dist.Dist()
    for v in (0.5, 1.0, 10.0, 100.0, 1e12):
        d.add_value(v)
    assert d.count == 5
    assert d.buckets[0] == 1 and d.buckets[metrics_dist.OVERFLOW] == 1
    lo, hi = metrics_dist.bucket_bounds(metrics_dist.bucket_index(10.0))
    assert lo <= 10.0 < hi
    m = metrics_dist.Dist().merge(d).merge(d)
    assert m.count == 10 and m.mean == pytest.approx(d.mean)
    assert m.sum_of_squared_deviation == pytest.approx(2 * d.sum_of_squared_deviation)
    assert m.percentile(100) == metrics_dist.bucket_bounds(metrics_dist.OVERFLOW)[0]
    assert metrics_dist.Dist().percentile(95) == 0.0


@given(st.floats(min_value=1e-3, max_value=1e9))
def test_bucket_index_brackets_the_value(value: float) -> None:
    lo, hi = metrics_dist.bucket_bounds(metrics_dist.bucket_index(value))
    assert lo <= value < hi


# --------------------------------------------------------------------------- query engine


def request(**kw: Any) -> Any:
    return monitoring_query.RequestPb(**kw)


def query(sim: Sim, flt: str, start: float, end: float, **agg: Any) -> Any:
    req = request(name="projects/proj", filter=flt)
    req.interval.start_time.FromNanoseconds(int(start * 1e9))
    req.interval.end_time.FromNanoseconds(int(end * 1e9))
    for k, v in agg.items():
        if k == "alignment_period":
            req.aggregation.alignment_period.FromSeconds(v)
        elif k == "group_by_fields":
            req.aggregation.group_by_fields.extend(v)
        else:
            setattr(req.aggregation, k, v)
    return monitoring.list_time_series(sim, req)


COUNT = 'metric.type = "run.googleapis.com/request_count"'
LAT = 'metric.type="run.googleapis.com/request_latencies"'


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sim:
    """A simulator whose clock reads NOW."""
    monkeypatch.setattr("gcpsim.store.now", lambda: NOW)
    sim = new_sim(tmp_path)
    canary(sim, 10, at=NOW - 3600)
    return sim


@pytest.mark.parametrize(
    "flt",
    [
        "",
        "bad",
        'metric.type = "x" OR metric.type = "y"',
        'metric.type = "x" AND',
        "metric.type = x",
        'resource.labels.service_name = "svc"',  # no metric type
        'metric.type = "x" AND foo.bar = "y"',
    ],
)
def test_bad_filters_are_invalid_argument(flt: str) -> None:
    with pytest.raises(ApiError) as e:
        monitoring_query.parse_filter(flt)
    assert e.value.status == 400 and e.value.rpc_status == "INVALID_ARGUMENT"
    assert "Field filter had an invalid value" in e.value.message


def test_filter_grammar() -> None:
    f = monitoring_query.parse_filter(
        'metric.type = "run.googleapis.com/request_count" AND resource.type="cloud_run_revision"'
        ' AND resource.label.service_name = "a \\"b\\"" AND metric.labels.response_code != "200"'
        ' and project = "p"'
    )
    assert f.metric_types() == ["run.googleapis.com/request_count"]
    assert f.accepts("resource", {"service_name": 'a "b"', "project_id": "p"})
    assert not f.accepts("resource", {"service_name": "a", "project_id": "p"})
    assert f.accepts("metric", {"response_code": "503"})
    assert not f.accepts("metric", {"response_code": "200"})


def test_grouped_counts_match_the_model(live: Sim) -> None:
    resp = query(live, f'{COUNT} AND resource.labels.service_name = "svc"', NOW - 300, NOW,
                 alignment_period=60, per_series_aligner=1, cross_series_reducer=4,
                 group_by_fields=["resource.labels.revision_name"])  # fmt: skip
    assert resp.unit == "1"
    by_rev = {ts.resource.labels["revision_name"]: ts for ts in resp.time_series}
    assert set(by_rev) == {"svc-00001", "svc-00002"}
    model = metrics.summarize(live, KEY, NOW - 300, NOW, now=NOW)
    for rev, ts in by_rev.items():
        assert dict(ts.resource.labels) == {"project_id": "proj", "revision_name": rev}
        assert dict(ts.metric.labels) == {}
        assert len(ts.points) == 5
        ends = [p.interval.end_time.ToNanoseconds() for p in ts.points]
        assert ends == sorted(ends, reverse=True)  # newest first
        assert ends[0] == int(NOW * 1e9)
        assert sum(p.value.int64_value for p in ts.points) == model[rev].requests


def test_revision_filter_and_response_code_class(live: Sim) -> None:
    flt = (f'{COUNT} AND resource.labels.revision_name = "svc-00002"'
           ' AND metric.labels.response_code_class = "2xx"')  # fmt: skip
    resp = query(live, flt, NOW - 120, NOW)
    assert resp.time_series  # ALIGN_NONE: raw 1 s points, newest first
    for ts in resp.time_series:
        assert ts.resource.labels["revision_name"] == "svc-00002"
        assert ts.metric.labels["response_code"] == "200"
        assert set(ts.resource.labels) == set(monitoring_query.RESOURCE_LABELS)
        starts = [p.interval.start_time.seconds for p in ts.points]
        assert starts == sorted(starts, reverse=True)


def test_latency_percentile_and_distribution(live: Sim) -> None:
    set_behavior(live, "svc", "v1.1.0", p50_ms=200.0, p95_ms=300.0)
    flt = f'{LAT} AND resource.labels.revision_name = "svc-00002"'
    p95 = query(live, flt, NOW - 600, NOW, alignment_period=600, per_series_aligner=1,
                cross_series_reducer=10)  # fmt: skip
    (ts,) = p95.time_series
    assert ts.value_type == monitoring_query.DOUBLE and ts.metric_kind == monitoring_query.GAUGE
    assert ts.points[0].value.double_value == pytest.approx(300, rel=0.1)
    dist = query(live, flt, NOW - 600, NOW, alignment_period=600, per_series_aligner=1,
                 cross_series_reducer=4)  # fmt: skip
    (ts,) = dist.time_series
    assert dist.unit == "ms" and ts.value_type == monitoring_query.DISTRIBUTION
    d = ts.points[0].value.distribution_value
    assert sum(d.bucket_counts) == d.count > 2000
    assert d.bucket_options.exponential_buckets.num_finite_buckets == 64


def test_headers_view_paging_and_empty_results(live: Sim) -> None:
    flt = f"{COUNT}"
    full = query(live, flt, NOW - 60, NOW, alignment_period=60, per_series_aligner=1)
    n = len(full.time_series)
    assert n >= 4
    req = request(name="projects/proj", filter=flt, page_size=3, view=1)
    req.interval.end_time.FromNanoseconds(int(NOW * 1e9))
    req.interval.start_time.FromNanoseconds(int((NOW - 60) * 1e9))
    req.aggregation.alignment_period.FromSeconds(60)
    req.aggregation.per_series_aligner = 1
    seen = 0
    while True:
        page = monitoring.list_time_series(live, req)
        assert all(not ts.points for ts in page.time_series)
        seen += len(page.time_series)
        if not page.next_page_token:
            break
        req.page_token = page.next_page_token
    assert seen == n
    none = query(live, f'{COUNT} AND resource.labels.service_name = "nope"', NOW - 60, NOW)
    assert not none.time_series


@pytest.mark.parametrize(
    ("agg", "status"),
    [
        ({"per_series_aligner": 1}, 400),  # aligner without a period
        ({"alignment_period": 60, "cross_series_reducer": 4}, 400),  # reducer without aligner
        ({"alignment_period": 60, "per_series_aligner": 19}, 400),  # percentile of an INT64
        ({"alignment_period": 60, "per_series_aligner": 10}, 400),  # ALIGN_MIN: unsupported
    ],
)
def test_invalid_aggregations(live: Sim, agg: dict[str, Any], status: int) -> None:
    with pytest.raises(ApiError) as e:
        query(live, COUNT, NOW - 60, NOW, **agg)
    assert e.value.status == status


def test_unknown_metric_type_is_not_found(live: Sim) -> None:
    with pytest.raises(ApiError) as e:
        query(live, 'metric.type = "run.googleapis.com/nope"', NOW - 60, NOW)
    assert e.value.status == 404


# --------------------------------------------------------------------------- Monitoring timing


def test_timing_visible_until() -> None:
    live = metrics.Timing()
    assert live.live and live.visible_until(NOW + 0.5) == NOW + 0.5
    real = metrics.Timing(60, 180.0)
    assert not real.live
    assert real.visible_until(NOW + 179.9) == NOW - 60  # sample [NOW-60, NOW) not yet ...
    assert real.visible_until(NOW + 180) == NOW  # ... visible from its end + 180 s on
    assert metrics.Timing(1, 2.5).visible_until(NOW + 0.7) == NOW - 2
    assert metrics.Timing(10, 0).visible_until(NOW + 9.9) == NOW  # the running sample: absent
    assert real.sample_start(int(NOW) + 59) == int(NOW)


def test_timing_rules_layer_over_the_flags(tmp_path: Path) -> None:
    sim = new_sim(tmp_path, metric_sample_period=60, metric_delay=180.0)
    assert metrics.timing_for(sim, "svc") == metrics.Timing(60, 180.0)
    metrics.set_timing(sim, "*", delay=10)
    metrics.set_timing(sim, "sv*", sample_period=5)
    assert metrics.timing_for(sim, "svc") == metrics.Timing(5, 10.0)
    assert metrics.timing_for(sim, "other") == metrics.Timing(60, 10.0)
    metrics.set_timing(sim, "*", sample_period=1, delay=0)  # replaces the `*` rule, now newest
    assert metrics.timing_for(sim, "svc") == metrics.Timing(1, 0.0)
    assert metrics.clear_timing(sim, "*") == 1
    assert metrics.timing_for(sim, "svc") == metrics.Timing(5, 180.0)
    assert metrics.clear_timing(sim) == 1 and metrics.timing_rules(sim) == []
    for bad in ({"sample_period": 0}, {"sample_period": 2.5}, {"delay": -1}, {"delay": True}):
        with pytest.raises(ValueError):
            metrics.set_timing(sim, "svc", **bad)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The simulator clock, settable: clock[0]."""
    t = [NOW]
    monkeypatch.setattr("gcpsim.store.now", lambda: t[0])
    return t


def by_revision(resp: Any) -> dict[str, dict[int, int]]:
    """revision -> point end (s) -> count."""
    return {
        ts.resource.labels["revision_name"]: {
            p.interval.end_time.seconds: p.value.int64_value for p in ts.points
        }
        for ts in resp.time_series
    }


def model(sim: Sim, start: float, end: float) -> dict[str, int]:
    return {r: s.requests for r, s in metrics.summarize(sim, KEY, start, end, now=NOW).items()}


def test_data_younger_than_the_delay_is_not_visible(tmp_path: Path, clock: list[float]) -> None:
    sim = new_sim(tmp_path)
    canary(sim, 10, at=NOW - 3600)
    metrics.set_timing(sim, "svc", sample_period=60, delay=180)
    clock[0] = NOW + 30
    flt = f'{COUNT} AND resource.labels.service_name = "svc"'
    agg = {"alignment_period": 60, "per_series_aligner": 1, "cross_series_reducer": 4,
           "group_by_fields": ["resource.labels.revision_name"]}  # fmt: skip
    # Windows aligned on samples: the three newest minutes are absent, the rest complete.
    got = by_revision(query(sim, flt, NOW - 600, NOW, **agg))
    for rev, points in got.items():
        assert sorted(points, reverse=True) == [int(NOW) - 60 * k for k in range(3, 10)]
        assert sum(points.values()) == model(sim, NOW - 600, NOW - 180)[rev]
        assert points[int(NOW) - 180] == model(sim, NOW - 240, NOW - 180)[rev]
    # A window ending now: the point straddling the newest visible sample's end is partial.
    got = by_revision(query(sim, flt, NOW + 30 - 600, NOW + 30, **agg))
    for rev, points in got.items():
        assert max(points) == int(NOW) - 150  # [NOW-210, NOW-150) holds [NOW-210, NOW-180)
        assert points[int(NOW) - 150] == model(sim, NOW - 210, NOW - 180)[rev]
        assert 0 < points[int(NOW) - 150] < points[int(NOW) - 210]
    # One sample later, one more minute is visible; what was visible did not change.
    before = by_revision(query(sim, flt, NOW - 600, NOW, **agg))
    clock[0] = NOW + 60
    later = by_revision(query(sim, flt, NOW - 600, NOW, **agg))
    for rev, points in later.items():
        assert sorted(points, reverse=True) == [int(NOW) - 60 * k for k in range(2, 10)]
        assert points[int(NOW) - 120] == model(sim, NOW - 180, NOW - 120)[rev]
        assert {k: v for k, v in points.items() if k <= NOW - 180} == before[rev]
    # Another service keeps the flags' timing (live).
    other = traffic.service_key("proj", "us-central1", "other")
    traffic.record_split(sim, other, [("other-00001", 100, f"{IMG}:v1.0.0")], NOW - 3600)
    resp = query(sim, f'{COUNT} AND resource.labels.service_name = "other"', NOW - 60, NOW + 60,
                 alignment_period=60, per_series_aligner=1, cross_series_reducer=4)  # fmt: skip
    (ts,) = resp.time_series
    point = ts.points[0]  # the newest: live, up to the clock
    assert point.interval.end_time.seconds == int(NOW) + 60 and point.value.int64_value > 2000


def test_raw_points_are_whole_visible_samples(tmp_path: Path, clock: list[float]) -> None:
    sim = new_sim(tmp_path, metric_sample_period=60, metric_delay=100.0)
    canary(sim, 10, at=NOW - 3600)
    clock[0] = NOW + 5  # visible until floor((NOW - 95) / 60) * 60 = NOW - 120
    flt = f'{COUNT} AND resource.labels.revision_name = "svc-00001"'
    resp = query(sim, flt, NOW - 330, NOW + 5)
    assert resp.time_series
    total = 0
    for ts in resp.time_series:
        starts = [p.interval.start_time.seconds for p in ts.points]
        assert starts == [int(NOW) - 120 - 60 * k for k in range(1, 5)]  # newest first
        for p in ts.points:
            assert p.interval.end_time.seconds - p.interval.start_time.seconds == 60
        total += sum(p.value.int64_value for p in ts.points)
    # [NOW-330, ...) overlaps the sample starting NOW-360: raw points are whole samples.
    assert total == model(sim, NOW - 360, NOW - 120)["svc-00001"]


def test_live_default_timing_is_unchanged(live: Sim) -> None:
    assert metrics.timing_for(live, "svc").live
    resp = query(live, f'{COUNT} AND resource.labels.revision_name = "svc-00001"', NOW - 3, NOW)
    (ok,) = [ts for ts in resp.time_series if ts.metric.labels["response_code"] == "200"]
    starts = [p.interval.start_time.seconds for p in ok.points]
    assert starts == [int(NOW) - 1, int(NOW) - 2, int(NOW) - 3]
    assert all(p.interval.end_time.seconds - p.interval.start_time.seconds == 1 for p in ok.points)


# --------------------------------------------------------------------------- log entries

LOGS = 'metric.type = "logging.googleapis.com/log_entry_count"'


def log_totals(sim: Sim, start: float, end: float) -> dict[str, dict[tuple[str, str], int]]:
    out: dict[str, dict[tuple[str, str], int]] = {}
    for _b, rev, _image, counts in metrics.log_buckets(
        sim, KEY, math.ceil(start), math.ceil(end), now=NOW
    ):
        acc = out.setdefault(rev, {})
        for k, n in counts.items():
            acc[k] = acc.get(k, 0) + n
    return out


def test_request_log_has_one_entry_per_request_by_severity(sim: Sim) -> None:
    canary(sim, 50)
    set_behavior(sim, "svc", "v1.1.0", error_rate=0.2)
    logs = log_totals(sim, T0, T0 + 300)
    reqs = metrics.summarize(sim, KEY, T0, T0 + 300, now=NOW)
    for rev, s in reqs.items():
        by = {sev: n for (log, sev), n in logs[rev].items() if log == metrics_dist.REQUEST_LOG}
        assert by["ERROR"] == s.errors
        assert by["WARNING"] == s.codes[404].count
        assert by["INFO"] == s.codes[200].count
        info = logs[rev][(metrics_dist.STDOUT_LOG, "INFO")]
        assert poisson_ok(info, metrics_dist.APP_INFO_LOGS_PER_REQUEST * s.requests)
        app_errors = logs[rev].get((metrics_dist.STDERR_LOG, "ERROR"), 0)
        assert poisson_ok(app_errors, 0.001 * s.requests)  # the default error_log_rate


def test_error_log_rate_raises_error_logs_but_not_error_codes(sim: Sim) -> None:
    canary(sim, 50)
    before_req = metrics.summarize(sim, KEY, T0, T0 + 300, now=NOW)
    before = log_totals(sim, T0, T0 + 300)
    set_behavior(sim, "svc", "v1.1.0", error_log_rate=0.2)
    after_req = metrics.summarize(sim, KEY, T0, T0 + 300, now=NOW)
    after = log_totals(sim, T0, T0 + 300)
    assert after_req == before_req  # the requests and their codes are unchanged
    n = after_req["svc-00002"].requests
    assert poisson_ok(after["svc-00002"][(metrics_dist.STDERR_LOG, "ERROR")], 0.2 * n)
    assert before["svc-00002"].get((metrics_dist.STDERR_LOG, "ERROR"), 0) < 0.01 * n
    assert after["svc-00001"] == before["svc-00001"]  # the stable revision is untouched
    for rev in after:
        same = {k: v for k, v in after[rev].items() if k[0] == metrics_dist.REQUEST_LOG}
        assert same == {k: v for k, v in before[rev].items() if k[0] == metrics_dist.REQUEST_LOG}
    metrics._log_cache.clear()
    assert log_totals(sim, T0, T0 + 300) == after  # deterministic


def test_log_entry_count_query(live: Sim) -> None:
    set_behavior(live, "svc", "v1.1.0", error_log_rate=0.3)
    flt = (f'{LOGS} AND resource.type = "cloud_run_revision"'
           ' AND resource.labels.service_name = "svc"'
           ' AND resource.labels.location = "us-central1"')  # fmt: skip
    group = ["resource.labels.revision_name", "metric.labels.severity"]
    resp = query(live, flt, NOW - 300, NOW, alignment_period=60, per_series_aligner=1,
                 cross_series_reducer=4, group_by_fields=group)  # fmt: skip
    assert resp.unit == "1"
    got: dict[tuple[str, str], int] = {}
    for ts in resp.time_series:
        assert ts.metric.type == "logging.googleapis.com/log_entry_count"
        assert ts.resource.type == "cloud_run_revision"
        assert ts.metric_kind == monitoring_query.DELTA and ts.value_type == monitoring_query.INT64
        assert set(ts.resource.labels) == {"project_id", "revision_name"}
        assert set(ts.metric.labels) == {"severity"}
        key = (ts.resource.labels["revision_name"], ts.metric.labels["severity"])
        assert len(ts.points) == 5 or (key[1] != "INFO" and len(ts.points) < 5)
        got[key] = sum(p.value.int64_value for p in ts.points)
    assert {sev for _rev, sev in got} == {"INFO", "WARNING", "ERROR"}
    reqs = metrics.summarize(live, KEY, NOW - 300, NOW, now=NOW)
    for rev in ("svc-00001", "svc-00002"):
        assert got[(rev, "WARNING")] == reqs[rev].codes[404].count
    canary_rate = got[("svc-00002", "ERROR")] / reqs["svc-00002"].requests
    stable_rate = got[("svc-00001", "ERROR")] / reqs["svc-00001"].requests
    assert canary_rate == pytest.approx(0.3 + 0.002, abs=0.05)
    assert stable_rate < 0.02
    # Ungrouped with a severity and a log filter: every resource and metric label.
    only = query(live, f'{flt} AND metric.labels.severity = "ERROR"'
                 ' AND metric.labels.log = "run.googleapis.com/stderr"', NOW - 60, NOW,
                 alignment_period=60, per_series_aligner=1)  # fmt: skip
    assert {ts.resource.labels["revision_name"] for ts in only.time_series} == {
        "svc-00001", "svc-00002",
    }  # fmt: skip
    for ts in only.time_series:
        assert set(ts.resource.labels) == set(monitoring_query.RESOURCE_LABELS)
        assert dict(ts.metric.labels) == {"log": "run.googleapis.com/stderr", "severity": "ERROR"}
    other = query(live, f'{LOGS} AND resource.labels.location = "europe-west1"', NOW - 60, NOW)
    assert not other.time_series


def test_log_entries_follow_the_metric_timing(tmp_path: Path, clock: list[float]) -> None:
    sim = new_sim(tmp_path, metric_sample_period=60, metric_delay=120.0)
    canary(sim, 10, at=NOW - 3600)
    clock[0] = NOW + 1  # visible until NOW - 120
    resp = query(sim, LOGS, NOW - 300, NOW, alignment_period=60, per_series_aligner=1,
                 cross_series_reducer=4)  # fmt: skip
    (ts,) = resp.time_series
    assert [p.interval.end_time.seconds for p in ts.points] == [int(NOW) - 120, int(NOW) - 180,
                                                               int(NOW) - 240]  # fmt: skip


def test_large_latency_histograms_are_not_overdispersed() -> None:
    """Above SAMPLE_CAP requests a bucket's count varies like independent requests' would
    (binomial), not like SAMPLE_CAP weighted draws (5x the variance at 1,000 requests), so a
    judge that counts requests sees honest evidence at high traffic."""
    import random
    import statistics

    from gcpsim.model.metrics_dist import SAMPLE_CAP, latencies, lognormal_params

    mu, sigma = lognormal_params(40.0, 120.0)
    n = 5 * SAMPLE_CAP
    rng = random.Random(11)
    draws = [latencies(rng, n, mu, sigma) for _ in range(400)]
    assert all(sum(d.buckets.values()) == n == d.count for d in draws)
    busiest = max(draws[0].buckets, key=lambda b: draws[0].buckets[b])
    counts = [d.buckets.get(busiest, 0) for d in draws]
    p = statistics.fmean(counts) / n
    binomial_var = n * p * (1 - p)
    assert statistics.variance(counts) < 1.6 * binomial_var
