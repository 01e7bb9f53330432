"""Percentiles from google.api.Distribution buckets: examples and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagecoach.distribution import (
    BucketOptions,
    ExplicitBuckets,
    ExponentialBuckets,
    LinearBuckets,
    bucket_bounds,
    bucket_options_from,
    merge_counts,
    num_buckets,
    percentile,
)

# ---------------------------------------------------------------------------- strategies

exponential = st.builds(
    ExponentialBuckets,
    num_finite_buckets=st.integers(1, 40),
    growth_factor=st.floats(1.1, 4.0),
    scale=st.floats(0.01, 100.0),
)
linear = st.builds(
    LinearBuckets,
    num_finite_buckets=st.integers(1, 40),
    width=st.floats(0.5, 100.0),
    offset=st.floats(-100.0, 100.0),
)
explicit = st.lists(st.integers(-10_000, 10_000), min_size=1, max_size=30, unique=True).map(
    lambda xs: ExplicitBuckets(bounds=tuple(float(x) for x in sorted(xs)))
)
any_options = st.one_of(exponential, linear, explicit)


@st.composite
def distributions(draw: st.DrawFn) -> tuple[BucketOptions, list[int]]:
    options = draw(any_options)
    n = num_buckets(options)
    counts = draw(st.lists(st.integers(0, 1000), min_size=1, max_size=n))
    if sum(counts) == 0:
        counts[draw(st.integers(0, len(counts) - 1))] = draw(st.integers(1, 1000))
    return options, counts


qs = st.floats(0.0, 100.0)


def _containing_bucket(counts: list[int], q: float) -> int:
    """Index of the bucket holding the q-th percentile rank (first non-empty reaching it)."""
    total = sum(counts)
    rank = q / 100 * total
    cumulative = 0
    for i, c in enumerate(counts):
        if c and cumulative + c >= rank:
            return i
        cumulative += c
    return max(i for i, c in enumerate(counts) if c)


# ---------------------------------------------------------------------------- properties


@given(distributions(), qs, qs)
def test_monotone_in_q(dist: tuple[BucketOptions, list[int]], q1: float, q2: float) -> None:
    options, counts = dist
    lo, hi = sorted((q1, q2))
    a, b = percentile(options, counts, lo), percentile(options, counts, hi)
    assert a is not None and b is not None
    assert a <= b + 1e-9 * max(1.0, abs(b))


@given(distributions(), qs)
def test_within_the_containing_buckets_bounds(
    dist: tuple[BucketOptions, list[int]], q: float
) -> None:
    options, counts = dist
    value = percentile(options, counts, q)
    assert value is not None and math.isfinite(value)
    lower, upper = bucket_bounds(options, _containing_bucket(counts, q))
    if isinstance(options, ExponentialBuckets):
        lower = max(lower, 0.0)
    slack = 1e-9 * max(1.0, abs(value))
    assert lower - slack <= value <= upper + slack


@given(any_options, st.data(), st.integers(1, 10_000), qs)
def test_exact_on_single_bucket_data(
    options: BucketOptions, data: st.DataObject, count: int, q: float
) -> None:
    n = num_buckets(options)
    i = data.draw(st.integers(1, n - 2)) if n > 2 else None
    if i is None:  # explicit with one bound: no finite bucket
        return
    counts = [0] * n
    counts[i] = count
    lower, upper = bucket_bounds(options, i)
    expected = lower + q / 100 * (upper - lower)
    value = percentile(options, counts, q)
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-9)


@given(distributions(), qs)
def test_bucket_counts_beyond_n_and_trailing_zeros_do_not_matter(
    dist: tuple[BucketOptions, list[int]], q: float
) -> None:
    options, counts = dist
    padded = counts + [0] * (num_buckets(options) - len(counts))
    assert percentile(options, counts, q) == percentile(options, padded, q)


@given(distributions(), st.integers(2, 5), qs)
def test_merging_copies_keeps_percentiles(
    dist: tuple[BucketOptions, list[int]], k: int, q: float
) -> None:
    options, counts = dist
    merged = merge_counts(*([counts] * k))
    a, b = percentile(options, counts, q), percentile(options, merged, q)
    assert a is not None and b is not None
    assert a == pytest.approx(b, rel=1e-9, abs=1e-9)


# ---------------------------------------------------------------------------- examples


def test_contract_example_p95() -> None:
    # request_latencies example from the API contract: scale 1, growth 4, 5 finite buckets.
    options = {"exponentialBuckets": {"numFiniteBuckets": 5, "growthFactor": 4.0, "scale": 1.0}}
    counts = ["0", "10", "150", "700", "90", "10", "2"]
    # total 962, rank 913.9: bucket 4 = [64, 256), 53.9 of its 90 -> 64 + 0.5989 * 192
    value = percentile(options, counts, 95)
    assert value == pytest.approx(64 + (913.9 - 860) / 90 * 192)


def test_empty_distribution_has_no_percentile() -> None:
    assert percentile(LinearBuckets(3, 10, 0), [], 95) is None
    assert percentile(LinearBuckets(3, 10, 0), [0, 0, 0], 50) is None


def test_open_ended_buckets_answer_their_finite_bound() -> None:
    options = LinearBuckets(
        num_finite_buckets=2, width=10, offset=0
    )  # (-inf,0) [0,10) [10,20) [20,inf)
    assert percentile(options, [0, 0, 0, 5], 99) == 20.0
    assert percentile(options, [5], 50) == 0.0
    assert percentile(ExponentialBuckets(3, 2, 1), [4], 50) == pytest.approx(0.5)


def test_q_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError):
        percentile(LinearBuckets(1, 1, 0), [1], 101)


def test_bucket_options_from_snake_case_and_proto() -> None:
    from google.api import distribution_pb2

    snake = bucket_options_from(
        {"linear_buckets": {"num_finite_buckets": 3, "width": 2, "offset": 1}}
    )
    assert snake == LinearBuckets(3, 2.0, 1.0)
    pb = distribution_pb2.Distribution.BucketOptions(
        explicit_buckets=distribution_pb2.Distribution.BucketOptions.Explicit(bounds=[1, 5, 10])
    )
    assert bucket_options_from(pb) == ExplicitBuckets((1.0, 5.0, 10.0))
    assert percentile(pb, [0, 0, 4, 0], 50) == pytest.approx(7.5)


def test_merge_counts_pads_shorter_lists() -> None:
    assert merge_counts([1, 2], [3], ["4", "5", "6"]) == [8, 7, 6]
    assert merge_counts() == []
