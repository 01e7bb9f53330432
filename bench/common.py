"""Shared harness of the benchmarks and fault drills (a library, not a benchmark).

`Stack` starts the three processes a release needs, each on free ports, in a work directory:

- gcpsim (`tests/conftest.py`'s `start_gcpsim`, seeded from deploy.yaml, state in `<dir>/sim/`),
- the Temporal dev server (`stagecoach.temporal.start_dev_server`; in memory, or a persistent
  `--db-filename` for the restart drill),
- the production worker (`python worker.py`) as its own process, so its RSS and CPU are its
  own and it can be killed with SIGKILL.

Helpers build release inputs (`stagecoach.plan.build_release`), run releases, read Temporal
histories (event times, activity inputs, local-activity markers, across continue-as-new), read
gcpsim's traffic timeline from its `state.json`, talk to gcpsim's control surface directly over
HTTP (milliseconds, unlike the CLI's interpreter start-up) and print the final FIGURE line. The
fault drills share their trial here: the live state before, a release disturbed mid-way, the
invariant checks after, and the tally of outcomes and violations.

Every process is started here and stopped here by its own pid.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from google.api_core.client_options import ClientOptions  # noqa: E402
from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud import run_v2  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.api.history.v1 import HistoryEvent  # noqa: E402
from temporalio.client import Client, WorkflowHandle  # noqa: E402

from stagecoach.config import Config, GcpsimEndpoint, Step, load_config  # noqa: E402
from stagecoach.models import Outcome, ReleaseInput, ReleaseStatus  # noqa: E402
from stagecoach.plan import build_release  # noqa: E402
from stagecoach.temporal import (  # noqa: E402
    TemporalSettings,
    connect,
    free_port,
    port_open,
    start_dev_server,
    workflow_result,
)
from tests.conftest import GcpsimProcess, start_gcpsim, stop_gcpsim  # noqa: E402

DEPLOY_YAML = ROOT / "deploy.yaml"
WORKER_PY = ROOT / "worker.py"

# --------------------------------------------------------------------------- the machine


def machine() -> str:
    """Cores, memory and CPU model of this machine (for RESULTS.md)."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{psutil.cpu_count(logical=True)} cores ({model or 'unknown CPU'}), {mem:.1f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


# --------------------------------------------------------------------------- statistics


def percentile(xs: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    s = sorted(xs)
    if not s:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(s)))
    return s[min(rank, len(s)) - 1]


@dataclass
class Spread:
    n: int
    median: float
    p90: float
    p99: float
    lo: float
    hi: float

    @classmethod
    def of(cls, xs: list[float]) -> Spread:
        return cls(
            n=len(xs),
            median=statistics.median(xs) if xs else math.nan,
            p90=percentile(xs, 90),
            p99=percentile(xs, 99),
            lo=min(xs) if xs else math.nan,
            hi=max(xs) if xs else math.nan,
        )

    def line(self, unit: str = "", digits: int = 3) -> str:
        f = f"{{:.{digits}f}}{unit}"
        return (
            f"median={f.format(self.median)} p90={f.format(self.p90)} p99={f.format(self.p99)} "
            f"min={f.format(self.lo)} max={f.format(self.hi)} n={self.n}"
        )


def figure(name: str, values: str, target: str, ok: bool | None, note: str = "") -> None:
    """The last line every benchmark prints; `ok` None: a figure without a target."""
    tail = f" ({note})" if note else ""
    verdict = "REPORTED" if ok is None else "PASS" if ok else "MISS"
    print(f"FIGURE {name} {values} target{target} {verdict}{tail}", flush=True)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Send `sig` to a process that still runs and wait for it (SIGKILL after 30 s)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- the command line


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """A script's parser, described by the first line of its docstring `doc`."""
    return argparse.ArgumentParser(description=doc.split("\n")[0] if doc else None)


def parse_args(ap: argparse.ArgumentParser, prefix: str) -> tuple[argparse.Namespace, Path]:
    """Add `--workdir` (the last option) and parse; returns the arguments and the work directory
    (`--workdir`, or a new temporary one named `prefix`...), after logging this machine."""
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix=prefix))
    log(f"machine: {machine()}")
    provision_approver_keys(work / "keys")
    return args, work


