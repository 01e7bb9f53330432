"""What `starter.py doctor` asks of a project, beyond the three APIs themselves:

- Service Usage v1 `services.get` (`GET /v1/projects/{p}/services/{api}`): whether an API is
  enabled (`state` ENABLED / DISABLED);
- Cloud Resource Manager v1 `projects.testIamPermissions`
  (`POST /v1/projects/{p}:testIamPermissions`): which of the given permissions the caller has
  on the project (Cloud SQL and Monitoring offer no testIamPermissions of their own);
- Cloud Run v2 `services.testIamPermissions`
  (`POST /v2/projects/{p}/locations/{l}/services/{s}:testIamPermissions`), on one service.

Everything is enabled and granted unless the control surface says otherwise, per project:
`POST /_sim/iam {"project": P, "disabled_apis": [...], "denied_permissions": [...]}` (an empty
body for a project resets it); `GET /_sim/iam` shows the settings. That is how the tests make
each doctor check fail.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from gcpsim.api.deps import SimDep
from gcpsim.errors import ApiError
from gcpsim.model.run_queries import settled_read
from gcpsim.sim import Sim


def _project(sim: Sim, project: str) -> dict[str, Any]:
    with sim.store.lock:
        return dict(sim.store.section("iam").get(project) or {})


def _granted(sim: Sim, project: str, permissions: list[str]) -> list[str]:
    denied = set(_project(sim, project).get("denied_permissions") or [])
    return [p for p in permissions if p not in denied]


router = APIRouter()


@router.get("/v1/projects/{project}/services/{api}")
def service_usage_get(sim: SimDep, project: str, api: str) -> dict[str, Any]:
    sim.faults.apply("serviceusage.services.get")
    disabled = set(_project(sim, project).get("disabled_apis") or [])
    return {
        "name": f"projects/{project}/services/{api}",
        "parent": f"projects/{project}",
        "config": {"name": api},
        "state": "DISABLED" if api in disabled else "ENABLED",
    }


def _permissions_answer(sim: Sim, project: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """A testIamPermissions answer: which of the asked permissions the caller holds."""
    granted = _granted(sim, project, list((body or {}).get("permissions") or []))
    return {"permissions": granted} if granted else {}


@router.post("/v1/projects/{project}:testIamPermissions")
def project_test_iam_permissions(
    sim: SimDep, project: str, body: dict[str, Any] | None = Body(None)
) -> dict[str, Any]:
    sim.faults.apply("cloudresourcemanager.projects.testIamPermissions")
    return _permissions_answer(sim, project, body)


@router.post("/v2/projects/{project}/locations/{location}/services/{service}:testIamPermissions")
def run_test_iam_permissions(
    sim: SimDep, project: str, location: str, service: str, body: dict[str, Any] | None = Body(None)
) -> dict[str, Any]:
    sim.faults.apply("run.services.testIamPermissions")
    with settled_read(sim, project, location, service) as (svc, _):
        exists = svc is not None
    if not exists:
        raise ApiError(
            404,
            f"Resource '{service}' of kind 'SERVICE' in region '{location}' in project "
            f"'{project}' does not exist.",
        )
    return _permissions_answer(sim, project, body)


@router.post("/_sim/iam")
def set_iam(sim: SimDep, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    project = str(body.get("project") or "")
    if not project:
        raise ApiError(400, "project is required")
    with sim.store.mutate() as d:
        section = d.setdefault("iam", {})
        settings = {k: list(body.get(k) or []) for k in ("disabled_apis", "denied_permissions")}
        if any(settings.values()):
            section[project] = settings
        else:
            section.pop(project, None)
        return dict(section)


@router.get("/_sim/iam")
def get_iam(sim: SimDep) -> dict[str, Any]:
    with sim.store.lock:
        return dict(sim.store.section("iam"))
