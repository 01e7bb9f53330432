"""The traffic timeline: which revisions served which share of a service's requests, and when.

Cloud Run (run_v2) calls `record_split` whenever a service's serving traffic changes (an
operation finished). The metrics model (Monitoring) integrates over this timeline, so metrics
follow a traffic change within one alignment period.
"""

from __future__ import annotations

from typing import Any

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
