"""The FastAPI application that serves the Cloud Run v2 and Cloud SQL Admin v1 REST APIs,
the tag/service URLs (health checks), and the `/_sim/...` control surface."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gcpsim import control, dns_v1, health, iam, jobs_v2, outage, run_v2
from gcpsim.api import sql_backups, sql_instances, sql_operations
from gcpsim.errors import ApiError
from gcpsim.guard import LoopbackGuard
from gcpsim.sim import Sim


def create_app(sim: Sim) -> FastAPI:
    app = FastAPI(title="gcpsim", openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.body())

    app.include_router(control.router(sim))
    app.include_router(iam.router(sim))  # before run_v2: `services/{s}:testIamPermissions`
    app.include_router(run_v2.router(sim))
    app.include_router(jobs_v2.router(sim))
    app.include_router(sql_instances.router)
    app.include_router(sql_backups.router)
    app.include_router(sql_operations.router)
    app.include_router(health.router(sim))
    app.include_router(dns_v1.router(sim))
    outage.install(app, sim)
    app.state.sim = sim
    app.add_middleware(LoopbackGuard)  # Host header (DNS rebinding) and cross-origin writes
    return app
