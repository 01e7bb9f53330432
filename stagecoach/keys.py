"""Approver keys (CLI side): create, load, sign. Private keys never leave this machine: they
are not in any workflow input, result, history or log; only the signature travels.

Keys live in $STAGECOACH_KEYS_DIR, else `<stack home>/keys` (`.stagecoach/keys`): a directory
private to its user (0700), one `NAME.key` per approver (PKCS#8 PEM, 0600), and
`approvers.json` ({name: "ed25519:<base64>"}, the public halves) that the embedded stack's
worker trusts (STAGECOACH_APPROVER_KEYS). For a shared worker, the worker operator copies the
public half printed by `starter.py keys create NAME` into `approver_keys` of the worker's config.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from stagecoach.config import APPROVER_RE, Config, ConfigError
from stagecoach.payloads.common import ApprovalProof
from stagecoach.trust import KEY_PREFIX, fingerprint, statement

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TRUSTED_FILE = "approvers.json"


def keys_dir() -> Path:
    given = os.environ.get("STAGECOACH_KEYS_DIR")
    if given:
        return Path(given)
    from stagecoach.localstack.paths import home

    return home() / "keys"


def private_dir(path: Path) -> Path:
    """`path` (and missing parents) created 0700; an existing one tightened to 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _key_file(name: str) -> Path:
    if not APPROVER_RE.fullmatch(name):
        raise ConfigError(
            f"approver name {name[:40]!r}: use letters, digits, '.', '_', '@' and '-' (up to 64)"
        )
    return keys_dir() / f"{name}.key"


def _public(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode()


def create_key(name: str) -> tuple[str, Path, bool]:
    """(public key, private key file, created). An existing key is kept, never overwritten."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = _key_file(name)
    existing = load_private(name)
    if existing is not None:
        return _public(existing), path, False
    private_dir(path.parent)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return _public(key), path, True


def load_private(name: str) -> Ed25519PrivateKey | None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = _key_file(name)
    if not path.is_file():
        return None
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key; remove it and run keys create again")
    return key


def sign(
    name: str, *, workflow_id: str, run_id: str, version: str, step: int, comment: str
) -> ApprovalProof | None:
    """The proof for `approve` by `name` of one release step; None without a key."""
    key = load_private(name)
    if key is None:
        return None
    message = statement(workflow_id, run_id, version, step, name, comment)
    return ApprovalProof(
        workflow_id=workflow_id,
        run_id=run_id,
        version=version,
        step=step,
        key=fingerprint(_public(key)),
        signature=base64.b64encode(key.sign(message)).decode(),
    )


def provision_local(cfg: Config) -> list[str]:
    """The embedded stack: a key for every configured approver (of environments that ask for
    proof) that has none on this machine, and `approvers.json` listing their public halves for
    the stack's worker. Returns the names created."""
    names = sorted(
        {
            n
            for e in cfg.environments.values()
            if e.release.approval and e.release.approval.proof == "signature"
            for n in e.release.approval.approvers
        }
    )
    created = []
    trusted: dict[str, str] = {}
    for n in names:
        public, _, new = create_key(n)
        trusted[n] = public
        if new:
            created.append(n)
    if names:
        d = private_dir(keys_dir())
        path = d / TRUSTED_FILE
        old = json.loads(path.read_text()) if path.is_file() else {}
        if old != {**old, **trusted}:
            tmp = d / f".{TRUSTED_FILE}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({**old, **trusted}, f, indent=1, sort_keys=True)
            tmp.replace(path)
    return created


def trusted_file() -> Path:
    return keys_dir() / TRUSTED_FILE
