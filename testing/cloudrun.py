"""Cloud Run through the real run_v2 clients pointed at gcpsim: what a service serves now and
which revisions it has."""

from __future__ import annotations

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

from testing.gcpsim import GcpsimProcess, Split


def run_services(sim: GcpsimProcess) -> run_v2.ServicesClient:
    return run_v2.ServicesClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=sim.url),
    )


def run_revisions(sim: GcpsimProcess) -> run_v2.RevisionsClient:
    return run_v2.RevisionsClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=sim.url),
    )


def service_name(project: str, service: str, region: str = "us-central1") -> str:
    return f"projects/{project}/locations/{region}/services/{service}"


def live_traffic(sim: GcpsimProcess, project: str, service: str) -> list[tuple[str, int, str]]:
    """The service's traffic, LATEST resolved to the revision it routes to right now.

    Stagecoach restores a LATEST entry as that explicit revision: once a new revision exists,
    LATEST would mean the new one."""
    svc = run_services(sim).get_service(name=service_name(project, service))
    latest = svc.latest_ready_revision.rsplit("/", 1)[-1]
    return [(t.revision or latest, t.percent, t.tag) for t in svc.traffic]


def live_split(sim: GcpsimProcess, project: str, service: str) -> Split:
    """The service's traffic now, LATEST resolved to the revision it routes to, tags dropped
    (the routing that matters), sorted."""
    out: dict[str, int] = {}
    for rev, pct, _tag in live_traffic(sim, project, service):
        if pct:
            rev = rev.rsplit("/", 1)[-1]
            out[rev] = out.get(rev, 0) + int(pct)
    return sorted(out.items())


def revisions_with_prefix(sim: GcpsimProcess, project: str, service: str, prefix: str) -> int:
    revs = run_revisions(sim).list_revisions(parent=service_name(project, service))
    return sum(1 for r in revs if r.name.rsplit("/", 1)[-1].startswith(prefix))


def revision_count(sim: GcpsimProcess, project: str, service: str) -> int:
    return sum(1 for _ in run_revisions(sim).list_revisions(parent=service_name(project, service)))
