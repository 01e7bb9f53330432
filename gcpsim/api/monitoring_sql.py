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

from gcpsim.api.monitoring_query import DOUBLE, NS, Reducer, ResponsePb, parse_filter, ts_ns
from gcpsim.api.monitoring_series import add_gauge_series, gauge_window
from gcpsim.errors import ApiError
from gcpsim.model import outage
from gcpsim.model.sql import tbl
from gcpsim.model.sql_replicas import is_replica, replication_lag
from gcpsim.sim import Sim
from gcpsim.store import now

REPLICA_LAG = "cloudsql.googleapis.com/database/replication/replica_lag"
RESOURCE_TYPE = "cloudsql_database"


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
    start_ns, end_ns, period_ns = gauge_window(req, ts_ns(req.interval.end_time))
    window = (start_ns, end_ns, max(period_ns, NS))
    agg = req.aggregation
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
        add_gauge_series(resp, (REPLICA_LAG, {}), (RESOURCE_TYPE, res), DOUBLE, lag, window)
    return resp
