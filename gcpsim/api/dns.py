"""Cloud DNS v1 routes (managed zones, resource record sets, changes) and the `/_dns/resolve`
resolver, with the JSON views of zones and changes. State: gcpsim.model.dns."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from gcpsim.api.deps import SimDep
from gcpsim.model.dns import (
    apply_change,
    create_zone,
    dns_error,
    dns_section,
    fqdn,
    record_key,
    refresh,
    resolve,
    zone_missing,
)
from gcpsim.sim import Sim


def change_view(ch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ch.items() if not k.startswith("_")}


def zone_view(z: dict[str, Any]) -> dict[str, Any]:
    return dict(z)


router = APIRouter(include_in_schema=False)
BASE = "/dns/v1/projects/{project}/managedZones"


def _fault(sim: Sim, method: str) -> None:
    sim.faults.apply(f"dns.{method}", style="sql")


def _zone_of(d: dict[str, Any], project: str, zone: str) -> dict[str, Any]:
    z = dns_section(d)["zones"].get(f"{project}/{zone}")
    if z is None:
        raise zone_missing(zone)
    return z


def _records_of(d: dict[str, Any], project: str, zone: str) -> dict[str, Any]:
    """The zone's record sets by record key; 404 if the zone does not exist."""
    _zone_of(d, project, zone)
    records: dict[str, Any] = dns_section(d)["rrsets"][f"{project}/{zone}"]
    return records


def _record_of(d: dict[str, Any], project: str, zone: str, name: str, type: str) -> dict[str, Any]:
    rec: dict[str, Any] | None = _records_of(d, project, zone).get(record_key(name, type))
    if rec is None:
        raise dns_error(
            404, f"The 'parameters.name' resource named '{name}' does not exist.", "notFound"
        )
    return rec


def _changes_of(d: dict[str, Any], project: str, zone: str) -> list[dict[str, Any]]:
    """The zone's changes, oldest first, after advancing pending ones; 404 if no zone."""
    refresh(d)
    _zone_of(d, project, zone)
    return list(dns_section(d)["changes"].get(f"{project}/{zone}", []))


def _list_response(kind: str, field: str, items: list[Any]) -> JSONResponse:
    return JSONResponse({"kind": kind, **({field: items} if items else {})})


@router.post(BASE)
def zones_create(sim: SimDep, project: str, body: dict[str, Any] = Body(...)) -> JSONResponse:
    _fault(sim, "managedZones.create")
    if not body.get("name") or not body.get("dnsName"):
        raise dns_error(400, "Invalid value: name and dnsName are required.", "invalid")
    with sim.store.mutate() as d:
        z = create_zone(
            d,
            project,
            str(body["name"]),
            str(body["dnsName"]),
            str(body.get("description") or ""),
        )
    return JSONResponse(zone_view(z))


@router.get(BASE)
def zones_list(sim: SimDep, project: str) -> JSONResponse:
    _fault(sim, "managedZones.list")
    with sim.store.lock:
        zones = [
            zone_view(z)
            for k, z in dns_section(sim.store.data)["zones"].items()
            if k.startswith(project + "/")
        ]
    return _list_response("dns#managedZonesListResponse", "managedZones", zones)


@router.get(BASE + "/{zone}")
def zones_get(sim: SimDep, project: str, zone: str) -> JSONResponse:
    _fault(sim, "managedZones.get")
    with sim.store.lock:
        return JSONResponse(zone_view(_zone_of(sim.store.data, project, zone)))


@router.delete(BASE + "/{zone}")
def zones_delete(sim: SimDep, project: str, zone: str) -> JSONResponse:
    _fault(sim, "managedZones.delete")
    with sim.store.mutate() as d:
        _zone_of(d, project, zone)
        sec = dns_section(d)
        zkey = f"{project}/{zone}"
        if any(rr["type"] not in ("SOA", "NS") for rr in sec["rrsets"][zkey].values()):
            raise dns_error(
                400,
                f"The resource named '{zone}' cannot be deleted because it is not empty",
                "containerNotEmpty",
            )
        for k in ("zones", "rrsets", "served", "changes"):
            sec[k].pop(zkey, None)
    return JSONResponse({})


