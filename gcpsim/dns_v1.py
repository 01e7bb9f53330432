"""Cloud DNS API v1 (the google-api-python-client `dns` v1 discovery client) and a resolver.

REST, under `/dns/v1/projects/{project}` (the discovery document's paths; the client joins them
to `api_endpoint`):
- `managedZones`: create, get, list, delete;
- `managedZones/{zone}/rrsets`: list (`name`, `type` filters), get, create, patch, delete;
- `managedZones/{zone}/changes`: create, get, list. A change is validated and applied to the
  zone's record sets at once (what `rrsets.list` shows), answers `status: pending`, and turns
  `done` after `GCPSIM_DNS_CHANGE_SECONDS` (default 1 s): only then do the zone's name servers
  (the resolver below) answer with it. Deletions must match the existing record set exactly
  (else 404 notFound, as Cloud DNS answers); an addition of an existing name/type is a 409
  alreadyExists. Errors in the googleapis JSON format (`sql` style: domain/reason/message).

Resolver (not a Google API: what a smoke check uses instead of the internet's DNS):
`GET /_dns/resolve?name=NAME[&type=TYPE]` answers from the served record sets of every zone
(longest matching `dnsName`), following CNAMEs through gcpsim's zones. When the final name is a
Cloud Run URL host `<service>-<project>.<region>.run.app` of a service gcpsim has, the answer
names that service, its region and its loopback URL, so "the name answers from REGION" is a
plain HTTP check. 404 `NXDOMAIN` for an unknown name.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from gcpsim import urls
from gcpsim.errors import ApiError
from gcpsim.sim import Sim
from gcpsim.store import now, rfc3339

RUN_APP = re.compile(r"^(?P<host>[a-z0-9-]+)\.(?P<region>[a-z]+-[a-z]+\d+)\.run\.app\.?$")
MAX_CNAME_HOPS = 8


def change_seconds() -> float:
    try:
        return float(os.environ.get("GCPSIM_DNS_CHANGE_SECONDS", "1.0"))
    except ValueError:
        return 1.0


def fqdn(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def _dns(d: dict[str, Any]) -> dict[str, Any]:
    sec: dict[str, Any] = d.setdefault("dns", {})
    for k in ("zones", "rrsets", "served", "changes"):
        sec.setdefault(k, {})
    return sec


def _err(status: int, message: str, reason: str) -> ApiError:
    return ApiError(status, message, reason=reason, style="sql")


def _zone_missing(zone: str) -> ApiError:
    return _err(
        404, f"The 'parameters.managedZone' resource named '{zone}' does not exist.", "notFound"
    )


def _rkey(name: str, rtype: str) -> str:
    return f"{fqdn(name)}|{rtype.upper()}"


def _rrset(raw: dict[str, Any], where: str) -> dict[str, Any]:
    name, rtype = raw.get("name"), raw.get("type")
    if not name or not rtype:
        raise _err(400, f"Invalid value for '{where}': name and type are required.", "invalid")
    rrdatas = raw.get("rrdatas") or []
    if not isinstance(rrdatas, list) or not rrdatas:
        raise _err(400, f"The resource record set '{where}' has no rrdatas.", "invalid")
    ttl = int(raw.get("ttl") or 300)
    return {
        "kind": "dns#resourceRecordSet",
        "name": fqdn(str(name)),
        "type": str(rtype).upper(),
        "ttl": ttl,
        "rrdatas": [str(x) for x in rrdatas],
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["name"], a["type"], int(a["ttl"]), sorted(a["rrdatas"])) == (
        b["name"], b["type"], int(b["ttl"]), sorted(b["rrdatas"]),
    )  # fmt: skip


def refresh(d: dict[str, Any], t: float | None = None) -> None:
    """Pending changes whose time has come become `done` and are served."""
    t = now() if t is None else t
    sec = _dns(d)
    for zkey, changes in sec["changes"].items():
        served = sec["served"].setdefault(zkey, {})
        for ch in changes:
            if ch["status"] == "pending" and t >= ch["_due"]:
                for r in ch.get("deletions", []):
                    served.pop(_rkey(r["name"], r["type"]), None)
                for r in ch.get("additions", []):
                    served[_rkey(r["name"], r["type"])] = copy.deepcopy(r)
                ch["status"] = "done"


def _change_view(ch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ch.items() if not k.startswith("_")}


def _zone_view(z: dict[str, Any]) -> dict[str, Any]:
    return dict(z)


def _in_zone(name: str, dns_name: str) -> bool:
    return name == dns_name or name.endswith("." + dns_name)


def create_zone(
    d: dict[str, Any], project: str, name: str, dns_name: str, description: str = ""
) -> dict[str, Any]:
    sec = _dns(d)
    zkey = f"{project}/{name}"
    if zkey in sec["zones"]:
        raise _err(
            409, f"The resource 'entity.managedZone' named '{name}' already exists", "alreadyExists"
        )
    zone = {
        "kind": "dns#managedZone",
        "name": name,
        "dnsName": fqdn(dns_name),
        "description": description,
        "id": str(abs(hash((project, name, now()))) % 10**18),
        "creationTime": rfc3339(now()),
        "visibility": "public",
        "nameServers": [f"ns-cloud-a{i}.googledomains.com." for i in range(1, 5)],
    }
    sec["zones"][zkey] = zone
    soa_data = (
        "ns-cloud-a1.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"
    )
    soa: dict[str, Any] = {"kind": "dns#resourceRecordSet", "name": zone["dnsName"], "type": "SOA",
                           "ttl": 21600, "rrdatas": [soa_data]}  # fmt: skip
    ns: dict[str, Any] = {"kind": "dns#resourceRecordSet", "name": zone["dnsName"], "type": "NS",
                          "ttl": 21600, "rrdatas": list(zone["nameServers"])}  # fmt: skip
    sec["rrsets"][zkey] = {_rkey(r["name"], r["type"]): r for r in (soa, ns)}
    sec["served"][zkey] = copy.deepcopy(sec["rrsets"][zkey])
    sec["changes"][zkey] = []
    return zone


def apply_change(
    d: dict[str, Any], project: str, zone: str, body: dict[str, Any], delay: float | None = None
) -> dict[str, Any]:
    sec = _dns(d)
    zkey = f"{project}/{zone}"
    z = sec["zones"].get(zkey)
    if z is None:
        raise _zone_missing(zone)
    additions = [
        _rrset(r, f"entity.change.additions[{i}]")
        for i, r in enumerate(body.get("additions") or [])
    ]
    deletions = [
        _rrset(r, f"entity.change.deletions[{i}]")
        for i, r in enumerate(body.get("deletions") or [])
    ]
    if not additions and not deletions:
        raise _err(400, "The 'entity.change' resource has no additions or deletions.", "required")
    rrsets = sec["rrsets"][zkey]
    work = copy.deepcopy(rrsets)
    for i, r in enumerate(deletions):
        cur = work.get(_rkey(r["name"], r["type"]))
        if cur is None or not _same(cur, r):
            raise _err(
                404 if cur is None else 412,
                f"The resource 'entity.change.deletions[{i}]' named '{r['name']} ({r['type']})' "
                + ("does not exist." if cur is None else "does not match the existing record set."),
                "notFound" if cur is None else "conditionNotMet",
            )
        del work[_rkey(r["name"], r["type"])]
    for i, r in enumerate(additions):
        if not _in_zone(r["name"], z["dnsName"]):
            raise _err(
                400,
                f"The resource 'entity.change.additions[{i}]' named '{r['name']}' is not in "
                f"the zone's DNS name {z['dnsName']}.",
                "invalid",
            )
        if _rkey(r["name"], r["type"]) in work:
            raise _err(
                409,
                f"The resource 'entity.change.additions[{i}]' named '{r['name']} ({r['type']})' "
                "already exists",
                "alreadyExists",
            )
        work[_rkey(r["name"], r["type"])] = r
    sec["rrsets"][zkey] = work
    t = now()
    changes = sec["changes"].setdefault(zkey, [])
    ch = {
        "kind": "dns#change",
        "id": str(len(changes) + 1),
        "startTime": rfc3339(t),
        "status": "pending",
        "additions": additions,
        "deletions": deletions,
        "isServing": True,
        "_due": t + (change_seconds() if delay is None else delay),
    }
    changes.append(ch)
    return ch


def resolve(sim: Sim, name: str, rtype: str = "") -> dict[str, Any] | None:
    """The served answer for `name` (following CNAMEs), or None (NXDOMAIN)."""
    with sim.store.mutate() as d:
        refresh(d)
        sec = _dns(d)
        answers: list[dict[str, Any]] = []
        current = fqdn(name)
        for _ in range(MAX_CNAME_HOPS):
            zkeys = [k for k, z in sec["zones"].items() if _in_zone(current, z["dnsName"])]
            if not zkeys:
                break
            zkey = max(zkeys, key=lambda k: len(sec["zones"][k]["dnsName"]))
            served = sec["served"].get(zkey, {})
            want = rtype.upper() or None
            hit = served.get(_rkey(current, want)) if want else None
            if hit is None:
                hit = served.get(_rkey(current, "CNAME"))
            if hit is None and not want:
                hit = next((r for k, r in served.items() if k.startswith(current + "|")), None)
            if hit is None:
                break
            answers.append(copy.deepcopy(hit))
            if hit["type"] != "CNAME" or want == "CNAME":
                break
            current = fqdn(hit["rrdatas"][0])
        if not answers:
            return None
        final = answers[-1]
        out: dict[str, Any] = {"name": fqdn(name), "answers": answers, "rrdatas": final["rrdatas"]}
        target = final["rrdatas"][0] if final["type"] == "CNAME" else ""
        m = RUN_APP.match(target) if target else None
        if m:
            for svc in d.get("run", {}).get("services", {}).values():
                if svc["location"] == m.group("region") and (
                    f"{svc['service']}-{svc['project']}" == m.group("host")
                ):
                    out["cloudRun"] = {
                        "project": svc["project"],
                        "location": svc["location"],
                        "service": svc["service"],
                        "uri": urls.service_uri(
                            sim.settings, svc["project"], svc["location"], svc["service"]
                        ),
                    }
                    break
        return out


def seed_record(
    sim: Sim, project: str, zone: str, dns_name: str, name: str, rtype: str, ttl: int,
    rrdatas: list[str],
) -> None:  # fmt: skip
    """Create the zone if missing and set the record (served at once): `--seed`."""
    with sim.store.mutate() as d:
        sec = _dns(d)
        zkey = f"{project}/{zone}"
        if zkey not in sec["zones"]:
            create_zone(d, project, zone, dns_name, "seeded by gcpsim")
        rec = _rrset({"name": name, "type": rtype, "ttl": ttl, "rrdatas": rrdatas}, "seed")
        sec["rrsets"][zkey][_rkey(name, rtype)] = rec
        sec["served"][zkey][_rkey(name, rtype)] = copy.deepcopy(rec)


def router(sim: Sim) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    store = sim.store
    base = "/dns/v1/projects/{project}/managedZones"

    def fault(method: str) -> None:
        sim.faults.apply(f"dns.{method}", style="sql")

    def zone_of(d: dict[str, Any], project: str, zone: str) -> dict[str, Any]:
        z = _dns(d)["zones"].get(f"{project}/{zone}")
        if z is None:
            raise _zone_missing(zone)
        return z

    @r.post(base)
    def zones_create(project: str, body: dict[str, Any] = Body(...)) -> JSONResponse:
        fault("managedZones.create")
        if not body.get("name") or not body.get("dnsName"):
            raise _err(400, "Invalid value: name and dnsName are required.", "invalid")
        with store.mutate() as d:
            z = create_zone(
                d,
                project,
                str(body["name"]),
                str(body["dnsName"]),
                str(body.get("description") or ""),
            )
        return JSONResponse(_zone_view(z))

    @r.get(base)
    def zones_list(project: str) -> JSONResponse:
        fault("managedZones.list")
        with store.lock:
            zones = [
                _zone_view(z)
                for k, z in _dns(store.data)["zones"].items()
                if k.startswith(project + "/")
            ]
        return JSONResponse(
            {"kind": "dns#managedZonesListResponse", **({"managedZones": zones} if zones else {})}
        )

    @r.get(base + "/{zone}")
    def zones_get(project: str, zone: str) -> JSONResponse:
        fault("managedZones.get")
        with store.lock:
            return JSONResponse(_zone_view(zone_of(store.data, project, zone)))

    @r.delete(base + "/{zone}")
    def zones_delete(project: str, zone: str) -> JSONResponse:
        fault("managedZones.delete")
        with store.mutate() as d:
            zone_of(d, project, zone)
            sec = _dns(d)
            zkey = f"{project}/{zone}"
            if any(rr["type"] not in ("SOA", "NS") for rr in sec["rrsets"][zkey].values()):
                raise _err(
                    400,
                    f"The resource named '{zone}' cannot be deleted because it is not empty",
                    "containerNotEmpty",
                )
            for k in ("zones", "rrsets", "served", "changes"):
                sec[k].pop(zkey, None)
        return JSONResponse({})

    @r.get(base + "/{zone}/rrsets")
    def rrsets_list(
        project: str, zone: str, name: str | None = Query(None), type: str | None = Query(None)
    ) -> JSONResponse:
        fault("resourceRecordSets.list")
        with store.mutate() as d:
            refresh(d)
            zone_of(d, project, zone)
            items = list(_dns(d)["rrsets"][f"{project}/{zone}"].values())
        if name:
            items = [x for x in items if x["name"] == fqdn(name)]
        if type:
            items = [x for x in items if x["type"] == type.upper()]
        items.sort(key=lambda x: (x["name"], x["type"]))
        return JSONResponse(
            {"kind": "dns#resourceRecordSetsListResponse", **({"rrsets": items} if items else {})}
        )

    @r.get(base + "/{zone}/rrsets/{name}/{type}")
    def rrsets_get(project: str, zone: str, name: str, type: str) -> JSONResponse:
        fault("resourceRecordSets.get")
        with store.lock:
            zone_of(store.data, project, zone)
            rec = _dns(store.data)["rrsets"][f"{project}/{zone}"].get(_rkey(name, type))
        if rec is None:
            raise _err(
                404, f"The 'parameters.name' resource named '{name}' does not exist.", "notFound"
            )
        return JSONResponse(rec)

    @r.post(base + "/{zone}/rrsets")
    def rrsets_create(project: str, zone: str, body: dict[str, Any] = Body(...)) -> JSONResponse:
        fault("resourceRecordSets.create")
        with store.mutate() as d:
            ch = apply_change(d, project, zone, {"additions": [body]})
        return JSONResponse(ch["additions"][0])

    @r.patch(base + "/{zone}/rrsets/{name}/{type}")
    def rrsets_patch(
        project: str, zone: str, name: str, type: str, body: dict[str, Any] = Body(...)
    ) -> JSONResponse:
        fault("resourceRecordSets.patch")
        with store.mutate() as d:
            zone_of(d, project, zone)
            cur = _dns(d)["rrsets"][f"{project}/{zone}"].get(_rkey(name, type))
            if cur is None:
                raise _err(
                    404,
                    f"The 'parameters.name' resource named '{name}' does not exist.",
                    "notFound",
                )
            new = {**cur, **{k: v for k, v in body.items() if k in ("ttl", "rrdatas")}}
            ch = apply_change(d, project, zone, {"deletions": [cur], "additions": [new]})
        return JSONResponse(ch["additions"][0])

    @r.delete(base + "/{zone}/rrsets/{name}/{type}")
    def rrsets_delete(project: str, zone: str, name: str, type: str) -> JSONResponse:
        fault("resourceRecordSets.delete")
        with store.mutate() as d:
            zone_of(d, project, zone)
            cur = _dns(d)["rrsets"][f"{project}/{zone}"].get(_rkey(name, type))
            if cur is None:
                raise _err(
                    404,
                    f"The 'parameters.name' resource named '{name}' does not exist.",
                    "notFound",
                )
            apply_change(d, project, zone, {"deletions": [cur]})
        return JSONResponse({})

    @r.post(base + "/{zone}/changes")
    def changes_create(project: str, zone: str, body: dict[str, Any] = Body(...)) -> JSONResponse:
        fault("changes.create")
        with store.mutate() as d:
            refresh(d)
            ch = apply_change(d, project, zone, body)
        return JSONResponse(_change_view(ch))

    @r.get(base + "/{zone}/changes/{change_id}")
    def changes_get(project: str, zone: str, change_id: str) -> JSONResponse:
        fault("changes.get")
        with store.mutate() as d:
            refresh(d)
            zone_of(d, project, zone)
            for ch in _dns(d)["changes"].get(f"{project}/{zone}", []):
                if ch["id"] == change_id:
                    return JSONResponse(_change_view(ch))
        raise _err(
            404,
            f"The 'parameters.changeId' resource named '{change_id}' does not exist.",
            "notFound",
        )

    @r.get(base + "/{zone}/changes")
    def changes_list(project: str, zone: str) -> JSONResponse:
        fault("changes.list")
        with store.mutate() as d:
            refresh(d)
            zone_of(d, project, zone)
            items = [_change_view(c) for c in _dns(d)["changes"].get(f"{project}/{zone}", [])]
        items.reverse()  # newest first, as Cloud DNS lists them by default (sortOrder descending)
        return JSONResponse(
            {"kind": "dns#changesListResponse", **({"changes": items} if items else {})}
        )

    @r.get("/_dns/resolve")
    def resolve_route(name: str = Query(...), type: str = Query("")) -> JSONResponse:
        ans = resolve(sim, name, type)
        if ans is None:
            return JSONResponse({"status": "NXDOMAIN", "name": fqdn(name)}, status_code=404)
        return JSONResponse(ans)

    return r
