"""The row writer: the simulated application inserting rows (see gcpsim.pg, "Row writer")."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pg8000.native

from gcpsim.pg.sql import insert_row, log, rows_per_second, writable_tables

if TYPE_CHECKING:
    from gcpsim.pg.cluster import PgCluster


# ---------------------------------------------------------------------- row writer


class RowWriter:
    """Inserts rows into every running instance's reference tables at `rows_per_second`."""

    def __init__(self, cluster: PgCluster, targets: Callable[[], list[str]]) -> None:
        self.cluster = cluster
        self.targets = targets
        self.rows_written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gcpsim-sql-writer", daemon=True)
        self._conns: dict[str, pg8000.native.Connection] = {}
        self._tables: dict[str, list[str]] = {}
        self._counter: dict[str, int] = {}
        self._catalog: dict[str, dict[str, str]] = {}
        self._catalog_at = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
        for name in list(self._conns):
            self._drop(name)

    def _drop(self, name: str) -> None:
        conn = self._conns.pop(name, None)
        self._tables.pop(name, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            rate = rows_per_second()
            if rate <= 0:
                self._stop.wait(0.5)
                continue
            t0 = time.monotonic()
            try:
                self.tick()
            except Exception as e:  # never let the writer die
                log.debug("writer tick: %s", e)
            self._stop.wait(max(0.01, 1.0 / rate - (time.monotonic() - t0)))

    def tick(self) -> None:
        uids = [u for u in self.targets() if not self.cluster.paused(u)]
        if not uids:
            return
        now = time.monotonic()
        if now - self._catalog_at > 2.0 or any(u not in self._catalog for u in uids):
            self._catalog = self.cluster.catalog()
            self._catalog_at = now
        for uid in uids:
            for name in self._catalog.get(uid, {}).values():
                if self.cluster.paused(uid) or self._stop.is_set():
                    break
                try:
                    self._write_one(name)
                except Exception as e:
                    log.debug("writer %s: %s", name, e)
                    self._drop(name)
                    self._catalog_at = 0.0

    def _write_one(self, name: str) -> None:
        conn = self._conns.get(name)
        if conn is None:
            conn = self.cluster.connect(name)
            self._conns[name] = conn
            self._tables[name] = writable_tables(conn)
        tables = self._tables.get(name) or []
        if not tables:
            return
        n = self._counter.get(name, 0)
        self._counter[name] = n + 1
        insert_row(conn, tables[n % len(tables)], f"case {n + 1}", None)
        self.rows_written += 1
