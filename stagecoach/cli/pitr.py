"""`restore ENV --point-in-time RFC3339 [--switch --yes]` (Scenario 2): clone the instance as of
that time, validate it, and optionally switch the services to it through a release (the same
workflow id: the recovery continues as new into the release)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.client import (
    WorkflowContinuedAsNewError,
)
from temporalio.exceptions import ApplicationError

from stagecoach.cli.app import (
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_UNREACHABLE,
    async_client,
    detach_exit,
    duration_opt,
    ensure_stack,
    fail,
    print_json,
    say,
    start,
    who,
)
from stagecoach.cli.follow import Follower, follow_events
from stagecoach.cli.render_dr import (
    dump,
    pitr_summary,
    print_lines,
    utc_time,
)
from stagecoach.config import Config, ConfigError
from stagecoach.contract import (
    WorkflowType,
    release_workflow_id,
)
from stagecoach.payloads.common import InstanceRef, Outcome
from stagecoach.payloads.dr import PointInTimeInput, PointInTimeResult, Verification
from stagecoach.payloads.release import ReleaseInput
from stagecoach.payloads.sql import RecoveryWindowInput
from stagecoach.plan import build_switch_release


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 timestamp with an offset (`Z` or `+hh:mm`) -> aware UTC datetime."""
    try:
        dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        fail(
            f"--point-in-time {value!r} is not an RFC 3339 time; write e.g. 2025-05-02T09:59:00Z",
            EXIT_INPUT,
        )
    if dt.tzinfo is None:
        fail(f"--point-in-time {value!r} has no offset; add Z (UTC) or +hh:mm", EXIT_INPUT)
    return dt.astimezone(UTC)


@dataclass(frozen=True)
class SwitchRollout:
    """`restore --switch`'s release overrides, as given on the command line."""

    bake: str | None = None
    interval: str | None = None


def release_for_switch(
    cfg: Config,
    env: str,
    ref: InstanceRef,
    at: datetime,
    yes: bool,
    rollout: SwitchRollout,
) -> ReleaseInput:
    """The release `--switch` hands over to; exits 2 on anything wrong with the request."""
    try:
        release = build_switch_release(
            cfg,
            env,
            at,
            secrets.token_hex(3)[:5],
            bake=duration_opt("--bake", rollout.bake),
            interval=duration_opt("--interval", rollout.interval, positive=True),
            requested_by=who(),
        )
    except ConfigError as err:
        fail(str(err), EXIT_INPUT)
    assert release.recovery is not None
    if not yes:
        names = ", ".join(p.ref.service for p in release.services)
        fail(
            f"refused: --switch moves {names} in {env} to {release.recovery.recovery_instance} "
            f"(what was written to {ref.instance} after {utc_time(at)} is not there); rerun with "
            "--yes to confirm. Nothing was started.",
            EXIT_INPUT,
        )
    return release


async def _recovery_window(cfg: Config, ref: InstanceRef, at: datetime) -> Any:
    """The instance's recoverable window, read before anything starts (the same code as the
    ReadRecoveryWindow activity, which the workflow runs again before it clones)."""
    from activities.cloud_sql import CloudSqlActivities

    ensure_stack(cfg)  # gcpsim: start it when it does not answer
    try:
        return await asyncio.to_thread(
            CloudSqlActivities().read_recovery_window,
            RecoveryWindowInput(ref=ref, point_in_time=at),
        )
    except ApplicationError as err:
        where = f"{cfg.target} ({ref.target.host}:{ref.target.port})"
        code = EXIT_FAILED if err.non_retryable else EXIT_UNREACHABLE
        fail(f"cannot read the recoverable window of {ref.instance} on {where}: {err}", code)


async def pitr(
    cfg: Config,
    env: str,
    ref: InstanceRef,
    verification: Verification,
    at: datetime,
    switch_release: ReleaseInput | None,
    detach: bool,
    as_json: bool,
) -> int:
    now = datetime.now(UTC)
    if at > now:
        fail(f"--point-in-time {utc_time(at)} is in the future", EXIT_INPUT)
    window = await _recovery_window(cfg, ref, at)
    if window.problem:
        fail(f"--point-in-time: {window.problem}", EXIT_INPUT)
    inp = PointInTimeInput(
        app=cfg.app,
        env=env,
        instance=ref,
        point_in_time=at,
        verification=verification,
        switch_release=switch_release,
        requested_by=who(),
        notify=bool(cfg.notifications.webhook_url),
    )
    client = await async_client(cfg)
    wf_id = release_workflow_id(cfg.app, env)
    what = f"recover {ref.instance} at {utc_time(at)}" + (
        " and switch the services" if switch_release else ""
    )
    handle = await start(
        client,
        WorkflowType.POINT_IN_TIME_RECOVERY,
        inp,
        wf_id,
        env,
        what,
        PointInTimeResult,
        static_summary=what,
    )
    if not as_json:
        say(f"recovering {ref.instance} ({env}) as of {utc_time(at)}, workflow {wf_id}")
        if switch_release is not None:
            names = ", ".join(p.ref.service for p in switch_release.services)
            say(
                f"once verified, release {switch_release.version} points {names} at the "
                "recovery instance (same workflow id: status/approve/abort/promote work as for "
                "any release)"
            )
    if detach:
        return detach_exit(handle, as_json)
    if switch_release is not None:  # this run only: it continues as new into the release
        handle = client.get_workflow_handle(wf_id, run_id=handle.result_run_id)
    try:
        st = await follow_events(
            handle, PointInTimeResult, quiet=as_json, follow_runs=switch_release is None
        )
    except WorkflowContinuedAsNewError:
        assert switch_release is not None
        if not as_json:
            say(
                f"recovery instance verified; release {switch_release.version} switches the "
                "services (Ctrl-C detaches; it goes on)"
            )
        follower = Follower(client, cfg, env, as_json)
        _final, code = await follower.follow()
        return code
    if as_json:
        print_json(dump(st))
    else:
        print_lines(list(pitr_summary(st)))
    return EXIT_OK if st.outcome == Outcome.SUCCEEDED else EXIT_FAILED
