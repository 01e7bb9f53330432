"""`python starter.py doctor ENV [--json]`: before the first real release, check what a release,
a restore and a drill of ENV will need (read-only; nothing is started or changed).

Google Cloud checks: `activities.doctor`. Temporal checks here: the namespace answers
(`DescribeNamespace`) and knows Stagecoach's search attributes (`ListSearchAttributes`).
Exit 0 every check passed, 1 a check failed, 2 bad input (config, environment), 3 Google Cloud
(gcpsim) or Temporal unreachable.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any

import typer

from stagecoach.cli.app import (
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_UNREACHABLE,
    STARTER,
    ConfigOpt,
    JsonOpt,
    app,
    fail,
    load,
    out,
    print_json,
    settings,
    watch,
)
from stagecoach.cli.schemas import Check, DoctorReport
from stagecoach.config import parse_duration

DEFAULT_MAX_BACKUP_AGE = timedelta(hours=26)  # daily automated backups, plus their window


async def _temporal_checks() -> tuple[list[Any], str]:
    """(checks, unreachable reason or "")."""
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.service import RPCError, RPCStatusCode

    from activities.doctor import DoctorCheck
    from stagecoach.contract import SEARCH_ATTRIBUTES
    from stagecoach.temporal import connect

    s = settings()
    try:
        client = await asyncio.wait_for(connect(s), 15)
    except (RuntimeError, RPCError, OSError, TimeoutError) as exc:
        reason = str(exc).splitlines()[0].split("(", 1)[0].strip(" :")
        return [], (
            f"Temporal at {s.address} does not answer ({reason}): set TEMPORAL_ADDRESS, or "
            f"start it (`{STARTER} local up`)"
        )
    checks: list[Any] = []
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=s.namespace)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.UNAVAILABLE:
            return [], f"Temporal at {s.address} does not answer ({exc.message})"
        checks.append(
            DoctorCheck(
                name="temporal.namespace",
                ok=False,
                detail=f"namespace {s.namespace!r} at {s.address}: {exc.message}",
                fix="set TEMPORAL_NAMESPACE to an existing namespace, or create it "
                f"(temporal operator namespace create --namespace {s.namespace})",
            )
        )
        return checks, ""
    checks.append(
        DoctorCheck(name="temporal.namespace", ok=True, detail=f"{s.namespace!r} at {s.address}")
    )
    got = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=s.namespace)
    )
    known = dict(got.custom_attributes)
    missing = [k for k in SEARCH_ATTRIBUTES if k not in known]
    checks.append(
        DoctorCheck(
            name="temporal.search_attributes",
            ok=not missing,
            detail=(
                f"missing in {s.namespace!r}: {', '.join(missing)}"
                if missing
                else f"{', '.join(SEARCH_ATTRIBUTES)} registered"
            ),
            fix=""
            if not missing
            else "; ".join(
                f"temporal operator search-attribute create --namespace {s.namespace} "
                f"--name {k} --type Keyword"
                for k in missing
            ),
        )
    )
    return checks, ""


async def doctor(env: str, config: str | None, as_json: bool, max_backup_age: str | None) -> int:
    from activities.doctor import Doctor, Unreachable
    from stagecoach.payloads.dr import DEFAULT_RPO
    from stagecoach.plan import target_for

    cfg = load(config)
    e = cfg.env(env)  # unknown: ConfigError, exit 2
    try:
        age = parse_duration(max_backup_age) if max_backup_age else DEFAULT_MAX_BACKUP_AGE
    except ValueError as exc:
        fail(f"--max-backup-age: {exc}", EXIT_INPUT)
    services = [f"{s.name}-{env}" for s in cfg.ordered_services()]
    doc = Doctor(
        target_for(cfg),
        e.project,
        e.region,
        services,
        e.database.instance if e.database else None,
        rpo=DEFAULT_RPO,
        max_backup_age=age,
    )
    unreachable = ""
    try:
        checks = await asyncio.to_thread(doc.run_all)
    except Unreachable as exc:
        if cfg.target == "gcpsim":
            where = f"gcpsim at {cfg.gcpsim.host}:{cfg.gcpsim.port}"
            how = f"start it (`{STARTER} local up`) or set GCPSIM_PORT"
        else:
            where, how = "Google Cloud", "check the network and proxy settings"
        unreachable = f"{where} does not answer ({exc}): {how}"
        checks = doc.checks
    temporal, t_unreachable = await _temporal_checks()
    checks = [*checks, *temporal]
    unreachable = unreachable or t_unreachable
    failed = [c for c in checks if not c.ok]
    if as_json:
        report = DoctorReport(
            env=env,
            ok=not failed and not unreachable,
            unreachable=unreachable,
            checks=[Check(**c.model_dump()) for c in checks],
        )
        print_json(report.model_dump_json(indent=2))
    else:
        out.print(f"doctor {cfg.app} {env} ({cfg.target}, project {e.project})", markup=False)
        for c in checks:
            mark = "pass" if c.ok else "FAIL"
            out.print(f"  {mark}  {c.name:<27} {c.detail}", markup=False, soft_wrap=True)
            if not c.ok and c.fix:
                out.print(f"        {'':<27} fix: {c.fix}", markup=False, soft_wrap=True)
    if unreachable:
        fail(unreachable, EXIT_UNREACHABLE)
    if failed:
        if not as_json:
            out.print(
                f"{len(failed)} of {len(checks)} checks failed: "
                + ", ".join(c.name for c in failed),
                markup=False,
            )
        return EXIT_FAILED
    if not as_json:
        out.print(f"all {len(checks)} checks passed", markup=False)
    return EXIT_OK


@app.command("doctor")
def doctor_cmd(
    env: str,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    max_backup_age: Annotated[
        str | None,
        typer.Option("--max-backup-age", help="oldest acceptable last successful backup (26h)"),
    ] = None,
) -> None:
    """Check credentials, APIs, IAM, services, instance, PITR, deletion protection, the
    last backup, Monitoring data and Temporal for ENV; each check with its fix."""
    watch(doctor(env, config, as_json, max_backup_age))
