"""Loopback guard: gcpsim answers only requests addressed to a loopback name, and refuses
writes from another origin.

- DNS rebinding: a web page on evil.example whose name later resolves to 127.0.0.1 sends
  requests with `Host: evil.example`; only 127.0.0.1, localhost and [::1] (any port) pass.
- Cross-origin writes: a browser adds `Origin` to a cross-origin POST (even a "simple" one that
  needs no preflight); a write whose Origin is not this very server is refused. Google's client
  libraries send no Origin.
Refusals are 403 in the google.rpc.Status shape the clients parse.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]", "::1"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def host_name(host: str) -> str:
    """`127.0.0.1:8780` -> `127.0.0.1`; `[::1]:8780` -> `[::1]`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def refusal(scope: Scope) -> str:
    """Why this request is refused ("" when it is not)."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    host = headers.get("host", "")
    if host_name(host) not in LOOPBACK_NAMES:
        return f"Host {host[:60]!r} is not a loopback name (gcpsim serves 127.0.0.1 only)"
    if scope.get("method", "GET").upper() not in SAFE_METHODS:
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"http://{host.lower()}":
            return f"cross-origin write from {origin[:60]!r} refused"
        if headers.get("sec-fetch-site") == "cross-site":
            return "cross-site write refused"
    return ""


class LoopbackGuard:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            why = refusal(scope)
            if why:
                body = json.dumps(
                    {"error": {"code": 403, "message": why, "status": "PERMISSION_DENIED"}}
                ).encode()
                await send({
                    "type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())],
                })  # fmt: skip
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
