"""Cloud Run revision history for rollbacks: `FindPreviousRevision`.

Read-only (so trivially idempotent). The choice itself is the pure `choose_previous`, kept apart
from the API call so it can be unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from google.cloud import run_v2
from temporalio import activity

from activities.errors import api_errors, permanent
from stagecoach.clients import clients_for
from stagecoach.contract import Activity
from stagecoach.payloads.run import FindPreviousRevisionInput, PreviousRevision

_SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED


@dataclass(frozen=True)
class RevisionInfo:
    name: str  # short name
    created: datetime
    ready: bool


def choose_previous(
    revisions: list[RevisionInfo],
    serving: list[str],
    previous_of: dict[str, str] | None = None,
    exclude: list[str] | None = None,
) -> PreviousRevision:
    """The revision that served before the current one.

    The current revision is the newest revision that receives traffic (in a split left behind by
    an interrupted rollout that is the canary, so the rollback goes to the stable one). Then:
    1. the revision the release history says the current one replaced, when it is still ready;
    2. otherwise the newest ready revision created before the current one, skipping `exclude`
       (canaries of releases that failed or were rolled back: they never served on their own).
    Never LATEST, never the current revision. Raises ValueError when there is nothing to go to.
    """
    previous_of = previous_of or {}
    skip = set(exclude or [])
    newest_first = sorted(revisions, key=lambda r: r.created, reverse=True)
    by_name = {r.name: r for r in newest_first}
    live = [r for r in newest_first if r.name in serving]
    if not live:
        if not serving:
            raise ValueError("the service serves no revision; nothing to roll back from")
        raise ValueError(f"the serving revisions {', '.join(serving)} are not in the list")
    current = live[0]
    known = previous_of.get(current.name)
    if known and known != current.name and known in by_name and by_name[known].ready:
        return PreviousRevision(
            current=current.name,
            previous=known,
            how=f"release history: {current.name} replaced {known}",
        )
    older = [r for r in newest_first if r.created < current.created]
    for r in older:
        if r.ready and r.name not in skip:
            return PreviousRevision(
                current=current.name,
                previous=r.name,
                how=f"newest ready revision created before {current.name}",
            )
    raise ValueError(f"no ready revision older than {current.name} to roll back to")


def _created(rev: run_v2.Revision) -> datetime:
    """proto-plus gives a datetime (DatetimeWithNanoseconds); a raw Timestamp is converted."""
    value: object = rev.create_time
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(0) if value is None else value.ToDatetime()  # type: ignore[attr-defined]


def _is_ready(rev: run_v2.Revision) -> bool:
    for c in rev.conditions:
        if c.type_ == "Ready":
            return bool(c.state == _SUCCEEDED)
    return False


@activity.defn(name=Activity.FIND_PREVIOUS_REVISION)
@api_errors
def find_previous_revision(input: FindPreviousRevisionInput) -> PreviousRevision:
    """List the service's revisions and pick the one to roll back to (see `choose_previous`)."""
    client = clients_for(input.ref.target).revisions
    revisions = [
        RevisionInfo(
            name=rev.name.rsplit("/", 1)[-1],
            created=_created(rev),
            ready=_is_ready(rev),
        )
        for rev in client.list_revisions(parent=input.ref.name)
    ]
    try:
        return choose_previous(revisions, input.serving, input.previous_of, input.exclude)
    except ValueError as err:
        raise permanent(f"{input.ref.service}: {err}", "NoPreviousRevision") from None
