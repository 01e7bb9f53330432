"""`python -m gcpsim`: serve the simulator, or talk to a running one.

    python -m gcpsim [--port 8780] [--grpc-port 8781] --state-dir DIR [--reset] [--seed deploy.yaml]
    python -m gcpsim behavior SERVICE VERSION [--error-rate 0.08] [--p95-ms 900]
                              [--error-log-rate 0.2] [--broken] ...
    python -m gcpsim behavior --clear
    python -m gcpsim job-behavior JOB VERSION [--fail] [--duration 5s] [--message M]
    python -m gcpsim job-behavior --clear
    python -m gcpsim rate SERVICE [VERSION] RPS       (VERSION defaults to *: the service's total)
    python -m gcpsim rate [--clear [SERVICE [VERSION]]]
    python -m gcpsim metrics [SERVICE] --sample-period 60 --delay 180   (SERVICE defaults to *)
    python -m gcpsim metrics [--clear [SERVICE]]
    python -m gcpsim fault METHOD --status 503 [--rate 0.2] [--times 2] [--op-error] ...
    python -m gcpsim fault --clear
    python -m gcpsim show [--json]
    python -m gcpsim outage [REGION] [--clear]
    python -m gcpsim replica create INSTANCE --region REGION [--name NAME]
    python -m gcpsim replica

Serving imports the web stack lazily, so the client commands start fast. Exit codes: 0 ok,
1 failure, 2 bad arguments, 3 the simulator is not running.
"""

from __future__ import annotations

import sys

from gcpsim.cli.client import client
from gcpsim.cli.common import CLIENT_COMMANDS, CliError
from gcpsim.cli.serve import serve


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CLIENT_COMMANDS:
        return client(argv)
    try:
        return serve(argv)
    except CliError as err:
        print(f"gcpsim: {err}", file=sys.stderr)
        return err.code


if __name__ == "__main__":
    sys.exit(main())
