"""Synthetic Cloud Run request metrics, computed on read (no background thread).

Every service receives `sim.settings.request_rate` requests per second (or the rate its rate
rules give, `traffic.rate_for`: per service and per image version), split over its revisions
by the traffic timeline (`gcpsim.model.traffic`). Time is cut into 1 s buckets (integer
epoch seconds). For a revision and a bucket:

- the expected number of requests is `sum(rate(version) * overlap * percent / 100)` over the
  timeline segments that overlap the bucket (and precede "now": only the past has data);
- the actual count is drawn from a Poisson distribution, then split into response codes:
  5xx ~ Binomial(n, error_rate) (500 or 503), a few 404s (not errors for gates), the rest 200;
- each request's latency is drawn from a log-normal fitted to the behaviour's p50_ms and p95_ms,
  and kept as an exponential-bucket histogram (`GROWTH_FACTOR`, `NUM_FINITE_BUCKETS`, `SCALE`,
  the bucket layout the Monitoring API reports).

Logs (`log_buckets`, for `logging.googleapis.com/log_entry_count`): Cloud Run's request log
(`run.googleapis.com/requests`) has one entry per request, severity ERROR for 5xx, WARNING for
4xx, INFO otherwise; the application writes ERROR entries to `run.googleapis.com/stderr`,
Poisson(behaviour `error_log_rate` * requests) per bucket, and INFO entries to
`run.googleapis.com/stdout`, Poisson(APP_INFO_LOGS_PER_REQUEST * requests), from a random
stream of their own, so setting error_log_rate changes neither the requests nor their codes.

The randomness of a bucket comes from `random.Random(seed/service/revision/bucket)`, so repeated
reads of the same window give the same numbers, and the request count of a bucket does not
depend on the behaviour. The behaviour (`behavior_for(service, image)`) is looked up at read
time, so marking a version bad affects every read made after that, including its past.

A bucket belongs to a window when the bucket's start lies in the window, so windows that tile
time add up exactly; a traffic change shows up from the bucket in which it happened.

Monitoring's timing (`Timing`, `timing_for`): Cloud Monitoring collects Cloud Run's requests
into samples of P seconds, [t, t+P) with t an epoch multiple of P, and a sample becomes visible
D seconds after it ends (real Cloud Run: P = 60 s, D up to 180 s). So what a read can see ends
at `Timing.visible_until(now)` = floor((now - D) / P) * P: buckets from there on are absent, and
a point whose interval reaches past it holds only its visible part. With P = 1 and D = 0 (the
defaults) reads are live: the running second counts its elapsed part. P and D come from the
serve flags (`Settings.metric_sample_period`, `metric_delay`) unless a timing rule set at run
time (`set_timing`; `python -m gcpsim metrics`) overrides them for matching services.
`summarize` and `expected_*` are the model's ground truth: they ignore the timing.

The distributions and random draws: gcpsim.model.metrics_dist.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import math
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from gcpsim import store as gstore
from gcpsim.model import traffic
from gcpsim.model.behavior import behavior_for, image_version
from gcpsim.model.metrics_dist import (
    APP_INFO_LOGS_PER_REQUEST,
    REQUEST_LOG,
    STDERR_LOG,
    STDOUT_LOG,
    BucketStats,
    LogCounts,
    Summary,
    draw_bucket,
    lognormal_params,
    poisson,
    request_severity,
)
from gcpsim.model.rules import drop_rules, put_rule
from gcpsim.sim import Sim

V = TypeVar("V")


_CACHE_MAX = 40_000  # bucket entries (about 1-2 KB each)


_cache: dict[tuple[Any, ...], BucketStats] = {}


_log_cache: dict[tuple[Any, ...], LogCounts] = {}  # (log, severity) counts, same key scheme


_cache_lock = threading.Lock()


@functools.lru_cache(maxsize=4096)
def _stream(seed: int, key: str, revision: str) -> int:
    """A stable 64-bit id of a revision's random stream (str hash() is salted per process)."""
    digest = hashlib.blake2b(f"{seed}/{key}/{revision}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _bucket_stats(
    sim: Sim, key: str, revision: str, bucket: int, lam: float, behavior: tuple[float, float, float]
) -> BucketStats:
    """A bucket's requests (cached; the result must not be mutated)."""
    seed = sim.settings.seed
    ck = (str(sim.store.path), seed, key, revision, bucket, lam, behavior)
    hit = _cache.get(ck)
    if hit is not None:
        return hit
    er, p50, p95 = behavior
    mu, sigma = lognormal_params(p50, p95)
    rng = random.Random((_stream(seed, key, revision) << 40) | bucket)
    stats = draw_bucket(rng, lam, min(max(er, 0.0), 1.0), mu, sigma)
    _put(_cache, ck, stats)
    return stats


