"""What the rest of gcpsim asks about Cloud Run services (what serves, bound Cloud SQL
instances, ingress, tags), seeding a deployed service, and the /_sim/state summary."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gcpsim.model.behavior import behavior_for
from gcpsim.model.run import (
    add_revision,
    decide_revision,
    new_service_record,
    run_section,
    settle,
    split_from_statuses,
    warm_revisions,
)
from gcpsim.model.run_spec import INGRESS, LATEST, STATE_NAMES, SUCCEEDED, condition, parse_service
from gcpsim.model.run_views import service_view
from gcpsim.model.traffic import record_split, service_key
from gcpsim.sim import Sim
from gcpsim.store import now, rfc3339


@contextmanager
def settled_read(
    sim: Sim, project: str, location: str, service: str
) -> Iterator[tuple[dict[str, Any] | None, dict[str, Any]]]:
    """Settle the service's operations, then hold the store's lock over the block; yields the
    service's record (None if there is no such service) and its revisions by name."""
    key = service_key(project, location, service)
    settle(sim, [key])
    with sim.store.lock:
        run = sim.store.section("run")
        yield run.get("services", {}).get(key), run.get("revisions", {}).get(key, {})


def serving(sim: Sim, project: str, location: str, service: str) -> list[tuple[str, int, str]]:
    """[(revision, percent, image), ...] a service serves now; [] if drained or missing."""
    with settled_read(sim, project, location, service) as (svc, revs):
        return [] if svc is None else split_from_statuses(svc, revs)


def bound_connections(sim: Sim) -> dict[str, set[str]]:
    """Per project whose services declare Cloud SQL connections (a `cloudSqlInstance` volume in
    a service template): the connection names (`project:region:instance`) that revisions
    receiving traffic are bound to, i.e. the databases an application uses now (none while
    drained). Read as stored (no settling): the row writer asks several times a second."""
    out: dict[str, set[str]] = {}

    def connections(template: dict[str, Any]) -> list[str]:
        found: list[str] = []
        for vol in template.get("volumes") or []:
            found += (vol.get("cloudSqlInstance") or {}).get("instances") or []
        return found

    with sim.store.lock:
        run = sim.store.section("run")
        for key, svc in run.get("services", {}).items():
            declared = connections(svc["spec"]["template"])
            revs = run.get("revisions", {}).get(key, {})
            used = [c for rev in warm_revisions(svc, revs)
                    for c in connections(revs[rev]["template"])]  # fmt: skip
            for c in declared + used:
                out.setdefault(c.split(":", 1)[0], set())
            for c in used:
                out[c.split(":", 1)[0]].add(c)
    return out


def ingress_of(sim: Sim, project: str, location: str, service: str) -> int | None:
    """The service's ingress setting (IngressTraffic number); None if there is no service."""
    key = service_key(project, location, service)
    with sim.store.lock:
        svc = sim.store.section("run").get("services", {}).get(key)
        return None if svc is None else int(svc["spec"].get("ingress") or 1)


def lookup_tag(
    sim: Sim, project: str, location: str, service: str, tag: str
) -> tuple[str, str] | None:
    """(revision, image) the traffic tag points at now; None if unknown or drained."""
    with settled_read(sim, project, location, service) as (svc, revs):
        if svc is None or svc.get("drained"):
            return None
        for st in svc.get("trafficStatuses") or []:
            rev = st.get("revision", "")
            if st.get("tag") == tag and rev in revs:
                return rev, revs[rev]["image"]
    return None


