"""Where things are: the repository root and the files the harness starts or reads."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_YAML = ROOT / "deploy.yaml"
WORKER_PY = ROOT / "worker.py"
HISTORIES = ROOT / "tests" / "replay" / "histories"
