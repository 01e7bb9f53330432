"""Cloud Monitoring API v3 `ListTimeSeries` over plaintext gRPC (contract section 5.5, option C).

The real `MetricServiceClient` talks to this server through
`MetricServiceGrpcTransport(channel=grpc.insecure_channel("127.0.0.1:PORT"))`. The server is a
grpcio server with a generic handler for `google.monitoring.v3.MetricService/ListTimeSeries`
(every other method answers UNIMPLEMENTED). Data comes from the synthetic metrics model
(`gcpsim.model.metrics`).

Supported:
- metrics `run.googleapis.com/request_count` (DELTA INT64, unit "1") and
  `run.googleapis.com/request_latencies` (DELTA DISTRIBUTION, unit "ms", exponential buckets),
  both with metric labels `response_code`, `response_code_class`, on resource
  `cloud_run_revision` (labels project_id, service_name, revision_name, location,
  configuration_name). An unknown metric type answers NOT_FOUND, as the real API does.
- metric `logging.googleapis.com/log_entry_count` (DELTA INT64, unit "1") with metric labels
  `log` (`run.googleapis.com/requests`, `run.googleapis.com/stderr`, `run.googleapis.com/stdout`)
  and `severity` (INFO, WARNING, ERROR), on the same resource (`gcpsim.model.metrics`, "Logs").
- metric `run.googleapis.com/container/instance_count` (gcpsim.api.monitoring_instances) and
  `cloudsql.googleapis.com/database/replication/replica_lag` (gcpsim.api.monitoring_sql).
- Cloud Monitoring's timing: each service's samples (period P, aligned on epoch multiples of P)
  are visible from P + delay seconds after they start (`gcpsim.model.metrics.Timing`); reads
  see only visible data, so a point reaching past the newest visible sample holds its visible
  part, and ALIGN_NONE returns one point per visible sample. Defaults (P = 1 s, no delay): live.
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
- Each call first applies Cloud Run operations whose time has come (`run_model.settle`), so a
  finished traffic change is in the timeline even if nobody polled its operation.

SIMULATOR RELAXATION: the real API requires alignmentPeriod >= 60 s when an aligner is set.
gcpsim accepts any period down to 1 s (its metrics have 1 s resolution), so tests with
second-long bakes work; shorter periods answer INVALID_ARGUMENT.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc

from gcpsim import store as gstore
from gcpsim.api import monitoring_instances, monitoring_sql
from gcpsim.api.monitoring_query import (
    FAULT_METHOD,
    NS,
    RESOURCE_TYPE,
    SERVICE_NAME,
    RequestPb,
    ResponsePb,
    parse_request,
)
from gcpsim.api.monitoring_series import compute, set_ts, set_value
from gcpsim.errors import ApiError
from gcpsim.model import run as run_model
from gcpsim.sim import Sim

log = logging.getLogger(__name__)


def list_time_series(sim: Sim, req: Any) -> Any:
    """Answer a ListTimeSeriesRequest (protobuf) with a ListTimeSeriesResponse (protobuf)."""
    # container/instance_count (issue 9 item 8) and Cloud SQL's replica_lag answer for themselves
    for other in (monitoring_instances, monitoring_sql):
        answered = other.list_time_series(sim, req)
        if answered is not None:
            return answered
    q = parse_request(req)
    run_model.settle(sim)  # apply Cloud Run operations that finished meanwhile (traffic changes)
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
            set_ts(p.interval.start_time, p_start)
            set_ts(p.interval.end_time, p_end)
            set_value(p.value, vtype, s.values[k])
    return resp


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
