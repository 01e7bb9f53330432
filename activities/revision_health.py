"""CheckRevisionHealth: can this revision serve at all? (issue 9 item 8)

`run.googleapis.com/request_count` "excludes requests that are not reaching your container
instances" (e.g. at max instances), so a canary that cannot serve reads as a quiet one. This
activity reads what says otherwise:

- the revision's `Ready` condition (Cloud Run Admin API v2 `revisions.get`);
- its newest active instance count, `run.googleapis.com/container/instance_count`
  (GAUGE INT64, metric label `state` = active | idle) from Cloud Monitoring, aligned ALIGN_MAX
  over 60 s and summed over the revision's series, and the revision's `scaling.maxInstanceCount`:
  at the maximum, further requests queue and are refused before reaching an instance.

`instances` is None when Monitoring has no such data (a new revision, or a simulator that does
not model the metric): the verdict then rests on readiness alone and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import cast

from google.api_core import exceptions as gexc
from google.cloud import monitoring_v3
from temporalio import activity

from activities.errors import api_errors, permanent
from stagecoach.clients import Clients, clients_for
from stagecoach.contract import Activity
from stagecoach.payloads.common import Target
from stagecoach.payloads.run import RevisionHealth, RevisionHealthInput

INSTANCE_COUNT = "run.googleapis.com/container/instance_count"
PERIOD = timedelta(seconds=60)  # the real API's minimum alignment period


class RevisionHealthActivities:
    def __init__(self, clients: Callable[[Target], Clients] = clients_for) -> None:
        self._clients = clients

    def _instances(self, input: RevisionHealthInput) -> tuple[int | None, str]:
        ref = input.ref
        end = datetime.now(UTC).replace(microsecond=0)
        start = end - max(timedelta(seconds=input.window_seconds), PERIOD)
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{ref.project}",
            filter=(
                f'metric.type = "{INSTANCE_COUNT}" AND resource.type = "cloud_run_revision" '
                f'AND resource.labels.service_name = "{ref.service}" '
                f'AND resource.labels.revision_name = "{input.revision}" '
                'AND metric.labels.state = "active"'
            ),
            interval=monitoring_v3.TimeInterval(start_time=start, end_time=end),
            aggregation=monitoring_v3.Aggregation(
                alignment_period=PERIOD,
                per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_MAX,
                cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
            ),
        )
        try:
            series = list(self._clients(ref.target).metrics.list_time_series(request=request))
        except (gexc.NotFound, gexc.InvalidArgument) as exc:
            return None, f"instance count not available from Monitoring ({exc.message})"
        newest: tuple[datetime, int] | None = None
        for ts in series:
            for p in ts.points:  # newest first
                at = cast(datetime, p.interval.end_time)  # proto-plus: a datetime
                value = int(p.value.int64_value or round(p.value.double_value))
                if newest is None or at > newest[0]:
                    newest = (at, value)
                break
        if newest is None:
            return None, "no instance_count samples yet (metrics are up to 3 minutes late)"
        return newest[1], ""

    @activity.defn(name=Activity.CHECK_REVISION_HEALTH)
    @api_errors
    def check_revision_health(self, input: RevisionHealthInput) -> RevisionHealth:
        """Readiness and instance count of one revision; `can_serve` False means few requests
        in the metrics are no evidence of a quiet, healthy canary."""
        ref = input.ref
        try:
            rev = self._clients(ref.target).revisions.get_revision(
                name=f"{ref.name}/revisions/{input.revision}"
            )
        except gexc.NotFound:
            raise permanent(
                f"revision {input.revision} of {ref.service} not found", "NotFound"
            ) from None
        ready_cond = next((c for c in rev.conditions if c.type_ == "Ready"), None)
        ready = ready_cond is not None and (
            ready_cond.state == ready_cond.State.CONDITION_SUCCEEDED
        )
        out = RevisionHealth(
            revision=input.revision,
            ready=ready,
            reason="" if ready else (ready_cond.message if ready_cond else "no Ready condition"),
            max_instances=int(rev.scaling.max_instance_count),
        )
        out.instances, out.note = self._instances(input)
        out.at_max_instances = bool(
            out.instances is not None and out.max_instances and out.instances >= out.max_instances
        )
        out.can_serve = out.ready and not out.at_max_instances
        if out.at_max_instances:
            out.reason = (
                f"{out.instances} active instances = max_instances {out.max_instances}: requests "
                "beyond them never reach an instance and are not in request_count"
            )
        return out
