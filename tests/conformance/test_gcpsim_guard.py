"""gcpsim answers loopback names only (DNS rebinding) and refuses cross-origin writes."""

from __future__ import annotations

import pytest
import requests

from testing.gcpsim import GcpsimProcess

SERVICES = "/v2/projects/legal-forms-dev/locations/us-central1/services"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8780", "10.0.0.1", "0.0.0.0"])
def test_a_foreign_host_header_is_refused(gcpsim: GcpsimProcess, host: str) -> None:
    r = requests.get(gcpsim.url + SERVICES, headers={"Host": host}, timeout=10)
    assert r.status_code == 403 and "loopback" in r.json()["error"]["message"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_host_headers_are_served(gcpsim: GcpsimProcess, host: str) -> None:
    r = requests.get(gcpsim.url + SERVICES, headers={"Host": f"{host}:{gcpsim.port}"}, timeout=10)
    assert r.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}],
)
def test_cross_origin_writes_are_refused(gcpsim: GcpsimProcess, headers: dict[str, str]) -> None:
    r = requests.post(
        gcpsim.url + "/_sim/behaviors",
        data='{"service": "x", "version": "v1"}',
        headers={"Content-Type": "text/plain", **headers},
        timeout=10,
    )
    assert r.status_code == 403, r.text


def test_cross_origin_reads_still_work(gcpsim: GcpsimProcess) -> None:
    r = requests.get(gcpsim.url + SERVICES, headers={"Origin": "http://evil.example"}, timeout=10)
    assert r.status_code == 200
