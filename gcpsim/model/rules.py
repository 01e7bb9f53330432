"""gcpsim's control rules (behaviours, job behaviours, request rates, Monitoring timing,
outages): lists in the state's `sim` section, oldest first."""

from __future__ import annotations

from typing import Any

from gcpsim.sim import Sim


def put_rule(sim: Sim, section: str, rule: dict[str, Any], key: tuple[str, ...]) -> dict[str, Any]:
    """Store `rule` last in the `section` list, replacing the rules that have its values in
    every field of `key`; returns it."""
    with sim.store.mutate() as d:
        rules = [r for r in d["sim"].get(section, []) if any(r[k] != rule[k] for k in key)]
        rules.append(rule)
        d["sim"][section] = rules
    return rule


def drop_rules(sim: Sim, section: str, match: dict[str, str | None]) -> int:
    """Remove the rules of the `section` list that have every value of `match` that is not
    None (all of them when none is given); returns how many."""
    with sim.store.mutate() as d:
        rules = d["sim"].get(section, [])
        keep = [r for r in rules if not all(v is None or r[k] == v for k, v in match.items())]
        d["sim"][section] = keep
        return len(rules) - len(keep)
