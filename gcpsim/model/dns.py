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

Routes and views: gcpsim.api.dns.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

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


def dns_section(d: dict[str, Any]) -> dict[str, Any]:
    sec: dict[str, Any] = d.setdefault("dns", {})
    for k in ("zones", "rrsets", "served", "changes"):
        sec.setdefault(k, {})
    return sec


def dns_error(status: int, message: str, reason: str) -> ApiError:
    return ApiError(status, message, reason=reason, style="sql")


def zone_missing(zone: str) -> ApiError:
    return dns_error(
        404, f"The 'parameters.managedZone' resource named '{zone}' does not exist.", "notFound"
    )


def record_key(name: str, rtype: str) -> str:
    return f"{fqdn(name)}|{rtype.upper()}"


def parse_rrset(raw: dict[str, Any], where: str) -> dict[str, Any]:
    name, rtype = raw.get("name"), raw.get("type")
    if not name or not rtype:
        raise dns_error(400, f"Invalid value for '{where}': name and type are required.", "invalid")
    rrdatas = raw.get("rrdatas") or []
    if not isinstance(rrdatas, list) or not rrdatas:
        raise dns_error(400, f"The resource record set '{where}' has no rrdatas.", "invalid")
    ttl = int(raw.get("ttl") or 300)
    return {
        "kind": "dns#resourceRecordSet",
        "name": fqdn(str(name)),
        "type": str(rtype).upper(),
        "ttl": ttl,
        "rrdatas": [str(x) for x in rrdatas],
    }


def same_rrset(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["name"], a["type"], int(a["ttl"]), sorted(a["rrdatas"])) == (
        b["name"], b["type"], int(b["ttl"]), sorted(b["rrdatas"]),
    )  # fmt: skip


def refresh(d: dict[str, Any], t: float | None = None) -> None:
    """Pending changes whose time has come become `done` and are served."""
    t = now() if t is None else t
    sec = dns_section(d)
    for zkey, changes in sec["changes"].items():
        served = sec["served"].setdefault(zkey, {})
        for ch in changes:
            if ch["status"] == "pending" and t >= ch["_due"]:
                for r in ch.get("deletions", []):
                    served.pop(record_key(r["name"], r["type"]), None)
                for r in ch.get("additions", []):
                    served[record_key(r["name"], r["type"])] = copy.deepcopy(r)
                ch["status"] = "done"


def in_zone(name: str, dns_name: str) -> bool:
    return name == dns_name or name.endswith("." + dns_name)


def create_zone(
    d: dict[str, Any], project: str, name: str, dns_name: str, description: str = ""
) -> dict[str, Any]:
    sec = dns_section(d)
    zkey = f"{project}/{name}"
    if zkey in sec["zones"]:
        raise dns_error(
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
    sec["rrsets"][zkey] = {record_key(r["name"], r["type"]): r for r in (soa, ns)}
    sec["served"][zkey] = copy.deepcopy(sec["rrsets"][zkey])
    sec["changes"][zkey] = []
    return zone


def apply_change(
    d: dict[str, Any], project: str, zone: str, body: dict[str, Any], delay: float | None = None
) -> dict[str, Any]:
    sec = dns_section(d)
    zkey = f"{project}/{zone}"
    z = sec["zones"].get(zkey)
    if z is None:
        raise zone_missing(zone)
    additions = [
        parse_rrset(r, f"entity.change.additions[{i}]")
        for i, r in enumerate(body.get("additions") or [])
    ]
    deletions = [
        parse_rrset(r, f"entity.change.deletions[{i}]")
        for i, r in enumerate(body.get("deletions") or [])
    ]
    if not additions and not deletions:
        raise dns_error(
            400, "The 'entity.change' resource has no additions or deletions.", "required"
        )
    rrsets = sec["rrsets"][zkey]
    work = copy.deepcopy(rrsets)
    for i, r in enumerate(deletions):
        cur = work.get(record_key(r["name"], r["type"]))
        if cur is None or not same_rrset(cur, r):
            raise dns_error(
                404 if cur is None else 412,
                f"The resource 'entity.change.deletions[{i}]' named '{r['name']} ({r['type']})' "
                + ("does not exist." if cur is None else "does not match the existing record set."),
                "notFound" if cur is None else "conditionNotMet",
            )
        del work[record_key(r["name"], r["type"])]
    for i, r in enumerate(additions):
        if not in_zone(r["name"], z["dnsName"]):
            raise dns_error(
                400,
                f"The resource 'entity.change.additions[{i}]' named '{r['name']}' is not in "
                f"the zone's DNS name {z['dnsName']}.",
                "invalid",
            )
        if record_key(r["name"], r["type"]) in work:
            raise dns_error(
                409,
                f"The resource 'entity.change.additions[{i}]' named '{r['name']} ({r['type']})' "
                "already exists",
                "alreadyExists",
            )
        work[record_key(r["name"], r["type"])] = r
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
        sec = dns_section(d)
        answers: list[dict[str, Any]] = []
        current = fqdn(name)
        for _ in range(MAX_CNAME_HOPS):
            zkeys = [k for k, z in sec["zones"].items() if in_zone(current, z["dnsName"])]
            if not zkeys:
                break
            zkey = max(zkeys, key=lambda k: len(sec["zones"][k]["dnsName"]))
            served = sec["served"].get(zkey, {})
            want = rtype.upper() or None
            hit = served.get(record_key(current, want)) if want else None
            if hit is None:
                hit = served.get(record_key(current, "CNAME"))
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
        sec = dns_section(d)
        zkey = f"{project}/{zone}"
        if zkey not in sec["zones"]:
            create_zone(d, project, zone, dns_name, "seeded by gcpsim")
        rec = parse_rrset({"name": name, "type": rtype, "ttl": ttl, "rrdatas": rrdatas}, "seed")
        sec["rrsets"][zkey][record_key(name, rtype)] = rec
        sec["served"][zkey][record_key(name, rtype)] = copy.deepcopy(rec)
