"""gcpsim as its own process on free ports, its control surface (`/_sim/...`) over HTTP, and its
own record of every traffic split it served (`state.json`).

Every process is started here and stopped here by its own pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagecoach.config import Config, GcpsimEndpoint
from stagecoach.config_file import load_config
from testing.paths import DEPLOY_YAML, ROOT


@dataclass
class GcpsimProcess:
    proc: subprocess.Popen[bytes]
    state_dir: Path
    port: int
    grpc_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `python -m gcpsim ARGS` against this simulator (control-surface commands)."""
        env = {**os.environ, "GCPSIM_PORT": str(self.port)}
        return subprocess.run(
            [sys.executable, "-m", "gcpsim", *args],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip


def start_gcpsim(state_dir: Path, *extra: str, timeout: float = 120.0) -> GcpsimProcess:
    """Start `python -m gcpsim` on free ports and wait until it wrote ports.json."""
    ports = state_dir / "ports.json"
    ports.unlink(missing_ok=True)
    log = open(state_dir.parent / f"{state_dir.name}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcpsim", "--port", "0", "--grpc-port", "0",
         "--state-dir", str(state_dir), *extra],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gcpsim exited with {proc.returncode}; see {log.name}")
        if ports.exists():
            try:
                p = json.loads(ports.read_text())
                return GcpsimProcess(proc, state_dir, p["port"], p["grpc_port"])
            except (json.JSONDecodeError, KeyError):
                pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"gcpsim did not start within {timeout}s; see {log.name}")


def stop_gcpsim(sim: GcpsimProcess) -> None:
    sim.proc.terminate()
    try:
        sim.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        sim.proc.kill()
        sim.proc.wait()


def start_seeded_gcpsim(parent: Path, seed: Path = DEPLOY_YAML) -> GcpsimProcess:
    """gcpsim seeded from `seed` (deploy.yaml) with fast operations, its state under `parent`."""
    state = parent / "state"
    state.mkdir()
    return start_gcpsim(
        state, "--reset", "--seed", str(seed),
        "--run-op-seconds", "0.2", "--sql-op-seconds", "0.5", "--request-rate", "200",
    )  # fmt: skip


def config_for(sim: GcpsimProcess, path: Path = DEPLOY_YAML) -> Config:
    """The config at `path` (deploy.yaml), pointed at this simulator's ports."""
    cfg = load_config(path)
    return cfg.model_copy(update={"gcpsim": GcpsimEndpoint(port=sim.port, grpc_port=sim.grpc_port)})


# --------------------------------------------------------------------------- control surface


def sim_call(sim: GcpsimProcess, method: str, path: str, body: Any = None) -> Any:
    """One request to gcpsim's control surface (`/_sim/...`): milliseconds, unlike `sim.cli`."""
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


# --------------------------------------------------------------------------- traffic record


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


def served_percents(sim: GcpsimProcess, project: str, service: str, revision: str) -> list[int]:
    """Percents gcpsim served to `revision`, in order, from its traffic timeline."""
    return canary_history(timeline(sim_state(sim), project, service), revision)
