"""Scale: N concurrent releases of distinct services on one worker and the dev server.

    python -m bench.bench_scale [--n 50 200 500] [--quick]

For each N, a fresh stack (gcpsim, in-memory Temporal dev server, one `python worker.py` process
with its default settings) and N services created through the real run_v2 client
(`ServicesClient.create_service`, image :v1.0.0). Then N releases start at once, one per service:
steps 10/50/100, 3 s bakes at 10% and 50%, poll interval 1 s (6 activities, about 6 metric reads
and 6 timers each). gcpsim: Cloud Run operations 0.3 s, 1000 requests/s per service.

Reported per N: all finished correctly (outcome promoted, and gcpsim's traffic timeline shows the
canary at exactly 10 -> 50 -> 100 and serving 100% at the end), releases per minute (N / wall
time from the first start to the last result), per-release duration, worker peak RSS (psutil,
sampled every 0.25 s) and worker CPU seconds per release; and, to find the bottleneck, the CPU
seconds of every process of the stack (worker, gcpsim, Temporal dev server, this driver), the
latency of a `get_service` probe against gcpsim during the run and the size of gcpsim's state.

With `--py-spy PATH` (py-spy is not a project dependency: install it anywhere, e.g.
`python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip install py-spy`), gcpsim is also sampled while
the releases run (GIL holders only) and its hottest code is printed: where gcpsim's time goes.

Target: N = 500 all correct, worker peak RSS < 500 MB.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psutil
from google.cloud import run_v2

from bench import common
from stagecoach.payloads.common import Outcome
from stagecoach.payloads.release import ReleaseInput, ReleaseStatus
from stagecoach.plan import revision_name
from stagecoach.temporal import workflow_result
from testing.cloudrun import run_services, service_name
from testing.gcpsim import canary_history, sim_state, timeline
from testing.paths import DEPLOY_YAML
from testing.releases import release_input, start_release
from testing.stack import Stack

PROJECT = "scale-bench"
REGION = "us-central1"
IMAGE = "us-central1-docker.pkg.dev/scale-bench/app/{service}:{version}"
RSS_TARGET_MB = 500
SIM_ARGS = ["--run-op-seconds", "0.3", "--request-rate", "1000"]


@dataclass
class Sampler:
    """Peak RSS of the worker and a get_service latency probe against gcpsim, in a thread."""

    worker_pid: int
    probe: run_v2.ServicesClient
    probe_name: str
    peak_rss: int = 0
    probe_ms: list[float] = field(default_factory=list)
    probe_errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        proc = psutil.Process(self.worker_pid)
        next_probe = 0.0
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
            now = time.monotonic()
            if now >= next_probe:
                next_probe = now + 1.0
                t = time.perf_counter()
                try:
                    self.probe.get_service(name=self.probe_name)
                    self.probe_ms.append((time.perf_counter() - t) * 1000)
                except Exception:
                    self.probe_errors += 1
            self._stop.wait(0.25)


def cpu_seconds(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


def start_profile(py_spy: str, pid: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", "50", "--gil", "--nonblocking",
         "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_profile(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


PROFILE_BUCKETS = [
    ("Store.save: json.dumps + write of the whole state", "save (gcpsim/store.py"),
    ("metrics: synthetic request/latency draws", "gcpsim/metrics.py"),
    ("monitoring_v3: ListTimeSeries handling", "gcpsim/monitoring_v3.py"),
    ("run_v2: Cloud Run handlers", "gcpsim/run_v2.py"),
    ("sqladmin_v1 (background)", "gcpsim/sqladmin_v1.py"),
    ("uvicorn/starlette/fastapi HTTP", "starlette/"),
    ("grpc server", "grpc/"),
]


def profile_summary(path: Path) -> list[str]:
    """Share of gcpsim's GIL-holding samples spent under each bucket, and the top leaves."""
    stacks: list[tuple[str, int]] = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames, int(count)))
    total = sum(c for _, c in stacks) or 1
    out = [f"gcpsim profile: {total} samples (GIL holders, 50/s)"]
    for label, needle in PROFILE_BUCKETS:
        n = sum(c for f, c in stacks if needle in f)
        out.append(f"  {100 * n / total:5.1f}%  {label}")
    leaves: collections.Counter[str] = collections.Counter()
    for f, c in stacks:
        leaves[f.rsplit(";", 1)[-1]] += c
    out.append("  hottest leaf functions:")
    for name, n in leaves.most_common(8):
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    return out


