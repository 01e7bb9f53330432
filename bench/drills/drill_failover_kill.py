"""Fault drill: SIGKILL the worker at random points of a regional failover (and failback).

    python -m bench.drills.drill_failover_kill [--kills 6] [--quick]

Trials alternate: a failover of prod to us-east1 with us-central1 out (`outage us-central1`),
then a failback to us-central1 with the outage cleared, each approved by the drill as soon as it
asks. After a random delay, uniform over the length of an undisturbed trial of that kind
(measured first), the worker process gets SIGKILL and a new one is started at once. A monitor
resolves prod's DNS record through gcpsim's resolver every 100 ms. Checked per trial:

- the run ends failed-over (or failed-back): outcome succeeded, the record names the target
  region's front service, which answers its health path; or it ends failed with the record
  untouched (clean);
- never DNS pointing at a region without ready services: whenever the monitor saw the record
  lead to the trial's target region, that service answered its health path;
- never two instances or services: at most one `<instance>-us-east1` and one of each service
  in us-east1.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from typing import Any

import requests

from bench import common
from stagecoach import contract
from stagecoach.failover import build_failback, build_failover
from stagecoach.payloads.common import Outcome
from stagecoach.payloads.failover import FailoverInput, FailoverStatus
from stagecoach.temporal import workflow_result
from testing.cloudrun import run_services
from testing.cloudsql import sqladmin
from testing.stack import Stack

PROJECT = "legal-forms-prod"
WID = contract.environment_workflow_id("legal-forms", "prod")
RECORD = "app.legal-forms.example."
SIM_ARGS = ["--run-op-seconds", "0.3", "--sql-op-seconds", "1.0", "--request-rate", "200"]


def resolve(sim: Any) -> dict[str, Any] | None:
    try:
        r = requests.get(f"{sim.url}/_dns/resolve", params={"name": RECORD}, timeout=5)
        out: dict[str, Any] | None = r.json() if r.status_code == 200 else None
        return out
    except requests.RequestException:
        return None


def answers(uri: str) -> bool:
    try:
        return requests.get(uri.rstrip("/") + "/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


class Monitor:
    """Polls the record; notes every moment it led to `region` while that service was down."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.region = ""
        self.bad: list[str] = []
        self.samples = 0

    async def run(self) -> None:
        while True:
            ans = await asyncio.to_thread(resolve, self.sim)
            run = (ans or {}).get("cloudRun") or {}
            if self.region and run.get("location") == self.region:
                self.samples += 1
                if not await asyncio.to_thread(answers, run["uri"]):
                    self.bad.append(f"DNS led to {run['service']} in {self.region}, not ready")
            await asyncio.sleep(0.1)


async def run_trial(
    stack: Stack, client: Any, inp: FailoverInput, kill_after: float | None
) -> tuple[FailoverStatus, float | None]:
    handle = await client.start_workflow(
        contract.WorkflowType.FAILOVER,
        inp,
        id=WID,
        task_queue=stack.task_queue,
        result_type=FailoverStatus,
    )
    killed: list[float] = []

    async def approve() -> None:
        from stagecoach.keys import sign
        from stagecoach.payloads.common import ApproveInput

        while True:
            try:
                st = await handle.query(contract.Message.STATUS, result_type=FailoverStatus)
                if st.awaiting_approval:
                    # signed like `starter.py approve`: bound to this run, <mode>:<to_region>,
                    # step 0 (the worker's policy needs proof)
                    desc = await handle.describe()
                    by = "release-manager"
                    inp = ApproveInput(by=by, comment="drill")
                    inp.proof = sign(
                        by, workflow_id=desc.id, run_id=desc.run_id,
                        version=f"{st.mode}:{st.to_region}", step=0, comment=inp.comment,
                    )  # fmt: skip
                    await handle.execute_update(contract.Message.APPROVE, inp)
                    return
                if st.outcome != Outcome.RUNNING:
                    return
            except Exception:
                pass
            await asyncio.sleep(0.2)

    async def kill() -> None:
        assert kill_after is not None
        await asyncio.sleep(kill_after)
        await asyncio.to_thread(stack.kill_worker, signal.SIGKILL)
        killed.append(time.monotonic())
        await asyncio.to_thread(stack.start_worker)

    tasks = [asyncio.ensure_future(approve())]
    if kill_after is not None:
        tasks.append(asyncio.ensure_future(kill()))
    try:
        st: FailoverStatus = await asyncio.wait_for(
            workflow_result(handle, FailoverStatus), timeout=900
        )  # a run that did not succeed ends FAILED, its status in the failure
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
    return st, (time.monotonic() - killed[0]) if killed else None