def provision_approver_keys(keys: Path) -> None:
    """Approver keys as the embedded stack provisions them (a private key per approver of
    deploy.yaml, their public halves in the file workers trust), for this process and the
    workers it starts, so `approve_when_asked` can sign its approvals."""
    from stagecoach.keys import provision_local, trusted_file

    os.environ["STAGECOACH_KEYS_DIR"] = str(keys)
    provision_local(load_config(DEPLOY_YAML))
    os.environ["STAGECOACH_APPROVER_KEYS"] = str(trusted_file())


def counted_args(
    doc: str | None, prefix: str, count: str, default: int, quick: int, seed: int | None = None
) -> tuple[argparse.Namespace, Path, int]:
    """The command line of a script that runs `--<count>` of something (`--quick`: `quick` of
    them), with `--seed` when a default `seed` is given, and `--workdir` (`parse_args`).
    Returns the arguments, the work directory and how many to run."""
    ap = arg_parser(doc)
    ap.add_argument(f"--{count}", type=int, default=default)
    ap.add_argument("--quick", action="store_true", help=f"{quick} {count}")
    if seed is not None:
        ap.add_argument("--seed", type=int, default=seed)
    args, work = parse_args(ap, prefix)
    return args, work, quick if args.quick else int(getattr(args, count))


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """gcpsim + Temporal dev server + worker process in `workdir` (see the module docstring)."""

    workdir: Path
    gcpsim_args: list[str] = field(default_factory=list)
    seed: bool = True
    temporal_db: bool = False
    worker_env: dict[str, str] = field(default_factory=dict)
    # the worker's own config (its policy: environments, projects, approvers); default deploy.yaml
    worker_config: Path | None = None
    task_queue: str = field(default_factory=lambda: f"bench-{secrets.token_hex(4)}")

    sim: GcpsimProcess | None = None
    temporal: subprocess.Popen[bytes] | None = None
    temporal_port: int = 0
    worker: subprocess.Popen[bytes] | None = None
    worker_starts: int = 0

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.start_gcpsim(reset=True)
            self.start_temporal()
            self.start_worker()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.stop_worker()
        self.stop_temporal()
        if self.sim is not None:
            stop_gcpsim(self.sim)
            self.sim = None

    # ------------------------------------------------------------------ gcpsim

    @property
    def sim_dir(self) -> Path:
        return self.workdir / "sim"

    def start_gcpsim(self, reset: bool = False) -> GcpsimProcess:
        """Start gcpsim; a restart (reset=False) keeps its state dir and its ports."""
        self.sim_dir.mkdir(parents=True, exist_ok=True)
        args = list(self.gcpsim_args)
        if reset:
            args.append("--reset")
            if self.seed:
                args += ["--seed", str(DEPLOY_YAML)]
        elif self.sim is not None:
            args += ["--port", str(self.sim.port), "--grpc-port", str(self.sim.grpc_port)]
        self.sim = start_gcpsim(self.sim_dir, *args)
        return self.sim

    def kill_gcpsim(self, sig: int = signal.SIGKILL) -> None:
        """Stop gcpsim abruptly (SIGKILL: a crash) or gracefully (SIGTERM), keeping its ports."""
        assert self.sim is not None
        self.sim.proc.send_signal(sig)
        self.sim.proc.wait(timeout=60)

    @property
    def gcpsim(self) -> GcpsimProcess:
        assert self.sim is not None, "gcpsim is not running"
        return self.sim

    # ------------------------------------------------------------------ Temporal

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    def start_temporal(self) -> None:
        if not self.temporal_port:
            self.temporal_port = free_port()
        db = self.workdir / "temporal.db" if self.temporal_db else None
        self.temporal = start_dev_server(
            self.temporal_port, db_file=db, log=self.workdir / "temporal.log"
        )

    def stop_temporal(self, sig: int = signal.SIGTERM) -> None:
        if self.temporal is None:
            return
        stop_process(self.temporal, sig)
        self.temporal = None
        deadline = time.monotonic() + 10
        while port_open("127.0.0.1", self.temporal_port) and time.monotonic() < deadline:
            time.sleep(0.1)

    async def client(self) -> Client:
        return await connect(TemporalSettings(address=self.address, task_queue=self.task_queue))

    # ------------------------------------------------------------------ worker

    def start_worker(self, timeout: float = 90.0) -> subprocess.Popen[bytes]:
        """`python worker.py` on this stack's task queue; returns once it polls."""
        self.worker_starts += 1
        ready = self.workdir / f"worker-{self.worker_starts}.ready"
        ready.unlink(missing_ok=True)
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": self.address,
            "STAGECOACH_TASK_QUEUE": self.task_queue,
            "STAGECOACH_READY_FILE": str(ready),
            "STAGECOACH_CONFIG": str(DEPLOY_YAML),
            "PYTHONPATH": str(ROOT),
            **self.worker_env,
        }
        out = open(self.workdir / "worker.log", "ab")  # noqa: SIM115
        self.worker = subprocess.Popen(
            [sys.executable, str(WORKER_PY), "--config", str(self.worker_config or DEPLOY_YAML)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.worker.poll() is not None:
                raise RuntimeError(f"worker exited with {self.worker.returncode}; see worker.log")
            if time.monotonic() > deadline:
                self.worker.kill()
                raise RuntimeError("worker did not become ready; see worker.log")
            time.sleep(0.05)
        return self.worker

    def kill_worker(self, sig: int = signal.SIGKILL) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(sig)
            self.worker.wait(timeout=30)
        self.worker = None

    def stop_worker(self) -> None:
        if self.worker is None:
            return
        stop_process(self.worker)
        self.worker = None

    # ------------------------------------------------------------------ config

    def config(self) -> Config:
        cfg = load_config(DEPLOY_YAML)
        sim = self.gcpsim
        return cfg.model_copy(
            update={"gcpsim": GcpsimEndpoint(port=sim.port, grpc_port=sim.grpc_port)}
        )


# --------------------------------------------------------------------------- releases


def release_input(
    cfg: Config,
    env: str,
    version: str,
    *,
    services: list[str] | None = None,
    bake: timedelta | None = None,
    interval: timedelta | None = None,
    steps: list[tuple[int, float]] | None = None,
    release_id: str | None = None,
    **gates: Any,
) -> ReleaseInput:
    """`build_release` plus overrides: `steps` as [(weight, bake seconds)], gate fields."""
    inp = build_release(
        cfg,
        env,
        version,
        release_id or secrets.token_hex(3)[:5],
        services=services,
        bake=bake,
        interval=interval,
        requested_by="bench",
    )
    update: dict[str, Any] = {}
    if steps is not None:
        update["steps"] = [Step(weight=w, bake=timedelta(seconds=b)) for w, b in steps]
    if gates:
        update["gates"] = inp.gates.model_copy(update=gates)
    return inp.model_copy(update=update) if update else inp


async def start_release(
    client: Client, task_queue: str, inp: ReleaseInput, workflow_id: str | None = None
) -> WorkflowHandle[Any, ReleaseStatus]:
    return await client.start_workflow(
        "Release",
        inp,
        id=workflow_id or f"deploy-{inp.app}-{inp.env}-{inp.release_id}-{secrets.token_hex(3)}",
        task_queue=task_queue,
        result_type=ReleaseStatus,
    )


async def status(handle: WorkflowHandle[Any, ReleaseStatus]) -> ReleaseStatus:
    st: ReleaseStatus = await handle.query("status", result_type=ReleaseStatus)
    return st


async def wait_for(
    handle: WorkflowHandle[Any, ReleaseStatus],
    check: Callable[[ReleaseStatus], bool],
    timeout: float = 300.0,
    every: float = 0.05,
) -> ReleaseStatus:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: ReleaseStatus | None = None
    while loop.time() < deadline:
        try:
            last = await status(handle)
        except Exception:  # the worker may be down for a moment (drills)
            last = None
        if last is not None and check(last):
            return last
        await asyncio.sleep(every)
    raise TimeoutError(f"condition not reached in {timeout}s; last status {last}")


async def approve_when_asked(
    handle: WorkflowHandle[Any, ReleaseStatus], by: str = "release-manager"
) -> None:
    """Grant every approval the release asks for, signed with `by`'s key, until it ends (runs
    as a task)."""
    from stagecoach.keys import sign
    from stagecoach.models import ApproveInput

    while True:
        try:
            st = await status(handle)
        except Exception:
            await asyncio.sleep(0.5)
            continue
        if st.outcome != Outcome.RUNNING:
            return
        if st.awaiting_approval_for is not None:
            # a lost race with another approval, or the worker is down: look again
            with contextlib.suppress(Exception):
                desc = await handle.describe()
                inp = ApproveInput(by=by, comment="bench")
                inp.proof = sign(
                    by, workflow_id=desc.id, run_id=desc.run_id, version=st.version,
                    step=st.awaiting_approval_for, comment=inp.comment,
                )  # fmt: skip
                await handle.execute_update("approve", inp)
        await asyncio.sleep(0.1)


@dataclass
class ReleaseRun:
    """A release `run_release` saw to its end."""

    handle: WorkflowHandle[Any, ReleaseStatus]
    result: ReleaseStatus
    finished: float  # time.monotonic() when the result came (before the approver stopped)
    disturbed_during: str = ""  # the release's phase and progress when `disturb` began


async def run_release(
    client: Client,
    task_queue: str,
    inp: ReleaseInput,
    *,
    timeout: float | None = None,
    disturb: Callable[[], Awaitable[None]] | None = None,
    after: float = 0.0,
) -> ReleaseRun:
    """Start a release, grant every approval it asks for and wait for its result (`timeout`
    seconds at most). A fault drill passes `disturb`: it runs `after` seconds into the release,
    once the release's phase is noted."""
    handle = await start_release(client, task_queue, inp)
    approver = asyncio.create_task(approve_when_asked(handle))
    where = ""
    if disturb is not None:
        await asyncio.sleep(after)
        try:
            st = await asyncio.wait_for(status(handle), timeout=1.0)
            where = f"{st.phase.value} {st.progress[:60]}"
        except Exception:
            where = "(status unavailable)"
        await disturb()
    result = await asyncio.wait_for(workflow_result(handle), timeout=timeout)
    finished = time.monotonic()
    await approver
    return ReleaseRun(handle, result, finished, where)


async def undisturbed_span(client: Client, task_queue: str, inp: ReleaseInput) -> float:
    """Seconds one undisturbed release takes, start to end (approvals granted); it must promote.
    A fault drill strikes at points uniform over it."""
    t = time.monotonic()
    run = await run_release(client, task_queue, inp)
    span = time.monotonic() - t
    assert run.result.outcome == Outcome.PROMOTED, run.result
    return span


# --------------------------------------------------------------------------- histories


def event_time(e: HistoryEvent) -> float:
    return e.event_time.seconds + e.event_time.nanos / 1e9


def payload_json(payloads: Any) -> Any:
    """The first payload of a Payloads message as JSON (the pydantic converter writes JSON)."""
    items = list(payloads.payloads)
    if not items:
        return None
    return json.loads(items[0].data)


async def run_histories(client: Client, workflow_id: str, first_run_id: str) -> list[Any]:
    """Histories of every run of a workflow, following continue-as-new from the first run."""
    out = []
    run_id: str | None = first_run_id
    while run_id:
        hist = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        out.append(hist)
        run_id = None
        for e in hist.events:
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                run_id = e.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return out


async def release_events(
    client: Client, handle: WorkflowHandle[Any, ReleaseStatus]
) -> list[HistoryEvent]:
    """Every history event of a finished release, across its continue-as-new runs."""
    hists = await run_histories(client, handle.id, handle.result_run_id or "")
    return [e for h in hists for e in h.events]


@dataclass
class ActivityCall:
    type: str
    input: Any
    scheduled: float
    started: float | None = None
    closed: float | None = None
    result: str = ""  # completed / failed / timed_out / canceled


CLOSED_ACTIVITY = {
    "activity_task_completed_event_attributes": "completed",
    "activity_task_failed_event_attributes": "failed",
    "activity_task_timed_out_event_attributes": "timed_out",
    "activity_task_canceled_event_attributes": "canceled",
}


def activity_calls(events: Iterable[HistoryEvent]) -> list[ActivityCall]:
    """Regular activities of a history in scheduling order, with their event times."""
    by_id: dict[int, ActivityCall] = {}
    for e in events:
        t = e.event_type
        if t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            by_id[e.event_id] = ActivityCall(
                a.activity_type.name, payload_json(a.input), event_time(e)
            )
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            by_id[e.activity_task_started_event_attributes.scheduled_event_id].started = event_time(
                e
            )
        else:
            attr = e.WhichOneof("attributes") or ""
            kind = CLOSED_ACTIVITY.get(attr)
            if kind:
                call = by_id[getattr(e, attr).scheduled_event_id]
                call.closed, call.result = event_time(e), kind
    return list(by_id.values())


def rollback_calls(events: Iterable[HistoryEvent]) -> list[ActivityCall]:
    """The SetTraffic activities of a history that moved traffic back (reason "rollback")."""
    return [
        a
        for a in activity_calls(events)
        if a.type == "SetTraffic" and (a.input or {}).get("reason") == "rollback"
    ]


@dataclass
class LocalActivity:
    type: str
    recorded: float  # MarkerRecorded event time (the workflow task completion)
    completed: float | None  # when the local activity finished on the worker (marker data)
    attempt: int
    failed: bool


def _ts_seconds(value: Any) -> float | None:
    """A protobuf-JSON Timestamp (RFC 3339 string or {seconds, nanos}) -> epoch seconds."""
    if isinstance(value, str):
        from gcpsim.store import parse_rfc3339

        return parse_rfc3339(value)
    if isinstance(value, dict):
        return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
    return None


def local_activities(events: Iterable[HistoryEvent]) -> list[LocalActivity]:
    """Local-activity markers: type, marker time and the worker-side completion time."""
    out = []
    for e in events:
        if e.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        a = e.marker_recorded_event_attributes
        if a.marker_name != "core_local_activity":
            continue
        data = payload_json(a.details["data"]) if "data" in a.details else {}
        out.append(
            LocalActivity(
                type=str(data.get("activity_type", data.get("activityType", ""))),
                recorded=event_time(e),
                completed=_ts_seconds(data.get("complete_time", data.get("completeTime"))),
                attempt=int(data.get("attempt", 1)),
                failed=a.HasField("failure"),
            )
        )
    return out


# --------------------------------------------------------------------------- gcpsim


def sim_call(sim: GcpsimProcess, method: str, path: str, body: Any = None) -> Any:
    """One request to gcpsim's control surface (`/_sim/...`)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        sim.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def set_behavior(sim: GcpsimProcess, service: str, version: str, **values: Any) -> None:
    sim_call(sim, "POST", "/_sim/behaviors", {"service": service, "version": version, **values})


def add_fault(sim: GcpsimProcess, method: str, **values: Any) -> dict[str, Any]:
    rule: dict[str, Any] = sim_call(sim, "POST", "/_sim/faults", {"method": method, **values})
    return rule


def clear_faults(sim: GcpsimProcess) -> None:
    sim_call(sim, "DELETE", "/_sim/faults")


def sim_state(sim: GcpsimProcess) -> dict[str, Any]:
    """gcpsim's persisted state (written atomically, so always a whole document)."""
    state: dict[str, Any] = json.loads((sim.state_dir / "state.json").read_text())
    return state


Split = list[tuple[str, int]]


def timeline(
    state: dict[str, Any], project: str, service: str, region: str = "us-central1"
) -> list[tuple[float, Split]]:
    """gcpsim's record of every split it served: [(epoch, [(revision, percent), ...])]."""
    raw = state["sim"]["traffic"].get(f"{project}/{region}/{service}", [])
    return [(float(at), [(r, int(p)) for r, p, _img in split]) for at, split in raw]


def canary_history(tl: list[tuple[float, Split]], revision: str) -> list[int]:
    """Percents a revision served, in order, without repeats."""
    out: list[int] = []
    for _at, split in tl:
        pct = sum(p for r, p in split if r == revision)
        if pct and (not out or out[-1] != pct):
            out.append(pct)
    return out


def run_services(sim: GcpsimProcess) -> run_v2.ServicesClient:
    return run_v2.ServicesClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=sim.url),
    )


