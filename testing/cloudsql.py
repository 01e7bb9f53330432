"""Cloud SQL through the real sqladmin v1 client pointed at gcpsim (conformance, e2e, bench).

The sqladmin v1 discovery client pointed at gcpsim, bounded polling of its operations, pg8000
connections to an instance's data, and the instances a module makes for itself (clones of the
seeded dev instance in a project of the module's own, deleted again at the end).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pg8000.native
from google.auth.credentials import AnonymousCredentials
from googleapiclient.errors import HttpError

DEV_PROJECT = "legal-forms-dev"
DEV_DB = "legal-forms-db-dev"
STATUS_ORDER = {"PENDING": 0, "RUNNING": 1, "DONE": 2}


def sqladmin(url: str) -> Any:
    """The real sqladmin v1 discovery client, anonymous, talking to gcpsim at `url`."""
    from googleapiclient import discovery

    return discovery.build(
        "sqladmin",
        "v1",
        credentials=AnonymousCredentials(),
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": url + "/"},
    )


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wait_op(
    sql: Any, project: str, op: dict[str, Any], timeout: float = 60, *, in_order: bool = True
) -> dict[str, Any]:
    """Poll operations.get until DONE (bounded); returns the final operation.

    in_order: also assert that the status never went backwards (PENDING, RUNNING, DONE)."""
    seen = [op["status"]]
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.05) + 1):
        cur: dict[str, Any] = sql.operations().get(project=project, operation=op["name"]).execute()
        seen.append(cur["status"])
        if cur["status"] == "DONE":
            if in_order:
                ranks = [STATUS_ORDER[s] for s in seen]
                assert ranks == sorted(ranks), f"status went backwards: {seen}"
            return cur
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"operation {op['name']} not DONE after {timeout}s: {seen[-3:]}")


def wait_ok(
    sql: Any, project: str, op: dict[str, Any], timeout: float = 60, *, in_order: bool = True
) -> dict[str, Any]:
    """`wait_op`, and the operation finished without an error."""
    done = wait_op(sql, project, op, timeout, in_order=in_order)
    assert "error" not in done, done["error"]
    return done


def connect(inst: dict[str, Any], db: str = "legalforms") -> pg8000.native.Connection:
    """A pg8000 connection to `db` of an instance, at the address `instances.get` reports."""
    c = inst["gcpsimConnection"]
    return pg8000.native.Connection(
        c["user"],
        password=c["password"],
        host=inst["ipAddresses"][0]["ipAddress"],
        port=c["port"],
        database=c["databases"][db],
    )


@contextmanager
def connected(inst: dict[str, Any], db: str = "legalforms") -> Iterator[pg8000.native.Connection]:
    """`connect`, closed again when the block ends (however it ends)."""
    c = connect(inst, db)
    try:
        yield c
    finally:
        c.close()


class OwnInstances:
    """Instances a test module makes for itself in `project`: clones of the seeded dev instance
    (and whatever else a test adds to `names`), deleted again by `cleanup`.

    in_order: whether every wait for an operation also checks its status order (`wait_op`)."""

    def __init__(self, sql: Any, project: str, *, in_order: bool = True) -> None:
        self.sql = sql
        self.project = project
        self.in_order = in_order
        self.names: list[str] = []

    def wait_ok(self, op: dict[str, Any], project: str | None = None) -> dict[str, Any]:
        return wait_ok(self.sql, project or self.project, op, in_order=self.in_order)

    def clone(self, prefix: str = "conf") -> str:
        """A new clone of the seeded dev instance in `project`; returns its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        body = {
            "cloneContext": {"destinationInstanceName": name, "destinationProject": self.project}
        }
        op = self.sql.instances().clone(project=DEV_PROJECT, instance=DEV_DB, body=body).execute()
        self.names.append(name)
        self.wait_ok(op, DEV_PROJECT)
        return name

    def get(self, name: str) -> dict[str, Any]:
        inst: dict[str, Any] = (
            self.sql.instances().get(project=self.project, instance=name).execute()
        )
        return inst

    def cleanup(self, *, ok: bool = False) -> None:
        """Delete every instance in `names` (one that is gone already is fine).

        ok: also assert that each deletion finished without an error."""
        for name in self.names:
            try:
                op = self.sql.instances().delete(project=self.project, instance=name).execute()
                done = wait_op(self.sql, self.project, op, in_order=self.in_order)
                if ok:
                    assert "error" not in done, done["error"]
            except HttpError as e:
                if e.status_code != 404:
                    raise


def backups_described(url: str, project: str, instance: str, prefix: str) -> int:
    """How many backup runs of an instance have a description starting with `prefix`."""
    api = sqladmin(url).backupRuns()
    req = api.list(project=project, instance=instance, maxResults=500)
    n = 0
    while req is not None:
        resp = req.execute()
        items = resp.get("items", [])
        n += sum(1 for r in items if (r.get("description") or "").startswith(prefix))
        req = api.list_next(req, resp)
    return n
