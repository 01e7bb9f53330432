"""Proto3 JSON answers of the Cloud Run Admin v2 routes (services and jobs): enums as numbers
when the client asks for `enum-encoding=int` (the run_v2 client does), as names otherwise, and
paging."""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

from fastapi import Request, Response

from gcpsim.model.run_spec import REVISION_PB, REVISION_TYPE, SERVICE_PB, SERVICE_TYPE, bad_request

# Whether this request asked for enums as numbers (`$alt=json;enum-encoding=int`, as the run_v2
# client does); plain REST JSON (curl, the discovery client) gets enum names, as from the real API.
_ENUM_INTS: ContextVar[bool] = ContextVar("gcpsim_run_enum_ints", default=True)


async def enum_mode(request: Request) -> None:
    # async: it runs in the request's own context, which the sync endpoint's thread inherits
    _ENUM_INTS.set("enum-encoding=int" in request.query_params.get("$alt", ""))


def _names(obj: Any, desc: Any) -> Any:
    """Enum numbers -> names in a JSON object of message type `desc` (unknown fields kept)."""
    if not isinstance(obj, dict):
        return obj
    fields = {f.json_name: f for f in desc.fields}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        f = fields.get(k)
        if f is None:
            out[k] = v
        elif f.enum_type is not None:

            def name(x: Any, f: Any = f) -> Any:
                value = f.enum_type.values_by_number.get(x) if isinstance(x, int) else None
                return value.name if value is not None else x

            out[k] = [name(x) for x in v] if isinstance(v, list) else name(v)
        elif f.message_type is not None and not f.message_type.GetOptions().map_entry:
            sub = f.message_type
            out[k] = [_names(x, sub) for x in v] if isinstance(v, list) else _names(v, sub)
        else:
            out[k] = v
    return out


def enum_names(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    rtype = obj.get("@type")
    if rtype == SERVICE_TYPE or ("@type" not in obj and ("template" in obj or "traffic" in obj)):
        return _names(obj, SERVICE_PB.DESCRIPTOR)
    if rtype == REVISION_TYPE or ("@type" not in obj and "containers" in obj):
        return _names(obj, REVISION_PB.DESCRIPTOR)
    out = dict(obj)
    for k in ("metadata", "response"):
        if k in out:
            out[k] = enum_names(out[k])
    for k in ("services", "revisions"):
        if isinstance(out.get(k), list):
            out[k] = [enum_names(x) for x in out[k]]
    return out


def json_response(obj: Any) -> Response:
    if not _ENUM_INTS.get():
        obj = enum_names(obj)
    return Response(content=json.dumps(obj, separators=(",", ":")), media_type="application/json")


def page_response(field: str, items: list[Any], next_page_token: str) -> Response:
    """A v2 list answer: `field` holds the page's items, each key left out when empty."""
    out: dict[str, Any] = {}
    if items:
        out[field] = items
    if next_page_token:
        out["nextPageToken"] = next_page_token
    return json_response(out)


def paginate(items: list[Any], page_size: int, page_token: str) -> tuple[list[Any], str]:
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        raise bad_request(f"Invalid page token '{page_token}'.", "pageToken") from None
    if start < 0:
        raise bad_request(f"Invalid page token '{page_token}'.", "pageToken")
    size = page_size if page_size > 0 else 1000
    chunk = items[start : start + size]
    nxt = str(start + size) if start + size < len(items) else ""
    return chunk, nxt
