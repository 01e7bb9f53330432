"""The data behind gcpsim's Cloud SQL: backups, restores and point-in-time clones are real.

Every check drives the API through the real discovery client and reads the data with pg8000 at
the address `instances.get` reports (`ipAddresses` + the gcpsim-only `gcpsimConnection`).
The instances are clones of the seeded dev instance, in a project of this module's own, so the
seeded instances stay untouched. gcpsim's row writer keeps inserting rows into every running
instance (about 2 rows/s), like an application would.

Point in time, as gcpsim approximates it (gcpsim/pg/pitr.py): inserts are exact as of T (by
`created_at`); updates and deletes come from the newest backup or snapshot taken at or before
T, so a change made after T never shows up in the clone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
import requests

from testing.cloudsql import (
    DEV_DB,
    DEV_PROJECT,
    OwnInstances,
    connected,
    rfc3339,
    sqladmin,
    wait_ok,
)
from testing.gcpsim import GcpsimProcess, start_gcpsim, stop_gcpsim
from testing.paths import ROOT

PROJECT = "restore-data"
TABLES = ("cases", "parties", "party_issue_selections")


def server_now(c: pg8000.native.Connection) -> datetime:
    [[now]] = c.run("SELECT clock_timestamp()")
    assert isinstance(now, datetime)
    return now


def insert_case(c: pg8000.native.Connection, title: str) -> int:
    [[case_id]] = c.run("INSERT INTO cases (title) VALUES (:t) RETURNING id", t=title)
    return int(case_id)


def titles(c: pg8000.native.Connection, like: str) -> set[str]:
    return {r[0] for r in c.run("SELECT title FROM cases WHERE title LIKE :p", p=like)}


def rows(c: pg8000.native.Connection) -> set[tuple[str, int, datetime]]:
    out: set[tuple[str, int, datetime]] = set()
    for t in TABLES:
        out |= {(t, int(i), ts) for i, ts in c.run(f"SELECT id, created_at FROM {t}")}
    return out


def wait_for_writer(c: pg8000.native.Connection, after: datetime) -> None:
    """Bounded wait until the row writer inserted a row created after `after`."""
    for _ in range(300):
        n = sum(
            c.run(f"SELECT count(*) FROM {t} WHERE created_at > :a", a=after)[0][0] for t in TABLES
        )
        if n:
            return
        time.sleep(0.1)
    raise AssertionError("the row writer added no rows within 30 s")


class Own(OwnInstances):
    """This module's instances; its operation waits do not check the status order."""

    def __init__(self, sql: Any, sim_url: str) -> None:
        super().__init__(sql, PROJECT, in_order=False)
        self.sim_url = sim_url

    def clone_with_writer(self, prefix: str) -> dict[str, Any]:
        """A private copy of the dev database with the simulated application writing to it
        (a clone starts without one, like a real clone nothing points at yet)."""
        name = self.clone(prefix)
        r = requests.post(
            f"{self.sim_url}/_sim/sql/{PROJECT}/{name}/writer", json={"enabled": True}, timeout=10
        )
        r.raise_for_status()
        return self.get(name)

    def backup(self, name: str, description: str = "") -> str:
        op = (
            self.sql.backupRuns()
            .insert(project=PROJECT, instance=name, body={"description": description})
            .execute()
        )
        self.wait_ok(op)
        return str(op["backupContext"]["backupId"])

    def restore(self, target: str, backup_id: str, source: str) -> None:
        body = {
            "restoreBackupContext": {"backupRunId": backup_id, "instanceId": source,
                                     "project": PROJECT}
        }  # fmt: skip
        op = (
            self.sql.instances()
            .restoreBackup(project=PROJECT, instance=target, body=body)
            .execute()
        )
        self.wait_ok(op)

    def clone_at(self, source: str, when: datetime) -> dict[str, Any]:
        name = f"pitr-{uuid.uuid4().hex[:8]}"
        body = {"cloneContext": {"destinationInstanceName": name, "pointInTime": rfc3339(when)}}
        op = self.sql.instances().clone(project=PROJECT, instance=source, body=body).execute()
        self.names.append(name)
        assert self.get(name)["state"] == "PENDING_CREATE"
        self.wait_ok(op)
        inst = self.get(name)
        assert inst["state"] == "RUNNABLE"
        return inst