def create_services(services: run_v2.ServicesClient, names: list[str]) -> None:
    """Create the services through the real client, 16 at a time, waiting for each operation."""

    def one(name: str) -> None:
        svc = run_v2.Service(
            template=run_v2.RevisionTemplate(
                containers=[run_v2.Container(image=IMAGE.format(service=name, version="v1.0.0"))]
            )
        )
        op = services.create_service(
            parent=f"projects/{PROJECT}/locations/{REGION}", service=svc, service_id=name
        )
        while not op.done():
            time.sleep(0.2)
        op.result()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, names))


def inputs_for(template: ReleaseInput, names: list[str], version: str) -> list[ReleaseInput]:
    base = template.services[0]
    out = []
    for i, name in enumerate(names):
        release_id = f"s{i:04d}"
        plan = base.model_copy(
            update={
                "name": name,
                "ref": base.ref.model_copy(update={"project": PROJECT, "service": name}),
                "image": IMAGE.format(service=name, version=version),
                "revision": revision_name(name, version, release_id),
                "health_path": "/",
                "vpc_connector": None,
                "env": {},
                "secrets": {},
            }
        )
        out.append(template.model_copy(update={"services": [plan], "release_id": release_id}))
    return out


async def run_n(
    n: int, work: Path, py_spy: str | None = None
) -> dict[str, float | int | bool | str]:
    common.log(f"N={n}: starting a fresh stack in {work}")
    # the worker's policy allows staging releases only in staging's project: this bench's
    # services live in their own project, so its worker's config says so
    work.mkdir(parents=True, exist_ok=True)
    worker_cfg = work / "worker.yaml"
    worker_cfg.write_text(
        DEPLOY_YAML.read_text().replace("project: legal-forms-staging", f"project: {PROJECT}", 1)
    )
    with Stack(work, gcpsim_args=SIM_ARGS, worker_config=worker_cfg) as stack:
        sim = stack.gcpsim
        assert stack.worker is not None and stack.temporal is not None
        client = await stack.client()
        services = run_services(sim)
        names = [f"svc-{i:04d}" for i in range(n)]
        t = time.monotonic()
        create_services(services, names)
        common.log(f"N={n}: {n} services created in {time.monotonic() - t:.1f}s")
        version = "v2.0.0"
        template = release_input(
            stack.config(),
            "staging",
            version,
            services=["python-pipeline"],
            steps=[(10, 3), (50, 3), (100, 0)],
            interval=timedelta(seconds=1),
        )
        inputs = inputs_for(template, names, version)

        pids = {
            "worker": stack.worker.pid,
            "gcpsim": sim.proc.pid,
            "temporal": stack.temporal.pid,
            "driver": psutil.Process().pid,
        }
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        sampler = Sampler(
            stack.worker.pid,
            run_services(sim),
            service_name("legal-forms-dev", "node-server-dev"),
        )
        sampler.start()
        profiler = start_profile(py_spy, sim.proc.pid, work / "gcpsim.pyspy") if py_spy else None
        t0 = time.time()
        sem = asyncio.Semaphore(100)

        async def start(inp: ReleaseInput) -> ReleaseStatus:
            async with sem:
                handle = await start_release(client, stack.task_queue, inp)
            return await workflow_result(handle)

        results = await asyncio.wait_for(
            asyncio.gather(*(start(inp) for inp in inputs)), timeout=3600
        )
        wall = time.time() - t0
        sampler.stop()
        if profiler is not None:
            stop_profile(profiler)
        cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items()}

        state = sim_state(sim)
        state_mb = (sim.state_dir / "state.json").stat().st_size / 2**20
        bad: list[str] = []
        for inp, res in zip(inputs, results, strict=True):
            plan = inp.services[0]
            if res.outcome != Outcome.PROMOTED:
                bad.append(f"{plan.ref.service}: {res.outcome.value} {res.error}")
                continue
            tl = timeline(state, PROJECT, plan.ref.service)
            hist = canary_history(tl, plan.revision)
            if hist != [10, 50, 100] or tl[-1][1] != [(plan.revision, 100)]:
                bad.append(f"{plan.ref.service}: history {hist}, final {tl[-1][1]}")
        durations = [
            (r.ended_at - r.started_at).total_seconds()
            for r in results
            if r.ended_at and r.started_at
        ]
        reads = [sum(s.reading_count for s in r.services) for r in results]

    for line in bad[:10]:
        common.log(f"N={n}: NOT CORRECT {line}")
    if py_spy and (work / "gcpsim.pyspy").exists():
        for line in profile_summary(work / "gcpsim.pyspy"):
            common.log(f"N={n}: {line}")
    probe = common.Spread.of(sampler.probe_ms)
    out: dict[str, float | int | bool | str] = {
        "n": n,
        "ok": not bad,
        "bad": len(bad),
        "wall_s": wall,
        "per_min": n / wall * 60,
        "dur_median_s": statistics.median(durations) if durations else float("nan"),
        "dur_max_s": max(durations) if durations else float("nan"),
        "reads_mean": statistics.mean(reads),
        "rss_mb": sampler.peak_rss / 2**20,
        "worker_cpu_s": cpu["worker"],
        "cpu_per_release": cpu["worker"] / n,
        "gcpsim_cpu_s": cpu["gcpsim"],
        "temporal_cpu_s": cpu["temporal"],
        "driver_cpu_s": cpu["driver"],
        "probe_median_ms": probe.median,
        "probe_max_ms": probe.hi,
        "probe_errors": sampler.probe_errors,
        "state_mb": state_mb,
    }
    common.log(
        f"N={n}: correct={not bad} wall {wall:.1f}s ({out['per_min']:.0f}/min) "
        f"release median {out['dur_median_s']:.1f}s max {out['dur_max_s']:.1f}s, "
        f"worker peak RSS {out['rss_mb']:.0f} MB, worker CPU {cpu['worker']:.1f}s "
        f"({out['cpu_per_release']:.3f}s/release); CPU s gcpsim {cpu['gcpsim']:.1f} "
        f"temporal {cpu['temporal']:.1f} driver {cpu['driver']:.1f}; gcpsim probe "
        f"median {probe.median:.0f} ms max {probe.hi:.0f} ms; state.json {state_mb:.1f} MB"
    )
    return out


