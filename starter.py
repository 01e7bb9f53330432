"""Stagecoach command line: `python starter.py --help`, the same program as `stagecoach --help`
(see stagecoach/cli/)."""

from stagecoach.cli.main import main

if __name__ == "__main__":
    main()
