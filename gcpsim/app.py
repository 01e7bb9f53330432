"""The FastAPI application that serves the simulated Google APIs (Cloud Run v2 services and
jobs, Cloud SQL Admin v1, Cloud DNS v1, the IAM checks), the service/tag URLs (health checks),
and the `/_sim/...` control surface: every router of gcpsim.api, each at module level, with the
simulator on `app.state.sim` (gcpsim.api.deps.SimDep)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gcpsim.api import (
    control,
    dns,
    health,
    iam,
    outage,
    run_jobs,
    run_services,
    sql_backups,
    sql_instances,
    sql_operations,
)
from gcpsim.errors import ApiError
from gcpsim.guard import LoopbackGuard
from gcpsim.sim import Sim


def create_app(sim: Sim) -> FastAPI:
    app = FastAPI(title="gcpsim", openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.body())

    app.state.sim = sim
    app.include_router(control.router)
    app.include_router(iam.router)  # before run_services: `services/{s}:testIamPermissions`
    app.include_router(run_services.router)
    app.include_router(run_jobs.router)
    app.include_router(sql_instances.router)
    app.include_router(sql_backups.router)
    app.include_router(sql_operations.router)
    app.include_router(health.router)
    app.include_router(dns.router)
    outage.install(app, sim)
    app.add_middleware(LoopbackGuard)  # Host header (DNS rebinding) and cross-origin writes
    return app