def run_revisions(sim: GcpsimProcess) -> run_v2.RevisionsClient:
    return run_v2.RevisionsClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=sim.url),
    )


def sqladmin(sim: GcpsimProcess) -> Any:
    from tests.conformance.sql_helpers import sqladmin as sqladmin_client

    return sqladmin_client(sim.url)


def service_name(project: str, service: str, region: str = "us-central1") -> str:
    return f"projects/{project}/locations/{region}/services/{service}"


def live_split(sim: GcpsimProcess, project: str, service: str) -> Split:
    """The service's traffic now, LATEST resolved to the revision it routes to, tags dropped
    (the routing that matters), sorted."""
    svc = run_services(sim).get_service(name=service_name(project, service))
    latest = svc.latest_ready_revision.rsplit("/", 1)[-1]
    out: dict[str, int] = {}
    for t in svc.traffic:
        rev = t.revision.rsplit("/", 1)[-1] if t.revision else latest
        if t.percent:
            out[rev] = out.get(rev, 0) + int(t.percent)
    return sorted(out.items())


def revisions_with_prefix(sim: GcpsimProcess, project: str, service: str, prefix: str) -> int:
    revs = run_revisions(sim).list_revisions(parent=service_name(project, service))
    return sum(1 for r in revs if r.name.rsplit("/", 1)[-1].startswith(prefix))


