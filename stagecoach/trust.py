"""Trust boundaries (pure; importable from workflow code): the policy a worker enforces, and
the proof an approval carries.

**Policy lives with the worker.** Who may approve, whether proof is required, whether a restore
needs approval, and which targets (kind, projects, regions; the simulator only on loopback) a
release may touch come from the worker's own config, read by the `LoadPolicy` activity at the
start of a run (so it is recorded in the history and replays). Nothing in a workflow's input can
widen or narrow it.

**Approvals carry proof.** An `approve` carries an Ed25519 signature by the approver's own key
over `statement(...)`: the workflow id, the run id, the version, the step (the weight awaiting
approval; 0 for a restore), the approver's name and the comment. The public halves are in the
worker's config (`approver_keys`, or the file in STAGECOACH_APPROVER_KEYS). A signature for
another release, another run, another step or another name does not verify. An environment may
opt out (`release.approval.proof: none`, e.g. dev); such approvals are recorded as unverified.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json

from pydantic import BaseModel

from stagecoach import ed25519
from stagecoach.payloads.policy import WorkerPolicy

KEY_PREFIX = "ed25519:"
STATEMENT_PURPOSE = "stagecoach-approve/v1"


class Judgement(BaseModel):
    ok: bool
    authenticated: str = ""  # who the proof verified as ("" when it did not)
    problem: str = ""


def is_loopback(host: str) -> bool:
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def statement(
    workflow_id: str, run_id: str, version: str, step: int, by: str, comment: str
) -> bytes:
    """The bytes an approver signs: canonical JSON, one purpose string so a signature made for
    this can never be taken for anything else."""
    body = {
        "purpose": STATEMENT_PURPOSE,
        "workflow_id": workflow_id,
        "run_id": run_id,
        "version": version,
        "step": step,
        "by": by,
        "comment": comment,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def public_bytes(key: str) -> bytes:
    if not key.startswith(KEY_PREFIX):
        raise ValueError(f"a public key looks like {KEY_PREFIX}<base64>, not {key[:20]!r}")
    raw = base64.b64decode(key[len(KEY_PREFIX) :], validate=True)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return raw


def fingerprint(key: str) -> str:
    """Short, stable name of a public key (shown in records and errors)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def verify(key: str, message: bytes, signature_b64: str) -> bool:
    """Pure Python (stagecoach.ed25519): runs inside the workflow sandbox, deterministic."""
    try:
        sig = base64.b64decode(signature_b64, validate=True)
        return ed25519.verify(public_bytes(key), message, sig)
    except ValueError:
        return False


def judge_approval(
    policy: WorkerPolicy,
    *,
    by: str,
    comment: str,
    proof: object,
    workflow_id: str,
    run_id: str,
    version: str,
    step: int,
    requested_by: str,
) -> Judgement:
    """Does this `approve` count? Never lists who may approve in the answer."""
    from stagecoach.payloads.common import ApprovalProof

    if by not in policy.approvers:
        return Judgement(ok=False, problem=f"{by!r} is not an approver of {policy.env}")
    authenticated = ""
    if policy.proof == "none":
        authenticated = f"unverified: environments.{policy.env}.release.approval.proof is none"
    else:
        if not isinstance(proof, ApprovalProof):
            return Judgement(
                ok=False,
                problem=f"no proof: {policy.env} needs an approval signed with the approver's "
                f"key (`python starter.py approve {policy.env} --by NAME`, or its "
                "--print-payload for the Web UI / temporal CLI)",
            )
        key = policy.keys.get(by)
        if not key:
            return Judgement(
                ok=False,
                problem=f"the worker has no public key for {by!r}; the worker operator adds it "
                "to approver_keys (`python starter.py keys create NAME` prints it)",
            )
        bound = (proof.workflow_id, proof.run_id, proof.version, proof.step)
        if bound != (workflow_id, run_id, version, step):
            return Judgement(
                ok=False,
                problem=f"the proof is for another release or step ({proof.workflow_id} run "
                f"{proof.run_id[:12]}, {proof.version}, step {proof.step}); sign this one",
            )
        message = statement(workflow_id, run_id, version, step, by, comment)
        if not verify(key, message, proof.signature):
            return Judgement(ok=False, problem=f"the signature does not verify with {by!r}'s key")
        authenticated = f"{by} (ed25519 key {fingerprint(key)})"
    if policy.forbid_self_approval and requested_by and by == requested_by:
        return Judgement(
            ok=False,
            authenticated=authenticated,
            problem=f"{by!r} requested this release and may not approve it (forbid_self_approval)",
        )
    return Judgement(ok=True, authenticated=authenticated)
