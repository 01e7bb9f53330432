"""The service lock: what a release holds while it touches Cloud Run services (pure models).

One release at a time per Cloud Run service, whatever config, app or workflow id it comes from:
the lock is a `ServiceLock` workflow whose id names the service (`lock-run-<project>-<region>-
<service>`), so Temporal itself refuses a second holder. The release acquires its services'
locks before it touches anything, re-acquires them after a continue-as-new (same holder), and
releases them on every ending; a lock whose holder ended without releasing it (terminated,
timed out) is taken over by the next release that needs it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from stagecoach.models import ServiceRef


def lock_id(ref: ServiceRef) -> str:
    return f"lock-run-{ref.project}-{ref.region}-{ref.service}"


class Holder(BaseModel):
    workflow_id: str
    app: str = ""
    env: str = ""
    version: str = ""
    since: datetime | None = None

    def describe(self) -> str:
        return f"{self.workflow_id} ({self.app} {self.version} to {self.env})"


class ServiceLockInput(BaseModel):
    service: str  # projects/.../services/NAME
    holder: Holder


class LocksInput(BaseModel):
    holder: Holder
    services: list[ServiceRef]
