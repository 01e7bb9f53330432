"""Fault injection: rules that make an API method fail, slow down, or end its operation in error.

A rule names a method (`run.services.get`, `sql.backupRuns.insert`,
`monitoring.timeSeries.list`, ... or `*` for every method; `python -m gcpsim show` lists them),
and any of: an HTTP status to answer with (429, 500, 503, 409, ...), a rate in [0, 1] at which it
fires, added latency, a number of times it fires before it is spent (`times`), and `op_error`:
the method succeeds but the long-running operation it starts ends in error.
Rules live in the store (`sim.faults`), so they survive a restart; randomness is seeded.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from gcpsim.errors import ApiError
from gcpsim.store import Store


@dataclass
class FaultOutcome:
    op_error: str | None = None  # message for an operation that must end in error


def _matches(pattern: str, method: str) -> bool:
    if pattern.endswith("*"):
        return method.startswith(pattern[:-1])
    return pattern == method


class Faults:
    def __init__(self, store: Store, seed: int = 0) -> None:
        self.store = store
        self.rng = random.Random(seed)

    def rules(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return list(self.store.section("sim").get("faults", []))

    def add(
        self,
        method: str,
        *,
        status: int | None = None,
        rate: float = 1.0,
        latency_ms: int = 0,
        times: int | None = None,
        op_error: bool = False,
        message: str | None = None,
    ) -> dict[str, Any]:
        rule = {
            "id": uuid.uuid4().hex[:8],
            "method": method,
            "status": status,
            "rate": rate,
            "latency_ms": latency_ms,
            "times": times,
            "op_error": op_error,
            "message": message,
        }
        with self.store.mutate() as d:
            d["sim"].setdefault("faults", []).append(rule)
        return rule

    def clear(self, rule_id: str | None = None) -> int:
        with self.store.mutate() as d:
            before = d["sim"].get("faults", [])
            kept = [r for r in before if rule_id is not None and r["id"] != rule_id]
            d["sim"]["faults"] = kept
            return len(before) - len(kept)

    def apply(self, method: str, style: str = "rpc") -> FaultOutcome:
        """Call at the top of every API handler. Sleeps, raises ApiError, or flags op_error."""
        outcome = FaultOutcome()
        with self.store.lock:
            rules = self.store.section("sim").get("faults", [])
            if not rules:
                return outcome
            fired: list[dict[str, Any]] = []
            for r in rules:
                if not _matches(r["method"], method):
                    continue
                if r["times"] is not None and r["times"] <= 0:
                    continue
                if self.rng.random() >= r["rate"]:
                    continue
                fired.append(r)
            counted = [r for r in fired if r["times"] is not None]
            if counted:  # only a spent count changes the stored rules
                for r in counted:
                    r["times"] -= 1
                self.store.data["sim"]["faults"] = [
                    r for r in rules if r["times"] is None or r["times"] > 0
                ]
                self.store.save()
        latency = sum(r["latency_ms"] for r in fired)
        if latency:
            time.sleep(latency / 1000)
        for r in fired:
            if r["op_error"]:
                outcome.op_error = r["message"] or f"simulated failure of {method}"
            elif r["status"]:
                raise ApiError(
                    r["status"],
                    r["message"] or f"simulated {r['status']} for {method}",
                    style="sql" if style == "sql" else "rpc",
                    reason="simulatedFault",
                )
        return outcome
