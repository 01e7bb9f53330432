"""gcpsim's Cloud DNS v1 through the real discovery client (`googleapiclient` `dns` v1), its
resolver, and `python -m gcpsim outage REGION` seen through the real Cloud Run, Cloud SQL and
Monitoring clients.

Uses the seeded session simulator: deploy.yaml's prod has `dns` (zone `legal-forms`, record
`app.legal-forms.example.` CNAME to node-server-prod's URL host in us-central1). Zones of this
module live in the project PROJECT; every outage is cleared again.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from googleapiclient.errors import HttpError

from stagecoach.clients import Clients
from stagecoach.payloads.common import Target
from testing.cloudsql import sqladmin
from testing.gcpsim import GcpsimProcess

PROJECT = "dns-conformance"
PROD = "legal-forms-prod"


@pytest.fixture(scope="module")
def clients(gcpsim: GcpsimProcess) -> Clients:
    return Clients(Target(kind="gcpsim", port=gcpsim.port, grpc_port=gcpsim.grpc_port))


@pytest.fixture(scope="module")
def dns(clients: Clients) -> Any:
    return clients.dns()


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def wait_done(dns: Any, project: str, zone: str, change_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ch: dict[str, Any] = (
            dns.changes().get(project=project, managedZone=zone, changeId=change_id).execute()
        )
        if ch["status"] == "done":
            return ch
        time.sleep(0.2)
    raise AssertionError("change never done")


def test_zone_rrsets_and_changes(dns: Any, gcpsim: GcpsimProcess) -> None:
    zone = (
        dns.managedZones()
        .create(
            project=PROJECT, body={"name": "conf", "dnsName": "conf.example.", "description": "t"}
        )
        .execute()
    )
    assert zone["dnsName"] == "conf.example." and zone["nameServers"]
    listed = dns.managedZones().list(project=PROJECT).execute()
    assert [z["name"] for z in listed["managedZones"]] == ["conf"]

    rec = {"name": "www.conf.example.", "type": "CNAME", "ttl": 60, "rrdatas": ["a.example."]}
    ch = dns.changes().create(project=PROJECT, managedZone="conf", body={"additions": [rec]})
    ch = ch.execute()
    assert ch["status"] == "pending" and ch["id"]
    # the API shows the record at once; the name servers answer once the change is done
    rr = (
        dns.resourceRecordSets()
        .list(project=PROJECT, managedZone="conf", name="www.conf.example.", type="CNAME")
        .execute()
    )
    assert rr["rrsets"][0]["rrdatas"] == ["a.example."]
    assert wait_done(dns, PROJECT, "conf", ch["id"])["status"] == "done"
    status, ans = get_json(f"{gcpsim.url}/_dns/resolve?name=www.conf.example.")
    assert status == 200 and ans["rrdatas"] == ["a.example."]

    # replace: the deletion must match exactly
    new = {**rec, "rrdatas": ["b.example."]}
    stale = {**rec, "ttl": 300}
    with pytest.raises(HttpError) as info:
        dns.changes().create(
            project=PROJECT, managedZone="conf", body={"deletions": [stale], "additions": [new]}
        ).execute()
    assert info.value.resp.status == 412
    with pytest.raises(HttpError) as info:  # adding an existing name/type
        dns.changes().create(
            project=PROJECT, managedZone="conf", body={"additions": [new]}
        ).execute()
    assert info.value.resp.status == 409
    ch = (
        dns.changes()
        .create(project=PROJECT, managedZone="conf", body={"deletions": [rec], "additions": [new]})
        .execute()
    )
    wait_done(dns, PROJECT, "conf", ch["id"])
    got = (
        dns.resourceRecordSets()
        .get(project=PROJECT, managedZone="conf", name="www.conf.example.", type="CNAME")
        .execute()
    )
    assert got["rrdatas"] == ["b.example."]
    changes = dns.changes().list(project=PROJECT, managedZone="conf").execute()["changes"]
    assert [c["id"] for c in changes][:2] == [ch["id"], "1"]

    with pytest.raises(HttpError) as info:
        dns.managedZones().get(project=PROJECT, managedZone="nope").execute()
    assert info.value.resp.status == 404
    status, _ = get_json(f"{gcpsim.url}/_dns/resolve?name=nothing.conf.example.")
    assert status == 404


def test_seeded_record_resolves_to_the_cloud_run_service(dns: Any, gcpsim: GcpsimProcess) -> None:
    rr = dns.resourceRecordSets().list(project=PROD, managedZone="legal-forms").execute()
    cname = [r for r in rr["rrsets"] if r["type"] == "CNAME"]
    assert cname[0]["name"] == "app.legal-forms.example."
    assert cname[0]["rrdatas"] == ["node-server-prod-legal-forms-prod.us-central1.run.app."]
    status, ans = get_json(f"{gcpsim.url}/_dns/resolve?name=app.legal-forms.example.")
    assert status == 200
    assert ans["cloudRun"]["location"] == "us-central1"
    assert ans["cloudRun"]["service"] == "node-server-prod"
    status, body = get_json(ans["cloudRun"]["uri"] + "/health")
    assert status == 200 and body["status"] == "ok"


@pytest.fixture
def outage(gcpsim: GcpsimProcess) -> Iterator[None]:
    out = gcpsim.cli("outage", "us-central1")
    assert out.returncode == 0, out.stderr
    try:
        yield
    finally:
        assert gcpsim.cli("outage", "--clear").returncode == 0


def test_outage_makes_the_region_unavailable(
    outage: None, clients: Clients, gcpsim: GcpsimProcess
) -> None:
    assert "us-central1" in gcpsim.cli("outage").stdout
    assert "us-central1 out since" in gcpsim.cli("show").stdout
    name = f"projects/{PROD}/locations/us-central1/services/node-server-prod"
    with pytest.raises(gexc.ServiceUnavailable):
        clients.services.get_service(name=name, retry=None)
    # another region answers as usual
    with pytest.raises(gexc.NotFound):
        clients.services.get_service(
            name=f"projects/{PROD}/locations/us-east1/services/node-server-prod", retry=None
        )
    status, _ = get_json(f"{gcpsim.url}/_url/{PROD}/us-central1/node-server-prod/health")
    assert status == 503
    sql = sqladmin(gcpsim.url)
    with pytest.raises(HttpError) as info:
        sql.instances().get(project=PROD, instance="legal-forms-db-prod").execute()
    assert info.value.resp.status == 503
    # backups are multi-regional: still listable
    runs = sql.backupRuns().list(project=PROD, instance="legal-forms-db-prod").execute()
    assert any(r["status"] == "SUCCESSFUL" for r in runs["items"])
    # metrics of the region stop
    from google.cloud import monitoring_v3

    now = time.time()
    series = list(
        clients.metrics.list_time_series(
            request={
                "name": f"projects/{PROD}",
                "filter": 'metric.type = "run.googleapis.com/request_count" AND '
                'resource.labels.service_name = "node-server-prod"',
                "interval": {
                    "start_time": {"seconds": int(now - 30)},
                    "end_time": {"seconds": int(now)},
                },
                "view": monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
            }
        )
    )
    assert series == []


def test_outage_clear_restores_the_region(clients: Clients, gcpsim: GcpsimProcess) -> None:
    assert gcpsim.cli("outage", "us-central1").returncode == 0
    assert gcpsim.cli("outage", "us-central1", "--clear").returncode == 0
    assert "no outage" in gcpsim.cli("outage").stdout
    svc = clients.services.get_service(
        name=f"projects/{PROD}/locations/us-central1/services/node-server-prod"
    )
    assert svc.name.endswith("node-server-prod")
