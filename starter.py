"""Stagecoach command line: `python starter.py --help` (see stagecoach/cli.py)."""

from stagecoach.cli import app

if __name__ == "__main__":
    app()
