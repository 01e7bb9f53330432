"""gcpsim's Cloud Monitoring v3 (gRPC) and service/tag URLs, through the real client libraries.

Read-only checks use the seeded session simulator (tests/conftest.py): `node-server-dev` and
friends in `legal-forms-dev`, `us-central1`, one revision at v1.1.0 serving 100% since start-up.
Checks that change behaviours use a service of their own in a project of their own, and undo it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import requests
from google.api import metric_pb2
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3, run_v2
from google.cloud.monitoring_v3.services.metric_service.transports import (
    MetricServiceGrpcTransport,
)

from testing.gcpsim import GcpsimProcess

LOCATION = "us-central1"
DEV = "legal-forms-dev"
COUNT = "run.googleapis.com/request_count"
LATENCIES = "run.googleapis.com/request_latencies"
LOG_ENTRIES = "logging.googleapis.com/log_entry_count"
MetricKind = metric_pb2.MetricDescriptor.MetricKind
ValueType = metric_pb2.MetricDescriptor.ValueType
Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer


@pytest.fixture(scope="module")
def mon(gcpsim: GcpsimProcess) -> Iterator[monitoring_v3.MetricServiceClient]:
    channel = grpc.insecure_channel(f"127.0.0.1:{gcpsim.grpc_port}")
    yield monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))
    channel.close()


@pytest.fixture(scope="module")
def services(gcpsim: GcpsimProcess) -> run_v2.ServicesClient:
    return run_v2.ServicesClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=gcpsim.url),
    )


@pytest.fixture(scope="module", autouse=True)
def some_history(gcpsim: GcpsimProcess) -> None:
    """Let the seeded services accumulate a few seconds of synthetic requests."""
    time.sleep(2.0)


def service_name(project: str, service: str) -> str:
    return f"projects/{project}/locations/{LOCATION}/services/{service}"


def serving_revision(services: run_v2.ServicesClient, project: str, service: str) -> str:
    svc = services.get_service(name=service_name(project, service))
    (target,) = [t for t in svc.traffic_statuses if t.percent == 100]
    return target.revision or svc.latest_ready_revision.rsplit("/", 1)[-1]


def interval(seconds: float = 600) -> dict[str, Any]:
    end = time.time()
    return {"start_time": {"seconds": int(end - seconds)}, "end_time": {"seconds": int(end) + 1}}


def flt(metric: str, project_service: str, *extra: str) -> str:
    clauses = [
        f'metric.type = "{metric}"',
        'resource.type = "cloud_run_revision"',
        f'resource.labels.service_name = "{project_service}"',
        *extra,
    ]
    return " AND ".join(clauses)


def list_series(
    mon: monitoring_v3.MetricServiceClient,
    project: str,
    filter_: str,
    *,
    window: dict[str, Any] | None = None,
    period: int | None = None,
    aligner: Any = None,
    reducer: Any = None,
    group_by: str | None = None,
) -> Any:
    """mon.list_time_series of `project` over `window` (default: `interval()`); with `period`,
    aligned by `aligner` and, if given, reduced by `reducer` grouped by `group_by`."""
    request: dict[str, Any] = {
        "name": f"projects/{project}",
        "filter": filter_,
        "interval": interval() if window is None else window,
    }
    if period is not None:
        aggregation: dict[str, Any] = {
            "alignment_period": {"seconds": period},
            "per_series_aligner": aligner,
        }
        if reducer is not None:
            aggregation["cross_series_reducer"] = reducer
        if group_by is not None:
            aggregation["group_by_fields"] = [group_by]
        request["aggregation"] = aggregation
    return mon.list_time_series(request=request)


def counts_by_class(
    mon: monitoring_v3.MetricServiceClient, project: str, service: str, *extra: str
) -> dict[str, int]:
    series = list_series(
        mon,
        project,
        flt(COUNT, service, *extra),
        period=60,
        aligner=Aligner.ALIGN_DELTA,
        reducer=Reducer.REDUCE_SUM,
        group_by="metric.labels.response_code_class",
    )
    out: dict[str, int] = {}
    for ts in series:
        assert ts.metric.type == COUNT
        assert ts.resource.type == "cloud_run_revision"
        assert dict(ts.resource.labels) == {"project_id": project}
        assert set(ts.metric.labels) == {"response_code_class"}
        assert ts.metric_kind == MetricKind.DELTA
        assert ts.value_type == ValueType.INT64
        ends: list[Any] = [p.interval.end_time for p in ts.points]
        assert ends == sorted(ends, reverse=True)
        cls = ts.metric.labels["response_code_class"]
        out[cls] = sum(p.value.int64_value for p in ts.points)
    return out


def test_request_count_grouped_by_response_code_class(mon: Any) -> None:
    counts = counts_by_class(mon, DEV, "node-server-dev")
    assert counts.get("2xx", 0) > 20
    assert set(counts) <= {"2xx", "4xx", "5xx"}
    assert counts.get("5xx", 0) < 0.05 * sum(counts.values())


def test_revision_filter(mon: Any, services: run_v2.ServicesClient) -> None:
    rev = serving_revision(services, DEV, "python-pipeline-dev")
    pager = list_series(
        mon,
        DEV,
        flt(COUNT, "python-pipeline-dev", f'resource.labels.revision_name = "{rev}"'),
        period=600,
        aligner=Aligner.ALIGN_DELTA,
    )
    series = list(pager)
    assert series
    for ts in series:  # REDUCE_NONE: every resource and metric label
        labels = dict(ts.resource.labels)
        assert labels["revision_name"] == rev
        assert labels["service_name"] == labels["configuration_name"] == "python-pipeline-dev"
        assert labels["location"] == LOCATION and labels["project_id"] == DEV
        assert (
            ts.metric.labels["response_code_class"] == ts.metric.labels["response_code"][0] + "xx"
        )
        assert len(ts.points) == 1
    unknown = list_series(
        mon, DEV, flt(COUNT, "python-pipeline-dev", 'resource.labels.revision_name = "nope"')
    )
    assert list(unknown) == []


def test_latency_p95_aligner(mon: Any) -> None:
    series = list(
        list_series(
            mon,
            DEV,
            flt(LATENCIES, "node-server-dev"),
            period=600,
            aligner=Aligner.ALIGN_PERCENTILE_95,
            reducer=Reducer.REDUCE_MAX,
            group_by="resource.labels.revision_name",
        )
    )
    (ts,) = series
    assert ts.metric_kind == MetricKind.GAUGE
    assert ts.value_type == ValueType.DOUBLE
    (point,) = ts.points
    assert 20 < point.value.double_value < 2000  # default behaviour: p50 40 ms, p95 120 ms


def test_latency_distribution(mon: Any) -> None:
    (ts,) = list_series(
        mon,
        DEV,
        flt(LATENCIES, "node-server-dev"),
        period=600,
        aligner=Aligner.ALIGN_DELTA,
        reducer=Reducer.REDUCE_SUM,
    )
    assert ts.value_type == ValueType.DISTRIBUTION
    d = ts.points[0].value.distribution_value
    assert d.count > 20 and sum(d.bucket_counts) == d.count
    eb = d.bucket_options.exponential_buckets
    assert (eb.num_finite_buckets, eb.growth_factor, eb.scale) == (64, 1.4, 1.0)
    assert 10 < d.mean < 500


def test_short_alignment_periods_are_accepted(mon: Any) -> None:
    """Simulator relaxation: periods down to 1 s (the real API wants >= 60 s)."""
    end = time.time()
    window = {"start_time": {"seconds": int(end) - 2}, "end_time": {"seconds": int(end)}}
    series = list(
        list_series(
            mon,
            DEV,
            flt(COUNT, "node-server-dev"),
            window=window,
            period=1,
            aligner=Aligner.ALIGN_SUM,
            reducer=Reducer.REDUCE_SUM,
        )
    )
    (ts,) = series
    assert 1 <= len(ts.points) <= 2
    assert all(
        (p.interval.end_time - p.interval.start_time).total_seconds() == 1 for p in ts.points
    )


def test_bad_filter_is_invalid_argument(mon: Any) -> None:
    with pytest.raises(gexc.InvalidArgument, match="filter"):
        list_series(mon, DEV, "bad")


def test_unavailable_is_retried_by_the_client(gcpsim: GcpsimProcess, mon: Any) -> None:
    r = gcpsim.cli("fault", "monitoring.timeSeries.list", "--status", "503", "--times", "2")
    assert r.returncode == 0, r.stderr
    try:
        counts = counts_by_class(mon, DEV, "node-server-dev")
        assert counts.get("2xx", 0) > 0
        faults = requests.get(f"{gcpsim.url}/_sim/faults", timeout=10).json()["faults"]
        assert not [f for f in faults if f["method"] == "monitoring.timeSeries.list"]
    finally:
        gcpsim.cli("fault", "--clear")


def test_resource_exhausted_is_not_retried(gcpsim: GcpsimProcess, mon: Any) -> None:
    r = gcpsim.cli("fault", "monitoring.timeSeries.list", "--status", "429", "--times", "1")
    assert r.returncode == 0, r.stderr
    try:
        with pytest.raises(gexc.ResourceExhausted):
            counts_by_class(mon, DEV, "node-server-dev")
    finally:
        gcpsim.cli("fault", "--clear")


# --------------------------------------------------------------------------- own canary service

OWN_PROJECT = "gcpsim-monitoring-conformance"  # a project of its own: nothing else looks here
OWN = "canary-svc"
IMAGE = f"us-docker.pkg.dev/{OWN_PROJECT}/app/{OWN}"
STABLE_REV, CANARY_REV = f"{OWN}-stable", f"{OWN}-canary"
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


SPLIT_AT = [0.0]  # when the canary fixture's 50/50 split was in place


@pytest.fixture(scope="module")
def canary(services: run_v2.ServicesClient) -> Iterator[run_v2.Service]:
    """OWN at v1.0.0, then a canary revision at v2.0.0 taking 50% with the tag `canary`.

    (50%, not 10%: the test must see enough canary requests within seconds.)
    """
    parent = f"projects/{OWN_PROJECT}/locations/{LOCATION}"
    svc = run_v2.Service(
        template=run_v2.RevisionTemplate(
            revision=STABLE_REV, containers=[run_v2.Container(image=f"{IMAGE}:v1.0.0")]
        )
    )
    services.create_service(parent=parent, service=svc, service_id=OWN).result(timeout=60)
    svc = services.get_service(name=service_name(OWN_PROJECT, OWN))
    svc.template.revision = CANARY_REV
    svc.template.containers[0].image = f"{IMAGE}:v2.0.0"
    svc.traffic = [
        run_v2.TrafficTarget(type_=REVISION, revision=STABLE_REV, percent=50),
        run_v2.TrafficTarget(type_=REVISION, revision=CANARY_REV, percent=50, tag="canary"),
    ]
    updated = services.update_service(service=svc).result(timeout=60)
    SPLIT_AT[0] = time.time()  # the split is in the timeline by now
    time.sleep(3.0)  # a few seconds of synthetic requests on the split
    yield updated
    services.delete_service(name=service_name(OWN_PROJECT, OWN)).result(timeout=60)


def counts_by_revision(
    mon: Any, *extra: str, seconds: int = 600, end: int | None = None
) -> dict[str, int]:
    """Requests per revision of OWN over the `seconds` before `end` (default: up to now,
    the running second included), as one aligned point."""
    end = int(time.time()) + 1 if end is None else end
    series = list_series(
        mon,
        OWN_PROJECT,
        flt(COUNT, OWN, *extra),
        window={"start_time": {"seconds": end - seconds}, "end_time": {"seconds": end}},
        period=seconds,
        aligner=Aligner.ALIGN_DELTA,
        reducer=Reducer.REDUCE_SUM,
        group_by="resource.labels.revision_name",
    )
    return {
        ts.resource.labels["revision_name"]: sum(p.value.int64_value for p in ts.points)
        for ts in series
    }


def set_behavior(gcpsim: GcpsimProcess, version: str, **values: Any) -> None:
    body = {"service": OWN, "version": version, **values}
    r = requests.post(f"{gcpsim.url}/_sim/behaviors", json=body, timeout=10)
    assert r.status_code == 200, r.text


def test_canary_gets_its_share_of_requests(mon: Any, canary: run_v2.Service) -> None:
    # Only the seconds since the split: before it the stable revision had 100%, and how long
    # that lasted depends on how fast this machine created the service.
    deadline = time.monotonic() + 60
    while True:
        counts = counts_by_revision(mon, seconds=int(time.time() - SPLIT_AT[0]))
        total = sum(counts.values())
        if total >= 100 or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert total >= 100
    assert 0.35 < counts.get(CANARY_REV, 0) / total < 0.65
    # a revision filter keeps only that revision
    only = counts_by_revision(mon, f'resource.labels.revision_name = "{CANARY_REV}"')
    assert set(only) == {CANARY_REV}


def test_bad_behaviour_shows_up_in_error_counts(
    gcpsim: GcpsimProcess, mon: Any, canary: run_v2.Service
) -> None:
    five_xx = 'metric.labels.response_code_class = "5xx"'
    r = gcpsim.cli("behavior", OWN, "v2.0.0", "--error-rate", "0.5")
    assert r.returncode == 0, r.stderr
    try:
        requests_ = counts_by_revision(mon)
        errors = counts_by_revision(mon, five_xx)
        assert 0.3 < errors.get(CANARY_REV, 0) / requests_[CANARY_REV] < 0.7
        assert errors.get(STABLE_REV, 0) < 0.05 * requests_[STABLE_REV]
    finally:
        set_behavior(gcpsim, "v2.0.0")  # back to the defaults
    errors = counts_by_revision(mon, five_xx)
    assert errors.get(CANARY_REV, 0) < 0.2 * requests_[CANARY_REV]


def test_canary_latency_behaviour_shows_up_in_p95(
    gcpsim: GcpsimProcess, mon: Any, canary: run_v2.Service
) -> None:
    set_behavior(gcpsim, "v2.0.0", p50_ms=2000.0, p95_ms=3000.0)
    try:
        series = list_series(
            mon,
            OWN_PROJECT,
            flt(LATENCIES, OWN),
            period=600,
            aligner=Aligner.ALIGN_DELTA,
            reducer=Reducer.REDUCE_PERCENTILE_95,
            group_by="resource.labels.revision_name",
        )
        p95 = {
            ts.resource.labels["revision_name"]: ts.points[0].value.double_value for ts in series
        }
        assert 2000 < p95[CANARY_REV] < 4500
        assert p95[STABLE_REV] < 1000
    finally:
        set_behavior(gcpsim, "v2.0.0")


def test_rates_per_service_and_version(
    gcpsim: GcpsimProcess, mon: Any, canary: run_v2.Service
) -> None:
    """A service-level rate sets the total; a version rate the rate behind that version's share."""
    assert gcpsim.cli("rate", OWN, "400").returncode == 0
    r = gcpsim.cli("rate", OWN, "v2.0.0", "20")
    assert r.returncode == 0, r.stderr
    # Whole past seconds since the split: complete buckets, a known number of them.
    end = int(time.time())
    seconds = end - (int(SPLIT_AT[0]) + 1)
    assert seconds >= 2
    try:
        counts = counts_by_revision(mon, seconds=seconds, end=end)  # rates apply to the past too
        # 50% of 400 rps and 50% of 20 rps: Poisson counts, within 5 sd
        assert poisson_near(counts[STABLE_REV], 400 * 0.5 * seconds), (counts, seconds)
        assert poisson_near(counts[CANARY_REV], 20 * 0.5 * seconds), (counts, seconds)
    finally:
        assert gcpsim.cli("rate", "--clear", OWN).returncode == 0
    counts = counts_by_revision(mon, seconds=seconds, end=end)  # back to the flag's 200 rps
    for rev in (STABLE_REV, CANARY_REV):
        assert poisson_near(counts[rev], 200 * 0.5 * seconds), (counts, seconds)


