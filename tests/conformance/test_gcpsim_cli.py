"""`python -m gcpsim behavior|fault|show` against a running simulator, and its exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import run_v2

from testing.cloudrun import run_services
from testing.gcpsim import GcpsimProcess, start_gcpsim, stop_gcpsim
from testing.paths import ROOT

PARENT = "projects/gcpsim-cli/locations/us-central1"
IMAGE = "us-docker.pkg.dev/gcpsim-cli/app/cli-svc:v1.1.0"


@pytest.fixture(scope="module")
def private_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpsimProcess]:
    """A simulator of its own (these tests clear every behaviour and fault), with one service,
    Monitoring samples of 5 s visible 2 s after they end."""
    state = tmp_path_factory.mktemp("gcpsim-cli") / "state"
    state.mkdir()
    sim = start_gcpsim(
        state, "--reset", "--run-op-seconds", "0",
        "--metric-sample-period", "5", "--metric-delay", "2",
    )  # fmt: skip
    try:
        services = run_services(sim)
        svc = run_v2.Service(
            template=run_v2.RevisionTemplate(containers=[run_v2.Container(image=IMAGE)])
        )
        services.create_service(parent=PARENT, service=svc, service_id="cli-svc").result(30)
        yield sim
    finally:
        stop_gcpsim(sim)


def _gcpsim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gcpsim", *args],
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_show_json_lists_seeded_services(gcpsim: GcpsimProcess) -> None:
    out = gcpsim.cli("show", "--json")
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout)
    names = {s["service"] for s in state["services"]}
    assert {"node-server-dev", "python-pipeline-prod"} <= names
    dev = next(s for s in state["services"] if s["service"] == "node-server-dev")
    assert dev["project"] == "legal-forms-dev"
    assert dev["serving"][0]["image"].endswith("node-server:v1.1.0")
    assert dev["revisions"][-1]["image"].endswith("node-server:v1.1.0")
    assert state["settings"]["port"] == gcpsim.port


def test_show_table(gcpsim: GcpsimProcess) -> None:
    out = gcpsim.cli("show")
    assert out.returncode == 0, out.stderr
    assert "node-server-dev" in out.stdout and "%" in out.stdout
    assert "Behaviours" in out.stdout and "Faults" in out.stdout


def test_behavior_round_trip(private_sim: GcpsimProcess) -> None:
    out = private_sim.cli(
        "behavior", "node-server-*", "v1.2.0", "--error-rate", "0.08", "--p95-ms", "900"
    )
    assert out.returncode == 0, out.stderr
    private_sim.cli("behavior", "cli-*", "v1.1.0", "--broken", "--smoke-fail")
    logs = private_sim.cli("behavior", "cli-svc", "v2.0.0", "--error-log-rate", "0.2")
    assert logs.returncode == 0, logs.stderr
    state = json.loads(private_sim.cli("show", "--json").stdout)
    rules = {(b["service"], b["version"]): b for b in state["behaviors"]}
    assert rules[("node-server-*", "v1.2.0")]["error_rate"] == 0.08
    assert rules[("node-server-*", "v1.2.0")]["p95_ms"] == 900
    assert rules[("cli-*", "v1.1.0")]["broken"] is True
    assert rules[("cli-svc", "v2.0.0")] == {
        "service": "cli-svc", "version": "v2.0.0", "error_log_rate": 0.2,
    }  # fmt: skip
    svc = next(s for s in state["services"] if s["service"] == "cli-svc")
    assert svc["revisions"][0]["behavior"]["smoke_fail"] is True
    assert "broken" in private_sim.cli("show").stdout
    cleared = private_sim.cli("behavior", "--clear")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(private_sim.cli("show", "--json").stdout)["behaviors"] == []


def test_behavior_bad_values(private_sim: GcpsimProcess) -> None:
    out = private_sim.cli("behavior", "svc", "v1.0.0", "--error-rate", "2")
    assert out.returncode == 2
    assert "error_rate" in out.stderr
    assert private_sim.cli("behavior").returncode == 2
    assert private_sim.cli("behavior", "svc", "v1", "--error-rate", "lots").returncode == 2
    out = private_sim.cli("behavior", "svc", "v1", "--error-log-rate", "-0.1")
    assert out.returncode == 2 and "error_log_rate" in out.stderr


def test_rate_round_trip(private_sim: GcpsimProcess) -> None:
    out = private_sim.cli("rate", "cli-*", "0.05")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.split(": ", 1)[1]) == {
        "service": "cli-*", "version": "*", "rps": 0.05,
    }  # fmt: skip
    assert private_sim.cli("rate", "cli-svc", "v1.1.0", "300").returncode == 0
    assert private_sim.cli("rate", "other", "*", "7").returncode == 0
    state = json.loads(private_sim.cli("show", "--json").stdout)
    rules = {(r["service"], r["version"]): r["rps"] for r in state["rates"]}
    assert rules == {("cli-*", "*"): 0.05, ("cli-svc", "v1.1.0"): 300.0, ("other", "*"): 7.0}
    listing = private_sim.cli("rate")
    assert listing.returncode == 0 and "cli-svc v1.1.0: 300 rps" in listing.stdout
    assert "Request rates (3 rule(s); default 50 rps" in private_sim.cli("show").stdout
    one = private_sim.cli("rate", "--clear", "cli-svc", "v1.1.0")
    assert one.returncode == 0 and "cleared 1" in one.stdout
    assert private_sim.cli("rate", "--clear", "other").stdout.startswith("cleared 1")
    assert private_sim.cli("rate", "--clear").stdout.startswith("cleared 1")
    assert json.loads(private_sim.cli("show", "--json").stdout)["rates"] == []


def test_rate_bad_args(private_sim: GcpsimProcess) -> None:
    assert private_sim.cli("rate", "svc").returncode == 2  # no RPS
    assert private_sim.cli("rate", "svc", "v1", "lots").returncode == 2
    assert private_sim.cli("rate", "a", "b", "c", "1").returncode == 2
    out = private_sim.cli("rate", "svc", "-1")
    assert out.returncode == 2 and "rps" in out.stderr


def test_metric_timing_round_trip(private_sim: GcpsimProcess) -> None:
    settings = json.loads(private_sim.cli("show", "--json").stdout)["settings"]
    assert (settings["metric_sample_period"], settings["metric_delay"]) == (5, 2.0)
    out = private_sim.cli("metrics")
    assert out.returncode == 0, out.stderr
    assert "default: samples of 5 s, visible 2 s after" in out.stdout
    out = private_sim.cli("metrics", "--sample-period", "60", "--delay", "180")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.split(": ", 1)[1]) == {
        "service": "*", "sample_period": 60, "delay": 180.0,
    }  # fmt: skip
    assert private_sim.cli("metrics", "cli-*", "--delay", "0").returncode == 0
    state = json.loads(private_sim.cli("show", "--json").stdout)
    assert state["metric_timing"] == [
        {"service": "*", "sample_period": 60, "delay": 180.0},
        {"service": "cli-*", "delay": 0.0},
    ]
    assert "cli-*: visible 0 s after" in private_sim.cli("show").stdout
    one = private_sim.cli("metrics", "--clear", "cli-*")
    assert one.returncode == 0 and "cleared 1" in one.stdout
    assert private_sim.cli("metrics", "--clear").stdout.startswith("cleared 1")
    assert json.loads(private_sim.cli("show", "--json").stdout)["metric_timing"] == []


def test_metric_timing_bad_values(private_sim: GcpsimProcess, tmp_path: Path) -> None:
    for args in (["--sample-period", "0"], ["--delay", "-5"], ["--sample-period", "1.5"]):
        out = private_sim.cli("metrics", *args)
        assert out.returncode == 2, (args, out.stderr)
    assert private_sim.cli("metrics", "--clear", "--delay", "3").returncode == 2
    out = _gcpsim("--state-dir", str(tmp_path / "s"), "--port", "0", "--metric-delay", "-1")
    assert out.returncode == 2 and "delay" in out.stderr


def test_fault_round_trip(private_sim: GcpsimProcess) -> None:
    message = f"nope-{uuid.uuid4().hex[:4]}"
    out = private_sim.cli(
        "fault", "sql.instances.get", "--status", "503", "--rate", "0.5", "--latency-ms", "20",
        "--times", "3", "--message", message,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rule_id = out.stdout.split()[1]
    op = private_sim.cli("fault", "run.services.patch", "--op-error")
    assert op.returncode == 0, op.stderr
    faults = {f["id"]: f for f in json.loads(private_sim.cli("show", "--json").stdout)["faults"]}
    rule = faults[rule_id]
    assert (rule["method"], rule["status"], rule["rate"], rule["latency_ms"], rule["times"]) == (
        "sql.instances.get", 503, 0.5, 20, 3,
    )  # fmt: skip
    assert rule["message"] == message
    assert any(f["op_error"] for f in faults.values())
    assert message in private_sim.cli("show").stdout
    one = private_sim.cli("fault", "--clear", "--id", rule_id)
    assert one.returncode == 0 and "cleared 1" in one.stdout
    assert private_sim.cli("fault", "--clear", "--id", "nosuchid").returncode == 2
    assert private_sim.cli("fault", "--clear").returncode == 0
    assert json.loads(private_sim.cli("show", "--json").stdout)["faults"] == []


def test_fault_bad_args(private_sim: GcpsimProcess) -> None:
    assert private_sim.cli("fault", "run.services.get").returncode == 2  # no effect given
    assert private_sim.cli("fault").returncode == 2
    out = private_sim.cli("fault", "run.services.get", "--status", "503", "--rate", "7")
    assert out.returncode == 2 and "rate" in out.stderr


def test_port_from_state_dir(private_sim: GcpsimProcess) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GCPSIM_PORT"}
    cmd = [
        sys.executable,
        "-m",
        "gcpsim",
        "show",
        "--json",
        "--state-dir",
        str(private_sim.state_dir),
    ]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["settings"]["port"] == private_sim.port


def test_not_running_exit_code(tmp_path: Path) -> None:
    port = _free_port()
    out = _gcpsim("show", env={"GCPSIM_PORT": str(port)})
    assert out.returncode == 3
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "not running" in lines[0] and "python -m gcpsim" in lines[0]
    out = _gcpsim("behavior", "svc", "v1.0.0", "--broken", env={"GCPSIM_PORT": str(port)})
    assert out.returncode == 3


def test_serve_refuses_non_loopback_host(tmp_path: Path) -> None:
    out = _gcpsim("--host", "0.0.0.0", "--state-dir", str(tmp_path / "s"), "--port", "0")
    assert out.returncode == 2
    assert "loopback" in out.stderr
