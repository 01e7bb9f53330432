"""What every workflow shares: retry policies, timeouts, the message of an activity failure,
the end of a run that did not succeed, the `abort` payload, a refused input, and `Visible`
(search attributes, progress line, event log). Names and search-attribute keys live in
`stagecoach.contract`.

Deterministic: importable from workflow code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any, ClassVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.notify import notify
    from stagecoach.bounds import MAX_ERROR, MAX_LINE, abort_fields, clip
    from stagecoach.contract import ENVIRONMENT, INVALID_INPUT, OUTCOME, PHASE, VERSION, Message
    from stagecoach.payloads.common import AbortInput, NotifyInput

# Transient errors retry with backoff; activities raise non-retryable ApplicationErrors for
# permanent ones (invalid argument, permission, not found), which fail at once.
API_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=12,
)
# Restoring traffic must win against a flaky API: retry quickly and without an attempt limit
# (permanent errors still fail at once).
TRAFFIC_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
)
QUICK = timedelta(seconds=60)  # start-to-close of a single API call
MAX_EVENTS = 100  # event lines kept in a status object (oldest dropped)
# workflow.patched id: an outcome other than success ends the execution as failed (details: the
# status), so the Web UI never shows a rolled-back release as Completed
OUTCOME_AS_FAILURE = "outcome-as-failure"


def error_message(err: BaseException) -> str:
    """The message of the failure behind an ActivityError (the activity's own words), capped."""
    cause = err.cause if isinstance(err, ActivityError) and err.cause else err
    text = getattr(cause, "message", None) or str(cause) or type(cause).__name__
    return clip(text, MAX_ERROR)


def fail_with_status(status: Any, message: str, error_type: str) -> None:
    """End the run as a failed execution whose failure carries `status` (its first detail),
    for a release that did not promote or a DR workflow that did not succeed. Runs recorded
    before OUTCOME_AS_FAILURE return the status instead (this returns and the caller does)."""
    if workflow.patched(OUTCOME_AS_FAILURE):
        raise ApplicationError(
            clip(message, MAX_ERROR), status, type=error_type, non_retryable=True
        )


async def send_notification(event: str, text: str) -> None:
    """The Notify activity (the worker's webhook); a few attempts, then its error raises."""
    await workflow.execute_activity(
        notify,
        NotifyInput(event=event, text=text),
        start_to_close_timeout=QUICK,
        retry_policy=RetryPolicy(maximum_attempts=3),
        summary=f"notify {event}",
    )


def refuse_input(what: str, problems: Sequence[str]) -> None:
    """A workflow can be started by any Temporal client, not only starter.py: refuse an input
    starter.py would never build before anything (search attributes included) uses it."""
    if problems:
        raise ApplicationError(
            f"invalid {what} input: " + "; ".join(problems), type=INVALID_INPUT, non_retryable=True
        )


def decode_abort(args: Sequence[RawValue]) -> AbortInput:
    """An `abort` signal's payload, whatever it is: `{"reason": ..., "by": ...}`, a bare string,
    a number, a list, null, nothing, or bytes no converter reads. The emergency brake is never
    dropped (a handler with a typed parameter would drop what does not decode); text is capped.

    Workflows receive `abort` through their dynamic signal handler, which gets raw payloads."""
    payload: Any = None
    if args:
        try:
            payload = workflow.payload_converter().from_payload(args[0].payload)
        except Exception:  # undecodable: still an abort
            payload = "aborted (payload not readable)"
    reason, by = abort_fields(payload)
    return AbortInput(reason=reason, by=by)


def on_signal(name: str, args: Sequence[RawValue], abort: Callable[[AbortInput], None]) -> None:
    """A dynamic signal handler's body: `abort` with any payload (see `decode_abort`); any
    other name is logged and ignored."""
    if name == Message.ABORT:
        abort(decode_abort(args))
    else:
        workflow.logger.warning("ignoring unknown signal %r", name[:100])


class Visible:
    """Search attributes, the live progress line and the bounded event log of a workflow whose
    status object (`_state()`) has `phase`, `outcome`, `progress` and `events`.

    One search-attribute upsert per change of (phase, outcome), not per poll."""

    env: str
    version: str
    details_joiner: ClassVar[str] = "in"  # "<version> in <env>: <progress>"
    _upserted: tuple[str, str] | None = None

    def _state(self) -> Any:
        raise NotImplementedError

    def _set_phase(self, phase: StrEnum) -> None:
        st = self._state()
        st.phase = phase
        current = (phase.value, st.outcome.value)
        if current == self._upserted:
            return
        self._upserted = current
        workflow.upsert_search_attributes(
            [
                ENVIRONMENT.value_set(self.env),
                VERSION.value_set(self.version),
                PHASE.value_set(phase.value),
                OUTCOME.value_set(st.outcome.value),
            ]
        )

    def _progress(self, line: str) -> None:
        line = clip(line, MAX_LINE)
        self._state().progress = line
        workflow.set_current_details(f"{self.version} {self.details_joiner} {self.env}: {line}")

    def _event(self, line: str) -> None:
        st = self._state()
        st.events.append(f"{workflow.now().strftime('%H:%M:%S')} {clip(line, MAX_LINE)}")
        del st.events[:-MAX_EVENTS]
        workflow.logger.info(line)