def revision_count(sim: GcpsimProcess, project: str, service: str) -> int:
    return sum(1 for _ in run_revisions(sim).list_revisions(parent=service_name(project, service)))


def backups_described(sim: GcpsimProcess, project: str, instance: str, prefix: str) -> int:
    sql = sqladmin(sim)
    api = sql.backupRuns()
    req = api.list(project=project, instance=instance, maxResults=500)
    n = 0
    while req is not None:
        resp = req.execute()
        items = resp.get("items", [])
        n += sum(1 for r in items if (r.get("description") or "").startswith(prefix))
        req = api.list_next(req, resp)
    return n


# --------------------------------------------------------------------------- fault drills


def snapshot(
    stack: Stack, inp: ReleaseInput, project: str
) -> tuple[dict[str, Split], dict[str, int]]:
    """Each service's live split and revision count before a release (for `check_release`)."""
    sim = stack.gcpsim
    before = {p.ref.service: live_split(sim, project, p.ref.service) for p in inp.services}
    revs = {p.ref.service: revision_count(sim, project, p.ref.service) for p in inp.services}
    return before, revs


def check_release(
    stack: Stack,
    inp: ReleaseInput,
    result: ReleaseStatus,
    before: dict[str, Split],
    revs_before: dict[str, int],
    project: str,
    instance: str | None,
) -> list[str]:
    """Violations of the drills' invariants (empty: all good)."""
    sim = stack.gcpsim
    problems: list[str] = []
    state = sim_state(sim)
    for plan in inp.services:
        svc = plan.ref.service
        live = live_split(sim, project, svc)
        tl = timeline(state, project, svc)
        hist = canary_history(tl, plan.revision)
        if result.outcome == Outcome.PROMOTED:
            if live != [(plan.revision, 100)]:
                problems.append(f"{svc}: promoted but serving {live}")
            if hist != [10, 50, 100]:
                problems.append(f"{svc}: canary history {hist}, expected [10, 50, 100]")
        else:
            if live != before[svc]:
                problems.append(f"{svc}: {result.outcome.value} but serving {live}, "
                                f"before {before[svc]}")  # fmt: skip
            if hist and hist != [10, 50, 100][: len(hist)]:
                problems.append(f"{svc}: canary history {hist}")
        named = revisions_with_prefix(sim, project, svc, plan.revision)
        gained = revision_count(sim, project, svc) - revs_before[svc]
        if named > 1 or gained > 1:
            problems.append(f"{svc}: {named} revisions named {plan.revision}, {gained} new")
    if instance and inp.backup is not None:
        n = backups_described(sim, project, instance, f"Pre-deployment backup {inp.version} ")
        if n != 1:
            problems.append(f"{n} backups described 'Pre-deployment backup {inp.version} ...'")
    return problems


