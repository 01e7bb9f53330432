"""The numbers behind gcpsim's synthetic Cloud Run metrics: response codes, Cloud Monitoring's
exponential latency buckets (`Dist`), and the seeded random draws of one bucket's requests
(Poisson counts, binomial errors, log-normal latencies). See gcpsim.model.metrics."""

from __future__ import annotations

import bisect
import functools
import math
import random
from dataclasses import dataclass, field

BUCKET_SECONDS = 1


# Exponential latency buckets (milliseconds): bucket 0 is the underflow (< SCALE), bucket i in
# 1..NUM_FINITE_BUCKETS covers [SCALE*G^(i-1), SCALE*G^i), the last one is the overflow.
NUM_FINITE_BUCKETS = 64


GROWTH_FACTOR = 1.4


SCALE = 1.0


_LOG_G = math.log(GROWTH_FACTOR)


OVERFLOW = NUM_FINITE_BUCKETS + 1


CLIENT_ERROR_RATE = 0.01  # share of non-5xx requests answered 404 (not an error for gates)


SHARE_500 = 0.7  # share of 5xx answered 500; the rest 503


SAMPLE_CAP = 200  # latencies drawn per (bucket, code); above, the histogram is drawn exactly


_Z95 = 1.6448536269514722  # standard normal quantile of 0.95


CODES = (200, 404, 500, 503)


REQUEST_LOG = "run.googleapis.com/requests"


STDERR_LOG = "run.googleapis.com/stderr"


STDOUT_LOG = "run.googleapis.com/stdout"


APP_INFO_LOGS_PER_REQUEST = 0.5  # stdout INFO entries the application writes per request


def code_class(code: int) -> str:
    return f"{code // 100}xx"


def bucket_bounds(index: int) -> tuple[float, float]:
    """Lower and upper bound (ms) of a histogram bucket; the overflow's upper bound is inf."""
    if index <= 0:
        return 0.0, SCALE
    lower = SCALE * GROWTH_FACTOR ** (index - 1)
    if index >= OVERFLOW:
        return lower, math.inf
    return lower, SCALE * GROWTH_FACTOR**index


def bucket_index(value_ms: float) -> int:
    if value_ms < SCALE:
        return 0
    i = int(math.log(value_ms / SCALE) / _LOG_G) + 1
    # Guard the float rounding at the bucket edges.
    lower, upper = bucket_bounds(i)
    if value_ms < lower:
        i -= 1
    elif value_ms >= upper:
        i += 1
    return min(max(i, 1), OVERFLOW)


@dataclass(slots=True)
class Dist:
    """A latency distribution: count, sum, sum of squares and a sparse bucket histogram."""

    count: int = 0
    total: float = 0.0
    sumsq: float = 0.0
    buckets: dict[int, int] = field(default_factory=dict)

    def add_value(self, value_ms: float, weight: int = 1) -> None:
        self.count += weight
        self.total += value_ms * weight
        self.sumsq += value_ms * value_ms * weight
        i = bucket_index(value_ms)
        self.buckets[i] = self.buckets.get(i, 0) + weight

    def merge(self, other: Dist) -> Dist:
        """Add `other` into self (in place) and return self."""
        self.count += other.count
        self.total += other.total
        self.sumsq += other.sumsq
        b = self.buckets
        for i, c in other.buckets.items():
            b[i] = b.get(i, 0) + c
        return self

    def copy(self) -> Dist:
        return Dist(self.count, self.total, self.sumsq, dict(self.buckets))

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def sum_of_squared_deviation(self) -> float:
        if not self.count:
            return 0.0
        return max(0.0, self.sumsq - self.total * self.total / self.count)

    def bucket_counts(self) -> list[int]:
        """Dense counts from bucket 0 up to the last non-empty bucket."""
        if not self.buckets:
            return []
        out = [0] * (max(self.buckets) + 1)
        for i, c in self.buckets.items():
            out[i] = c
        return out

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100), interpolated linearly inside its bucket."""
        if self.count <= 0:
            return 0.0
        rank = q / 100.0 * self.count
        cum = 0
        for i in sorted(self.buckets):
            c = self.buckets[i]
            if c and cum + c >= rank:
                lower, upper = bucket_bounds(i)
                if math.isinf(upper):
                    return lower
                return lower + (upper - lower) * max(0.0, rank - cum) / c
            cum += c
        return bucket_bounds(max(self.buckets))[0]


# One bucket's requests of one revision: response code -> latency distribution (count included).
BucketStats = dict[int, Dist]


# One bucket's log entries of one revision: (log, severity) -> entries.
LogCounts = dict[tuple[str, str], int]


@dataclass
class Summary:
    """A revision's requests over a window."""

    revision: str
    image: str
    codes: dict[int, Dist] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(d.count for d in self.codes.values())

    @property
    def errors(self) -> int:
        return sum(d.count for c, d in self.codes.items() if c >= 500)

    @property
    def error_rate(self) -> float:
        n = self.requests
        return self.errors / n if n else 0.0

    @property
    def latency(self) -> Dist:
        out = Dist()
        for d in self.codes.values():
            out.merge(d)
        return out


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam < 30:
        limit = math.exp(-lam)
        k = 0
        p = rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