def _put(cache: dict[tuple[Any, ...], V], ck: tuple[Any, ...], value: V) -> None:
    with _cache_lock:
        if len(cache) >= _CACHE_MAX:
            for old in list(cache)[: _CACHE_MAX // 4]:
                cache.pop(old, None)
        cache[ck] = value


def _log_counts(
    sim: Sim, key: str, revision: str, bucket: int, stats: BucketStats, error_log_rate: float
) -> LogCounts:
    """A bucket's log entries (cached; the result must not be mutated)."""
    seed = sim.settings.seed
    codes = tuple(sorted((code, d.count) for code, d in stats.items()))
    ck = (str(sim.store.path), seed, key, revision, bucket, codes, error_log_rate)
    hit = _log_cache.get(ck)
    if hit is not None:
        return hit
    out: LogCounts = {}
    n = 0
    for code, count in codes:
        if count:
            sk = (REQUEST_LOG, request_severity(code))
            out[sk] = out.get(sk, 0) + count
            n += count
    rng = random.Random((_stream(seed, key + "#logs", revision) << 40) | bucket)
    errors = poisson(rng, max(error_log_rate, 0.0) * n)
    infos = poisson(rng, APP_INFO_LOGS_PER_REQUEST * n)
    if errors:
        out[(STDERR_LOG, "ERROR")] = errors
    if infos:
        out[(STDOUT_LOG, "INFO")] = infos
    _put(_log_cache, ck, out)
    return out


MAX_SAMPLE_PERIOD = 3600  # seconds


MAX_DELAY = 86_400.0  # seconds


TIMING_KEYS = ("sample_period", "delay")


@dataclass(frozen=True, slots=True)
class Timing:
    """When Cloud Monitoring shows a service's requests: samples of `sample_period` seconds,
    each visible `delay` seconds after it ends."""

    sample_period: int = 1
    delay: float = 0.0

    @property
    def live(self) -> bool:
        return self.sample_period <= 1 and self.delay <= 0

    def visible_until(self, now: float) -> float:
        """The end of the newest visible sample (`now` itself when live)."""
        if self.live:
            return now
        p = self.sample_period
        return float(math.floor((now - self.delay) / p) * p)

    def sample_start(self, second: int) -> int:
        return second - second % self.sample_period


def default_timing(sim: Sim) -> Timing:
    s = sim.settings
    return Timing(int(s.metric_sample_period), float(s.metric_delay))


def check_timing(sample_period: Any = None, delay: Any = None) -> None:
    """Raise ValueError unless sample_period is an integer in 1..3600 s and delay in 0..86400 s."""
    if sample_period is not None and (
        isinstance(sample_period, bool)
        or not isinstance(sample_period, int | float)
        or sample_period != int(sample_period)
        or not 1 <= sample_period <= MAX_SAMPLE_PERIOD
    ):
        raise ValueError(
            f"sample_period must be a whole number of seconds between 1 and "
            f"{MAX_SAMPLE_PERIOD}, got {sample_period!r}"
        )
    if delay is not None and (
        isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY
    ):
        raise ValueError(f"delay must be between 0 and {MAX_DELAY:g} seconds, got {delay!r}")


def set_timing(
    sim: Sim, service: str = "*", sample_period: int | None = None, delay: float | None = None
) -> dict[str, Any]:
    """Set Monitoring's timing for services matching `service` (a name or glob; `*` = all),
    replacing any earlier rule for that pattern; values left out fall through to older matching
    rules, then to the serve flags."""
    check_timing(sample_period, delay)
    rule: dict[str, Any] = {"service": service}
    if sample_period is not None:
        rule["sample_period"] = int(sample_period)
    if delay is not None:
        rule["delay"] = float(delay)
    return put_rule(sim, "metric_timing", rule, ("service",))


def clear_timing(sim: Sim, service: str | None = None) -> int:
    """Remove every timing rule (or the one for `service`); returns how many."""
    return drop_rules(sim, "metric_timing", {"service": service})


def timing_rules(sim: Sim) -> list[dict[str, Any]]:
    with sim.store.lock:
        return list(sim.store.section("sim").get("metric_timing", []))


def timing_for(sim: Sim, service: str, rules: list[dict[str, Any]] | None = None) -> Timing:
    """The effective timing of a Cloud Run service: matching rules, oldest first, over the flags."""
    rules = timing_rules(sim) if rules is None else rules
    base = default_timing(sim)
    if not rules:
        return base
    values: dict[str, Any] = {"sample_period": base.sample_period, "delay": base.delay}
    for r in rules:
        if fnmatch.fnmatchcase(service, r["service"]):
            values.update({k: r[k] for k in TIMING_KEYS if r.get(k) is not None})
    return Timing(int(values["sample_period"]), float(values["delay"]))


def service_keys(sim: Sim, project: str | None = None) -> list[str]:
    """Services (traffic.service_key) that ever had a traffic split, optionally of one project."""
    with sim.store.lock:
        keys = list(sim.store.section("sim").get("traffic", {}))
    if project is not None:
        keys = [k for k in keys if k.split("/", 1)[0] == project]
    return sorted(keys)


def split_key(key: str) -> tuple[str, str, str]:
    project, location, service = key.split("/", 2)
    return project, location, service


def _segments(sim: Sim, key: str) -> list[tuple[float, float, list[tuple[str, int, str]]]]:
    tl = sorted(traffic.timeline(sim, key), key=lambda e: e[0])
    out = []
    for i, (at, split) in enumerate(tl):
        until = tl[i + 1][0] if i + 1 < len(tl) else math.inf
        if until > at and split:
            out.append((at, until, split))
    return out


def _rates(sim: Sim, key: str) -> Callable[[str], float]:
    """image -> requests per second behind its share (`traffic.rate_for`), memoised per call."""
    service = split_key(key)[2]
    rules = traffic.rates(sim)
    if not rules:
        default = float(sim.settings.request_rate)
        return lambda _image: default
    memo: dict[str, float] = {}

    def rate(image: str) -> float:
        r = memo.get(image)
        if r is None:
            r = memo[image] = traffic.rate_for(sim, service, image_version(image), rules)
        return r

    return rate


def expected_by_bucket(
    sim: Sim, key: str, lo: int, hi: int, now: float | None = None
) -> dict[int, dict[str, tuple[float, str]]]:
    """bucket -> revision -> (expected requests, image) for buckets b in [lo, hi)."""
    now = gstore.now() if now is None else now
    rate = _rates(sim, key)
    span_hi = min(float(hi), now)
    out: dict[int, dict[str, tuple[float, str]]] = {}
    if span_hi <= lo:
        return out
    for seg_start, seg_end, split in _segments(sim, key):
        a = max(seg_start, float(lo))
        z = min(seg_end, span_hi)
        if z <= a:
            continue
        for b in range(math.floor(a), math.ceil(z)):
            overlap = min(b + 1.0, z) - max(float(b), a)
            if overlap <= 0:
                continue
            per = out.setdefault(b, {})
            for rev, pct, image in split:
                lam = rate(image) * overlap * pct / 100.0
                if lam <= 0:
                    continue
                prev = per.get(rev, (0.0, image))[0]
                per[rev] = (prev + lam, image)
    return out


def expected_requests(
    sim: Sim, key: str, start: float, end: float, now: float | None = None
) -> dict[str, float]:
    """Expected requests per revision over [start, end) (exact integral of the timeline)."""
    now = gstore.now() if now is None else now
    rate = _rates(sim, key)
    hi = min(end, now)
    out: dict[str, float] = {}
    for seg_start, seg_end, split in _segments(sim, key):
        overlap = min(seg_end, hi) - max(seg_start, start)
        if overlap <= 0:
            continue
        for rev, pct, image in split:
            out[rev] = out.get(rev, 0.0) + rate(image) * overlap * pct / 100.0
    return out


def buckets(
    sim: Sim,
    key: str,
    lo: int,
    hi: int,
    now: float | None = None,
    want: Callable[[str], bool] | None = None,
) -> Iterator[tuple[int, str, str, BucketStats]]:
    """(bucket, revision, image, stats) of every bucket b in [lo, hi) with traffic, oldest first.

    `want(revision)` skips revisions early. The stats are shared with the cache: copy before
    mutating (`Dist.copy`, `Dist().merge`).
    """
    wanted: dict[str, bool] = {}
    service = split_key(key)[2]
    behaviors: dict[str, tuple[float, float, float]] = {}
    expected = expected_by_bucket(sim, key, lo, hi, now)
    for b in sorted(expected):
        for rev, (lam, image) in expected[b].items():
            if want is not None:
                ok = wanted.get(rev)
                if ok is None:
                    ok = wanted[rev] = want(rev)
                if not ok:
                    continue
            beh = behaviors.get(image)
            if beh is None:
                v = behavior_for(sim, service, image)
                beh = (float(v["error_rate"]), float(v["p50_ms"]), float(v["p95_ms"]))
                behaviors[image] = beh
            stats = _bucket_stats(sim, key, rev, b, lam, beh)
            if stats:
                yield b, rev, image, stats


def log_buckets(
    sim: Sim,
    key: str,
    lo: int,
    hi: int,
    now: float | None = None,
    want: Callable[[str], bool] | None = None,
) -> Iterator[tuple[int, str, str, LogCounts]]:
    """(bucket, revision, image, log entries) of every bucket b in [lo, hi) with traffic."""
    service = split_key(key)[2]
    rates: dict[str, float] = {}
    for b, rev, image, stats in buckets(sim, key, lo, hi, now, want):
        rate = rates.get(image)
        if rate is None:
            rate = rates[image] = float(behavior_for(sim, service, image)["error_log_rate"])
        yield b, rev, image, _log_counts(sim, key, rev, b, stats, rate)


def summarize(
    sim: Sim, key: str, start: float, end: float, now: float | None = None
) -> dict[str, Summary]:
    """Each revision's requests in the buckets that start in [start, end)."""
    out: dict[str, Summary] = {}
    for _b, rev, image, stats in buckets(sim, key, math.ceil(start), math.ceil(end), now):
        s = out.get(rev)
        if s is None:
            s = out[rev] = Summary(rev, image)
        for code, d in stats.items():
            acc = s.codes.get(code)
            if acc is None:
                s.codes[code] = d.copy()
            else:
                acc.merge(d)
    return out
