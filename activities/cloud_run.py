"""Cloud Run Admin API v2 activities: read a service, create a tagged 0% revision, move traffic,
drain and resume scaling.

Every mutating activity is idempotent (a retry after a crash at any line converges on the same
end state) and waits for its long-running operation itself, heartbeating, with the operation's
name kept in the heartbeat details: a retried attempt resumes polling that operation instead of
issuing the update again. By concern: cloud_run_convert (payload <-> API types), cloud_run_ops
(reads, patches, operations), cloud_run_revisions (CreateRevision), cloud_run_traffic
(SetTraffic, SetScaling); the service reads are here.
"""

from __future__ import annotations

from temporalio import activity

from activities.cloud_run_convert import (
    CLOUDSQL_MOUNT,
    CLOUDSQL_VOLUME,
    bound_connection,
    short_name,
    traffic_from_api,
    traffic_to_api,
)
from activities.cloud_run_convert import service_state as service_state
from activities.cloud_run_revisions import RevisionCreation
from activities.cloud_run_traffic import TrafficAndScaling
from activities.errors import api_errors, transient
from stagecoach.contract import Activity
from stagecoach.payloads.common import ServiceRef
from stagecoach.payloads.run import ReadServingInput, ServiceState, ServingRevision

__all__ = [
    "CLOUDSQL_MOUNT",
    "CLOUDSQL_VOLUME",
    "CloudRunActivities",
    "bound_connection",
    "short_name",
    "traffic_from_api",
    "traffic_to_api",
]


class CloudRunActivities(RevisionCreation, TrafficAndScaling):
    """Cloud Run activities. Holds nothing but the client factory."""

    @activity.defn(name=Activity.GET_SERVICE_STATE)
    @api_errors
    def get_service_state(self, input: ServiceRef) -> ServiceState:
        """What serves now: traffic (short revision names, LATEST kept), image, scaling."""
        return service_state(self._get(input))

    # ------------------------------------------------------------------ ReadServing

    @activity.defn(name=Activity.READ_SERVING)
    @api_errors
    def read_serving(self, input: ReadServingInput) -> list[ServingRevision]:
        """The revisions that receive traffic now (LATEST resolved to the latest ready one),
        most traffic first, each with its image and the Cloud SQL connection it is bound to."""
        svc = self._get(input.ref)
        latest = short_name(svc.latest_ready_revision)
        shares: dict[str, int] = {}
        for t in traffic_from_api(svc.traffic):
            name = latest if t.type == "LATEST" else t.revision
            if name and t.percent:
                shares[name] = shares.get(name, 0) + t.percent
        out = []
        for name, percent in sorted(shares.items(), key=lambda kv: (-kv[1], kv[0])):
            rev = self._revision(input.ref, name)
            if rev is None:
                raise transient(
                    f"serving revision {name} of {input.ref.service} not found", "NotFound"
                )
            out.append(
                ServingRevision(
                    revision=name,
                    percent=percent,
                    image=rev.containers[0].image if rev.containers else "",
                    connection_name=bound_connection(rev, input.env_var),
                )
            )
        return out
