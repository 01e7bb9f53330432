"""Overhead ratio: the same release through Stagecoach and through a straight Python script.

    python -m bench.bench_overhead [--pairs 10] [--op-seconds 1.0] [--quick]

The release: staging, 2 services (python-pipeline, then node-server), steps 10/50/100, zero bake
(so no metric reads), gcpsim with `--op-seconds` Cloud Run operations (default 1 s; real Cloud Run
takes several seconds to roll out a revision or a traffic change) and a `*` fault rule that only
adds 50 ms to every API call. Three ways, run in rotating order in every round, against the
same gcpsim, from this one process:

- stagecoach: `start_workflow("Release")` -> result, executed by `python worker.py` (its own
  process) on a Temporal dev server;
- script: what the shell pipelines do, without their sleeps: per service get the service, update
  it with the new revision (0%, tag canary) and wait for the operation, GET the tag URL, then for
  10, 50 and 100 get the service, update its traffic and wait for the operation (`gcloud run
  deploy` and `gcloud run services update-traffic` both read the service before they write it);
- activities: Stagecoach's own activity code in the workflow's order (ReadServing for the
  service that uses the database, then per service CreateRevision, which also reports the
  traffic it found, SmokeTest, SetTraffic x3), called in-process through
  `temporalio.testing.ActivityEnvironment`: the same API calls as Stagecoach, no Temporal. The
  ratio stagecoach / activities isolates orchestration; script / activities is the cost of the
  activities' idempotency reads.

All three wait for operations with the activities' polling (first poll at once, then 0.2 s,
x1.5). Figure: median over rounds of stagecoach / script (target <= 1.10).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import requests
from google.api_core import operation as lro
from google.cloud import run_v2
from temporalio.testing import ActivityEnvironment

from activities.cloud_run import (
    CloudRunActivities,
    short_name,
    traffic_from_api,
    traffic_to_api,
)
from activities.cloud_run_convert import tag_url
from activities.smoke import smoke_test, smoke_url
from bench import common
from stagecoach.payloads.common import Outcome
from stagecoach.payloads.release import ReleaseInput, ServicePlan
from stagecoach.payloads.run import (
    CreateRevisionInput,
    ReadServingInput,
    SetTrafficInput,
    SmokeTestInput,
)
from stagecoach.splits import canary_split, pin_latest
from stagecoach.temporal import workflow_result
from testing.cloudrun import run_services
from testing.gcpsim import add_fault
from testing.releases import release_input, start_release
from testing.stack import Stack

TAG = "canary"
WEIGHTS = (10, 50, 100)
LATENCY_MS = 50
TARGET = 1.10


def wait_operation(op: lro.Operation) -> run_v2.Service:
    """The activities' polling (activities/cloud_run.py `_wait`), without heartbeats."""
    delay = 0.2
    while True:
        if op.done():
            result: run_v2.Service = op.result()
            return result
        time.sleep(delay)
        delay = min(delay * 1.5, 5.0)


def create_input(plan: ServicePlan) -> CreateRevisionInput:
    return plan.create_input(TAG)  # exactly what the workflow sends


def script_release(services: run_v2.ServicesClient, inp: ReleaseInput) -> None:
    """The straight sequential script (see the module docstring)."""
    http = requests.Session()
    for plan in inp.services:
        name = plan.ref.name
        svc = services.get_service(name=name)
        snapshot = pin_latest(traffic_from_api(svc.traffic), short_name(svc.latest_ready_revision))
        CloudRunActivities._apply_template(svc, create_input(plan))
        svc.traffic = traffic_to_api(CloudRunActivities._traffic_with_tag(svc, plan.revision, TAG))
        svc = wait_operation(services.update_service(service=svc))
        url = tag_url(svc, TAG, plan.revision)
        if plan.smoke != "none":
            resp = http.get(smoke_url(url, plan.health_path), timeout=5)
            if resp.status_code >= 400:
                raise RuntimeError(f"smoke test failed: {resp.status_code}")
        for weight in WEIGHTS:
            svc = services.get_service(name=name)
            svc.traffic = traffic_to_api(canary_split(snapshot, plan.revision, weight, TAG))
            wait_operation(services.update_service(service=svc))