def poisson_near(observed: int, expected: float) -> bool:
    """`observed` within 5 standard deviations of a Poisson count of mean `expected` (a correct
    simulator misses with probability under 1e-6)."""
    return abs(observed - expected) <= 5 * expected**0.5 + 1


def log_counts(mon: Any, seconds: int = 600, end: int | None = None) -> dict[tuple[str, str], int]:
    """(revision, severity) -> log entries of OWN over the `seconds` before `end` (default: up
    to now), read as a gate would."""
    end = int(time.time()) + 1 if end is None else end
    series = mon.list_time_series(
        request={
            "name": f"projects/{OWN_PROJECT}",
            "filter": f'metric.type = "{LOG_ENTRIES}" AND resource.type = "cloud_run_revision"'
            f' AND resource.labels.service_name = "{OWN}"'
            f' AND resource.labels.location = "{LOCATION}"',
            "interval": {"start_time": {"seconds": end - seconds}, "end_time": {"seconds": end}},
            "aggregation": {
                "alignment_period": {"seconds": seconds},
                "per_series_aligner": Aligner.ALIGN_DELTA,
                "cross_series_reducer": Reducer.REDUCE_SUM,
                "group_by_fields": ["resource.labels.revision_name", "metric.labels.severity"],
            },
        }
    )
    out = {}
    for ts in series:
        assert ts.metric.type == LOG_ENTRIES and ts.resource.type == "cloud_run_revision"
        assert ts.metric_kind == MetricKind.DELTA and ts.value_type == ValueType.INT64
        assert set(ts.resource.labels) == {"project_id", "revision_name"}
        assert set(ts.metric.labels) == {"severity"}
        (point,) = ts.points
        key = (ts.resource.labels["revision_name"], ts.metric.labels["severity"])
        out[key] = point.value.int64_value
    return out


