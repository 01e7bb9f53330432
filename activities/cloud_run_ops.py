"""The Cloud Run activities' way with the API: read a service or revision, patch a service with
an update mask, and wait for the operation heartbeating, with its name kept in the heartbeat
details so that a retried attempt resumes polling that operation instead of issuing the update
again."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import operation as lro
from google.cloud import run_v2
from google.protobuf import field_mask_pb2
from temporalio import activity

from activities.cloud_run_convert import traffic_to_api
from activities.errors import to_application_error, transient
from stagecoach.clients import Clients, clients_for
from stagecoach.payloads.common import ServiceRef, Target, TrafficTarget

# How long one activity attempt waits for an operation before giving up (transient: the retry
# resumes the same operation). Normally the activity's start-to-close timeout ends it first.
OPERATION_DEADLINE_SECONDS = 30 * 60
# Concurrent-modification (stale etag) retries inside one attempt before leaving it to Temporal.
ETAG_RETRIES = 5
# One operations.wait call waits at most this long (then heartbeats and waits again).
WAIT_SECONDS = 10.0


class CloudRunOperations:
    """What every Cloud Run activity class builds on. Holds nothing but the client factory."""

    def __init__(self, clients: Callable[[Target], Clients] = clients_for) -> None:
        self._clients = clients

    def _get(self, ref: ServiceRef) -> run_v2.Service:
        return self._clients(ref.target).services.get_service(name=ref.name)

    def _revision(self, ref: ServiceRef, revision: str) -> run_v2.Revision | None:
        try:
            return self._clients(ref.target).revisions.get_revision(
                name=f"{ref.name}/revisions/{revision}"
            )
        except gexc.NotFound:
            return None

    @staticmethod
    def _prior() -> dict[str, Any]:
        """Heartbeat details a previous attempt of this activity left behind."""
        details = activity.info().heartbeat_details
        if details and isinstance(details[0], dict):
            return dict(details[0])
        return {}

    def _resumed(
        self,
        ref: ServiceRef,
        op_name: str,
        finish: Callable[[str], run_v2.Service],
    ) -> run_v2.Service | None:
        """Finish the operation an earlier attempt started (its name from the heartbeat details).

        None when there is nothing to resume: the operation is unknown, or it failed with a
        transient error (starting over is then the way forward, not failing on it again).
        """
        try:
            self._clients(ref.target).run_wait_operation(op_name, 0.0)
        except gexc.NotFound:
            return None
        activity.logger.info("resuming operation %s", op_name)
        try:
            return finish(op_name)
        except gexc.GoogleAPICallError as exc:
            mapped = to_application_error(exc)
            if mapped is not None and not mapped.non_retryable:
                activity.logger.info("operation %s failed (%s); starting over", op_name, exc)
                return None
            raise

    def _wait(self, ref: ServiceRef, op_name: str, details: dict[str, Any]) -> run_v2.Service:
        """Wait for the operation with `operations.wait` (one call per WAIT_SECONDS, not a poll
        every few hundred ms), heartbeating in between; its error raises GoogleAPICallError."""
        clients = self._clients(ref.target)
        start = time.monotonic()
        while True:
            activity.heartbeat(details)
            try:
                op = clients.run_wait_operation(op_name, WAIT_SECONDS)
            except (gexc.ServiceUnavailable, gexc.TooManyRequests, OSError) as exc:
                activity.logger.info("waiting for %s: %s; again", op_name, exc)
                time.sleep(1.0)
                op = None
            if op is not None and op.done:
                if op.HasField("error"):
                    raise gexc.from_grpc_status(op.error.code, op.error.message)
                return run_v2.Service.deserialize(op.response.value)
            if time.monotonic() - start > OPERATION_DEADLINE_SECONDS:
                raise transient(
                    f"operation {op_name} still running after {OPERATION_DEADLINE_SECONDS}s",
                    "Timeout",
                )

    def _patch(self, ref: ServiceRef, body: run_v2.Service, paths: list[str]) -> lro.Operation:
        """services.patch with an update mask: only the fields named in `paths` change.

        Never the whole Service read back: the installed client drops fields it does not know
        (newer API fields a real service may use), and echoing the template would re-send its
        revision name with whatever the client lost (409 "with different configuration")."""
        body.name = ref.name
        request = run_v2.UpdateServiceRequest(
            service=body, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        return self._clients(ref.target).services.update_service(request=request)

    def _update(
        self, ref: ServiceRef, body: run_v2.Service, paths: list[str], details: dict[str, Any]
    ) -> run_v2.Service:
        op = self._patch(ref, body, paths)
        name = op.operation.name
        return self._wait(ref, name, {**details, "op": name})

    @staticmethod
    def _traffic_body(svc: run_v2.Service, traffic: list[TrafficTarget]) -> run_v2.Service:
        """A patch body that sets the traffic alone (the etag guards against a concurrent
        change between our read and this write)."""
        return run_v2.Service(traffic=traffic_to_api(traffic), etag=svc.etag)

    def _wait_reconciled(self, ref: ServiceRef, details: dict[str, Any]) -> run_v2.Service:
        """Poll the service until it is no longer reconciling (an update is in flight)."""
        start = time.monotonic()
        delay = 0.2
        while True:
            activity.heartbeat(details)
            svc = self._get(ref)
            if not svc.reconciling:
                return svc
            if time.monotonic() - start > OPERATION_DEADLINE_SECONDS:
                raise transient(f"service {ref.service} still reconciling", "Timeout")
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)
