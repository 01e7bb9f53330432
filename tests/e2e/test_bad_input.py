"""Every bad input a user (or an attacker with a text editor) can give: exit 2, one `error:`
line, nothing started. Temporal points at an address nothing listens on, outside loopback so
no embedded stack is brought up: a command that got as far as starting anything would exit 3,
not 2. The backup-id cases read the session's gcpsim (the check happens before any start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testing.cli import STARTER
from testing.gcpsim import GcpsimProcess
from testing.paths import ROOT
from tests.e2e.test_cli import assert_one_line_error

DEPLOY = (ROOT / "deploy.yaml").read_text()
BOMB = "l0: &l0 {a: 1, b: 2}\n" + "".join(
    f"l{i}: &l{i} {{<<: [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}], k: {i}}}\n"
    for i in range(1, 12)
)

# (name, file content or None for the shipped deploy.yaml, argv, extra env, words in the error)
CASES: list[tuple[str, str | bytes | None, list[str], dict[str, str], list[str]]] = [
    ("duplicate env", DEPLOY.replace("environments:\n", "environments:\n  prod:\n"
     "    project: x\n    release: {steps: [{weight: 100}]}\n", 1),
     ["deploy", "prod", "v1.2.0"], {}, ["duplicate key 'prod'"]),
    ("duplicate top-level key", DEPLOY + "app: other\n", ["status", "prod"], {},
     ["duplicate key 'app'"]),
    ("merge-key bomb", BOMB, ["status", "prod"], {}, ["aliases"]),
    ("not utf-8", b"app: legal-forms\xff\xfe\n", ["status", "prod"], {}, ["UTF-8"]),
    ("oversize file", "# " + "x" * 300_000 + "\n" + DEPLOY, ["status", "prod"], {}, ["KB"]),
    ("oversize duration", DEPLOY.replace("interval: 60s", "interval: 99999999999999d", 1),
     ["status", "prod"], {}, ["366 days"]),
    ("infinite duration", DEPLOY.replace("interval: 60s", "interval: .inf", 1),
     ["status", "prod"], {}, ["366 days"]),
    ("bad environment name", DEPLOY.replace("  dev:\n", "  Dev_1:\n", 1), ["status", "prod"],
     {}, ["environment name"]),
    ("version with a newline", None, ["deploy", "prod", "v1.2.0\n"], {}, ["v1.2.3"]),
    ("version with Arabic-Indic digits", None, ["deploy", "prod", "v\u0661.2.0"], {}, ["ASCII"]),
    ("version too short", None, ["deploy", "prod", "v1.2"], {}, ["v1.2.3"]),
    ("unknown environment", None, ["deploy", "qa", "v1.2.0"], {}, ["unknown environment"]),
    ("GCPSIM_PORT not a number", None, ["status", "prod"], {"GCPSIM_PORT": "abc"},
     ["GCPSIM_PORT"]),
    ("negative history limit", None, ["history", "prod", "--limit", "-1"], {}, ["--limit"]),
    ("backup id path", None, ["restore", "prod", "--backup-id", "../../etc/passwd", "--yes"],
     {}, ["--backup-id"]),
    ("backup id unknown", None, ["restore", "prod", "--backup-id", "999999999", "--yes"], {},
     ["not one of", "backups"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "argv", "extra", "words"),
    [pytest.param(c, a, e, w, id=n) for n, c, a, e, w in CASES],
)
def test_bad_input_exits_2_with_one_error_line_and_starts_nothing(
    gcpsim: GcpsimProcess,
    tmp_path: Path,
    content: str | bytes | None,
    argv: list[str],
    extra: dict[str, str],
    words: list[str],
) -> None:
    cfg = ROOT / "deploy.yaml"
    if content is not None:
        cfg = tmp_path / "deploy.yaml"
        cfg.write_bytes(content if isinstance(content, bytes) else content.encode())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STAGECOACH_", "TEMPORAL_"))}
    env.update(
        TEMPORAL_ADDRESS="192.0.2.1:7233",  # TEST-NET: nothing answers, no local stack
        GCPSIM_PORT=str(gcpsim.port),
        GCPSIM_GRPC_PORT=str(gcpsim.grpc_port),
        STAGECOACH_HOME=str(tmp_path / "home"),
    )
    env.update(extra)
    res = subprocess.run(
        [sys.executable, STARTER, *argv, "--config", str(cfg)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert_one_line_error(res, 2, *words)
    assert not (tmp_path / "home").exists()  # no local stack, no key, nothing
