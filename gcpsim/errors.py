"""API errors in the formats the real clients parse.

- `rpc` style (Cloud Run v2 REST): google.rpc.Status JSON, `{"error": {"code", "message",
  "status", "details"}}`; the run_v2 client picks the exception class from the HTTP status.
- `sql` style (Cloud SQL Admin v1): the legacy body with `errors: [{domain, reason, message}]`,
  which googleapiclient exposes as `HttpError.error_details`.
The gRPC Monitoring server maps `ApiError.status` to a gRPC status code instead.
"""

from __future__ import annotations

from typing import Any, Literal

HTTP_TO_RPC = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# gRPC code numbers, for Operation.error.code and the gRPC server.
RPC_CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}  # fmt: skip


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        rpc_status: str | None = None,
        reason: str | None = None,
        style: Literal["rpc", "sql"] = "rpc",
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.rpc_status = rpc_status or HTTP_TO_RPC.get(status, "UNKNOWN")
        self.reason = reason
        self.style = style
        self.details = details or []

    def body(self) -> dict[str, Any]:
        if self.style == "sql":
            return {
                "error": {
                    "code": self.status,
                    "message": self.message,
                    "errors": [
                        {
                            "message": self.message,
                            "domain": "global",
                            "reason": self.reason or self.rpc_status.lower(),
                        }
                    ],
                }
            }
        details = list(self.details)
        if self.reason:
            details.insert(
                0,
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.reason,
                    "domain": "run.googleapis.com",
                },
            )
        err: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "status": self.rpc_status,
        }
        if details:
            err["details"] = details
        return {"error": err}
