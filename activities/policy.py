"""LoadPolicy: the worker's own policy for one environment, from the worker's own config.

The workflow calls it at the start of every run, so the policy is recorded in the history and
replays; nothing in the workflow input widens or narrows it. It also checks every target the
input claims (kind, project, region; the simulator only on loopback) against that config and
refuses the run (non-retryable `PolicyViolation`) when one is not allowed.

Sources, both owned by whoever runs the worker: the config file the worker was started with
(`python worker.py --config FILE`, STAGECOACH_CONFIG or ./deploy.yaml), read afresh on each call,
and an optional JSON file of approver public keys (STAGECOACH_APPROVER_KEYS; the embedded stack
points its worker at the keys it provisioned for this machine's user).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from stagecoach.config import PUBLIC_KEY_RE, Config, ConfigError
from stagecoach.config_file import config_path, load_config
from stagecoach.contract import Activity
from stagecoach.payloads.policy import Approval, LoadPolicyInput, TargetClaim, WorkerPolicy
from stagecoach.trust import is_loopback

KEYS_ENV = "STAGECOACH_APPROVER_KEYS"
MAX_KEYS_FILE = 64 * 1024


@dataclass(frozen=True)
class PolicySource:
    config: Path
    keys_file: Path | None = None

    @classmethod
    def from_env(cls, config: str | Path | None = None) -> PolicySource:
        keys = os.environ.get(KEYS_ENV)
        return cls(config_path(str(config) if config else None).resolve(),
                   Path(keys) if keys else None)  # fmt: skip


def _violation(message: str) -> ApplicationError:
    return ApplicationError(message, type="PolicyViolation", non_retryable=True)


def read_keys_file(path: Path) -> dict[str, str]:
    """{name: "ed25519:..."} from a JSON key file; a missing file is empty."""
    if not path.is_file():
        return {}
    raw = path.read_bytes()[: MAX_KEYS_FILE + 1]
    if len(raw) > MAX_KEYS_FILE:
        raise _violation(f"approver key file {path} is larger than 64 KB")
    try:
        data = json.loads(raw)
    except ValueError:
        raise _violation(f"approver key file {path} is not JSON") from None
    if not isinstance(data, dict):
        raise _violation(f"approver key file {path} must map names to keys")
    return {str(k): v for k, v in data.items() if isinstance(v, str) and PUBLIC_KEY_RE.fullmatch(v)}


def policy_for(cfg: Config, env: str, keys: dict[str, str], source: str) -> WorkerPolicy:
    if env not in cfg.environments:
        raise _violation(
            f"environment {env[:40]!r} is not in this worker's config ({source}); the worker "
            f"serves {', '.join(cfg.environments)}"
        )
    release = cfg.env(env).release
    approvers = release.approval.approvers if release.approval else []
    return WorkerPolicy(
        env=env,
        source=source,
        approval=Approval.model_validate(release.approval) if release.approval else None,
        restore_requires_approval=release.restore_requires_approval,
        proof=release.approval.proof if release.approval else "signature",
        forbid_self_approval=bool(release.approval and release.approval.forbid_self_approval),
        keys={n: k for n, k in keys.items() if n in approvers},
    )


def check_claims(cfg: Config, env: str, claims: Sequence[TargetClaim], source: str) -> None:
    e = cfg.env(env)
    for c in claims:
        if c.kind != cfg.target:
            raise _violation(f"{c.what}: target {c.kind!r}, but this worker serves {cfg.target!r}")
        if c.kind == "gcpsim" and not is_loopback(c.host):
            raise _violation(
                f"{c.what}: simulator host {c.host[:60]!r} is not loopback; this worker talks to "
                "gcpsim only on 127.0.0.1 / ::1 / localhost"
            )
        projects = {e.project}
        if c.what.startswith("DNS record ") and e.dns is not None and e.dns.zone_project:
            projects.add(e.dns.zone_project)  # the record's zone may live in another project
        if c.project not in projects:
            raise _violation(
                f"{c.what}: project {c.project[:60]!r} is not {env}'s project in this worker's "
                f"config ({source})"
            )
        # the environment's region, plus the regions its failover may use (failover.regions)
        regions = [e.region, *(r for r in e.failover.regions if r != e.region)]
        if c.region and c.region not in regions:
            raise _violation(
                f"{c.what}: region {c.region[:40]!r} is not {env}'s region ({e.region}) or one "
                f"of its failover.regions ({', '.join(regions[1:]) or 'none'}) in this worker's "
                "config"
            )


class PolicyActivities:
    def __init__(self, source: PolicySource | None = None) -> None:
        self.source = source or PolicySource.from_env()

    def load(self, env: str, claims: Sequence[TargetClaim]) -> WorkerPolicy:
        src = str(self.source.config)
        try:
            cfg = load_config(self.source.config)
        except ConfigError as e:
            raise _violation(f"the worker's config does not load: {e}") from None
        keys = dict(cfg.approver_keys)
        if self.source.keys_file:
            src += f" + {self.source.keys_file}"
            keys.update(read_keys_file(self.source.keys_file))
        policy = policy_for(cfg, env, keys, src)
        check_claims(cfg, env, claims, src)
        return policy

    @activity.defn(name=Activity.LOAD_POLICY)
    def load_policy(self, inp: LoadPolicyInput) -> WorkerPolicy:
        return self.load(inp.env, inp.claims)
