"""Release hooks: Cloud Run Jobs a release runs before its first revision (`pre_deploy`, e.g.
database migrations) and after every service is promoted (`post_deploy`, e.g. an end-to-end
suite). The config schema, the plan of one hook for one release, and the naming rules.

Pure (no I/O): importable from workflow code. Secrets are Secret Manager names, never values.
"""

from __future__ import annotations

import re

from stagecoach.config import Hook, Hooks

__all__ = ["Hook", "Hooks", "job_id", "label_value"]

LABEL_RELEASE = "stagecoach-release"  # the release id: the run-once key of an execution
LABEL_HOOK = "stagecoach-hook"
LABEL_VERSION = "stagecoach-version"
MAX_JOB_ID = 49  # Cloud Run: a lowercase DNS label of at most 49 characters


def job_id(hook: str, env: str) -> str:
    """The Cloud Run job of a hook in an environment: `<hook>-<env>`, one per environment,
    updated by every release (like the services `<service>-<env>`)."""
    name = f"{hook}-{env}"
    if len(name) > MAX_JOB_ID or not re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", name):
        raise ValueError(
            f"job name {name!r} (hook-env) must be a lowercase DNS label of at most "
            f"{MAX_JOB_ID} characters; shorten the hook name"
        )
    return name


def label_value(value: str) -> str:
    """A Cloud Run label value: lowercase letters, digits, `-` and `_`, at most 63."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]
