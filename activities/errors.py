"""Google API exceptions -> Temporal `ApplicationError`, in one place.

Every activity is wrapped by `@api_errors`: an exception escaping the activity becomes

- a *retryable* `ApplicationError` whose type starts with `Transient` (429, 5xx, exhausted client
  retries, timeouts, connection errors, Cloud SQL `409 operationInProgress`, Cloud Run
  `409 ABORTED` from a concurrent modification or a stale etag); the activity's retry policy
  backs off and tries again;
- a *non-retryable* `ApplicationError` carrying the API's own message and a type named after the
  failure (`NotFound`, `InvalidArgument`, `PermissionDenied`, `FailedPrecondition`, ...), so the
  workflow can tell what went wrong without parsing text.

`ApplicationError`s raised by activity code itself (e.g. `RevisionNotReady`) and Temporal's own
cancellation pass through untouched.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import socket
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import requests
from google.api_core import exceptions as gexc
from temporalio.exceptions import ApplicationError, FailureError

from stagecoach.contract import BACKUP_FAILED

__all__ = [
    "NON_RETRYABLE_TYPES",
    "TRANSIENT_PREFIX",
    "api_errors",
    "is_transient",
    "permanent",
    "to_application_error",
    "transient",
]

TRANSIENT_PREFIX = "Transient"

# Types of the non-retryable errors this package raises (for documentation and retry policies).
NON_RETRYABLE_TYPES = [
    "InvalidArgument",
    "Unauthenticated",
    "PermissionDenied",
    "NotFound",
    "Conflict",
    "AlreadyExists",
    "FailedPrecondition",
    "OutOfRange",
    "Unimplemented",
    "MalformedResponse",
    "ApiError",
    "RevisionNotReady",
    "OperationFailed",
    BACKUP_FAILED,
]

_TRANSIENT_HTTP = {
    408: "DeadlineExceeded",
    429: "ResourceExhausted",
    499: "Cancelled",
    500: "Internal",
    502: "BadGateway",
    503: "Unavailable",
    504: "DeadlineExceeded",
}

_PERMANENT_HTTP_TYPES = {
    400: "InvalidArgument",
    401: "Unauthenticated",
    403: "PermissionDenied",
    404: "NotFound",
    409: "Conflict",
    412: "FailedPrecondition",
    501: "Unimplemented",
}

# google.rpc.Code names -> (transient?, type)
_RPC_STATUS_TYPES: dict[str, tuple[bool, str]] = {
    "CANCELLED": (True, "Cancelled"),
    "UNKNOWN": (True, "Unknown"),
    "INVALID_ARGUMENT": (False, "InvalidArgument"),
    "DEADLINE_EXCEEDED": (True, "DeadlineExceeded"),
    "NOT_FOUND": (False, "NotFound"),
    "ALREADY_EXISTS": (False, "AlreadyExists"),
    "PERMISSION_DENIED": (False, "PermissionDenied"),
    "RESOURCE_EXHAUSTED": (True, "ResourceExhausted"),
    "FAILED_PRECONDITION": (False, "FailedPrecondition"),
    "ABORTED": (True, "Aborted"),
    "OUT_OF_RANGE": (False, "OutOfRange"),
    "UNIMPLEMENTED": (False, "Unimplemented"),
    "INTERNAL": (True, "Internal"),
    "UNAVAILABLE": (True, "Unavailable"),
    "DATA_LOSS": (False, "DataLoss"),
    "UNAUTHENTICATED": (False, "Unauthenticated"),
}

_SQL_TRANSIENT_REASONS = {
    "operationInProgress",
    "rateLimitExceeded",
    "userRateLimitExceeded",
    "backendError",
    "internalError",
}


def transient(message: str, kind: str = "Error", **details: Any) -> ApplicationError:
    """A retryable error (type `Transient<kind>`)."""
    args = (details,) if details else ()
    return ApplicationError(message, *args, type=f"{TRANSIENT_PREFIX}{kind}")


def permanent(message: str, type: str, **details: Any) -> ApplicationError:
    """A non-retryable error: retrying cannot help, the workflow decides."""
    args = (details,) if details else ()
    return ApplicationError(message, *args, type=type, non_retryable=True)


def is_transient(err: ApplicationError) -> bool:
    return not err.non_retryable and (err.type or "").startswith(TRANSIENT_PREFIX)


# ---------------------------------------------------------------------------- google.api_core


def _rest_error(e: gexc.GoogleAPICallError) -> tuple[str | None, str | None]:
    """(error.message, error.status) from a REST error body, when there is one."""
    resp = getattr(e, "response", None)
    if isinstance(resp, requests.Response):
        try:
            body = resp.json()
        except ValueError:
            return None, None
        if isinstance(body, list):
            body = next((b for b in body if isinstance(b, dict)), {})
        err = body.get("error", {}) if isinstance(body, dict) else {}
        if isinstance(err, dict):
            return err.get("message"), err.get("status")
    return None, None


def _from_api_core(e: gexc.GoogleAPICallError) -> ApplicationError:
    api_message, status_name = _rest_error(e)
    message = api_message or e.message or str(e)
    grpc_code = getattr(e, "grpc_status_code", None)
    if status_name is None and grpc_code is not None:
        status_name = grpc_code.name
    http = e.code if isinstance(e.code, int) else None
    details = {"code": http, "status": status_name, "reason": e.reason}
    details = {k: v for k, v in details.items() if v is not None}

    if status_name == "ABORTED" and "already exists" in message.lower():
        # "Revision named '...' with different configuration already exists": no retry helps.
        return permanent(message, "AlreadyExists", **details)
    if status_name in _RPC_STATUS_TYPES:
        is_retryable, type_ = _RPC_STATUS_TYPES[status_name]
        # An HTTP 409 whose status is ABORTED is a concurrent modification (stale etag):
        # re-reading and retrying is the fix. Other 409s (ALREADY_EXISTS, "different
        # configuration already exists") are permanent.
        if is_retryable:
            return transient(message, type_, **details)
        return permanent(message, type_, **details)
    if http in _TRANSIENT_HTTP:
        return transient(message, _TRANSIENT_HTTP[http], **details)
    if http in _PERMANENT_HTTP_TYPES:
        return permanent(message, _PERMANENT_HTTP_TYPES[http], **details)
    if http is not None and http >= 500:
        return transient(message, "ServerError", **details)
    return permanent(message, "ApiError", **details)


# ---------------------------------------------------------------------------- googleapiclient


def _from_http_error(e: Any) -> ApplicationError:
    status = int(e.status_code)
    message = (getattr(e, "reason", "") or "").strip() or str(e)
    reason = None
    err_details = getattr(e, "error_details", None)
    if isinstance(err_details, list) and err_details and isinstance(err_details[0], dict):
        reason = err_details[0].get("reason")
    if reason is None:
        try:
            body = json.loads(e.content.decode("utf-8"))
            reason = body["error"]["errors"][0]["reason"]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            reason = None
    details = {"code": status, "reason": reason}
    details = {k: v for k, v in details.items() if v is not None}
    if status in _TRANSIENT_HTTP or status >= 500:
        return transient(message, _TRANSIENT_HTTP.get(status, "ServerError"), **details)
    if reason in _SQL_TRANSIENT_REASONS:
        # 409 operationInProgress: one admin operation at a time per instance. 403 rate limits.
        return transient(
            message, "OperationInProgress" if status == 409 else "RateLimited", **details
        )
    return permanent(message, _PERMANENT_HTTP_TYPES.get(status, "ApiError"), **details)


# ---------------------------------------------------------------------------- entry points


def to_application_error(exc: BaseException) -> ApplicationError | None:
    """The ApplicationError an exception maps to, or None to let it propagate as it is."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.protobuf.json_format import ParseError
    from googleapiclient.errors import HttpError

    if isinstance(exc, FailureError):  # ApplicationError, CancelledError: already Temporal's
        return None
    if isinstance(exc, gexc.RetryError):
        cause = exc.cause
        why = f": {cause}" if cause is not None else ""
        return transient(f"{exc.message}{why}", "RetryExhausted")
    if isinstance(exc, gexc.GoogleAPICallError):
        return _from_api_core(exc)
    if isinstance(exc, HttpError):
        return _from_http_error(exc)
    if isinstance(exc, concurrent.futures.TimeoutError | TimeoutError | socket.timeout):
        return transient(str(exc) or "timed out", "Timeout")
    if isinstance(exc, requests.Timeout):
        return transient(str(exc) or "timed out", "Timeout")
    if isinstance(exc, requests.ConnectionError | ConnectionError):
        return transient(str(exc) or "connection failed", "Connection")
    try:
        import httplib2

        if isinstance(exc, httplib2.HttpLib2Error):
            return transient(str(exc), "Connection")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, ParseError):
        return permanent(f"malformed API response: {exc}", "MalformedResponse")
    if isinstance(exc, DefaultCredentialsError):
        # The worker has no Application Default Credentials: fix the worker, not the call.
        return permanent(str(exc), "Unauthenticated")
    if isinstance(exc, OSError) and not isinstance(
        exc, FileNotFoundError | PermissionError | IsADirectoryError
    ):
        return transient(str(exc) or type(exc).__name__, "Connection")
    return None


P = ParamSpec("P")
R = TypeVar("R")


def api_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate an activity: map Google exceptions escaping it to ApplicationErrors."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            mapped = to_application_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    return wrapper
