"""Smoke test: GET a revision's tag URL (plus the service's health path) before it gets traffic.

It never raises for an unhealthy answer: it reports `ok=False` with the status and a short
detail, and the workflow decides (roll back, retry later, ...). 5xx answers and connection errors
are retried a few times with a short back-off; 4xx answers are not (they will not change).

Cloud Run services that require authentication: set `STAGECOACH_SMOKE_ID_TOKEN=1` on the worker
and the request carries a Google-signed ID token for the URL's origin (from the worker's
credentials). The token is never logged nor returned.
"""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

import requests
from temporalio import activity

from stagecoach.contract import Activity
from stagecoach.payloads.run import SmokeTestInput, SmokeTestResult

BACKOFF_SECONDS = 0.5
MAX_DETAIL = 300
ID_TOKEN_ENV = "STAGECOACH_SMOKE_ID_TOKEN"


def _auth_headers(url: str) -> dict[str, str]:
    if os.environ.get(ID_TOKEN_ENV, "").lower() not in ("1", "true", "yes"):
        return {}
    import google.auth.transport.requests
    import google.oauth2.id_token

    parts = urlsplit(url)
    audience = f"{parts.scheme}://{parts.netloc}"
    token = google.oauth2.id_token.fetch_id_token(
        google.auth.transport.requests.Request(), audience
    )
    return {"Authorization": f"Bearer {token}"}


def smoke_url(url: str, path: str) -> str:
    if not path:
        return url
    return url.rstrip("/") + "/" + path.lstrip("/")


@activity.defn(name=Activity.SMOKE_TEST)
def smoke_test(input: SmokeTestInput) -> SmokeTestResult:
    """GET `input.url` + `input.path`; ok when the answer is 2xx/3xx."""
    if not input.url:
        return SmokeTestResult(
            ok=False, status=0, detail="no URL to test (revision has no tag URL)"
        )
    url = smoke_url(input.url, input.path)
    attempts = max(input.attempts, 1)
    status = 0
    detail = ""
    with requests.Session() as session:
        try:
            session.headers.update(_auth_headers(url))
        except Exception as exc:  # no credentials for an ID token: report, do not raise
            return SmokeTestResult(
                ok=False, status=0, detail=f"cannot get an ID token: {type(exc).__name__}"
            )
        for attempt in range(1, attempts + 1):
            activity.heartbeat(attempt)
            try:
                resp = session.get(url, timeout=input.timeout_seconds, allow_redirects=True)
            except requests.RequestException as exc:
                status, detail = 0, f"{type(exc).__name__}: {exc}"[:MAX_DETAIL]
            else:
                status = resp.status_code
                if status < 400:
                    return SmokeTestResult(ok=True, status=status, detail=f"GET {url} -> {status}")
                body = resp.text.strip().replace("\n", " ")[:MAX_DETAIL]
                detail = f"GET {url} -> {status} {resp.reason}: {body}".strip()
                if status < 500:
                    break
            activity.logger.info("smoke test attempt %d/%d failed: %s", attempt, attempts, detail)
            if attempt < attempts:
                time.sleep(BACKOFF_SECONDS * attempt)
    return SmokeTestResult(ok=False, status=status, detail=detail)
