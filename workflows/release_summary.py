"""The `summary` query of a release: a few lines for people (phase, each service's percent, what
it is doing and its last verdict, what is awaited and how to answer), beside the full `status`
object for programs.

A service's activity is told apart here, from the release's phase and current service: a
service reads `shifting` in the status both while it bakes and while it awaits approval; the
summary says `baking at 10%` or `awaiting approval before 50%`.

Pure: no workflow calls; deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from stagecoach.bounds import MAX_LINE, clip
    from stagecoach.payloads.common import Outcome, Phase
    from stagecoach.payloads.release import ReleaseStatus, ServiceStatus

# what the current service does while the release is in one of these phases
_ACTIVITY = {
    Phase.DEPLOYING: "creating its canary revision",
    Phase.SMOKE_TESTING: "smoke-testing its canary",
    Phase.SHIFTING: "shifting traffic",
    Phase.BAKING: "baking",
    Phase.AWAITING_APPROVAL: "awaiting approval",
    Phase.FROZEN: "frozen",
    Phase.PAUSED: "paused",
}


def service_activity(st: ReleaseStatus, svc: ServiceStatus) -> str:
    """What `svc` is doing now, in words: its state, refined by the release's phase when it is
    the service being rolled out (baking / awaiting approval / frozen / paused)."""
    current = st.outcome == Outcome.RUNNING and svc.name == st.current_service
    if not current or svc.state in ("promoted", "rolled_back", "failed", "pending"):
        return svc.state.replace("_", " ")
    if st.phase == Phase.AWAITING_APPROVAL and st.awaiting_approval_for is not None:
        return f"awaiting approval before {st.awaiting_approval_for}%"
    if st.phase == Phase.FROZEN and st.frozen_until is not None:
        return f"frozen until {st.frozen_until:%Y-%m-%d %H:%M:%S} UTC ({st.frozen_reason})"
    if st.phase == Phase.BAKING and svc.bake_until is not None:
        return f"baking at {svc.percent}% until {svc.bake_until:%H:%M:%S} UTC"
    return _ACTIVITY.get(st.phase, svc.state.replace("_", " "))


def _service_line(st: ReleaseStatus, svc: ServiceStatus) -> str:
    line = f"  {svc.run_service}: {svc.percent}%, {service_activity(st, svc)}"
    if svc.readings:
        last = svc.readings[-1]
        line += f"; last verdict {last.verdict.value} at {last.weight}%"
        if last.reasons and last.verdict.value != "pass":
            line += f" ({'; '.join(last.reasons)})"
    if svc.error:
        line += f"; {svc.error}"
    return clip(line, MAX_LINE)


def release_summary(st: ReleaseStatus, approvers: Sequence[str]) -> str:
    """A few lines a person reads at a glance (`python starter.py status` shows more)."""
    state = st.outcome.value.replace("_", " ")
    if st.outcome == Outcome.RUNNING:
        state = st.phase.value.replace("_", " ")
    lines = [f"Release {st.version} to {st.env}: {state}"]
    awaiting = st.outcome == Outcome.RUNNING and st.awaiting_approval_for is not None
    if st.progress and not awaiting:  # the approval line below says it all
        lines.append(f"  {clip(st.progress, MAX_LINE)}")
    lines += [_service_line(st, svc) for svc in st.services]
    if awaiting:
        who = " or ".join(approvers) or "a listed approver"
        lines.append(
            f"Awaiting approval by {who} before {st.awaiting_approval_for}%: python starter.py "
            f"approve {st.env} --by NAME --comment '...' (or python starter.py abort {st.env})"
        )
    elif st.outcome == Outcome.RUNNING and st.phase == Phase.PAUSED:
        lines.append(
            f"Paused: python starter.py promote {st.env} to go on, or python starter.py abort "
            f"{st.env} to roll back"
        )
    elif st.outcome != Outcome.RUNNING and (st.error or st.abort_reason):
        lines.append(f"Why: {clip(st.error or st.abort_reason, MAX_LINE)}")
    if st.approvals:
        lines.append(
            "Approved by " + ", ".join(f"{a.by} before {a.before_weight}%" for a in st.approvals)
        )
    return "\n".join(lines)
