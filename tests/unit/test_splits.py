from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stagecoach.payloads.common import TrafficTarget as T
from stagecoach.splits import canary_split, percent_of, pin_latest, serving_revisions


def test_pin_latest_replaces_latest_and_empty() -> None:
    assert pin_latest([], "r1") == [T(revision="r1", percent=100)]
    assert pin_latest([T(type="LATEST", percent=100, tag="x")], "r1") == [
        T(revision="r1", percent=100, tag="x")
    ]


def test_prod_steps_from_one_stable_revision() -> None:
    stable = [T(revision="a", percent=100)]
    assert canary_split(stable, "b", 10, "canary") == [
        T(revision="a", percent=90),
        T(revision="b", percent=10, tag="canary"),
    ]
    assert canary_split(stable, "b", 100, "canary") == [T(revision="b", percent=100)]


def test_shares_of_a_split_stable_are_kept_proportionally_and_tags_survive() -> None:
    stable = [T(revision="a", percent=70), T(revision="b", percent=30, tag="blue")]
    out = canary_split(stable, "c", 50, "canary")
    assert out == [
        T(revision="a", percent=35),
        T(revision="b", percent=15, tag="blue"),
        T(revision="c", percent=50, tag="canary"),
    ]
    final = canary_split(stable, "c", 100, "canary")
    assert final == [T(revision="b", percent=0, tag="blue"), T(revision="c", percent=100)]


splits = st.lists(st.integers(1, 100), min_size=1, max_size=5).map(
    lambda ps: [T(revision=f"r{i}", percent=p) for i, p in enumerate(ps)]
)


@given(splits, st.integers(1, 100))
def test_split_sums_to_100_gives_canary_its_weight_and_never_grows_a_stable_share(
    stable: list[T], weight: int
) -> None:
    out = canary_split(stable, "c", weight, "canary")
    assert sum(t.percent for t in out) == 100
    assert percent_of(out, "c") == weight
    assert all(t.percent >= 0 for t in out)
    total = sum(t.percent for t in stable)
    for t in stable:
        # each stable revision keeps at most its proportional share, rounded up
        assert percent_of(out, t.revision) <= -(-t.percent * (100 - weight) // total)


def test_serving_revisions_skip_tag_only_and_duplicates() -> None:
    traffic = [
        T(revision="a", percent=60),
        T(revision="b", percent=0, tag="blue"),
        T(revision="a", percent=40, tag="x"),
    ]
    assert serving_revisions(traffic) == ["a"]
