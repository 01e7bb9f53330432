"""The service lock (workflows/lock.py, activities/locks.py): who holds a Cloud Run service."""

from __future__ import annotations

from datetime import datetime

from stagecoach.payloads.base import Payload
from stagecoach.payloads.common import ServiceRef


class Holder(Payload):
    workflow_id: str
    app: str = ""
    env: str = ""
    version: str = ""
    since: datetime | None = None

    def describe(self) -> str:
        return f"{self.workflow_id} ({self.app} {self.version} to {self.env})"


class ServiceLockInput(Payload):
    service: str  # projects/.../services/NAME
    holder: Holder


class LocksInput(Payload):
    holder: Holder
    services: list[ServiceRef]
