"""The worker's policy in a run: loaded at its start (before anything is touched), and the signed
approvals judged against it. Shared by Release, Restore and Failover.

Deterministic: importable from workflow code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.common import API_RETRY, QUICK

with workflow.unsafe.imports_passed_through():
    from activities.policy import PolicyActivities
    from stagecoach.bounds import MAX_REJECTED
    from stagecoach.config import Approval
    from stagecoach.contract import APPROVAL_REJECTED
    from stagecoach.payloads.common import ApprovalRecord, ApproveInput, RejectedApproval
    from stagecoach.payloads.policy import LoadPolicyInput, TargetClaim, WorkerPolicy
    from stagecoach.trust import judge_approval

# workflow.patched id: the policy comes from the worker (LoadPolicy at the start of a run)
POLICY_FROM_WORKER = "policy-from-worker"


class _Events(Protocol):
    def _event(self, line: str) -> None: ...


async def load_policy(env: str, claims: list[TargetClaim]) -> WorkerPolicy:
    """The worker's policy for `env`; the worker also refuses targets (projects, regions, a
    simulator off loopback) its config does not allow: then this raises the ActivityError."""
    return await workflow.execute_activity_method(
        PolicyActivities.load_policy,
        LoadPolicyInput(env=env, claims=claims),
        start_to_close_timeout=QUICK,
        retry_policy=API_RETRY,
        summary=f"policy for {env}",
    )


def legacy_dr_policy(env: str, approvers: Sequence[str]) -> WorkerPolicy:
    """Histories from before POLICY_FROM_WORKER: the approvers of the input, unverified."""
    return WorkerPolicy(
        env=env,
        source="workflow input (legacy)",
        approval=Approval(approvers=list(approvers)) if approvers else None,
        restore_requires_approval=bool(approvers),
        proof="none",
    )


def accept_approval(
    run: _Events,
    st: Any,
    policy: WorkerPolicy,
    inp: ApproveInput,
    *,
    version: str,
    step: int,
    requested_by: str,
    already: bool,
) -> str:
    """An `approve` update judged against the worker's policy (see stagecoach.trust): it counts
    only with proof of who sent it, bound to this workflow id and run, `version` and `step`.
    A refused attempt is recorded in `st.rejected_approvals` and the event log, then the update
    fails with the reason; an accepted one is appended to `st.approvals`. Returns the
    authenticated identity (the caller says what was approved)."""
    info = workflow.info()
    verdict = judge_approval(
        policy,
        by=inp.by,
        comment=inp.comment,
        proof=inp.proof,
        workflow_id=info.workflow_id,
        run_id=info.run_id,
        version=version,
        step=step,
        requested_by=requested_by,
    )
    if already:
        verdict = verdict.model_copy(update={"ok": False, "problem": "already approved"})
    if not verdict.ok:
        st.rejected_approvals.append(
            RejectedApproval(
                at=workflow.now(),
                claimed=inp.by,
                authenticated=verdict.authenticated,
                reason=verdict.problem,
            )
        )
        del st.rejected_approvals[:-MAX_REJECTED]
        who = verdict.authenticated or "not authenticated"
        run._event(f"approval REJECTED (claimed {inp.by}, {who}): {verdict.problem}")
        raise ApplicationError(verdict.problem, type=APPROVAL_REJECTED, non_retryable=True)
    st.approvals.append(
        ApprovalRecord(
            by=inp.by,
            at=workflow.now(),
            comment=inp.comment,
            before_weight=step,
            authenticated=verdict.authenticated,
        )
    )
    return verdict.authenticated
