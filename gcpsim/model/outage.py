"""Simulated regional outages: `python -m gcpsim outage REGION [--clear]`.

While a region is out, as a real regional outage would look to a client:
- Cloud Run Admin v2 calls for anything under `locations/REGION` (services, revisions,
  operations) answer 503 UNAVAILABLE (google.rpc.Status JSON: the run_v2 client raises
  `ServiceUnavailable`);
- the service and tag URLs of services in REGION answer 503 (`/_url/{project}/REGION/...`);
- Cloud SQL Admin v1 calls for an instance in REGION (get, patch, delete, clone, restoreBackup,
  backupRuns.insert, ...) answer 503 in the sqladmin error format; listing and reading its
  backup runs keeps working and a backup can be restored into an instance in another region
  (Cloud SQL backups are multi-regional);
- Cloud Monitoring returns no series for services in REGION (its metrics stop), and the
  simulated application stops writing rows into instances in REGION.

Outages live in the store (`sim.outages`), so they survive a restart of gcpsim.

The middleware and the `/_sim/outages` routes: gcpsim.api.outage.
"""

from __future__ import annotations

import re
from typing import Any

from gcpsim.model.rules import drop_rules
from gcpsim.sim import Sim
from gcpsim.store import now, rfc3339

_RUN = re.compile(r"^/v2/projects/[^/]+/locations/([^/]+)(/|$)")


_URL = re.compile(r"^/_url/[^/]+/([^/]+)(/|$)")


_SQL = re.compile(r"^/v1/projects/([^/]+)/instances/([^/:]+)(/.*)?$")


_BACKUP_READ = re.compile(r"^/backupRuns(/[^/]+)?$")


def regions(sim: Sim) -> list[str]:
    with sim.store.lock:
        return sorted(o["region"] for o in sim.store.section("sim").get("outages", []))


def is_out(sim: Sim, region: str) -> bool:
    with sim.store.lock:
        return any(o["region"] == region for o in sim.store.section("sim").get("outages", []))


def set_out(sim: Sim, region: str) -> dict[str, Any]:
    with sim.store.mutate() as d:
        outages = d["sim"].setdefault("outages", [])
        for o in outages:
            if o["region"] == region:
                return dict(o)
        rec = {"region": region, "since": rfc3339(now())}
        outages.append(rec)
        return dict(rec)


def clear(sim: Sim, region: str | None = None) -> int:
    return drop_rules(sim, "outages", {"region": region})


def instance_region(sim: Sim, project: str, instance: str) -> str | None:
    with sim.store.lock:
        inst = sim.store.data.get("sql", {}).get("instances", {}).get(f"{project}/{instance}")
        return str(inst["region"]) if inst else None


def blocked(sim: Sim, method: str, path: str) -> tuple[str, str] | None:
    """(region, style) when this request reaches a region that is out, else None."""
    if not sim.store.section("sim").get("outages"):
        return None
    m = _RUN.match(path)
    if m:
        return (m.group(1), "rpc") if is_out(sim, m.group(1)) else None
    m = _URL.match(path)
    if m:
        return (m.group(1), "url") if is_out(sim, m.group(1)) else None
    m = _SQL.match(path)
    if m:
        rest = m.group(3) or ""
        if method == "GET" and _BACKUP_READ.match(rest):
            return None  # backups are multi-regional: still listable and restorable
        region = instance_region(sim, m.group(1), m.group(2))
        if region is not None and is_out(sim, region):
            return region, "sql"
    return None