def verdict(problems: list[str]) -> str:
    return "OK" if not problems else "VIOLATIONS: " + "; ".join(problems)


async def disturbed_release(
    stack: Stack,
    client: Client,
    inp: ReleaseInput,
    project: str,
    instance: str | None,
    *,
    disturb: Callable[[], Awaitable[None]],
    after: float,
    timeout: float,
) -> tuple[ReleaseRun, list[str]]:
    """One fault-drill trial: the live state before, the release with `disturb` striking
    `after` seconds into it (`run_release`), then `check_release`. Returns the run and the
    violations."""
    before, revs_before = snapshot(stack, inp, project)
    run = await run_release(
        client, stack.task_queue, inp, timeout=timeout, disturb=disturb, after=after
    )
    problems = check_release(stack, inp, run.result, before, revs_before, project, instance)
    return run, problems


@dataclass
class DrillTally:
    """The outcomes and invariant violations of a fault drill's `trials`."""

    trials: int
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    violations: list[str] = field(default_factory=list)

    def add(self, trial: str, result: ReleaseStatus, problems: list[str]) -> None:
        self.outcomes[result.outcome.value] += 1
        self.violations += [f"{trial}: {p}" for p in problems]

    def report(self, name: str, count: str, target: str, *lines: str) -> bool:
        """Print the summary (this machine, then `lines`), the violations and the FIGURE line;
        True: every trial ended and none broke an invariant."""
        print()
        print(f"machine: {machine()}")
        for line in lines:
            print(line)
        for v in self.violations:
            print(f"VIOLATION {v}")
        ok = not self.violations and sum(self.outcomes.values()) == self.trials
        figure(
            name,
            f"{count}={self.trials} "
            + " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
            + f" violations={len(self.violations)}",
            target,
            ok,
        )
        return ok
