"""Cloud DNS v1 activities (google-api-python-client `dns` v1): read a record, move it, and
check that the name answers from the region it now points at.

`MoveDns` is idempotent: a record that already holds the wanted data is left alone (a retry
after the change was made, or a failover retried after its DNS move), and the id of a change it
made is kept in the heartbeat details, so a retried attempt waits for that change instead of
making another. A concurrent edit of the record (the change's deletion no longer matches: 412,
or an addition that now exists: 409) is retried from a fresh read.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import requests
from googleapiclient.errors import HttpError
from temporalio import activity

from activities.errors import api_errors, transient
from stagecoach.clients import Clients, clients_for
from stagecoach.contract import Activity
from stagecoach.payloads.common import Target
from stagecoach.payloads.failover import (
    DnsRecordRef,
    MoveDnsInput,
    MoveDnsResult,
    ReadDnsInput,
    VerifyDnsInput,
    VerifyDnsResult,
)

READ_RETRIES = 3
CHANGE_DEADLINE_SECONDS = 30 * 60
VERIFY_INTERVAL_SECONDS = 0.5


def _norm(values: list[str]) -> list[str]:
    return sorted(v.strip().lower() for v in values)


class DnsActivities:
    def __init__(self, clients: Callable[[Target], Clients] = clients_for) -> None:
        self._clients = clients

    def _dns(self, rec: DnsRecordRef) -> Any:
        return self._clients(rec.target).dns()

    def _get(self, rec: DnsRecordRef) -> dict[str, Any] | None:
        try:
            rrset: dict[str, Any] = (
                self._dns(rec)
                .resourceRecordSets()
                .get(project=rec.project, managedZone=rec.zone, name=rec.name, type=rec.type)
                .execute(num_retries=READ_RETRIES)
            )
            return rrset
        except HttpError as e:
            if e.status_code == 404:
                # Either the record or the zone is missing: a missing zone is the user's to fix.
                self._dns(rec).managedZones().get(
                    project=rec.project, managedZone=rec.zone
                ).execute(num_retries=READ_RETRIES)
                return None
            raise

    def _wait_change(self, rec: DnsRecordRef, change_id: str) -> None:
        start = time.monotonic()
        delay = 0.2
        while True:
            activity.heartbeat({"change": change_id})
            ch = (
                self._dns(rec)
                .changes()
                .get(project=rec.project, managedZone=rec.zone, changeId=change_id)
                .execute(num_retries=READ_RETRIES)
            )
            if ch.get("status") == "done":
                return
            if time.monotonic() - start > CHANGE_DEADLINE_SECONDS:
                raise transient(f"DNS change {change_id} still {ch.get('status')}", "Timeout")
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    @activity.defn(name=Activity.READ_DNS)
    @api_errors
    def read_dns(self, input: ReadDnsInput) -> list[str]:
        """The record's data now ([] when the record does not exist)."""
        rrset = self._get(input.record)
        return list(rrset.get("rrdatas", [])) if rrset else []

    @activity.defn(name=Activity.MOVE_DNS)
    @api_errors
    def move_dns(self, input: MoveDnsInput) -> MoveDnsResult:
        """Point the record at `input.rrdatas` (one change: delete the old set, add the new one)
        and wait until Cloud DNS reports the change `done`."""
        rec = input.record
        started = time.time()
        details = activity.info().heartbeat_details
        prior = details[0] if details and isinstance(details[0], dict) else {}
        current = self._get(rec)
        before = list(current.get("rrdatas", [])) if current else []
        if prior.get("change"):  # an earlier attempt made the change: wait for it
            self._wait_change(rec, str(prior["change"]))
            before = list(prior.get("before", before))
        if (
            current is not None
            and _norm(current.get("rrdatas", [])) == _norm(input.rrdatas)
            and int(current.get("ttl", rec.ttl)) == rec.ttl
        ):
            return MoveDnsResult(
                before=before, after=list(current["rrdatas"]),
                change_id=str(prior.get("change", "")),
                seconds=round(time.time() - started, 3),
            )  # fmt: skip
        new = {"name": rec.name, "type": rec.type, "ttl": rec.ttl, "rrdatas": input.rrdatas}
        body: dict[str, Any] = {"kind": "dns#change", "additions": [new]}
        if current is not None:
            body["deletions"] = [current]
        try:
            ch = (
                self._dns(rec)
                .changes()
                .create(project=rec.project, managedZone=rec.zone, body=body)
                .execute()
            )
        except HttpError as e:
            if e.status_code in (409, 412):
                raise transient(
                    f"record {rec.name} {rec.type} changed meanwhile; reading it again",
                    "Conflict",
                ) from e
            raise
        change_id = str(ch["id"])
        activity.heartbeat({"change": change_id, "before": before})
        self._wait_change(rec, change_id)
        return MoveDnsResult(
            before=before, after=list(input.rrdatas), change_id=change_id,
            seconds=round(time.time() - started, 3),
        )  # fmt: skip

    @activity.defn(name=Activity.VERIFY_DNS)
    def verify_dns(self, input: VerifyDnsInput) -> VerifyDnsResult:
        """The name answers with the record's new data and from `input.region`: on gcpsim its
        resolver follows the record to the Cloud Run service it names, whose URL must answer
        the health path; on GCP the zone's record is read back through the API and the name is
        resolved and fetched over HTTPS (the region behind it is the record's target)."""
        rec = input.record
        attempts = max(1, input.attempts)
        detail = ""
        for attempt in range(1, attempts + 1):
            activity.heartbeat(attempt)
            try:
                if rec.target.kind == "gcpsim":
                    ok, detail, region = self._verify_sim(input)
                else:
                    ok, detail, region = self._verify_gcp(input)
            except (requests.RequestException, OSError, HttpError) as exc:
                ok, detail, region = False, f"{type(exc).__name__}: {exc}"[:300], ""
            if ok:
                return VerifyDnsResult(ok=True, detail=detail, answered_region=region)
            if attempt < attempts:
                time.sleep(VERIFY_INTERVAL_SECONDS)
        return VerifyDnsResult(ok=False, detail=detail)

    def _verify_sim(self, input: VerifyDnsInput) -> tuple[bool, str, str]:
        t = input.record.target
        resp = requests.get(
            f"http://{t.host}:{t.port}/_dns/resolve",
            params={"name": input.record.name},
            timeout=10,
        )
        if resp.status_code != 200:
            return False, f"{input.record.name} does not resolve ({resp.status_code})", ""
        ans = resp.json()
        if _norm(ans.get("rrdatas", [])) != _norm(input.rrdatas):
            return False, f"{input.record.name} still answers {ans.get('rrdatas')}", ""
        run = ans.get("cloudRun") or {}
        if run.get("location") != input.region or run.get("service") != input.service:
            return False, f"{input.record.name} leads to {run or 'no Cloud Run service'}", ""
        url = str(run["uri"]).rstrip("/") + "/" + input.health_path.lstrip("/")
        health = requests.get(url, timeout=10)
        if health.status_code >= 400:
            return False, f"GET {url} -> {health.status_code}", ""
        return (
            True,
            f"{input.record.name} -> {ans['rrdatas'][0]} -> {input.service} in "
            f"{input.region}: GET {input.health_path} {health.status_code}",
            input.region,
        )

    def _verify_gcp(self, input: VerifyDnsInput) -> tuple[bool, str, str]:
        rrset = self._get(input.record)
        if rrset is None or _norm(rrset.get("rrdatas", [])) != _norm(input.rrdatas):
            return False, f"the zone holds {rrset and rrset.get('rrdatas')}", ""
        host = input.record.name.rstrip(".")
        socket.getaddrinfo(host, 443)
        url = f"https://{host}/{input.health_path.lstrip('/')}"
        resp = requests.get(url, timeout=10)
        if resp.status_code >= 400:
            return False, f"GET {url} -> {resp.status_code}", ""
        return True, f"{host} -> {input.rrdatas[0]}: GET {url} {resp.status_code}", input.region
