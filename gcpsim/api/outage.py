"""Regional outages as a client sees them: the middleware answering 503 for a region that is
out, and the `/_sim/outages` control routes (state: gcpsim.model.outage)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Body, FastAPI
from fastapi.responses import JSONResponse

from gcpsim.api.deps import SimDep
from gcpsim.errors import ApiError
from gcpsim.model.outage import blocked, clear, set_out
from gcpsim.sim import Sim


def _unavailable(region: str, style: str) -> JSONResponse:
    message = (
        f"The service is currently unavailable in region {region} (simulated regional outage)."
    )
    if style == "url":
        return JSONResponse(
            {"status": "unavailable", "reason": message, "region": region}, status_code=503
        )
    err = ApiError(
        503, message, reason="regionUnavailable", style="sql" if style == "sql" else "rpc"
    )
    return JSONResponse(err.body(), status_code=503)


class OutageMiddleware:
    """Pure ASGI (cheaper than `BaseHTTPMiddleware`): answers 503 for a region that is out."""

    def __init__(self, app: Any, sim: Sim) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            hit = blocked(self.sim, scope["method"], scope["path"])
            if hit is not None:
                await _unavailable(*hit)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install(app: FastAPI, sim: Sim) -> None:
    """The middleware that makes an outage visible, and the `/_sim/outages` control routes."""
    app.add_middleware(OutageMiddleware, sim=sim)
    app.include_router(router)


router = APIRouter(prefix="/_sim", include_in_schema=False)


@router.get("/outages")
def list_outages(sim: SimDep) -> JSONResponse:
    with sim.store.lock:
        return JSONResponse(list(sim.store.section("sim").get("outages", [])))


@router.post("/outages")
def add_outage(sim: SimDep, body: dict[str, Any] = Body(...)) -> JSONResponse:
    region = str(body.get("region") or "").strip()
    if not re.match(r"^[a-z]+-[a-z]+\d+$", region):
        return JSONResponse(
            {"error": f"region {region!r} is not a region name like us-central1"},
            status_code=400,
        )
    return JSONResponse(set_out(sim, region))


@router.delete("/outages")
def clear_outages(sim: SimDep) -> JSONResponse:
    return JSONResponse({"cleared": clear(sim)})


@router.delete("/outages/{region}")
def clear_outage(sim: SimDep, region: str) -> JSONResponse:
    return JSONResponse({"cleared": clear(sim, region)})
