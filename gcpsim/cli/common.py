"""What the serve and client commands share: defaults, exit codes, the error type."""

from __future__ import annotations

import argparse
import os

DEFAULT_PORT = 8780
DEFAULT_GRPC_PORT = 8781
DEFAULT_STATE_DIR = ".stagecoach/gcpsim"
PORTS_FILE = "ports.json"
CLIENT_COMMANDS = (
    "behavior", "job-behavior", "rate", "metrics", "fault", "show", "outage", "replica",
)  # fmt: skip
LOOPBACK = ("127.0.0.1", "localhost", "::1")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def env_int(parser: argparse.ArgumentParser, name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        parser.error(f"environment variable {name}={raw!r} is not a port number")
    raise AssertionError  # unreachable: parser.error exits


def default_state_dir() -> str:
    return os.environ.get("GCPSIM_STATE_DIR") or DEFAULT_STATE_DIR


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")