def check(stack: Stack, st: FailoverStatus, before: list[str]) -> list[str]:
    problems = []
    sim = stack.gcpsim
    ans = resolve(sim) or {}
    run = ans.get("cloudRun") or {}
    if st.outcome == Outcome.SUCCEEDED:
        if run.get("location") != st.to_region:
            problems.append(f"succeeded but the record leads to {run or ans}")
        elif not answers(run["uri"]):
            problems.append(f"succeeded but {run['service']} in {st.to_region} does not answer")
    elif ans.get("rrdatas") != before:
        problems.append(f"{st.outcome.value} with the record moved: {ans.get('rrdatas')}")
    services = run_services(sim)
    east = [s.name for s in services.list_services(parent=f"projects/{PROJECT}/locations/us-east1")]
    if len(east) != len(set(east)) or len(east) > 2:
        problems.append(f"services in us-east1: {east}")
    items = sqladmin(sim.url).instances().list(project=PROJECT).execute().get("items", [])
    names = [i["name"] for i in items]
    if names.count("legal-forms-db-prod-us-east1") > 1:
        problems.append(f"instances: {names}")
    return problems


async def main() -> int:
    args, work, kills = common.counted_args(
        __doc__, "drill-failover-kill-", "kills", 6, quick=2, seed=11
    )
    rng = random.Random(args.seed)
    tally: dict[str, int] = {}
    violations: list[str] = []
    recover: list[float] = []
    undisturbed = 0
    started = time.monotonic()
    with Stack(work, gcpsim_args=SIM_ARGS) as stack:
        client = await stack.client()
        cfg = stack.config()
        sim = stack.gcpsim
        monitor = Monitor(sim)
        mon_task = asyncio.ensure_future(monitor.run())
        last: FailoverStatus | None = None

        def next_input() -> FailoverInput:
            if last is None or last.mode == "failback":
                sim.cli("outage", "us-central1")
                return build_failover(cfg, "prod", "us-east1", "v1.1.0", "--version")
            sim.cli("outage", "--clear")
            return build_failback(cfg, "prod", last)

        spans: dict[str, float] = {}
        for _ in range(2):  # one undisturbed failover and failback: how long each takes
            inp = next_input()
            monitor.region = inp.to_region
            t0 = time.monotonic()
            last, _ = await run_trial(stack, client, inp, None)
            spans[inp.mode] = time.monotonic() - t0
            if last.outcome != Outcome.SUCCEEDED:
                raise SystemExit(f"undisturbed {inp.mode} failed: {last.error}")
        common.log(f"undisturbed: {', '.join(f'{k} {v:.1f}s' for k, v in spans.items())}")

        for k in range(1, kills + 1):
            inp = next_input()
            before = list((resolve(sim) or {}).get("rrdatas", []))
            monitor.region, monitor.bad = inp.to_region, []
            # later failovers adopt what the first one left in us-east1 and run faster: draw
            # the kill point over the first 70% of the undisturbed span
            delay = rng.uniform(0, 0.7 * spans[inp.mode])
            st, since_kill = await run_trial(stack, client, inp, delay)
            problems = check(stack, st, before) + monitor.bad[:3]
            tally[f"{inp.mode}:{st.outcome.value}"] = (
                tally.get(f"{inp.mode}:{st.outcome.value}", 0) + 1
            )
            violations += [f"kill {k} ({inp.mode}): {p}" for p in problems]
            if since_kill is not None:
                recover.append(since_kill)
            if st.outcome == Outcome.SUCCEEDED:
                last = st
            if since_kill is None:
                undisturbed += 1
            when = (
                f"ended {since_kill:.1f}s after the kill"
                if since_kill is not None
                else "ended before the kill point (not killed)"
            )
            common.log(
                f"kill {k}/{kills} ({inp.mode}) at {delay:.1f}s: {st.outcome.value}"
                f"{' ' + st.error if st.error else ''}; {when}; {common.verdict(problems)}"
            )
        mon_task.cancel()

    print()
    print(f"machine: {common.machine()}")
    print(
        f"{kills} trials in {time.monotonic() - started:.0f}s ({kills - undisturbed} killed "
        f"mid-run, {undisturbed} ended before their kill point); outcomes {tally}"
    )
    print(f"monitor samples that led to a target region: {monitor.samples}")
    print(f"kill -> run ended: {common.Spread.of(recover).line('s', 1)}")
    for v in violations:
        print(f"VIOLATION {v}")
    ok = not violations and sum(tally.values()) == kills
    common.figure(
        "drill_failover_kill",
        f"kills={kills} "
        + " ".join(f"{k}={v}" for k, v in sorted(tally.items()))
        + f" violations={len(violations)}",
        ":every_run_failed_over_or_clean,DNS_never_at_a_region_without_ready_services",
        ok,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
