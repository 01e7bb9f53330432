"""Approval proof: the pure verifier agrees with `cryptography`; a proof counts only for the
release, run, version, step, name and comment it was made for."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stagecoach import ed25519
from stagecoach.config import Approval
from stagecoach.keys import create_key, sign
from stagecoach.payloads.policy import WorkerPolicy
from stagecoach.trust import is_loopback, judge_approval


def test_pure_verifier_agrees_with_cryptography() -> None:
    for i in range(8):
        key = Ed25519PrivateKey.generate()
        pub = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        msg = os.urandom(i * 37)
        sig = key.sign(msg)
        assert ed25519.verify(pub, msg, sig)
        assert not ed25519.verify(pub, msg + b"x", sig)
        assert not ed25519.verify(pub, msg, sig[:-1] + bytes([sig[-1] ^ 1]))
        other = (
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        assert not ed25519.verify(other, msg, sig)
    assert not ed25519.verify(b"\0" * 31, b"", b"\0" * 64)


@pytest.mark.parametrize(
    ("host", "ok"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("10.0.0.1", False), ("example.com", False), ("0.0.0.0", False)],
)  # fmt: skip
def test_loopback(host: str, ok: bool) -> None:
    assert is_loopback(host) is ok


def test_a_proof_counts_only_where_it_was_made_for(tmp_path: object, monkeypatch: object) -> None:
    monkeypatch.setenv("STAGECOACH_KEYS_DIR", str(tmp_path))  # type: ignore[attr-defined]
    public, _, _ = create_key("rm")
    policy = WorkerPolicy(
        env="prod", source="test", approval=Approval(approvers=["rm"]), keys={"rm": public}
    )
    where = {"workflow_id": "deploy-a-prod", "run_id": "r1", "version": "v1.0.0", "step": 100}
    proof = sign("rm", comment="ok", **where)  # type: ignore[arg-type]

    def judge(by: str = "rm", comment: str = "ok", **kw: object) -> str:
        args = {**where, **kw}
        j = judge_approval(policy, by=by, comment=comment, proof=proof, requested_by="",
                           **args)  # type: ignore[arg-type]  # fmt: skip
        return j.problem if not j.ok else j.authenticated

    assert judge().startswith("rm (ed25519 key ")
    assert "another release" in judge(run_id="r2")
    assert "another release" in judge(step=50)
    assert "another release" in judge(version="v1.0.1")
    assert "does not verify" in judge(comment="changed")
    assert "not an approver" in judge(by="mallory")
    assert base64.b64decode(proof.signature) if proof else False
