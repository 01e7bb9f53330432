"""The traffic timeline and request rates: who served which share of how many requests, when.

Cloud Run (run_v2) calls `record_split` whenever a service's serving traffic changes (an
operation finished). The metrics model (Monitoring) integrates over this timeline, so metrics
follow a traffic change within one alignment period.

Request rates: a service receives `sim.settings.request_rate` requests per second (flag
`--request-rate`) unless a rate rule says otherwise (`python -m gcpsim rate`, `/_sim/rates`).
A rule matches a service name (exact or fnmatch glob) and an image version (`*` for any). The
expected requests of a revision are `rate_for(service, revision's version) * share`: a rule for
the exact version wins over a `*` rule, which sets the service's total rate; among rules of the
same kind the newest matching one wins. Like behaviours, rates are read at query time, so a
change applies to every read made after it, the past included.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from gcpsim.model.rules import drop_rules, put_rule
from gcpsim.sim import Sim

MAX_HISTORY = 5000  # splits kept per service


def service_key(project: str, location: str, service: str) -> str:
    return f"{project}/{location}/{service}"


def record_split(sim: Sim, key: str, split: list[tuple[str, int, str]], at: float) -> None:
    """Record that from `at` on, `key` serves [(revision, percent, image), ...]."""
    entry = [at, [[rev, pct, image] for rev, pct, image in split if pct > 0]]
    with sim.store.lock:
        hist = sim.store.section("sim").get("traffic", {}).get(key)
        if hist and hist[-1][1] == entry[1]:
            return  # unchanged: nothing to write
        with sim.store.mutate() as d:
            hist = d["sim"].setdefault("traffic", {}).setdefault(key, [])
            hist.append(entry)
            del hist[:-MAX_HISTORY]


def timeline(sim: Sim, key: str) -> list[tuple[float, list[tuple[str, int, str]]]]:
    with sim.store.lock:
        hist: list[Any] = sim.store.section("sim").get("traffic", {}).get(key, [])
        return [(at, [(r, p, i) for r, p, i in split]) for at, split in hist]


# --------------------------------------------------------------------------- request rates


def set_rate(sim: Sim, service: str, version: str, rps: float) -> dict[str, Any]:
    """Set the request rate of service/version (`*` = the service's total), replacing any
    earlier rule for that pair."""
    if rps < 0:
        raise ValueError(f"rps must not be negative, got {rps!r}")
    rule = {"service": service, "version": version, "rps": float(rps)}
    return put_rule(sim, "rates", rule, ("service", "version"))


def clear_rates(sim: Sim, service: str | None = None, version: str | None = None) -> int:
    """Remove every rate rule, or those of `service` (and `version`); returns how many."""
    return drop_rules(sim, "rates", {"service": service, "version": version})


def rates(sim: Sim) -> list[dict[str, Any]]:
    with sim.store.lock:
        return list(sim.store.section("sim").get("rates", []))


def rate_for(
    sim: Sim, service: str, version: str, rules: list[dict[str, Any]] | None = None
) -> float:
    """Requests per second behind the share of `service` that goes to revisions of `version`."""
    exact: float | None = None
    total: float | None = None
    for r in rates(sim) if rules is None else rules:
        if not fnmatch.fnmatchcase(service, r["service"]):
            continue
        if r["version"] == version:
            exact = float(r["rps"])
        elif r["version"] == "*":
            total = float(r["rps"])
    if exact is not None:
        return exact
    return total if total is not None else float(sim.settings.request_rate)
