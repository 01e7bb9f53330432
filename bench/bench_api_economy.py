"""API economy: Cloud Run, Cloud SQL and Monitoring calls per release against the minimum needed.

    python -m bench.bench_api_economy [--quick]

gcpsim has no call counter, so the bench makes one out of its fault rules, server side: for every
API method it adds a rule that adds 1 ms of latency and may fire 10^9 times (`times`); gcpsim
decrements `times` on every call of that method, so 10^9 - times is the number of calls that
reached gcpsim, retries included. Health/smoke GETs to the tag URL are not API calls (one per
service, from SmokeTest).

Releases (gcpsim Cloud Run operations 0.3 s, Cloud SQL 1 s, 2000 requests/s per service; 5 s bakes
polled every 1 s):
1. staging, both services, promoted (10/50/100);
2. prod, both services, pre-deploy backup, approval before 100%, promoted;
3. staging, python-pipeline, bad canary, rolled back at 10%.

Minimum needed, per service: 1 services.get (the live split to restore and the object to update),
1 services.patch creating the revision plus 1 per traffic change (3 steps, +1 for a rollback),
1 operation call per patch (a single `operations.wait` long-poll); Monitoring: 3 ListTimeSeries per
poll (request_count, request_latencies and log_entry_count, the three metric types the canary
judge reads, one filter each); Cloud SQL: 1
backupRuns.insert + 1 operations.get (the DONE operation names the backup).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from typing import Any

from bench import common
from stagecoach.payloads.common import Outcome
from stagecoach.payloads.release import ReleaseInput, ReleaseStatus
from stagecoach.temporal import workflow_result
from testing.gcpsim import GcpsimProcess, add_fault, clear_faults, set_behavior, sim_call
from testing.releases import approve_when_asked, release_input, start_release
from testing.stack import Stack

METHODS = [
    "run.services.get",
    "run.services.list",
    "run.services.create",
    "run.services.patch",
    "run.services.delete",
    "run.revisions.get",
    "run.revisions.list",
    "run.revisions.delete",
    "run.operations.get",
    "run.operations.wait",
    "sql.instances.list",
    "sql.instances.get",
    "sql.instances.insert",
    "sql.instances.patch",
    "sql.instances.delete",
    "sql.instances.clone",
    "sql.instances.restoreBackup",
    "sql.backupRuns.insert",
    "sql.backupRuns.list",
    "sql.backupRuns.get",
    "sql.backupRuns.delete",
    "sql.operations.get",
    "sql.operations.list",
    "monitoring.timeSeries.list",
]
TIMES = 10**9


def arm_counters(sim: GcpsimProcess) -> None:
    clear_faults(sim)
    for m in METHODS:
        add_fault(sim, m, latency_ms=1, times=TIMES)


def read_counters(sim: GcpsimProcess) -> dict[str, int]:
    rules = sim_call(sim, "GET", "/_sim/faults")["faults"]
    left = {r["method"]: int(r["times"]) for r in rules}
    return {m: TIMES - left.get(m, 0) for m in METHODS if TIMES - left.get(m, 0)}


def minimum(inp: ReleaseInput, result: ReleaseStatus) -> dict[str, int]:
    shifts = 0
    rollbacks = 0
    for svc in result.services:
        shifts += svc.step + 1 if svc.step >= 0 else 0
        if svc.snapshot and result.outcome != Outcome.PROMOTED:
            rollbacks += 1
    created = sum(1 for s in result.services if s.canary_revision)
    patches = created + shifts + rollbacks
    polls = sum(s.reading_count for s in result.services)
    return {
        "run": created + 2 * patches,
        "monitoring": 3 * polls,
        "sql": 2 if inp.backup else 0,
    }


def by_api(counts: dict[str, int]) -> dict[str, int]:
    out = {"run": 0, "monitoring": 0, "sql": 0}
    for m, n in counts.items():
        out[m.split(".", 1)[0]] += n
    return out


async def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="(same run; it is short)")
    _, work = common.parse_args(ap, "bench-api-")

    sim_args = ["--run-op-seconds", "0.3", "--sql-op-seconds", "1.0", "--request-rate", "2000"]
    rows: list[tuple[str, ReleaseStatus, dict[str, int], dict[str, int]]] = []
    with Stack(work, gcpsim_args=sim_args) as stack:
        sim = stack.gcpsim
        client = await stack.client()
        cfg = stack.config()
        bake, every = timedelta(seconds=5), timedelta(seconds=1)
        set_behavior(sim, "python-pipeline-staging", "v9.9.9", error_rate=0.5)
        cases: list[tuple[str, ReleaseInput]] = [
            (
                "staging promoted",
                release_input(cfg, "staging", "v9.0.0", bake=bake, interval=every),
            ),
            (
                "prod promoted",
                release_input(cfg, "prod", "v9.0.0", bake=bake, interval=every),
            ),
            (
                "staging rolled back",
                release_input(
                    cfg,
                    "staging",
                    "v9.9.9",
                    services=["python-pipeline"],
                    bake=bake,
                    interval=every,
                ),
            ),
        ]
        for label, inp in cases:
            arm_counters(sim)
            handle = await start_release(client, stack.task_queue, inp)
            approver = asyncio.create_task(approve_when_asked(handle))
            result = await workflow_result(handle)
            await approver
            counts = read_counters(sim)
            rows.append((label, result, counts, minimum(inp, result)))
            common.log(f"{label}: {result.outcome.value}; {counts}")
        clear_faults(sim)

    print()
    print(f"machine: {common.machine()}")
    print(f"gcpsim {' '.join(sim_args)}; bakes 5 s polled every 1 s")
    totals: list[float] = []
    for label, result, counts, least in rows:
        polls = sum(s.reading_count for s in result.services)
        api = by_api(counts)
        print(
            f"\n{label} ({result.outcome.value}; {len(result.services)} service(s), {polls} polls):"
        )
        for key in ("run", "monitoring", "sql"):
            if api[key] or least[key]:
                print(f"  {key:<10} calls {api[key]:>4}   minimum {least[key]:>4}")
        for m, n in sorted(counts.items()):
            print(f"    {m:<28} {n:>4}")
        total, need = sum(api.values()), sum(least.values())
        totals.append(total / need)
        print(f"  all APIs  {total} calls vs minimum {need} ({total / need:.2f}x)")
    prom = rows[0]
    values: dict[str, Any] = {
        "staging_calls": sum(prom[2].values()),
        "staging_min": sum(prom[3].values()),
        "prod_calls": sum(rows[1][2].values()),
        "prod_min": sum(rows[1][3].values()),
        "rollback_calls": sum(rows[2][2].values()),
        "rollback_min": sum(rows[2][3].values()),
    }
    worst = max(totals)
    common.figure(
        "api_calls_per_release",
        " ".join(f"{k}={v}" for k, v in values.items()) + f" worst_ratio={worst:.2f}",
        "=none",
        None,
        "calls vs minimum; see the per-method breakdown above",
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
