"""Benchmark gcpsim through the real Google client libraries (a script, not a test).

Starts a seeded gcpsim on free ports (testing/gcpsim.py's `start_gcpsim`), then measures:
- the latency (median, p95) of run_v2 `get_service` (REST) and Monitoring `list_time_series`
  (gRPC; request_count of one service over the last 5 minutes, ALIGN_DELTA + REDUCE_SUM grouped
  by response_code_class, the shape of a canary gate reading), N calls each after a warm-up;
- the calls/s sustained by 50 concurrent client threads sharing one client, per call type.

    python -m bench.bench_gcpsim [--calls 300] [--threads 50] [--seconds 5]

Target: median latency < 5 ms. The last line is the headline figure.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3, run_v2
from google.cloud.monitoring_v3.services.metric_service.transports import (
    MetricServiceGrpcTransport,
)

from testing.gcpsim import start_gcpsim, stop_gcpsim
from testing.paths import DEPLOY_YAML

PROJECT, LOCATION, SERVICE = "legal-forms-dev", "us-central1", "node-server-dev"
TARGET_MS = 5.0


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def latencies(fn: Callable[[], Any], calls: int, warmup: int = 30) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def throughput(fn: Callable[[], Any], threads: int, seconds: float) -> tuple[float, int]:
    """(calls/s, errors) with `threads` threads calling fn for `seconds`."""
    stop = time.monotonic() + seconds
    counts = [0] * threads
    errors = [0] * threads

    def worker(i: int) -> None:
        while time.monotonic() < stop:
            try:
                fn()
                counts[i] += 1
            except Exception:
                errors[i] += 1

    start = time.monotonic()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.monotonic() - start), sum(errors)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--threads", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="gcpsim-bench-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        sim = start_gcpsim(state, "--reset", "--seed", str(DEPLOY_YAML))
        try:
            services = run_v2.ServicesClient(
                credentials=AnonymousCredentials(),
                transport="rest",
                client_options=ClientOptions(api_endpoint=sim.url),
            )
            channel = grpc.insecure_channel(f"127.0.0.1:{sim.grpc_port}")
            mon = monitoring_v3.MetricServiceClient(
                transport=MetricServiceGrpcTransport(channel=channel)
            )
            name = f"projects/{PROJECT}/locations/{LOCATION}/services/{SERVICE}"
            time.sleep(2.0)  # some synthetic history

            def get_service() -> Any:
                return services.get_service(name=name)

            def list_time_series() -> Any:
                end = time.time()
                return list(
                    mon.list_time_series(
                        request={
                            "name": f"projects/{PROJECT}",
                            "filter": 'metric.type = "run.googleapis.com/request_count" AND '
                            'resource.type = "cloud_run_revision" AND '
                            f'resource.labels.service_name = "{SERVICE}"',
                            "interval": {
                                "start_time": {"seconds": int(end) - 300},
                                "end_time": {"seconds": int(end)},
                            },
                            "aggregation": {
                                "alignment_period": {"seconds": 60},
                                "per_series_aligner": "ALIGN_DELTA",
                                "cross_series_reducer": "REDUCE_SUM",
                                "group_by_fields": ["metric.labels.response_code_class"],
                            },
                        }
                    )
                )

            assert list_time_series(), "no time series: is the simulator seeded?"
            rows = []
            calls = [
                ("run_v2 get_service (REST)", get_service),
                ("monitoring list_time_series (gRPC)", list_time_series),
            ]
            for label, fn in calls:
                lat = latencies(fn, args.calls)
                rate, errs = throughput(fn, args.threads, args.seconds)
                rows.append((label, statistics.median(lat), percentile(lat, 95), rate, errs))
            channel.close()
        finally:
            stop_gcpsim(sim)

    print(f"gcpsim benchmark: {args.calls} sequential calls after warm-up; "
          f"{args.threads} threads for {args.seconds:g} s")  # fmt: skip
    print(f"{'call':<38} {'median ms':>10} {'p95 ms':>9} {'calls/s @' + str(args.threads):>14}")
    for label, med, p95, rate, errs in rows:
        extra = f"  ({errs} errors)" if errs else ""
        print(f"{label:<38} {med:>10.2f} {p95:>9.2f} {rate:>14.0f}{extra}")
    worst = max(r[1] for r in rows)
    verdict = "OK" if worst < TARGET_MS else "ABOVE TARGET"
    print(
        f"median latency (worst of the two): {worst:.2f} ms (target < {TARGET_MS:g} ms) {verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