def test_error_logs_rise_while_http_codes_do_not(
    gcpsim: GcpsimProcess, mon: Any, canary: run_v2.Service
) -> None:
    five_xx = 'metric.labels.response_code_class = "5xx"'
    # One window of whole past seconds for every read: its counts are final, so the requests,
    # 5xx and log entries below are of the same requests. At least 5 s of the split in it
    # (~500 canary requests), also when this test runs alone.
    time.sleep(max(0.0, SPLIT_AT[0] + 6 - time.time()))
    end = int(time.time())
    before = log_counts(mon, end=end)
    errors_before = counts_by_revision(mon, five_xx, end=end)
    r = gcpsim.cli("behavior", OWN, "v2.0.0", "--error-log-rate", "0.2")
    assert r.returncode == 0, r.stderr
    try:
        after = log_counts(mon, end=end)
        errors_after = counts_by_revision(mon, five_xx, end=end)
        requests_ = counts_by_revision(mon, end=end)
    finally:
        set_behavior(gcpsim, "v2.0.0")
    # The request log: one entry per request, ERROR for 5xx, WARNING for 4xx, INFO otherwise.
    for rev in (STABLE_REV, CANARY_REV):
        assert after[(rev, "INFO")] > requests_[rev]  # request log + application stdout
        assert after.get((rev, "WARNING"), 0) < 0.05 * requests_[rev]
    # The canary's application errors rise (Poisson, 0.2 per request); its 5xx do not.
    n = requests_[CANARY_REV]
    assert n >= 200  # enough that 0.2 per request is told from the default 0.001 at 5 sd
    canary_errors = after[(CANARY_REV, "ERROR")] - errors_after.get(CANARY_REV, 0)
    assert poisson_near(canary_errors, 0.2 * n), (canary_errors, n)
    assert before.get((CANARY_REV, "ERROR"), 0) < 0.05 * requests_[CANARY_REV]
    assert after.get((STABLE_REV, "ERROR"), 0) < 0.05 * requests_[STABLE_REV]
    # The same window: the change moved no 5xx at all, and there are few of them.
    assert errors_after == errors_before
    assert errors_before.get(CANARY_REV, 0) < 0.05 * requests_[CANARY_REV]


