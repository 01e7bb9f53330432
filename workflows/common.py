"""What every workflow shares: search attribute keys, retry policies, timeouts.

Pure constants: importable from workflow code.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy, SearchAttributeKey

# Custom search attributes (registered by the dev server start-up, `local up` and the
# docker-compose setup job; see stagecoach.temporal.SEARCH_ATTRIBUTES).
ENVIRONMENT = SearchAttributeKey.for_keyword("StagecoachEnvironment")
VERSION = SearchAttributeKey.for_keyword("StagecoachVersion")
PHASE = SearchAttributeKey.for_keyword("StagecoachPhase")
OUTCOME = SearchAttributeKey.for_keyword("StagecoachOutcome")

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
