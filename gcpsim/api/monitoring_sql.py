"""`cloudsql.googleapis.com/database/replication/replica_lag` for Monitoring's ListTimeSeries.

Cloud SQL reports a read replica's replication lag only through Cloud Monitoring: GAUGE
DOUBLE, unit "s", on the monitored resource `cloudsql_database` (labels project_id,
database_id = "project:instance", region). gcpsim serves it for every RUNNABLE read replica
(gcpsim.model.sql_replicas): now minus the newest `created_at` the replica is guaranteed to
hold, i.e. the data-loss window a promotion now would have. The value is the current one at
every point of the interval (gcpsim keeps no lag history). Filters on `resource.labels.*`
apply; a cross-series reducer other than REDUCE_NONE takes the maximum (the worst replica).
No point while the replica's own region is out (its metrics stop, as for Cloud Run).
"""

from __future__ import annotations

from typing import Any

from gcpsim.api.monitoring_query import DOUBLE, GAUGE, Reducer, ResponsePb, parse_filter, ts_ns
from gcpsim.api.monitoring_series import set_ts
from gcpsim.errors import ApiError
from gcpsim.model import outage
from gcpsim.model.sql import tbl
from gcpsim.model.sql_replicas import is_replica, replication_lag
from gcpsim.sim import Sim
from gcpsim.store import now

REPLICA_LAG = "cloudsql.googleapis.com/database/replication/replica_lag"
RESOURCE_TYPE = "cloudsql_database"
NS = 1_000_000_000


def replica_lags(sim: Sim, project: str) -> list[tuple[dict[str, str], float]]:
    """(resource labels, lag seconds) of the project's RUNNABLE replicas in healthy regions."""
    t = now()
    out = []
    with sim.store.lock:
        for inst in tbl(sim.store.data, "instances").values():
            if inst["project"] != project or not is_replica(inst) or inst["state"] != "RUNNABLE":
                continue
            lag = replication_lag(inst, t)
            if lag is None or outage.is_out(sim, inst["region"]):
                continue
            labels = {
                "project_id": project,
                "database_id": f"{project}:{inst['name']}",
                "region": inst["region"],
            }
            out.append((labels, lag))
    return out


def list_time_series(sim: Sim, req: Any) -> Any | None:
    """The ListTimeSeriesResponse for a request about REPLICA_LAG; None for other metrics."""

    flt = parse_filter(req.filter)
    if flt.metric_types() != [REPLICA_LAG]:
        return None
    project = req.name.removeprefix("projects/")
    if not req.interval.HasField("end_time"):
        raise ApiError(400, "Field interval.endTime is required.")
    end_ns = ts_ns(req.interval.end_time)
    start_ns = ts_ns(req.interval.start_time) if req.interval.HasField("start_time") else 0
    start_ns = start_ns or end_ns
    agg = req.aggregation
    period = ts_ns(agg.alignment_period) if agg.HasField("alignment_period") else 60 * NS
    period = max(period, NS)
    end_ns = min(end_ns, int(now() * NS))
    series = [
        (res, lag)
        for res, lag in replica_lags(sim, project)
        if flt.accepts_type("resource.type", RESOURCE_TYPE) and flt.accepts("resource", res)
    ]
    reducer = Reducer(agg.cross_series_reducer).name
    if reducer != "REDUCE_NONE" and series:
        series = [({"project_id": project}, max(lag for _, lag in series))]
    resp = ResponsePb(unit="s")
    for res, lag in series:
        ts = resp.time_series.add()
        ts.metric.type = REPLICA_LAG
        ts.resource.type = RESOURCE_TYPE
        ts.resource.labels.update(res)
        ts.metric_kind = GAUGE
        ts.value_type = DOUBLE
        t = end_ns
        while t > start_ns or t == end_ns:  # newest first, one point per period
            p = ts.points.add()
            set_ts(p.interval.end_time, t)
            set_ts(p.interval.start_time, t)
            p.value.double_value = float(lag)
            t -= period
    return resp
