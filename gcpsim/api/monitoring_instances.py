"""`run.googleapis.com/container/instance_count` (GAUGE INT64, metric label `state`: active |
idle; resource `cloud_run_revision`) for Monitoring's ListTimeSeries.

A revision's instances follow its share of the synthetic traffic (the service's or its
version's request rate, `gcpsim rate`): active = ceil(requests per
second x p50 latency / max concurrency), capped at the template's `maxInstanceCount` (at the cap,
Cloud Run refuses what the instances cannot take, and those requests never reach an instance);
idle = whatever its `minInstanceCount` keeps beyond that, also for a revision kept only by a tag.
A drained service has no active instances. The value is the current one at every point of the
interval (gcpsim keeps no instance history).
"""

from __future__ import annotations

import math
from typing import Any

from gcpsim.api.monitoring_query import (
    INT64,
    RESOURCE_TYPE,
    Reducer,
    ResponsePb,
    parse_filter,
    ts_ns,
)
from gcpsim.api.monitoring_series import add_gauge_series, gauge_window
from gcpsim.errors import ApiError
from gcpsim.model import run as run_model
from gcpsim.model import traffic
from gcpsim.model.behavior import behavior_for, image_version
from gcpsim.sim import Sim

INSTANCE_COUNT = "run.googleapis.com/container/instance_count"
DEFAULT_MAX = 100


def revision_instances(sim: Sim) -> list[tuple[dict[str, str], int, int, bool]]:
    """(resource labels, active, idle, at max) of every revision that has instances."""
    run_model.settle(sim)
    out = []
    with sim.store.lock:
        run = sim.store.section("run")
        for key, svc in run.get("services", {}).items():
            revs = run.get("revisions", {}).get(key, {})
            shares = {rev: pct for rev, pct, _ in run_model.split_from_statuses(svc, revs)}
            for rev in run_model.warm_revisions(svc, revs):
                template = revs[rev]["template"]
                scaling = template.get("scaling") or {}
                low = int(scaling.get("minInstanceCount") or 0)
                high = int(scaling.get("maxInstanceCount") or 0) or DEFAULT_MAX
                concurrency = int(template.get("maxInstanceRequestConcurrency") or 80)
                version = image_version(revs[rev]["image"])
                rps = traffic.rate_for(sim, svc["service"], version) * shares.get(rev, 0) / 100
                latency = float(behavior_for(sim, svc["service"], revs[rev]["image"])["p50_ms"])
                needed = math.ceil(rps * latency / 1000 / concurrency) if rps else 0
                active = min(needed, high)
                labels = {
                    "project_id": svc["project"],
                    "service_name": svc["service"],
                    "revision_name": rev,
                    "location": svc["location"],
                    "configuration_name": svc["service"],
                }
                out.append((labels, active, max(low - active, 0), needed > high))
    return out


def list_time_series(sim: Sim, req: Any) -> Any | None:
    """The ListTimeSeriesResponse for a request about INSTANCE_COUNT; None for other metrics."""

    flt = parse_filter(req.filter)
    if flt.metric_types() != [INSTANCE_COUNT]:
        return None
    project = req.name.removeprefix("projects/")
    end_ns = ts_ns(req.interval.end_time) if req.interval.HasField("end_time") else 0
    if not end_ns:
        raise ApiError(400, "Field interval.endTime is required.")
    window = gauge_window(req, end_ns)
    agg = req.aggregation
    series: list[tuple[dict[str, str], dict[str, str], int]] = []
    for res, active, idle, _ in revision_instances(sim):
        if res["project_id"] != project or not flt.accepts("resource", res):
            continue
        for state, value in (("active", active), ("idle", idle)):
            if flt.accepts("metric", {"state": state}):
                series.append((res, {"state": state}, value))
    reducer = Reducer(agg.cross_series_reducer).name
    if reducer != "REDUCE_NONE" and series:
        series = [({"project_id": project}, {}, sum(v for _, _, v in series))]
    resp = ResponsePb(unit="1")
    for res, met, value in series:
        add_gauge_series(resp, (INSTANCE_COUNT, met), (RESOURCE_TYPE, res), INT64, value, window)
    return resp
