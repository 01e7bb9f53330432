"""The base of every payload model, and the lenient field types payloads share."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

_SHORT_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Payload(BaseModel):
    """Tolerant: unknown fields are ignored (a payload written by a newer Stagecoach still
    decodes), and a model may be built from another object's attributes (a config model of the
    same shape, e.g. `ReleaseInput(steps=cfg.env(env).release.steps)`)."""

    model_config = ConfigDict(extra="ignore", from_attributes=True)


def _short_duration(value: Any) -> Any:
    """`"90s"`, `"5m"`, `"250ms"` (as written in deploy.yaml) -> timedelta; anything else (ISO
    8601 as the pydantic data converter writes it, a number of seconds, a timedelta) is left to
    pydantic. No range checks: those belong to the config."""
    if isinstance(value, str) and (m := _SHORT_DURATION_RE.fullmatch(value.strip())):
        return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(_short_duration)]
