"""`python -m gcpsim [--port ...] --state-dir DIR [--reset] [--seed deploy.yaml]`: serve the
simulator (REST on --port, Monitoring gRPC on --grpc-port, the embedded Postgres), writing
`ports.json` to the state dir once it listens."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gcpsim.cli.common import (
    DEFAULT_GRPC_PORT,
    DEFAULT_PORT,
    DEFAULT_STATE_DIR,
    EXIT_USAGE,
    PORTS_FILE,
    CliError,
    default_state_dir,
    env_int,
    is_loopback,
)


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gcpsim",
        description="Local simulator of the Cloud Run Admin v2, Cloud SQL Admin v1 and Cloud "
        "Monitoring v3 APIs. Client commands: behavior, rate, metrics, fault, show (see "
        "`python -m gcpsim show --help`).",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="loopback address to bind (default %(default)s)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"REST port; 0 picks a free one (default $GCPSIM_PORT or {DEFAULT_PORT})",
    )
    p.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help=f"Monitoring gRPC port; 0 picks a free one "
        f"(default $GCPSIM_GRPC_PORT or {DEFAULT_GRPC_PORT})",
    )
    p.add_argument(
        "--state-dir",
        default=None,
        help=f"where state.json and ports.json live "
        f"(default $GCPSIM_STATE_DIR or {DEFAULT_STATE_DIR})",
    )
    p.add_argument("--reset", action="store_true", help="start from an empty state")
    p.add_argument(
        "--seed",
        metavar="FILE",
        default=None,
        help="seed an empty state from this release config (deploy.yaml)",
    )
    p.add_argument(
        "--run-op-seconds",
        type=float,
        default=0.3,
        help="seconds a Cloud Run operation takes (default %(default)s)",
    )
    p.add_argument(
        "--sql-op-seconds",
        type=float,
        default=1.0,
        help="seconds a Cloud SQL operation takes (default %(default)s)",
    )
    p.add_argument(
        "--replica-lag-seconds",
        type=float,
        default=1.0,
        help="how far a Cloud SQL read replica's data trails its primary (default %(default)s)",
    )
    p.add_argument(
        "--request-rate",
        type=float,
        default=50.0,
        help="synthetic requests per second per service (default %(default)s)",
    )
    p.add_argument(
        "--metric-sample-period",
        type=int,
        default=1,
        metavar="SECONDS",
        help="Monitoring collects requests into samples of this many seconds, aligned on epoch "
        "multiples (real Cloud Run: 60; default %(default)s)",
    )
    p.add_argument(
        "--metric-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="a sample becomes visible to ListTimeSeries this long after it ends (real Cloud "
        "Run: up to 180; default %(default)s: with a 1 s period, live)",
    )
    p.add_argument(
        "--seed-value",
        type=int,
        default=0,
        help="seed of the simulator's randomness (default %(default)s)",
    )
    return p  # fmt: skip


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # TCP, and without it keep-alive responses stall ~40 ms on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise CliError(
            f"cannot listen on {host}:{port} ({err.strerror}); stop the other process using it "
            "or pass --port 0 for a free port"
        ) from None
    sock.listen(2048)
    return sock


def _write_ports(state_dir: Path, port: int, grpc_port: int) -> None:
    path = state_dir / PORTS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"port": port, "grpc_port": grpc_port, "pid": os.getpid()}))
    os.replace(tmp, path)


def _remove_ports(state_dir: Path) -> None:
    path = state_dir / PORTS_FILE
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


class _Stop(Exception):
    pass


def serve(argv: list[str]) -> int:
    parser = serve_parser()
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"--host {args.host} is not a loopback address; gcpsim only binds 127.0.0.1")
    port = args.port if args.port is not None else env_int(parser, "GCPSIM_PORT", DEFAULT_PORT)
    grpc_port = (
        args.grpc_port
        if args.grpc_port is not None
        else env_int(parser, "GCPSIM_GRPC_PORT", DEFAULT_GRPC_PORT)
    )
    if min(args.run_op_seconds, args.sql_op_seconds, args.request_rate) < 0:
        parser.error("--run-op-seconds, --sql-op-seconds and --request-rate must not be negative")
    if args.replica_lag_seconds < 0:
        parser.error("--replica-lag-seconds must not be negative")
    from gcpsim.model.metrics import check_timing

    try:
        check_timing(args.metric_sample_period, args.metric_delay)
    except ValueError as err:
        parser.error(f"--metric-sample-period/--metric-delay: {err}")
    state_dir = Path(args.state_dir or default_state_dir())
    if args.seed and not Path(args.seed).is_file():
        parser.error(f"--seed {args.seed}: no such file")

    # Until uvicorn takes over the signals, SIGTERM/SIGINT abort the start-up (cleanly).
    phase = {"serving": False}

    def on_signal(signum: int, _frame: Any) -> None:
        if not phase["serving"]:
            raise _Stop(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    from gcpsim.seed import SeedError, is_empty, seed_from_config
    from gcpsim.sim import Settings, Sim
    from gcpsim.store import STATE_FILE

    state_dir.mkdir(parents=True, exist_ok=True)
    fresh = args.reset or not (state_dir / STATE_FILE).exists()
    sock = _bind(args.host, port)
    settings = Settings(
        host=args.host,
        port=sock.getsockname()[1],
        grpc_port=grpc_port,
        run_op_seconds=args.run_op_seconds,
        sql_op_seconds=args.sql_op_seconds,
        replica_lag_seconds=args.replica_lag_seconds,
        request_rate=args.request_rate,
        metric_sample_period=args.metric_sample_period,
        metric_delay=args.metric_delay,
        seed=args.seed_value,
    )
    sim = Sim.open(state_dir, settings, reset=args.reset)
    from gcpsim.api import monitoring
    from gcpsim.model import sql_runtime

    grpc_server: Any = None
    sql_started = False
    try:
        # Postgres first: it forks, which gRPC's threads (started below) do not like.
        sql_started = True
        try:
            sql_runtime.start(sim)
        except Exception as err:
            raise CliError(f"Cloud SQL (embedded Postgres) did not start: {err}") from err
        if args.seed and (fresh or is_empty(sim)):
            try:
                seed_from_config(sim, args.seed)
            except SeedError as err:
                raise CliError(f"--seed: {err}", EXIT_USAGE) from None
        try:
            grpc_server, settings.grpc_port = monitoring.serve(sim, grpc_port)
        except RuntimeError as err:
            raise CliError(f"{err}; pass --grpc-port 0 for a free port") from None
        return _run_http(sim, sock, state_dir, phase)
    except _Stop:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _remove_ports(state_dir)
        if grpc_server is not None:
            grpc_server.stop(grace=1).wait(5)
        if sql_started:
            try:
                sql_runtime.stop(sim)
            except Exception as err:
                print(f"gcpsim: stopping Cloud SQL failed: {err}", file=sys.stderr)
        sock.close()


def _run_http(sim: Any, sock: socket.socket, state_dir: Path, phase: dict[str, bool]) -> int:
    import uvicorn

    from gcpsim.app import create_app

    app = create_app(sim)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    settings = sim.settings

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.005)
        _write_ports(state_dir, settings.port, settings.grpc_port)
        print(
            f"gcpsim listening: REST http://{settings.host}:{settings.port}  "
            f"gRPC {settings.host}:{settings.grpc_port}  state {state_dir}  pid {os.getpid()}",
            flush=True,
        )

    threading.Thread(target=announce, name="gcpsim-announce", daemon=True).start()
    # uvicorn captures SIGTERM/SIGINT while it serves and re-raises them afterwards; from here
    # on our handler only has to swallow that re-raise so the cleanup in serve() runs.
    phase["serving"] = True
    server.run(sockets=[sock])
    return 0
