"""The `/_sim/...` control surface: state, behaviours, request rates and faults, as plain JSON.

Used by `python -m gcpsim behavior|rate|fault|show` and by tests; not part of any Google API.
Errors answer `{"error": "<message>"}` with status 400 or 404.

- `GET/POST/DELETE /_sim/behaviors`: how revisions of a service/version behave.
- `GET/POST/DELETE /_sim/rates`: request rates, `{"service", "version" (default "*"), "rps"}`;
  DELETE with `?service=...&version=...` removes only the matching rules.
- `GET/POST/DELETE /_sim/metric-timing`: Cloud Monitoring's sampling period and visibility
  delay, `{"service" (default "*": all), "sample_period", "delay"}`; GET also gives the serve
  flags' defaults; DELETE with `?service=...` removes only that rule.
- `GET/POST/DELETE /_sim/faults`: injected API faults.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from gcpsim.api.deps import SimDep
from gcpsim.model import behavior, jobs, metrics, run_queries, traffic
from gcpsim.sim import Sim

FAULT_KEYS = {"method", "status", "rate", "latency_ms", "times", "op_error", "message"}
BEHAVIOR_KEYS = {"service", "version", *behavior.DEFAULT}
RATE_KEYS = {"service", "version", "rps"}
TIMING_KEYS = {"service", *metrics.TIMING_KEYS}
MAX_LOGS_PER_REQUEST = 1000.0  # error_log_rate: application ERROR log entries per request
MAX_RPS = 100_000.0  # requests per second of one service (bounds the work of a read)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def _number(body: dict[str, Any], key: str, lo: float, hi: float | None = None) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
        raise ValueError(f"{key} must be {bound}, got {value!r}")
    return float(value)


def state(sim: Sim) -> dict[str, Any]:
    """Everything the simulator holds, for `show` and for debugging."""
    with sim.store.lock:
        sql = sim.store.section("sql")
        sql_copy = dict(sql)
    return {
        "settings": {
            "host": sim.settings.host,
            "port": sim.settings.port,
            "grpc_port": sim.settings.grpc_port,
            "run_op_seconds": sim.settings.run_op_seconds,
            "sql_op_seconds": sim.settings.sql_op_seconds,
            "request_rate": sim.settings.request_rate,
            "metric_sample_period": sim.settings.metric_sample_period,
            "metric_delay": sim.settings.metric_delay,
            "seed": sim.settings.seed,
            "state_dir": str(sim.store.dir),
        },
        "services": run_queries.summary(sim),
        "jobs": jobs.summary(sim),
        "job_behaviors": jobs.job_behaviors(sim),
        "behaviors": behavior.behaviors(sim),
        "rates": traffic.rates(sim),
        "metric_timing": metrics.timing_rules(sim),
        "faults": sim.faults.rules(),
        "outages": list(sim.store.section("sim").get("outages", [])),
        "sql": sql_copy,
    }


router = APIRouter(prefix="/_sim")


@router.get("/health")
def health(sim: SimDep) -> dict[str, Any]:
    return {"ok": True}


@router.get("/state")
def get_state(sim: SimDep) -> JSONResponse:
    return JSONResponse(state(sim))


@router.get("/behaviors")
def list_behaviors(sim: SimDep) -> JSONResponse:
    return JSONResponse({"behaviors": behavior.behaviors(sim)})


@router.post("/behaviors")
def set_behavior(sim: SimDep, body: dict[str, Any] = Body(...)) -> JSONResponse:
    unknown = set(body) - BEHAVIOR_KEYS
    if unknown:
        return _error(400, f"unknown keys {sorted(unknown)}; allowed: {sorted(BEHAVIOR_KEYS)}")
    service, version = body.get("service"), body.get("version")
    if not isinstance(service, str) or not service:
        return _error(400, "service is required (a Cloud Run service name or glob)")
    if not isinstance(version, str) or not version:
        return _error(400, "version is required (an image tag such as v1.2.0, or *)")
    values: dict[str, Any] = {}
    try:
        for key, lo, hi in (
            ("error_rate", 0, 1),
            ("p50_ms", 0, None),
            ("p95_ms", 0, None),
            ("error_log_rate", 0, MAX_LOGS_PER_REQUEST),
        ):
            v = _number(body, key, lo, hi)
            if v is not None:
                values[key] = v
    except ValueError as err:
        return _error(400, str(err))
    for key in ("smoke_fail", "broken"):
        if body.get(key) is not None:
            if not isinstance(body[key], bool):
                return _error(400, f"{key} must be true or false")
            values[key] = body[key]
    rule = behavior.set_behavior(sim, service, version, **values)
    return JSONResponse(rule)


@router.delete("/behaviors")
def clear_behaviors(sim: SimDep) -> JSONResponse:
    behavior.clear_behaviors(sim)
    return JSONResponse({"cleared": True})


@router.get("/rates")
def list_rates(sim: SimDep) -> JSONResponse:
    return JSONResponse({"default_rps": sim.settings.request_rate, "rates": traffic.rates(sim)})


@router.post("/rates")
def set_rate(sim: SimDep, body: dict[str, Any] = Body(...)) -> JSONResponse:
    unknown = set(body) - RATE_KEYS
    if unknown:
        return _error(400, f"unknown keys {sorted(unknown)}; allowed: {sorted(RATE_KEYS)}")
    service, version = body.get("service"), body.get("version", "*")
    if not isinstance(service, str) or not service:
        return _error(400, "service is required (a Cloud Run service name or glob)")
    if not isinstance(version, str) or not version:
        return _error(400, "version must be an image tag such as v1.2.0, or * (the default)")
    try:
        rps = _number(body, "rps", 0, MAX_RPS)
    except ValueError as err:
        return _error(400, str(err))
    if rps is None:
        return _error(400, "rps is required (requests per second, e.g. 0.05 or 200)")
    return JSONResponse(traffic.set_rate(sim, service, version, rps))


@router.delete("/rates")
def clear_rates(
    sim: SimDep, service: str | None = Query(None), version: str | None = Query(None)
) -> JSONResponse:
    return JSONResponse({"cleared": traffic.clear_rates(sim, service, version)})


@router.get("/metric-timing")
def get_timing(sim: SimDep) -> JSONResponse:
    d = metrics.default_timing(sim)
    return JSONResponse(
        {
            "default": {"sample_period": d.sample_period, "delay": d.delay},
            "rules": metrics.timing_rules(sim),
        }
    )


@router.post("/metric-timing")
def set_timing(sim: SimDep, body: dict[str, Any] = Body(...)) -> JSONResponse:
    unknown = set(body) - TIMING_KEYS
    if unknown:
        return _error(400, f"unknown keys {sorted(unknown)}; allowed: {sorted(TIMING_KEYS)}")
    service = body.get("service", "*")
    if not isinstance(service, str) or not service:
        return _error(400, "service must be a Cloud Run service name or glob (default *)")
    period, delay = body.get("sample_period"), body.get("delay")
    if period is None and delay is None:
        return _error(400, "give sample_period (seconds) and/or delay (seconds)")
    try:
        rule = metrics.set_timing(sim, service, period, delay)
    except ValueError as err:
        return _error(400, str(err))
    return JSONResponse(rule)


@router.delete("/metric-timing")
def clear_timing(sim: SimDep, service: str | None = Query(None)) -> JSONResponse:
    return JSONResponse({"cleared": metrics.clear_timing(sim, service)})


@router.get("/faults")
def list_faults(sim: SimDep) -> JSONResponse:
    return JSONResponse({"faults": sim.faults.rules()})


@router.post("/faults")
def add_fault(sim: SimDep, body: dict[str, Any] = Body(...)) -> JSONResponse:
    unknown = set(body) - FAULT_KEYS
    if unknown:
        return _error(400, f"unknown keys {sorted(unknown)}; allowed: {sorted(FAULT_KEYS)}")
    method = body.get("method")
    if not isinstance(method, str) or not method:
        return _error(400, "method is required, e.g. run.services.get or *")
    try:
        status = _number(body, "status", 400, 599)
        rate = _number(body, "rate", 0, 1)
        latency = _number(body, "latency_ms", 0)
        times = _number(body, "times", 1)
    except ValueError as err:
        return _error(400, str(err))
    op_error = body.get("op_error", False)
    if not isinstance(op_error, bool):
        return _error(400, "op_error must be true or false")
    if status is None and not op_error and not latency:
        return _error(400, "a fault needs a status, op_error or latency_ms")
    message = body.get("message")
    if message is not None and not isinstance(message, str):
        return _error(400, "message must be a string")
    rule = sim.faults.add(
        method,
        status=int(status) if status is not None else None,
        rate=rate if rate is not None else 1.0,
        latency_ms=int(latency or 0),
        times=int(times) if times is not None else None,
        op_error=op_error,
        message=message,
    )
    return JSONResponse(rule)


@router.delete("/faults")
def clear_faults(sim: SimDep) -> JSONResponse:
    return JSONResponse({"cleared": sim.faults.clear()})


@router.delete("/faults/{rule_id}")
def clear_fault(sim: SimDep, rule_id: str) -> JSONResponse:
    if not any(rule["id"] == rule_id for rule in sim.faults.rules()):
        return _error(404, f"no fault with id {rule_id!r}")
    return JSONResponse({"cleared": sim.faults.clear(rule_id)})
