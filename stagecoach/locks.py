"""The service lock: what a release holds while it touches Cloud Run services.

One release at a time per Cloud Run service, whatever config, app or workflow id it comes from:
the lock is a `ServiceLock` workflow whose id names the service (`lock-run-<project>-<region>-
<service>`, stagecoach.contract), so Temporal itself refuses a second holder. The release
acquires its services' locks before it touches anything, re-acquires them after a
continue-as-new (same holder), and releases them on every ending; a lock whose holder ended
without releasing it (terminated, timed out) is taken over by the next release that needs it.
The payloads (`Holder`, `ServiceLockInput`, `LocksInput`) are in stagecoach.payloads.locks.
"""

from __future__ import annotations

from stagecoach.contract import service_lock_workflow_id
from stagecoach.payloads.common import ServiceRef
from stagecoach.payloads.locks import Holder, LocksInput, ServiceLockInput


def lock_id(ref: ServiceRef) -> str:
    return service_lock_workflow_id(ref.project, ref.region, ref.service)


__all__ = ["Holder", "LocksInput", "ServiceLockInput", "lock_id"]
