"""Which database a service's serving revisions use, and what a release may do about it (pure).

A `uses_database` service is bound to its environment's Cloud SQL instance in every revision a
release creates (`DatabaseBinding`: Cloud Run's Cloud SQL connection plus the `connection_env`
variable). A release checks the revisions that serve now before it touches anything:

- bound to the configured instance, or not bound at all: fine;
- bound to another instance (a `restore --switch` moved them, or someone did by hand): the
  release would silently move production back, so it stops unless it was asked to switch
  (`deploy --switch-database`, or the release a `restore --switch` hands over to).
"""

from __future__ import annotations

from dataclasses import dataclass

from stagecoach.payloads.release import ServicePlan
from stagecoach.payloads.run import ServingRevision


@dataclass(frozen=True)
class ServingCheck:
    image: str  # the image to deploy ("" keeps none: the plan's own image is used)
    before: str  # instance the serving revisions are bound to ("" when none)
    problem: str  # non-empty: the release must not go on


def instance_of(connection_name: str) -> str:
    """`project:region:instance` -> `instance`."""
    return connection_name.rsplit(":", 1)[-1] if connection_name else ""


def check_serving(
    plan: ServicePlan, serving: list[ServingRevision], env: str, switch: bool
) -> ServingCheck:
    """Decide from what serves now (most traffic first) which image a keep-image plan deploys
    and whether the database binding has drifted from the config."""
    service = plan.ref.service
    image = ""
    if not plan.image:
        top = serving[0] if serving else None
        if top is None or not top.image:
            return ServingCheck(
                "", "", f"{service}: serves no revision with an image; nothing to keep"
            )
        image = top.image
    bound = sorted({s.connection_name for s in serving if s.connection_name})
    before = ", ".join(instance_of(c) for c in bound)
    if plan.database is None or switch:
        return ServingCheck(image, before, "")
    other = [c for c in bound if c != plan.database.connection_name]
    if not other:
        return ServingCheck(image, before, "")
    now, want = instance_of(other[0]), plan.database.instance
    return ServingCheck(
        image,
        before,
        f"{service} serves from database instance {now}, but environments.{env}.database."
        f"instance is {want}: to stay on {now}, set environments.{env}.database.instance: "
        f"{now} in the config; to move the services to {want}, deploy again with "
        "--switch-database. Nothing was changed",
    )
