"""The client factory: the ONLY code that knows API endpoints and credentials.

`Clients(target)` builds, lazily, the Google client libraries the activities use:

- Cloud Run Admin v2 `ServicesClient` and `RevisionsClient` over REST (and `JobsClient` /
  `ExecutionsClient` for release hooks);
- Cloud Monitoring v3 `MetricServiceClient` over gRPC (the simulator serves plaintext gRPC);
- the Cloud SQL Admin v1 and Cloud DNS v1 discovery clients (googleapiclient), and others the
  doctor reads;
- `run_wait_operation`: Cloud Run's `operations.wait` over the same credentials, parsed leniently.

For `kind: gcp` they use Application Default Credentials and Google's endpoints. For
`kind: gcpsim` they use anonymous credentials and loopback endpoints (plain HTTP / insecure gRPC).

The run_v2 and monitoring clients are shared between activity threads. googleapiclient objects
(httplib2 underneath) are not thread-safe, so `Clients.sqladmin()` builds one per thread.
"""

from __future__ import annotations

import threading
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3, run_v2

from stagecoach.payloads.common import Target
from stagecoach.trust import is_loopback

__all__ = ["Clients", "clients_for", "reset_clients"]


class Clients:
    """The API clients for one `Target`, constructed on first use."""

    def __init__(self, target: Target) -> None:
        if target.kind == "gcpsim" and not is_loopback(target.host):
            # an input must never point the worker at an arbitrary host (the simulator speaks
            # plain HTTP and anonymous credentials): gcpsim only ever runs on loopback
            from temporalio.exceptions import ApplicationError

            raise ApplicationError(
                f"simulator host {target.host[:60]!r} is not loopback; refused",
                type="PolicyViolation",
                non_retryable=True,
            )
        self.target = target
        self._lock = threading.Lock()
        self._services: run_v2.ServicesClient | None = None
        self._revisions: run_v2.RevisionsClient | None = None
        self._jobs: run_v2.JobsClient | None = None
        self._executions: run_v2.ExecutionsClient | None = None
        self._metrics: monitoring_v3.MetricServiceClient | None = None
        self._run_session: Any = None
        self._local = threading.local()

    @property
    def is_sim(self) -> bool:
        return self.target.kind == "gcpsim"

    # ------------------------------------------------------------------ Cloud Run v2 (REST)

    def _run_kwargs(self) -> dict[str, Any]:
        if self.is_sim:
            return {
                "credentials": AnonymousCredentials(),
                "transport": "rest",
                "client_options": ClientOptions(
                    api_endpoint=f"http://{self.target.host}:{self.target.port}"
                ),
            }
        return {"transport": "rest"}

    @property
    def services(self) -> run_v2.ServicesClient:
        with self._lock:
            if self._services is None:
                self._services = run_v2.ServicesClient(**self._run_kwargs())
            return self._services

    @property
    def revisions(self) -> run_v2.RevisionsClient:
        with self._lock:
            if self._revisions is None:
                self._revisions = run_v2.RevisionsClient(**self._run_kwargs())
            return self._revisions

    def _session(self) -> Any:
        with self._lock:
            if self._run_session is None:
                if self.is_sim:
                    import requests

                    self._run_session = requests.Session()
                else:
                    import google.auth
                    from google.auth.transport.requests import AuthorizedSession

                    credentials, _ = google.auth.default(
                        scopes=["https://www.googleapis.com/auth/cloud-platform"]
                    )
                    self._run_session = AuthorizedSession(credentials)
            return self._run_session

    def run_wait_operation(self, name: str, timeout_seconds: float) -> Any:
        """Cloud Run `operations.wait`: one call that returns when the operation is done or
        `timeout_seconds` passed (then not done), instead of a poll every few hundred ms.

        Parsed with unknown fields ignored, also inside `metadata`/`response` (the client's
        own LRO polling and get_operation parse strictly: a Service field newer than the
        installed google-cloud-run would fail them). Errors raise GoogleAPICallError."""
        from google.api_core import exceptions as gexc
        from google.longrunning import operations_pb2
        from google.protobuf import json_format

        base = (
            f"http://{self.target.host}:{self.target.port}"
            if self.is_sim
            else "https://run.googleapis.com"
        )
        response = self._session().post(
            f"{base}/v2/{name}:wait",
            json={"timeout": f"{max(timeout_seconds, 0.0):.3f}s"},
            timeout=timeout_seconds + 30,
        )
        if response.status_code >= 400:
            raise gexc.from_http_response(response)
        op = operations_pb2.Operation()
        json_format.Parse(response.content, op, ignore_unknown_fields=True)
        return op

    @property
    def jobs(self) -> run_v2.JobsClient:
        with self._lock:
            if self._jobs is None:
                self._jobs = run_v2.JobsClient(**self._run_kwargs())
            return self._jobs

    @property
    def executions(self) -> run_v2.ExecutionsClient:
        with self._lock:
            if self._executions is None:
                self._executions = run_v2.ExecutionsClient(**self._run_kwargs())
            return self._executions

    # ------------------------------------------------------------------ Monitoring v3 (gRPC)

    @property
    def metrics(self) -> monitoring_v3.MetricServiceClient:
        with self._lock:
            if self._metrics is None:
                if self.is_sim:
                    import grpc
                    from google.cloud.monitoring_v3.services.metric_service.transports import (
                        MetricServiceGrpcTransport,
                    )

                    channel = grpc.insecure_channel(f"{self.target.host}:{self.target.grpc_port}")
                    self._metrics = monitoring_v3.MetricServiceClient(
                        transport=MetricServiceGrpcTransport(channel=channel)
                    )
                else:
                    self._metrics = monitoring_v3.MetricServiceClient()
            return self._metrics

    # ------------------------------------------------------------------ Cloud SQL Admin v1

    def sqladmin(self) -> Any:
        """The sqladmin v1 discovery client of the calling thread (httplib2 is not thread-safe)."""
        client = getattr(self._local, "sqladmin", None)
        if client is None:
            from googleapiclient import discovery

            if self.is_sim:
                client = discovery.build(
                    "sqladmin",
                    "v1",
                    credentials=AnonymousCredentials(),
                    static_discovery=True,
                    cache_discovery=False,
                    client_options={
                        "api_endpoint": f"http://{self.target.host}:{self.target.port}/"
                    },
                )
            else:
                client = discovery.build(
                    "sqladmin", "v1", static_discovery=True, cache_discovery=False
                )
            self._local.sqladmin = client
        return client

    def dns(self) -> Any:
        """The Cloud DNS v1 discovery client of the calling thread (httplib2: one per thread)."""
        return self.discovery("dns", "v1")

    def discovery(self, api: str, version: str) -> Any:
        """A discovery client of the calling thread for another Google API (Cloud DNS `dns` v1;
        the doctor's `serviceusage` v1, `cloudresourcemanager` v1); gcpsim serves them on its
        REST port."""
        cache = getattr(self._local, "discovery", None)
        if cache is None:
            cache = self._local.discovery = {}
        client = cache.get((api, version))
        if client is None:
            from googleapiclient import discovery

            kwargs: dict[str, Any] = {"static_discovery": True, "cache_discovery": False}
            if self.is_sim:
                kwargs["credentials"] = AnonymousCredentials()
                kwargs["client_options"] = {
                    "api_endpoint": f"http://{self.target.host}:{self.target.port}/"
                }
            client = cache[(api, version)] = discovery.build(api, version, **kwargs)
        return client


_CACHE: dict[tuple[str, str, int, int], Clients] = {}
_CACHE_LOCK = threading.Lock()


def clients_for(target: Target) -> Clients:
    """The shared `Clients` of a target (one per distinct kind/host/ports)."""
    key = (target.kind, target.host, target.port, target.grpc_port)
    with _CACHE_LOCK:
        clients = _CACHE.get(key)
        if clients is None:
            clients = _CACHE[key] = Clients(target)
        return clients


def reset_clients() -> None:
    """Forget every cached client (tests that restart a simulator on the same ports)."""
    with _CACHE_LOCK:
        _CACHE.clear()
