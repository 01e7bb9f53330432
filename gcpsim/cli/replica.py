"""`python -m gcpsim replica ...`: Cloud SQL cross-region read replicas of a running simulator.

    python -m gcpsim replica create INSTANCE --region REGION [--name NAME] [--project P]
    python -m gcpsim replica                       (list replicas, their lag)

`create` goes through the simulator's Cloud SQL Admin v1 API (`instances.insert` with
`masterInstanceName`, as a real client would) and waits for the CREATE_REPLICA operation;
the default name is `<INSTANCE>-replica-<REGION>` (gcpsim.seedconfig.default_replica_name;
the replica model: gcpsim.model.sql_replicas).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Protocol

from gcpsim.cli.common import EXIT_FAILED, EXIT_USAGE, CliError
from gcpsim.seedconfig import default_replica_name

WAIT_SECONDS = 300.0


class Caller(Protocol):
    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "replica",
        parents=[common],
        help="create a Cloud SQL cross-region read replica; no arguments: list replicas",
        description="create INSTANCE --region REGION makes a read replica of INSTANCE in REGION "
        "(instances.insert with masterInstanceName) and waits until it is RUNNABLE. Its data "
        "follows the primary --replica-lag-seconds behind (a serve flag); promote it with "
        "instances.promoteReplica. Without arguments: the replicas and their lag.",
    )
    p.add_argument("action", nargs="?", choices=["create"], help="create a replica")
    p.add_argument("instance", nargs="?", help="the primary instance")
    p.add_argument("--region", help="the replica's region, e.g. us-east1")
    p.add_argument("--name", help="the replica's name (default INSTANCE-replica-REGION)")
    p.add_argument("--project", help="the primary's project (default: found by name)")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.action == "create" and not (args.instance and args.region):
        parser.error("replica create needs INSTANCE and --region")
    if args.action is None and (args.instance or args.region or args.name):
        parser.error("replica: write `replica create INSTANCE --region REGION`")


def run(c: Caller, args: argparse.Namespace) -> None:
    summary = c.call("GET", "/_sim/sql")
    instances = summary.get("instances", [])
    if args.action is None:
        replicas = [i for i in instances if i.get("masterInstanceName")]
        for i in replicas:
            upto = i.get("replicatedUpTo", "-")
            print(f"{i['project']}/{i['name']} of {i['masterInstanceName']}: {i['state']}, "
                  f"replicated up to {upto}")  # fmt: skip
        if not replicas:
            print("no read replica")
        return
    matches = [
        i for i in instances
        if i["name"] == args.instance and args.project in (None, i["project"])
    ]  # fmt: skip
    if not matches:
        raise CliError(f"no Cloud SQL instance {args.instance!r}", EXIT_USAGE)
    if len(matches) > 1:
        projects = ", ".join(sorted(i["project"] for i in matches))
        raise CliError(f"{args.instance!r} exists in {projects}: pass --project", EXIT_USAGE)
    project = matches[0]["project"]
    name = args.name or default_replica_name(args.instance, args.region)
    op = c.call(
        "POST",
        f"/v1/projects/{project}/instances",
        {
            "name": name,
            "region": args.region,
            "masterInstanceName": args.instance,
            "instanceType": "READ_REPLICA_INSTANCE",
            "replicaConfiguration": {"kind": "sql#replicaConfiguration"},
        },
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while op.get("status") != "DONE":
        if time.monotonic() > deadline:
            raise CliError(f"operation {op['name']} did not finish in {WAIT_SECONDS:.0f}s")
        time.sleep(0.2)
        op = c.call("GET", f"/v1/projects/{project}/operations/{op['name']}")
    if op.get("error"):
        errors = op["error"].get("errors") or [{}]
        raise CliError(f"creating {name} failed: {errors[0].get('message')}", EXIT_FAILED)
    print(f"replica {project}/{name} of {args.instance} in {args.region}: RUNNABLE")