def seed_service(
    sim: Sim,
    project: str,
    location: str,
    service: str,
    image: str,
    *,
    min_instances: int = 0,
    max_instances: int = 100,
    memory: str = "512Mi",
    cpu: str = "1",
    ingress: str | int = "all",
    env: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
    vpc_connector: str | None = None,
    cloud_sql_instances: list[str] | None = None,
    at: float | None = None,
) -> dict[str, Any]:
    """Create (or replace) a service with one ready revision serving 100%, as if deployed.

    `cloud_sql_instances` (connection names) become the `cloudsql` volume mounted at /cloudsql,
    as Cloud Run's Cloud SQL connection is configured."""
    t = now() if at is None else at
    container: dict[str, Any] = {
        "image": image,
        "resources": {"limits": {"cpu": cpu, "memory": memory}, "cpuIdle": True},
        "ports": [{"name": "http1", "containerPort": 8080}],
    }
    env_list: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in (env or {}).items()]
    env_list += [
        {"name": k, "valueSource": {"secretKeyRef": {"secret": v, "version": "latest"}}}
        for k, v in (secrets or {}).items()
    ]
    if env_list:
        container["env"] = env_list
    template: dict[str, Any] = {
        "scaling": {"minInstanceCount": min_instances, "maxInstanceCount": max_instances},
        "containers": [container],
        "serviceAccount": f"{service}@{project}.iam.gserviceaccount.com",
    }
    if cloud_sql_instances:
        container["volumeMounts"] = [{"name": "cloudsql", "mountPath": "/cloudsql"}]
        template["volumes"] = [
            {"name": "cloudsql", "cloudSqlInstance": {"instances": list(cloud_sql_instances)}}
        ]
    if vpc_connector:
        template["vpcAccess"] = {
            "connector": f"projects/{project}/locations/{location}/connectors/{vpc_connector}",
            "egress": 2,
        }
    ingress_value = INGRESS[ingress] if isinstance(ingress, str) else ingress
    spec, _ = parse_service({"ingress": ingress_value, "template": template}, service)
    key = service_key(project, location, service)
    with sim.store.mutate() as d:
        run = run_section(d)
        svc = new_service_record(sim, project, location, service, spec, t)
        revs: dict[str, Any] = {}
        name = decide_revision(sim, key, service, spec, None, revs)
        assert name is not None
        add_revision(sim, revs, svc, name, spec["template"], t, state="ready")
        svc.update(
            latestReady=name,
            observedGeneration=1,
            servingTraffic=copy.deepcopy(spec["traffic"]),
            trafficStatuses=[{"type": LATEST, "revision": name, "percent": 100}],
            terminal=condition("Ready", SUCCEEDED, t),
            conditions=[
                condition("RoutesReady", SUCCEEDED, t),
                condition("ConfigurationsReady", SUCCEEDED, t),
            ],
        )
        run["services"][key] = svc
        run["revisions"][key] = revs
        record_split(sim, key, [(name, 100, revs[name]["image"])], at=t)
        return service_view(sim, svc)


def summary(sim: Sim) -> list[dict[str, Any]]:
    """Every service with its traffic, serving split and revisions (for /_sim/state)."""
    settle(sim)
    out: list[dict[str, Any]] = []
    with sim.store.lock:
        run = sim.store.section("run")
        for key, svc in sorted(run.get("services", {}).items()):
            revs = run.get("revisions", {}).get(key, {})
            view = service_view(sim, svc)
            out.append(
                {
                    "name": view["name"],
                    "project": svc["project"],
                    "location": svc["location"],
                    "service": svc["service"],
                    "uri": view["uri"],
                    "generation": svc["generation"],
                    "observedGeneration": svc["observedGeneration"],
                    "reconciling": bool(svc["pending"]),
                    "ready": STATE_NAMES[(svc.get("terminal") or {}).get("state", 0)],
                    "message": (svc.get("terminal") or {}).get("message", ""),
                    "latestReadyRevision": svc.get("latestReady"),
                    "latestCreatedRevision": svc.get("latestCreated"),
                    "traffic": copy.deepcopy(svc["spec"]["traffic"]),
                    "trafficStatuses": copy.deepcopy(svc.get("trafficStatuses") or []),
                    "serving": [
                        {"revision": r, "percent": p, "image": i}
                        for r, p, i in split_from_statuses(svc, revs)
                    ],
                    "scaling": copy.deepcopy(svc["spec"].get("scaling") or {}),
                    "drained": bool(svc.get("drained")),
                    "warm": warm_revisions(svc, revs),
                    "revisions": [
                        {
                            "name": n,
                            "image": r["image"],
                            "state": r["state"],
                            "message": r.get("message") or "",
                            "createTime": rfc3339(r["createTime"]),
                            "behavior": behavior_for(sim, svc["service"], r["image"]),
                        }
                        for n, r in sorted(revs.items(), key=lambda kv: -kv[1]["seq"])
                    ],
                }
            )
    return out
