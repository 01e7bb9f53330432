"""The bake policy: what a judge's verdict does to a step. Pure; the release workflow applies it.

After each reading of a step's bake:
- FAIL, `consecutive_breaches` times in a row: `rollback`, or `pause` for a person to `abort`
  (roll back) or `promote` (override) where `on_failure: pause`;
- at the end of the bake, PASS: `advance` to the next step;
- at the end of the bake, INCONCLUSIVE (too little evidence, or a test leaning towards a
  regression): `extend` the bake by one interval, up to `max_extensions` times; then
  `on_inconclusive`: `pause` for a person (default), `pass` (advance, saying so) or `fail`
  (roll back); `extend` is the older spelling of `fail` after the extensions;
- otherwise `wait` for the next reading.

Also here: the metric timing of a target (how far behind real time complete data is).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from stagecoach.config import Gates as ConfigGates
from stagecoach.payloads.policy import Gates as PayloadGates

# The gates as configured (deploy.yaml) or as carried in a workflow's input: the same fields.
Gates = ConfigGates | PayloadGates

GCP_DELAY = timedelta(seconds=180)  # Cloud Run metrics become visible up to 180 s late
GCP_ALIGNMENT = timedelta(seconds=60)  # ... sampled every 60 s (the API's minimum period)
SIM_DELAY = timedelta(0)
SIM_ALIGNMENT = timedelta(seconds=1)

Action = Literal["wait", "rollback", "pause", "extend", "advance", "pause_inconclusive"]


@dataclass(frozen=True)
class BakeStep:
    action: Action
    breaches: int  # consecutive failed readings after this one


def after_reading(
    verdict: str, at_end: bool, breaches: int, extensions: int, gates: Gates
) -> BakeStep:
    """The bake's next move after a reading with `verdict` ("pass" | "fail" | "inconclusive")."""
    if verdict == "fail":
        breaches += 1
        if breaches >= gates.consecutive_breaches:
            return BakeStep("rollback" if gates.on_failure == "rollback" else "pause", breaches)
        return BakeStep("wait", breaches)
    breaches = 0
    if not at_end:
        return BakeStep("wait", breaches)
    if verdict == "pass":
        return BakeStep("advance", breaches)
    if extensions < gates.max_extensions:
        return BakeStep("extend", breaches)
    policy = gates.on_inconclusive
    if policy == "pass":
        return BakeStep("advance", breaches)
    if policy == "pause":
        return BakeStep("pause_inconclusive", breaches)
    return BakeStep("rollback", breaches)  # fail, or extend (the older spelling)


def metrics_timing(gates: Gates, target_kind: str) -> tuple[timedelta, timedelta]:
    """(delay, alignment) of complete metric data on a target; the gates may set either."""
    gcp = target_kind == "gcp"
    delay = gates.metrics_delay
    alignment = gates.metrics_alignment
    if delay is None:
        delay = GCP_DELAY if gcp else SIM_DELAY
    if alignment is None:
        alignment = GCP_ALIGNMENT if gcp else SIM_ALIGNMENT
    return delay, max(alignment, timedelta(seconds=1))
