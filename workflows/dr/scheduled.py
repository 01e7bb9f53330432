"""What a SCHEDULED regional drill (`schedule dr-drill ENV --scenario regional [--from replica]`)
does differently from one started by hand, shared by the `Failover` drill and `ReplicaDrill`.

A Temporal Schedule starts every run with the input built once, when it was created. Two things
in it must not be the ones of that day:

- scratch names: `-dr-<MMDDhhmmss>` of the scheduling time would repeat every run; with
  `rename_scratch_from` set, `per_run_names` renames them to the run's own start
  (`workflow.now()`, in `@workflow.init`: no command, the same on replay);
- images: with `images_from: serving`, `serving_images` reads (ReadServing, Cloud Run Admin v2
  services.get and the revisions with traffic) what each service serves NOW in the primary
  region, the revision with the most traffic, and the drill deploys those. The primary down or
  a service missing there stops the drill before anything is created.

Runs started by hand (and every recorded history) have neither set: no rename, no extra command.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

from workflows.common import QUICK, error_message

with workflow.unsafe.imports_passed_through():
    from activities.cloud_run import CloudRunActivities
    from stagecoach.payloads.common import Outcome
    from stagecoach.payloads.failover import FailoverInput, RehearsedImage
    from stagecoach.payloads.run import ReadServingInput, ServingRevision

from workflows.dr.common import DrStop

InputT = TypeVar("InputT", bound=FailoverInput)

# The primary region down answers `unavailable` (retryable): a few quick attempts, then the
# drill stops (a drill of what serves cannot run without reading it), not minutes of retries.
SERVING_READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=4),
    maximum_attempts=3,
)


def per_run_names(inp: InputT) -> InputT:
    """A scheduled run's input with the scratch names `-dr-<stamp>` of this run's start."""
    old = inp.rename_scratch_from
    if not old:
        return inp
    new = workflow.now().strftime("%m%d%H%M%S")
    text = inp.model_dump_json().replace(f"-dr-{old}", f"-dr-{new}")
    return type(inp).model_validate_json(text).model_copy(update={"rename_scratch_from": ""})


def _describe(serving: list[ServingRevision]) -> str:
    return ", ".join(f"{s.revision} ({s.percent}%)" for s in serving)


async def serving_images(inp: FailoverInput) -> list[RehearsedImage]:
    """`images_from: serving`: each service's `deploy.image` replaced (in `inp`) with the image
    its `primary` serves now; what was read, for the report. DrStop (FAILED) when a service
    cannot be read there (region down, service missing) or serves nothing."""
    out: list[RehearsedImage] = []
    for svc in inp.services:
        ref = svc.primary
        if ref is None:
            raise DrStop(
                Outcome.FAILED,
                f"no primary service recorded for {svc.name} to read its image from; recreate "
                "the schedule",
            )
        try:
            serving: list[ServingRevision] = await workflow.execute_activity_method(
                CloudRunActivities.read_serving,
                ReadServingInput(ref=ref),
                start_to_close_timeout=QUICK,
                retry_policy=SERVING_READ_RETRY,
                summary=f"read the image {ref.service} serves in {ref.region}",
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            raise DrStop(
                Outcome.FAILED,
                f"cannot read the image {ref.service} serves in {ref.region} "
                f"({error_message(err)}): a scheduled drill rehearses what serves in the "
                "primary region, which must be up with every service; nothing was created "
                "(or schedule it with --version V)",
            ) from None
        with_image = [s for s in serving if s.image]
        if not with_image:
            raise DrStop(
                Outcome.FAILED,
                f"{ref.service} in {ref.region} serves no revision with an image; nothing was "
                "created (or schedule the drill with --version V)",
            )
        top = with_image[0]  # most traffic first
        svc.deploy.image = top.image
        split = f"; the split {_describe(serving)}" if len(serving) > 1 else ""
        out.append(
            RehearsedImage(
                service=svc.deploy.ref.service,
                image=top.image,
                source=f"serving in {ref.region}: {top.revision} ({top.percent}%){split}",
            )
        )
    return out
