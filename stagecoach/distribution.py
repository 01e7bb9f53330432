"""Percentiles from histogram buckets, with `google.api.Distribution` semantics. Pure.

A distribution has N = num_finite_buckets + 2 buckets: bucket 0 is the underflow bucket
(-inf, b0), buckets 1..N-2 are finite, bucket N-1 is the overflow bucket [b_last, +inf).
`bucket_counts` may be shorter than N (missing counts are 0).

- exponential: upper bound of bucket i (0 <= i < N-1) is scale * growth_factor**i;
- linear: upper bound of bucket i is offset + width * i;
- explicit: upper bound of bucket i is bounds[i] (N = len(bounds) + 1).

`percentile` finds the bucket holding the q-th percentile rank and interpolates linearly inside
it. For the open-ended buckets it answers the finite bound (the overflow bucket's lower bound,
the underflow bucket's upper bound), except that an exponential underflow bucket is taken as
[0, scale), since exponential buckets describe positive quantities such as latencies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BucketOptions",
    "ExplicitBuckets",
    "ExponentialBuckets",
    "LinearBuckets",
    "bucket_bounds",
    "bucket_options_from",
    "merge_counts",
    "num_buckets",
    "percentile",
]


@dataclass(frozen=True)
class ExponentialBuckets:
    num_finite_buckets: int
    growth_factor: float
    scale: float


@dataclass(frozen=True)
class LinearBuckets:
    num_finite_buckets: int
    width: float
    offset: float


@dataclass(frozen=True)
class ExplicitBuckets:
    bounds: tuple[float, ...]


BucketOptions = ExponentialBuckets | LinearBuckets | ExplicitBuckets


def num_buckets(options: BucketOptions) -> int:
    if isinstance(options, ExplicitBuckets):
        return len(options.bounds) + 1
    return options.num_finite_buckets + 2


def _upper(options: BucketOptions, i: int) -> float:
    """Upper bound of bucket i, 0 <= i < N-1."""
    if isinstance(options, ExponentialBuckets):
        return float(options.scale * options.growth_factor**i)
    if isinstance(options, LinearBuckets):
        return float(options.offset + options.width * i)
    return float(options.bounds[i])


def bucket_bounds(options: BucketOptions, i: int) -> tuple[float, float]:
    """(lower, upper) of bucket i; -inf / +inf for the underflow / overflow buckets."""
    n = num_buckets(options)
    if not 0 <= i < n:
        raise IndexError(f"bucket {i} out of range 0..{n - 1}")
    lower = -math.inf if i == 0 else _upper(options, i - 1)
    upper = math.inf if i == n - 1 else _upper(options, i)
    return lower, upper


def _finite_bounds(options: BucketOptions, i: int) -> tuple[float, float]:
    """Bounds used for interpolation: open ends collapse onto the finite bound."""
    lower, upper = bucket_bounds(options, i)
    if math.isinf(lower):
        exponential = isinstance(options, ExponentialBuckets) and options.scale > 0
        lower = 0.0 if exponential else upper
    if math.isinf(upper):
        upper = lower
    return lower, upper


def percentile(
    bucket_options: BucketOptions | Mapping[str, Any] | Any,
    bucket_counts: Sequence[int | str],
    q: float,
) -> float | None:
    """The q-th percentile (q in [0, 100]) of a bucketed distribution; None when it is empty.

    `bucket_options` may be one of the dataclasses above, the JSON form of
    `google.api.Distribution.BucketOptions` (camelCase or snake_case keys), or the protobuf
    message itself.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within [0, 100], got {q}")
    options = bucket_options_from(bucket_options)
    n = num_buckets(options)
    counts = [int(c) for c in bucket_counts[:n]]
    if any(c < 0 for c in counts):
        raise ValueError("bucket counts must not be negative")
    total = sum(counts)
    if total == 0:
        return None
    rank = q / 100 * total
    cumulative = 0
    for i, count in enumerate(counts):
        if count == 0:
            continue
        if cumulative + count >= rank:
            lower, upper = _finite_bounds(options, i)
            fraction = min(max((rank - cumulative) / count, 0.0), 1.0)
            return lower + fraction * (upper - lower)
        cumulative += count
    # Floating-point slack: the rank is at the very top of the last non-empty bucket.
    last = max(i for i, c in enumerate(counts) if c)
    return _finite_bounds(options, last)[1]


def merge_counts(*bucket_counts: Sequence[int | str]) -> list[int]:
    """Element-wise sum of bucket counts of distributions that share their bucket options."""
    size = max((len(c) for c in bucket_counts), default=0)
    merged = [0] * size
    for counts in bucket_counts:
        for i, c in enumerate(counts):
            merged[i] += int(c)
    return merged


# ---------------------------------------------------------------------------- conversions


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        if isinstance(obj, Mapping):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    return None


def bucket_options_from(value: Any) -> BucketOptions:
    """Normalize bucket options from a dataclass, a JSON dict or a protobuf message."""
    if isinstance(value, ExponentialBuckets | LinearBuckets | ExplicitBuckets):
        return value
    kind: str | None = None
    if not isinstance(value, Mapping) and hasattr(value, "WhichOneof"):
        kind = value.WhichOneof("options")  # protobuf google.api.Distribution.BucketOptions
    exp = _get(value, "exponentialBuckets", "exponential_buckets")
    lin = _get(value, "linearBuckets", "linear_buckets")
    expl = _get(value, "explicitBuckets", "explicit_buckets")
    if kind == "exponential_buckets" or (kind is None and exp):
        return ExponentialBuckets(
            num_finite_buckets=int(_get(exp, "numFiniteBuckets", "num_finite_buckets") or 0),
            growth_factor=float(_get(exp, "growthFactor", "growth_factor") or 0.0),
            scale=float(_get(exp, "scale") or 0.0),
        )
    if kind == "linear_buckets" or (kind is None and lin):
        return LinearBuckets(
            num_finite_buckets=int(_get(lin, "numFiniteBuckets", "num_finite_buckets") or 0),
            width=float(_get(lin, "width") or 0.0),
            offset=float(_get(lin, "offset") or 0.0),
        )
    if kind == "explicit_buckets" or (kind is None and expl):
        return ExplicitBuckets(bounds=tuple(float(b) for b in (_get(expl, "bounds") or ())))
    raise ValueError(f"unsupported bucket options: {value!r}")
