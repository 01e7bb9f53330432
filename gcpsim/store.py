"""Persistent simulator state: one JSON document in the state dir, guarded by one lock.

Every API module keeps its resources in its own section (`run`, `sql`, `sim`) of `Store.data`.
Reads take the lock; writes go through `Store.mutate()`, which saves atomically on exit, so the
state survives a restart of gcpsim (and a crash between two writes loses at most that write).
Serialised with orjson: the whole state is rewritten on every mutation (a 2 MB state after 500
releases), and orjson does it ~8x faster than the json module, which made Store.save most of
gcpsim's busy time under load (bench/RESULTS.md, "Scale").
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

STATE_FILE = "state.json"


def now() -> float:
    """Simulator clock (epoch seconds). One place, so tests can reason about it."""
    return time.time()


def rfc3339(ts: float) -> str:
    """Epoch seconds -> RFC 3339 with microseconds and `Z`, as the real APIs emit."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(value: str) -> float:
    v = value.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class Store:
    def __init__(self, state_dir: str | Path, reset: bool = False) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / STATE_FILE
        self.lock = threading.RLock()
        self._depth = 0  # nested mutate() calls save once, at the outermost exit
        self.data: dict[str, Any] = {"run": {}, "sql": {}, "sim": {}}
        if reset and self.path.exists():
            self.path.unlink()
        if self.path.exists():
            self.data.update(orjson.loads(self.path.read_bytes()))

    def section(self, name: str) -> dict[str, Any]:
        return self.data.setdefault(name, {})

    @contextmanager
    def mutate(self) -> Iterator[dict[str, Any]]:
        """Hold the lock for a read-modify-write and persist the result."""
        with self.lock:
            self._depth += 1
            try:
                yield self.data
            finally:
                self._depth -= 1
            if self._depth == 0:
                self.save()

    def save(self) -> None:
        with self.lock:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(self.data, option=orjson.OPT_NON_STR_KEYS))
            os.replace(tmp, self.path)