@pytest.fixture(scope="module")
def own(gcpsim: GcpsimProcess) -> Iterator[Own]:
    o = Own(sqladmin(gcpsim.url), gcpsim.url)
    yield o
    o.cleanup(ok=True)


def test_restore_brings_back_the_data_as_of_the_backup(own: Own) -> None:
    inst = own.clone_with_writer("restore")
    name = inst["name"]
    tag = uuid.uuid4().hex[:8]
    with connected(inst) as c:
        before_id = insert_case(c, f"before-{tag}")
        at_backup = rows(c)  # every row present before the backup was requested
        backup_id = own.backup(name, "before the bad release")
        done_at = server_now(c)
        insert_case(c, f"after-{tag}")
        # Damage rows that existed at backup time.
        victims = sorted(i for t, i, _ in at_backup if t == "party_issue_selections")[:5]
        c.run("DELETE FROM party_issue_selections WHERE id = ANY(:ids)", ids=victims)
        c.run("UPDATE cases SET title = 'CORRUPTED' WHERE id = :i", i=before_id)
        wait_for_writer(c, done_at)
        restore_called = server_now(c)

    own.restore(name, backup_id, name)

    with connected(own.get(name)) as c:  # the restore dropped the old connections
        assert titles(c, f"%-{tag}") == {f"before-{tag}"}
        assert c.run("SELECT title FROM cases WHERE id = :i", i=before_id) == [[f"before-{tag}"]]
        assert c.run("SELECT id FROM cases WHERE title = :t", t=f"after-{tag}") == []
        restored = rows(c)
        assert at_backup <= restored, "rows present at backup time are missing"
        for table in TABLES:
            [[n]] = c.run(
                f"SELECT count(*) FROM {table} WHERE created_at > :a AND created_at < :b",
                a=done_at,
                b=restore_called,
            )
            assert n == 0, f"{table}: {n} rows written after the backup survived the restore"
        wait_for_writer(c, server_now(c))  # the row writer resumed on the restored data


def test_restore_into_another_instance(own: Own) -> None:
    source, target = own.clone_with_writer("src"), own.clone_with_writer("dst")
    tag = uuid.uuid4().hex[:8]
    with connected(source) as c:
        insert_case(c, f"from-source-{tag}")
    backup_id = own.backup(source["name"])
    with connected(target) as c:
        insert_case(c, f"target-only-{tag}")

    own.restore(target["name"], backup_id, source["name"])

    with connected(own.get(target["name"])) as c:
        assert titles(c, f"%-{tag}") == {f"from-source-{tag}"}
    with connected(own.get(source["name"])) as c:
        assert titles(c, f"%-{tag}") == {f"from-source-{tag}"}


def test_point_in_time_clone_between_two_markers(own: Own) -> None:
    inst = own.clone_with_writer("pit")
    tag = uuid.uuid4().hex[:8]
    with connected(inst) as c:
        insert_case(c, f"first-{tag}")
        t = server_now(c)
        time.sleep(0.2)
        insert_case(c, f"second-{tag}")
        [[newest_before_t]] = c.run(
            "SELECT count(*) FROM cases WHERE created_at <= :t", t=t
        )  # fmt: skip

    clone = own.clone_at(inst["name"], t)

    with connected(clone) as c:
        assert titles(c, f"%-{tag}") == {f"first-{tag}"}
        [[n]] = c.run("SELECT count(*) FROM cases")
        assert n == newest_before_t, "cases created up to T: exactly those"
        [[newest]] = c.run("SELECT max(created_at) FROM cases")
        assert newest <= t


