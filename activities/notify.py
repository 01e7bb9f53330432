"""Notifications: a Slack-compatible incoming webhook (`{"text": ...}`).

The webhook URL is a secret-ish setting: the worker puts it in the environment
(`STAGECOACH_WEBHOOK_URL`, from the config's `notifications.webhook_url` or its own environment);
it never travels through workflow history. No URL: nothing is sent. A failing webhook never fails
the workflow: after a bounded retry the failure is logged and the activity returns normally.
"""

from __future__ import annotations

import os
import time

import requests
from temporalio import activity

from stagecoach.contract import Activity
from stagecoach.payloads.common import NotifyInput

WEBHOOK_ENV = "STAGECOACH_WEBHOOK_URL"
ATTEMPTS = 3
TIMEOUT_SECONDS = 5.0
BACKOFF_SECONDS = 0.5

_PREFIX = {
    "started": ":rocket:",
    "awaiting_approval": ":raised_hand:",
    "promoted": ":white_check_mark:",
    "rolled_back": ":leftwards_arrow_with_hook:",
    "failed": ":x:",
    "drill": ":fire_engine:",
}


def message_text(input: NotifyInput) -> str:
    return f"{_PREFIX.get(input.event, '')} {input.text}".strip()


@activity.defn(name=Activity.NOTIFY)
def notify(input: NotifyInput) -> None:
    """Post the notification; never raises for a webhook failure."""
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if not url:
        activity.logger.debug("no webhook configured; notification %s not sent", input.event)
        return
    payload = {"text": message_text(input)}
    last = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            resp = requests.post(url, json=payload, timeout=TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            last = type(exc).__name__
        else:
            if resp.status_code < 300:
                return
            last = f"HTTP {resp.status_code}"
            if resp.status_code < 500 and resp.status_code != 429:
                break
        if attempt < ATTEMPTS:
            time.sleep(BACKOFF_SECONDS * attempt)
    # The URL itself is not logged: incoming-webhook URLs embed a token.
    activity.logger.warning("notification %s not delivered (%s); continuing", input.event, last)