@router.get(BASE + "/{zone}/rrsets")
def rrsets_list(
    sim: SimDep,
    project: str,
    zone: str,
    name: str | None = Query(None),
    type: str | None = Query(None),
) -> JSONResponse:
    _fault(sim, "resourceRecordSets.list")
    with sim.store.mutate() as d:
        refresh(d)
        items = list(_records_of(d, project, zone).values())
    if name:
        items = [x for x in items if x["name"] == fqdn(name)]
    if type:
        items = [x for x in items if x["type"] == type.upper()]
    items.sort(key=lambda x: (x["name"], x["type"]))
    return _list_response("dns#resourceRecordSetsListResponse", "rrsets", items)


@router.get(BASE + "/{zone}/rrsets/{name}/{type}")
def rrsets_get(sim: SimDep, project: str, zone: str, name: str, type: str) -> JSONResponse:
    _fault(sim, "resourceRecordSets.get")
    with sim.store.lock:
        return JSONResponse(_record_of(sim.store.data, project, zone, name, type))


@router.post(BASE + "/{zone}/rrsets")
def rrsets_create(
    sim: SimDep, project: str, zone: str, body: dict[str, Any] = Body(...)
) -> JSONResponse:
    _fault(sim, "resourceRecordSets.create")
    with sim.store.mutate() as d:
        ch = apply_change(d, project, zone, {"additions": [body]})
    return JSONResponse(ch["additions"][0])


@router.patch(BASE + "/{zone}/rrsets/{name}/{type}")
def rrsets_patch(
    sim: SimDep, project: str, zone: str, name: str, type: str, body: dict[str, Any] = Body(...)
) -> JSONResponse:
    _fault(sim, "resourceRecordSets.patch")
    with sim.store.mutate() as d:
        cur = _record_of(d, project, zone, name, type)
        new = {**cur, **{k: v for k, v in body.items() if k in ("ttl", "rrdatas")}}
        ch = apply_change(d, project, zone, {"deletions": [cur], "additions": [new]})
    return JSONResponse(ch["additions"][0])


@router.delete(BASE + "/{zone}/rrsets/{name}/{type}")
def rrsets_delete(sim: SimDep, project: str, zone: str, name: str, type: str) -> JSONResponse:
    _fault(sim, "resourceRecordSets.delete")
    with sim.store.mutate() as d:
        cur = _record_of(d, project, zone, name, type)
        apply_change(d, project, zone, {"deletions": [cur]})
    return JSONResponse({})


@router.post(BASE + "/{zone}/changes")
def changes_create(
    sim: SimDep, project: str, zone: str, body: dict[str, Any] = Body(...)
) -> JSONResponse:
    _fault(sim, "changes.create")
    with sim.store.mutate() as d:
        refresh(d)
        ch = apply_change(d, project, zone, body)
    return JSONResponse(change_view(ch))


@router.get(BASE + "/{zone}/changes/{change_id}")
def changes_get(sim: SimDep, project: str, zone: str, change_id: str) -> JSONResponse:
    _fault(sim, "changes.get")
    with sim.store.mutate() as d:
        for ch in _changes_of(d, project, zone):
            if ch["id"] == change_id:
                return JSONResponse(change_view(ch))
    raise dns_error(
        404,
        f"The 'parameters.changeId' resource named '{change_id}' does not exist.",
        "notFound",
    )


@router.get(BASE + "/{zone}/changes")
def changes_list(sim: SimDep, project: str, zone: str) -> JSONResponse:
    _fault(sim, "changes.list")
    with sim.store.mutate() as d:
        items = [change_view(c) for c in _changes_of(d, project, zone)]
    items.reverse()  # newest first, as Cloud DNS lists them by default (sortOrder descending)
    return _list_response("dns#changesListResponse", "changes", items)


@router.get("/_dns/resolve")
def resolve_route(sim: SimDep, name: str = Query(...), type: str = Query("")) -> JSONResponse:
    ans = resolve(sim, name, type)
    if ans is None:
        return JSONResponse({"status": "NXDOMAIN", "name": fqdn(name)}, status_code=404)
    return JSONResponse(ans)