def test_point_in_time_clone_from_before_a_corruption(own: Own) -> None:
    """DR scenario 2: rows deleted and updated after T are intact in a clone at T."""
    inst = own.clone_with_writer("corrupt")
    tag = uuid.uuid4().hex[:8]
    with connected(inst) as c:
        marker = insert_case(c, f"keep-{tag}")
        backup_requested = server_now(c)
        own.backup(inst["name"])
        t = server_now(c)
        count = "SELECT count(*) FROM party_issue_selections WHERE created_at <= :t"
        [[at_backup]] = c.run(count, t=backup_requested)
        [[at_t]] = c.run(count, t=t)
        assert at_backup > 0
        time.sleep(0.2)
        c.run("DELETE FROM party_issue_selections")
        c.run("UPDATE cases SET title = 'CORRUPTED' WHERE id = :i", i=marker)

    clone = own.clone_at(inst["name"], t)

    with connected(clone) as c:
        assert c.run("SELECT title FROM cases WHERE id = :i", i=marker) == [[f"keep-{tag}"]]
        [[n]] = c.run("SELECT count(*) FROM party_issue_selections")
        # Rows as of the backup are all back; rows the writer added between the backup and T
        # are back too unless they were deleted after T (the documented approximation).
        assert at_backup <= n <= at_t


def test_data_survives_a_gcpsim_crash(tmp_path: Path) -> None:
    """gcpsim killed with SIGKILL: Postgres keeps running; the restarted gcpsim re-attaches."""
    state = tmp_path / "state"
    state.mkdir()
    sim = start_gcpsim(
        state, "--reset", "--seed", str(ROOT / "deploy.yaml"), "--sql-op-seconds", "0.2"
    )
    restarted: GcpsimProcess | None = None
    try:
        sql = sqladmin(sim.url)
        inst = sql.instances().get(project=DEV_PROJECT, instance=DEV_DB).execute()
        tag = uuid.uuid4().hex[:8]
        with connected(inst) as c:
            insert_case(c, f"crash-{tag}")
        sim.proc.kill()
        sim.proc.wait(timeout=30)
        assert (state / "pg" / "data" / "postmaster.pid").exists()

        restarted = start_gcpsim(state, "--sql-op-seconds", "0.2")
        sql = sqladmin(restarted.url)
        again = sql.instances().get(project=DEV_PROJECT, instance=DEV_DB).execute()
        assert again["gcpsimConnection"]["databases"] == inst["gcpsimConnection"]["databases"]
        assert again["gcpsimConnection"]["port"] == inst["gcpsimConnection"]["port"]
        with connected(again) as c:
            assert titles(c, f"%-{tag}") == {f"crash-{tag}"}
        runs = sql.backupRuns().list(project=DEV_PROJECT, instance=DEV_DB).execute()["items"]
        assert len(runs) == 3
        op = sql.backupRuns().insert(project=DEV_PROJECT, instance=DEV_DB, body={}).execute()
        wait_ok(sql, DEV_PROJECT, op, in_order=False)
    finally:
        if restarted is not None:
            stop_gcpsim(restarted)
        elif sim.proc.poll() is None:
            stop_gcpsim(sim)
        else:  # gcpsim died and did not come back: stop its Postgres ourselves
            from gcpsim.pg.cluster import PgCluster

            PgCluster(state / "pg").stop()
    assert not (state / "pg" / "data" / "postmaster.pid").exists(), "Postgres left running"


def test_snapshot_thinning_keeps_recent_and_sparse_old() -> None:
    from gcpsim.pg.pitr import thin_snapshots

    now = 1_000_000_000.0
    every_10s_for_2_days = [now - i * 10 for i in range(2 * 8640)]
    kept = thin_snapshots(every_10s_for_2_days, now)
    assert now in kept
    recent = [t for t in kept if now - t < 600]
    assert len(recent) == 60  # everything from the last 10 minutes
    assert len(kept) < 60 + 12 + 24 + 8 + 2
    assert max(now - t for t in kept) > 86400  # older ones are kept, sparsely
    assert thin_snapshots([now - 8 * 86400], now) == [now - 8 * 86400]  # the newest always stays
