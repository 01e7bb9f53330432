"""Size limits for every free-text field a caller can send (pure; importable from workflows).

A message or an input is capped where it enters, so no status, event line, result or search
attribute can grow past Temporal's payload limits (warn at 256 KB, fail at 2 MB): a 1 MB abort
reason or approve comment is truncated, never copied whole.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BeforeValidator

MAX_NAME = 100  # an approver's or requester's name
MAX_TEXT = 500  # an abort reason, an approve comment
MAX_LINE = 400  # one event line, the progress line
MAX_ERROR = 2000  # an error message kept in a status
MAX_REJECTED = 20  # rejected approval attempts kept in a status (newest)


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    note = f"... [{len(text) - limit} more characters cut]"
    return text[: max(0, limit - len(note))] + note


def _clipper(limit: int) -> BeforeValidator:
    def cut(value: Any) -> Any:
        return clip(value, limit) if isinstance(value, str) else value

    return BeforeValidator(cut)


Name = Annotated[str, _clipper(MAX_NAME)]
Text = Annotated[str, _clipper(MAX_TEXT)]
ErrorText = Annotated[str, _clipper(MAX_ERROR)]


def abort_fields(payload: Any) -> tuple[str, str]:
    """(reason, by) from whatever an `abort` signal carried: the documented object, a bare
    string, a number, a list, null or nothing. The emergency brake is never dropped; any text is
    capped."""
    default = "aborted by operator"
    if payload is None:
        return default, ""
    if isinstance(payload, dict):
        reason = payload.get("reason")
        by = payload.get("by")
        reason_text = reason if isinstance(reason, str) else _show(reason) if reason else default
        by_text = by if isinstance(by, str) else _show(by) if by is not None else ""
        return clip(reason_text or default, MAX_TEXT), clip(by_text, MAX_NAME)
    if isinstance(payload, str):
        return clip(payload or default, MAX_TEXT), ""
    return clip(f"aborted (payload {_show(payload)})", MAX_TEXT), ""


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return clip(text, MAX_TEXT)