def _binomial(rng: random.Random, n: int, p: float) -> int:
    """Exact for n*p < 30 (geometric jumps between successes), normal approximation above."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if p > 0.5:
        return n - _binomial(rng, n, 1.0 - p)
    if n * p >= 30:
        return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))
    log_q = math.log1p(-p)
    k, i = 0, 0
    while True:
        i += int(math.log(1.0 - rng.random()) / log_q) + 1
        if i > n:
            return k
        k += 1


def lognormal_params(p50_ms: float, p95_ms: float) -> tuple[float, float]:
    """(mu, sigma) of the log-normal whose median is p50_ms and 95th percentile p95_ms."""
    p50 = max(float(p50_ms), 1e-3)
    p95 = max(float(p95_ms), p50)
    return math.log(p50), math.log(p95 / p50) / _Z95


@functools.lru_cache(maxsize=256)
def _z_edges(mu: float, sigma: float) -> tuple[float, ...]:
    """The histogram's bucket edges in standard-normal units of a log-normal(mu, sigma)."""
    return tuple((math.log(SCALE) + i * _LOG_G - mu) / sigma for i in range(NUM_FINITE_BUCKETS + 1))


@functools.lru_cache(maxsize=256)
def _bucket_probs(mu: float, sigma: float) -> tuple[float, ...]:
    """Probability of each histogram bucket (0 .. OVERFLOW) under a log-normal(mu, sigma)."""
    cdf = [0.5 * (1.0 + math.erf(z / math.sqrt(2.0))) for z in _z_edges(mu, sigma)]
    return tuple(b - a for a, b in zip([0.0, *cdf], [*cdf, 1.0], strict=True))


def _multinomial(rng: random.Random, n: int, probs: tuple[float, ...]) -> dict[int, int]:
    """Bucket counts of n independent requests (a chain of conditional binomials)."""
    out: dict[int, int] = {}
    left, mass = n, 1.0
    for i, p in enumerate(probs):
        if left <= 0:
            break
        k = left if mass <= p else _binomial(rng, left, min(p / mass, 1.0))
        if k:
            out[i] = k
        left -= k
        mass -= p
    return out


def latencies(rng: random.Random, count: int, mu: float, sigma: float) -> Dist:
    """`count` log-normal latencies. Up to SAMPLE_CAP each is drawn; above it the histogram is
    drawn exactly (multinomial: requests stay independent, so counts are not overdispersed) and
    the sum and sum of squares come from SAMPLE_CAP weighted draws."""
    if sigma <= 0:
        value = math.exp(mu)
        return Dist(count, value * count, value * value * count, {bucket_index(value): count})
    edges = _z_edges(mu, sigma)
    k = min(count, SAMPLE_CAP)
    base, extra = divmod(count, k)
    gauss, exp = rng.gauss, math.exp
    total = sumsq = 0.0
    hist: dict[int, int] = {}
    for i in range(k):
        z = gauss(0.0, 1.0)
        x = exp(mu + sigma * z)
        w = base + 1 if i < extra else base
        total += x * w
        sumsq += x * x * w
        b = bisect.bisect_right(edges, z)
        hist[b] = hist.get(b, 0) + w
    if count > SAMPLE_CAP:
        hist = _multinomial(rng, count, _bucket_probs(mu, sigma))
    return Dist(count, total, sumsq, hist)


def draw_bucket(rng: random.Random, lam: float, er: float, mu: float, sigma: float) -> BucketStats:
    n = poisson(rng, lam)
    if n == 0:
        return {}
    e5 = _binomial(rng, n, er)
    e4 = _binomial(rng, n - e5, CLIENT_ERROR_RATE)
    c500 = _binomial(rng, e5, SHARE_500)
    counts = ((200, n - e5 - e4), (404, e4), (500, c500), (503, e5 - c500))
    return {code: latencies(rng, c, mu, sigma) for code, c in counts if c > 0}


def request_severity(code: int) -> str:
    """Severity of Cloud Run's request log entry for a response code."""
    if code >= 500:
        return "ERROR"
    if code >= 400:
        return "WARNING"
    return "INFO"