def activities_release(inp: ReleaseInput) -> None:
    """Stagecoach's activities in the workflow's order, without Temporal."""
    run = CloudRunActivities()
    env = ActivityEnvironment()
    for plan in inp.services:  # the database-binding check comes first, before anything moves
        if plan.database is not None:
            env.run(run.read_serving, ReadServingInput(ref=plan.ref, env_var=plan.database.env_var))
    for plan in inp.services:
        created = env.run(run.create_revision, create_input(plan))
        snapshot = created.before  # CreateRevision reports the traffic it found
        if plan.smoke != "none":
            smoke = env.run(smoke_test, SmokeTestInput(url=created.tag_url, path=plan.health_path))
            if not smoke.ok:
                raise RuntimeError(f"smoke test failed: {smoke.detail}")
        for weight in WEIGHTS:
            split = canary_split(snapshot, created.revision, weight, TAG)
            env.run(run.set_traffic, SetTrafficInput(ref=plan.ref, traffic=split, reason="x"))


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


async def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--pairs", type=int, default=10, help="rounds (each runs all three ways)")
    ap.add_argument("--op-seconds", type=float, default=1.0, help="gcpsim --run-op-seconds")
    ap.add_argument("--quick", action="store_true", help="3 rounds")
    args, work = common.parse_args(ap, "bench-overhead-")
    rounds = 3 if args.quick else args.pairs

    common.log(f"work dir {work}")
    sim_args = ["--run-op-seconds", str(args.op_seconds)]
    with Stack(work, gcpsim_args=sim_args) as stack:
        sim = stack.gcpsim
        client = await stack.client()
        cfg = stack.config()
        services = run_services(sim)
        add_fault(sim, "*", latency_ms=LATENCY_MS)

        n = 0

        def next_input() -> ReleaseInput:
            nonlocal n
            n += 1
            return release_input(cfg, "staging", f"v3.{n // 100}.{n % 100}", bake=timedelta(0))

        async def stagecoach() -> float:
            inp = next_input()
            t = time.perf_counter()
            handle = await start_release(client, stack.task_queue, inp)
            result = await workflow_result(handle)
            took = time.perf_counter() - t
            if result.outcome != Outcome.PROMOTED:
                raise RuntimeError(f"release {inp.version}: {result.outcome} {result.error}")
            return took

        async def script() -> float:
            inp = next_input()
            return timed(lambda: script_release(services, inp))

        async def activities() -> float:
            inp = next_input()
            return timed(lambda: activities_release(inp))

        ways: dict[str, Callable[[], Any]] = {
            "stagecoach": stagecoach,
            "script": script,
            "activities": activities,
        }
        names = list(ways)
        for name in names:  # warm-up: connections, imports, the worker's first tasks
            await ways[name]()
        times: dict[str, list[float]] = {k: [] for k in names}
        for r in range(rounds):
            order = names[r % 3 :] + names[: r % 3]
            for name in order:
                times[name].append(await ways[name]())
            common.log(
                f"round {r + 1}/{rounds}: "
                + "  ".join(f"{k} {times[k][-1]:.3f}s" for k in names)
                + f"  ratio {times['stagecoach'][-1] / times['script'][-1]:.3f}"
            )

    ratio = [s / p for s, p in zip(times["stagecoach"], times["script"], strict=True)]
    orch = [s / a for s, a in zip(times["stagecoach"], times["activities"], strict=True)]
    reads = [a / p for a, p in zip(times["activities"], times["script"], strict=True)]
    print()
    print(f"machine: {common.machine()}")
    print(f"gcpsim: run ops {args.op_seconds:g}s, +{LATENCY_MS} ms per API call; {rounds} rounds")
    for k in names:
        print(f"{k:<11} seconds per release: {common.Spread.of(times[k]).line('s')}")
    print(f"stagecoach/script     {common.Spread.of(ratio).line()}")
    print(f"stagecoach/activities {common.Spread.of(orch).line()}  (Temporal orchestration)")
    print(f"activities/script     {common.Spread.of(reads).line()}  (idempotency reads)")
    extra_ms = statistics.median(times["stagecoach"]) - statistics.median(times["activities"])
    print(f"orchestration per release (median difference): {extra_ms * 1000:.0f} ms")
    s = common.Spread.of(ratio)
    common.figure(
        "overhead_ratio",
        f"median={s.median:.3f} p90={s.p90:.3f} n={s.n}",
        f"<={TARGET:.2f}",
        s.median <= TARGET,
        f"op {args.op_seconds:g}s; orchestration alone stagecoach/activities "
        f"median={statistics.median(orch):.3f}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