def test_data_younger_than_the_delay_is_not_visible(
    gcpsim: GcpsimProcess, mon: Any, canary: run_v2.Service
) -> None:
    """Samples of P = 2 s visible D = 3 s after they end: a read sees nothing newer than the
    newest complete, visible sample, and a sample appears once its delay has passed."""
    period, delay = 2, 3.0
    r = gcpsim.cli("metrics", OWN, "--sample-period", str(period), "--delay", str(delay))
    assert r.returncode == 0, r.stderr
    try:

        def visible_until(t: float) -> float:
            return (t - delay) // period * period

        # The service may be younger than a sample plus the delay: wait for its first sample.
        deadline = time.time() + period + delay + 5
        while True:
            # The simulator answers at some instant between `asked` and `answered`.
            asked = time.time()
            window = {
                "start_time": {"seconds": int(asked) - 30},
                "end_time": {"seconds": int(asked) + 1},
            }
            raw = list(list_series(mon, OWN_PROJECT, flt(COUNT, OWN), window=window))
            answered = time.time()
            if raw or answered > deadline:
                break
            time.sleep(0.2)
        assert raw
        newest: list[float] = []
        for ts in raw:  # ALIGN_NONE: one point per visible sample with data, newest first
            assert ts.points
            newest.append(ts.points[0].interval.end_time.timestamp())
            assert newest[-1] <= visible_until(answered) + 1e-6
            for p in ts.points:
                assert (p.interval.end_time - p.interval.start_time).total_seconds() == period
                assert p.interval.start_time.timestamp() % period == 0
        # ... and every sample visible when asked is there (a rare response code's series
        # may have none in it, the 200s of a revision serving 100 requests/s have)
        assert max(newest) >= visible_until(asked) - 1e-6

        def sample_counts() -> dict[str, int]:
            series = list_series(
                mon, OWN_PROJECT, flt(COUNT, OWN), window=sample, period=period,
                aligner=Aligner.ALIGN_DELTA, reducer=Reducer.REDUCE_SUM,
                group_by="resource.labels.revision_name",
            )  # fmt: skip
            out = {}
            for ts in series:
                (point,) = ts.points
                assert point.interval.end_time.timestamp() == start + period
                out[ts.resource.labels["revision_name"]] = point.value.int64_value
            return out

        # The sample running now: absent until its delay has passed after it ends. A read
        # answered only after that (a very slow machine) proves nothing: try the next sample.
        for _ in range(5):
            asked = time.time()
            start = int(asked // period * period)
            sample = {"start_time": {"seconds": start}, "end_time": {"seconds": start + period}}
            early = sample_counts()
            if time.time() < start + period + delay:
                break
        assert early == {}
        time.sleep(max(0.0, start + period + delay + 0.2 - time.time()))
        visible = sample_counts()
        assert set(visible) == {STABLE_REV, CANARY_REV}
        assert all(n > 0 for n in visible.values())
        assert sample_counts() == visible  # complete: it does not grow any more
        # Other services keep the simulator's default (live) timing.
        live = counts_by_class(mon, DEV, "node-server-dev")
        assert live.get("2xx", 0) > 0
    finally:
        assert gcpsim.cli("metrics", "--clear", OWN).returncode == 0
    timing = requests.get(f"{gcpsim.url}/_sim/metric-timing", timeout=10).json()
    assert timing == {"default": {"sample_period": 1, "delay": 0.0}, "rules": []}


# --------------------------------------------------------------------------- service URLs


def test_service_url_answers_for_a_serving_revision(services: run_v2.ServicesClient) -> None:
    svc = services.get_service(name=service_name(DEV, "node-server-dev"))
    assert svc.uri
    r = requests.get(svc.uri.rstrip("/") + "/health", timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert body["version"] == svc.template.containers[0].image.rsplit(":", 1)[1]
    assert body["revision"] == svc.latest_ready_revision.rsplit("/", 1)[-1]
    assert requests.get(svc.uri, timeout=10).status_code == 200


def test_tag_url_answers_for_the_tagged_revision(canary: run_v2.Service) -> None:
    (tagged,) = [t for t in canary.traffic_statuses if t.tag == "canary"]
    assert tagged.uri
    for url in (tagged.uri, tagged.uri.rstrip("/") + "/healthz"):
        r = requests.get(url, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ok", "revision": CANARY_REV, "version": "v2.0.0",
                            "service": OWN}  # fmt: skip
    # the service URL spreads over both revisions by the split
    seen = {requests.get(canary.uri + "/healthz", timeout=10).json()["revision"] for _ in range(80)}
    assert seen == {STABLE_REV, CANARY_REV}


def test_smoke_fail_behaviour_answers_503(gcpsim: GcpsimProcess, canary: run_v2.Service) -> None:
    (tagged,) = [t for t in canary.traffic_statuses if t.tag == "canary"]
    r = gcpsim.cli("behavior", OWN, "v2.0.0", "--smoke-fail")
    assert r.returncode == 0, r.stderr
    try:
        resp = requests.get(tagged.uri + "/healthz", timeout=10)
        assert resp.status_code == 503
        assert resp.json()["status"] == "unhealthy" and resp.json()["reason"]
    finally:
        set_behavior(gcpsim, "v2.0.0")
    assert requests.get(tagged.uri + "/healthz", timeout=10).status_code == 200


def test_unknown_tag_and_service_urls(gcpsim: GcpsimProcess) -> None:
    base = f"{gcpsim.url}/_url/{DEV}/{LOCATION}"
    r = requests.get(f"{base}/node-server-dev/tag/no-such-tag/health", timeout=10)
    assert r.status_code == 404 and "reason" in r.json()
    r = requests.get(f"{base}/no-such-service/health", timeout=10)
    assert r.status_code == 404 and "reason" in r.json()


def test_drained_service_answers_503_and_gets_no_requests(
    mon: Any, services: run_v2.ServicesClient, canary: run_v2.Service
) -> None:
    """Runs last in this module: it drains the module's own service."""
    svc = services.get_service(name=service_name(OWN_PROJECT, OWN))
    svc.scaling = run_v2.ServiceScaling(
        scaling_mode=run_v2.ServiceScaling.ScalingMode.MANUAL, manual_instance_count=0
    )
    services.update_service(service=svc).result(timeout=60)
    drained_at = time.time()
    (tagged,) = [t for t in canary.traffic_statuses if t.tag == "canary"]
    for url in (canary.uri + "/healthz", tagged.uri + "/healthz"):
        r = requests.get(url, timeout=10)
        assert r.status_code == 503 and "drained" in r.json()["reason"]
    time.sleep(2.0)
    end = time.time()
    window = {"start_time": {"seconds": int(drained_at) + 1}, "end_time": {"seconds": int(end)}}
    series = list_series(
        mon,
        OWN_PROJECT,
        flt(COUNT, OWN),
        window=window,
        period=max(1, int(end) - int(drained_at) - 1),
        aligner=Aligner.ALIGN_DELTA,
        reducer=Reducer.REDUCE_SUM,
    )
    assert list(series) == []
