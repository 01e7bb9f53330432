"""Traffic splits: pure functions over Cloud Run traffic lists (no I/O; used by workflows).

The one rule that keeps rollbacks honest: never leave a `LATEST` entry in a split we set or
restore while a new revision exists, because LATEST then means the new (possibly failing)
revision. Snapshots are pinned to the revision LATEST pointed at when they were taken.
"""

from __future__ import annotations

from stagecoach.payloads.common import TrafficTarget


def pin_latest(traffic: list[TrafficTarget], latest_ready: str) -> list[TrafficTarget]:
    """Replace LATEST entries by the revision they route to now (an empty list means LATEST)."""
    if not traffic:
        traffic = [TrafficTarget(type="LATEST", percent=100)]
    return [
        TrafficTarget(type="REVISION", revision=latest_ready, percent=t.percent, tag=t.tag)
        if t.type == "LATEST"
        else t.model_copy()
        for t in traffic
    ]


def serving_revisions(traffic: list[TrafficTarget]) -> list[str]:
    """Revisions that receive traffic (percent > 0), in order, without duplicates."""
    seen: list[str] = []
    for t in traffic:
        if t.percent > 0 and t.revision and t.revision not in seen:
            seen.append(t.revision)
    return seen


def _scale(percents: list[int], total: int) -> list[int]:
    """Scale integer percents to sum to `total` (largest remainder, stable for ties)."""
    base = sum(percents)
    if base == 0:
        return [0] * len(percents)
    exact = [p * total / base for p in percents]
    out = [int(x) for x in exact]
    order = sorted(range(len(percents)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def canary_split(
    stable: list[TrafficTarget], canary: str, weight: int, tag: str
) -> list[TrafficTarget]:
    """The full split for one step: `weight`% to the canary, the rest shared like before.

    `stable` is a pinned snapshot. Its tags are kept (tag-only entries stay at 0%). At 100% the
    canary's own tag is dropped: the release is done with it.
    """
    if not 1 <= weight <= 100:
        raise ValueError(f"weight must be 1..100, got {weight}")
    serving = [t for t in stable if t.percent > 0 and t.revision != canary]
    shares = _scale([t.percent for t in serving], 100 - weight)
    out: list[TrafficTarget] = []
    for t, share in zip(serving, shares, strict=True):
        if share > 0 or t.tag:
            out.append(TrafficTarget(revision=t.revision, percent=share, tag=t.tag))
    for t in stable:
        if t.percent == 0 and t.tag and t.tag != tag and t.revision != canary:
            out.append(t.model_copy())
    out.append(TrafficTarget(revision=canary, percent=weight, tag="" if weight == 100 else tag))
    return out


def percent_of(traffic: list[TrafficTarget], revision: str) -> int:
    return sum(t.percent for t in traffic if t.revision == revision)


def describe(traffic: list[TrafficTarget]) -> str:
    parts = []
    for t in traffic:
        name = t.revision or "LATEST"
        tag = f" (tag {t.tag})" if t.tag else ""
        parts.append(f"{name} {t.percent}%{tag}")
    return ", ".join(parts)