async def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--n", type=int, nargs="+", default=[50, 200, 500])
    ap.add_argument("--quick", action="store_true", help="N = 20 and 50 only")
    ap.add_argument("--py-spy", default=None, help="path of py-spy: profile gcpsim")
    args, work = common.parse_args(ap, "bench-scale-")
    ns = [20, 50] if args.quick else args.n
    rows = [await run_n(n, work / f"n{n}", args.py_spy) for n in ns]

    print()
    print(f"machine: {common.machine()}")
    print(f"gcpsim {' '.join(SIM_ARGS)}; steps 10/50/100, bakes 3 s, interval 1 s")
    head = (
        f"{'N':>5} {'ok':>3} {'wall s':>7} {'rel/min':>8} {'dur med':>8} {'dur max':>8} "
        f"{'RSS MB':>7} {'wCPU s':>7} {'CPU/rel':>8} {'simCPU':>7} {'tmpCPU':>7} "
        f"{'probe ms':>9} {'state MB':>8}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['n']:>5} {'yes' if r['ok'] else 'NO':>3} {r['wall_s']:>7.1f} "
            f"{r['per_min']:>8.0f} {r['dur_median_s']:>8.1f} {r['dur_max_s']:>8.1f} "
            f"{r['rss_mb']:>7.0f} {r['worker_cpu_s']:>7.1f} {r['cpu_per_release']:>8.3f} "
            f"{r['gcpsim_cpu_s']:>7.1f} {r['temporal_cpu_s']:>7.1f} "
            f"{r['probe_median_ms']:>9.0f} {r['state_mb']:>8.1f}"
        )
    top = rows[-1]
    ok = bool(top["ok"]) and float(top["rss_mb"]) < RSS_TARGET_MB and int(top["n"]) >= 500
    common.figure(
        "scale",
        f"n={top['n']} all_correct={'yes' if top['ok'] else 'no'} "
        f"releases_per_min={float(top['per_min']):.0f} "
        f"worker_peak_rss_mb={float(top['rss_mb']):.0f} "
        f"cpu_s_per_release={float(top['cpu_per_release']):.3f}",
        f":n>=500_all_correct_rss<{RSS_TARGET_MB}MB",
        ok,
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
