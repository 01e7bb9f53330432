"""Loopback URLs that stand in for `https://<service>-<hash>-uc.a.run.app` and tag URLs.

gcpsim reports these in `Service.uri`, `urls[]` and `trafficStatuses[].uri`; any path below
them (a health path) answers 200, or 503 when the revision's behaviour says the smoke test
fails, so smoke tests run exactly as against real Cloud Run.
"""

from __future__ import annotations

from gcpsim.sim import Settings


def service_uri(settings: Settings, project: str, location: str, service: str) -> str:
    return f"http://{settings.host}:{settings.port}/_url/{project}/{location}/{service}"


def tag_uri(settings: Settings, project: str, location: str, service: str, tag: str) -> str:
    return f"{service_uri(settings, project, location, service)}/tag/{tag}"
