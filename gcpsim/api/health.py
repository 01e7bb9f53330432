"""The loopback service and tag URLs (`gcpsim.urls`): what a smoke test or health check sees.

- `GET /_url/{project}/{location}/{service}[/{path}]` picks one of the serving revisions by the
  traffic split (seeded randomness) and answers as that revision would;
- `GET /_url/{project}/{location}/{service}/tag/{tag}[/{path}]` answers as the tagged revision.

A healthy revision answers 200 `{"status": "ok", "revision": ..., "version": ...}`; one whose
behaviour has `smoke_fail` answers 503 `{"status": "unhealthy", ..., "reason": ...}`. A service
with no serving revision answers 503 (drained: scaled to zero) or 404 (unknown), an unknown tag
404, all with a `reason`. Any path below the URL answers the same way. These requests do not
feed the synthetic metrics (`gcpsim.model.metrics`).

Ingress is honoured as Cloud Run does ("all ingress paths, including the default run.app URL,
are subject to your ingress setting"): a service whose ingress is not `all` answers 404 to
callers outside its VPC. Every caller of a loopback URL counts as outside unless
`POST /_sim/network {"inside_vpc": true}` says the callers (e.g. a worker) run inside it.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from gcpsim.api.deps import SimDep
from gcpsim.model import run_queries, traffic
from gcpsim.model.behavior import behavior_for, image_version
from gcpsim.sim import Sim


def _answer(sim: Sim, service: str, revision: str, image: str) -> JSONResponse:
    body = {"revision": revision, "version": image_version(image), "service": service}
    if behavior_for(sim, service, image)["smoke_fail"]:
        reason = f"revision {revision} failed its health check (simulated smoke_fail)"
        return JSONResponse({"status": "unhealthy", **body, "reason": reason}, status_code=503)
    return JSONResponse({"status": "ok", **body})


_RNGS: dict[int, tuple[Sim, random.Random, threading.Lock]] = {}
_RNGS_LOCK = threading.Lock()


def _rng(sim: Sim) -> tuple[random.Random, threading.Lock]:
    """The simulator's seeded generator for picking a revision by the split (one per Sim)."""
    with _RNGS_LOCK:
        got = _RNGS.get(id(sim))
        if got is None or got[0] is not sim:
            got = _RNGS[id(sim)] = (
                sim,
                random.Random(f"{sim.settings.seed}/health"),
                threading.Lock(),
            )
        return got[1], got[2]


def _unavailable(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason}, status_code=status)


router = APIRouter(include_in_schema=False)


def _serving(sim: Sim, project: str, location: str, service: str) -> list[tuple[str, int, str]]:
    serving = run_queries.serving(sim, project, location, service)
    return [(rev, pct, image) for rev, pct, image in serving if pct > 0]


def _exists(sim: Sim, project: str, location: str, service: str) -> bool:
    key = traffic.service_key(project, location, service)
    with sim.store.lock:
        return key in sim.store.section("run").get("services", {})


def _inside_vpc(sim: Sim) -> bool:
    with sim.store.lock:
        return bool(sim.store.section("network").get("insideVpc"))


def _blocked(sim: Sim, project: str, location: str, service: str) -> JSONResponse | None:
    ingress = run_queries.ingress_of(sim, project, location, service)
    if ingress in (None, 1) or _inside_vpc(sim):
        return None
    name = {2: "internal", 3: "internal-and-cloud-load-balancing", 4: "none"}.get(
        ingress or 0, str(ingress)
    )
    return _unavailable(
        404,
        f"service {service} has ingress {name}: its URLs are not reachable from outside "
        "the VPC (this caller is outside)",
    )


def by_tag(sim: Sim, project: str, location: str, service: str, tag: str) -> JSONResponse:
    blocked = _blocked(sim, project, location, service)
    if blocked is not None:
        return blocked
    found = run_queries.lookup_tag(sim, project, location, service, tag)
    if found is None:
        if _exists(sim, project, location, service) and not _serving(
            sim, project, location, service
        ):
            return _unavailable(503, f"service {service} has no serving revision (drained)")
        return _unavailable(404, f"no revision of service {service} has the tag {tag!r}")
    revision, image = found
    return _answer(sim, service, revision, image)


def by_split(sim: Sim, project: str, location: str, service: str) -> JSONResponse:
    blocked = _blocked(sim, project, location, service)
    if blocked is not None:
        return blocked
    split = _serving(sim, project, location, service)
    if not split:
        if not _exists(sim, project, location, service):
            return _unavailable(404, f"service {project}/{location}/{service} not found")
        return _unavailable(503, f"service {service} has no serving revision (drained)")
    rng, rng_lock = _rng(sim)
    with rng_lock:
        pick = rng.uniform(0, sum(pct for _, pct, _ in split))
    for rev, pct, image in split:
        pick -= pct
        if pick < 0:
            return _answer(sim, service, rev, image)
    rev, _, image = split[-1]
    return _answer(sim, service, rev, image)


@router.post("/_sim/network")
def set_network(sim: SimDep, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    with sim.store.mutate() as d:
        net = d.setdefault("network", {})
        net["insideVpc"] = bool(body.get("inside_vpc"))
        return {"inside_vpc": net["insideVpc"]}


@router.get("/_sim/network")
def get_network(sim: SimDep) -> dict[str, Any]:
    return {"inside_vpc": _inside_vpc(sim)}


# The tag routes first: `/tag/x/...` would also match the service route's path.
@router.api_route("/_url/{project}/{location}/{service}/tag/{tag}", methods=["GET", "HEAD"])
def tag_root(sim: SimDep, project: str, location: str, service: str, tag: str) -> JSONResponse:
    return by_tag(sim, project, location, service, tag)


@router.api_route(
    "/_url/{project}/{location}/{service}/tag/{tag}/{path:path}", methods=["GET", "HEAD"]
)
def tag_path(
    sim: SimDep, project: str, location: str, service: str, tag: str, path: str
) -> JSONResponse:
    return by_tag(sim, project, location, service, tag)


@router.api_route("/_url/{project}/{location}/{service}", methods=["GET", "HEAD"])
def service_root(sim: SimDep, project: str, location: str, service: str) -> JSONResponse:
    return by_split(sim, project, location, service)


@router.api_route("/_url/{project}/{location}/{service}/{path:path}", methods=["GET", "HEAD"])
def service_path(sim: SimDep, project: str, location: str, service: str, path: str) -> JSONResponse:
    return by_split(sim, project, location, service)
