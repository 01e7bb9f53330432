"""How a simulated revision behaves, set per service and image version before it exists.

A behaviour matches a Cloud Run service name (exact, or an fnmatch glob such as
`node-server-*`) and an image version (the tag after the last `:`; `*` for any). The newest
matching behaviour wins; with none, a revision is healthy (DEFAULT). Setting a behaviour for a
service/version replaces the whole previous one: values left out take their defaults.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from gcpsim.model.rules import put_rule
from gcpsim.sim import Sim

DEFAULT: dict[str, Any] = {
    "error_rate": 0.002,  # fraction of requests answered 5xx
    "p50_ms": 40.0,
    "p95_ms": 120.0,
    # expected application log entries of severity ERROR (log run.googleapis.com/stderr) per
    # request, independent of the response codes (logging.googleapis.com/log_entry_count)
    "error_log_rate": 0.001,
    "smoke_fail": False,  # tag/service URL health checks answer 503
    "broken": False,  # the revision never becomes ready
}


def image_version(image: str) -> str:
    tail = image.rsplit("/", 1)[-1]
    return tail.rsplit(":", 1)[1] if ":" in tail else "latest"


def set_behavior(sim: Sim, service: str, version: str, **values: Any) -> dict[str, Any]:
    """Set the behaviour of service/version, replacing any earlier one for that pair."""
    unknown = set(values) - set(DEFAULT)
    if unknown:
        raise ValueError(f"unknown behaviour keys {sorted(unknown)}")
    rule = {"service": service, "version": version, **values}
    return put_rule(sim, "behaviors", rule, ("service", "version"))


def clear_behaviors(sim: Sim) -> None:
    with sim.store.mutate() as d:
        d["sim"]["behaviors"] = []


def behaviors(sim: Sim) -> list[dict[str, Any]]:
    with sim.store.lock:
        return list(sim.store.section("sim").get("behaviors", []))


def behavior_for(sim: Sim, service: str, image: str) -> dict[str, Any]:
    """The effective behaviour of a revision of `service` running `image`."""
    version = image_version(image)
    result = dict(DEFAULT)
    for r in behaviors(sim):
        if fnmatch.fnmatchcase(service, r["service"]) and r["version"] in (version, "*"):
            result.update({k: v for k, v in r.items() if k in DEFAULT and v is not None})
    return result
