"""PgCluster: the embedded server with every data operation the Cloud SQL API layer uses
(instances, rows, images, point in time, read replicas, the row writer, housekeeping).
See gcpsim.pg."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from datetime import UTC
from typing import Any

from gcpsim.pg.replication import PgReplication
from gcpsim.pg.sql import (
    GENERIC_DDL,
    REFERENCE_DDL,
    REFERENCE_TABLES,
    PgError,
    as_datetime,
    created_at_tables,
    ident,
    insert_row,
    writable_tables,
)
from gcpsim.pg.writer import RowWriter


class PgCluster(PgReplication):
    """The embedded Postgres server under `root` and every data operation on it."""

    # ------------------------------------------------------------------ instances

    def create_instance(self, uid: str, databases: dict[str, list[str]]) -> dict[str, str]:
        """Create the logical databases of a new instance, each with the given tables."""
        with self._conn() as c:
            for logical, tables in databases.items():
                tmp = self._new_tmp_db(c)
                if tables:
                    with self._conn(tmp) as t:
                        for table in self._ordered(tables):
                            generic = GENERIC_DDL.format(table=ident(table))
                            t.run(REFERENCE_DDL.get(table, generic))
                self._adopt(c, tmp, uid, logical)
        return self.databases(uid)

    @staticmethod
    def _ordered(tables: Iterable[str]) -> list[str]:
        ts = list(dict.fromkeys(tables))
        known = [t for t in REFERENCE_TABLES if t in ts]
        # Children need their parent tables.
        if "parties" in known and "cases" not in known:
            known.insert(0, "cases")
        if "party_issue_selections" in known and "parties" not in known:
            known.insert(known.index("party_issue_selections"), "parties")
        return known + [t for t in ts if t not in REFERENCE_TABLES]

    def insert_rows(
        self, uid: str, logical: str, timestamps: list[float], label: str = "seed"
    ) -> int:
        """Insert one row per timestamp (rotating over the writable tables, with that
        created_at) into a logical database; returns the number inserted."""
        name = self.databases(uid).get(logical)
        if name is None:
            raise PgError(f"instance {uid} has no database {logical!r}")
        with self._conn(name) as c:
            tables = writable_tables(c)
            if not tables:
                return 0
            for i, ts in enumerate(sorted(timestamps)):
                insert_row(c, tables[i % len(tables)], f"{label} {i + 1}", as_datetime(ts))
        return len(timestamps)

    def row_stats(self, uid: str) -> dict[str, dict[str, dict[str, Any]]]:
        """{logical db: {table: {"rows": n, "newest": rfc3339 | None}}} for created_at tables."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for logical, name in self.databases(uid).items():
            try:
                with self._conn(name) as c:
                    stats: dict[str, dict[str, Any]] = {}
                    for table in created_at_tables(c):
                        sql = f"SELECT count(*), max(created_at) FROM {ident(table)}"
                        n, newest = c.run(sql)[0]
                        stats[table] = {
                            "rows": int(n),
                            "newest": newest.astimezone(UTC).isoformat() if newest else None,
                        }
                    out[logical] = stats
            except Exception as e:  # a database being swapped right now
                out[logical] = {"error": {"message": str(e)}}
        return out

    def start_writer(self, targets: Callable[[], list[str]]) -> RowWriter:
        """Start the row writer thread; `targets()` names the instance uids to write to."""
        if self._writer is None:
            self._writer = RowWriter(self, targets)
            self._writer.start()
        return self._writer

    # ------------------------------------------------------------------ housekeeping

    def gc(self, keep_uids: set[str], keep_backups: set[str]) -> None:
        """Drop the data of instances and backups the API state no longer knows
        (e.g. after `--reset`)."""
        with self._conn() as c:
            for uid, dbs in self.catalog().items():
                if uid not in keep_uids:
                    for name in dbs.values():
                        c.run(f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")
        if self.pitr_dir.exists():
            for p in self.pitr_dir.iterdir():
                if p.name not in keep_uids:
                    shutil.rmtree(p, ignore_errors=True)
        if self.backups_dir.exists():
            for p in self.backups_dir.iterdir():
                if p.name not in keep_backups:
                    shutil.rmtree(p, ignore_errors=True)
