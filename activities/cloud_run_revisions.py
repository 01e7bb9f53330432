"""CreateRevision: a tagged 0% revision of a Cloud Run service (idempotent: a retry after a crash
at any line converges on the same revision)."""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import run_v2
from temporalio import activity

from activities.cloud_run_convert import (
    api_message,
    apply_binding,
    connector_name,
    cpu_count,
    ready_condition,
    short_name,
    tag_url,
    traffic_from_api,
    traffic_without,
)
from activities.cloud_run_ops import CloudRunOperations
from activities.errors import api_errors, permanent
from stagecoach.contract import Activity
from stagecoach.payloads.common import ServiceRef, TrafficTarget
from stagecoach.payloads.run import CreateRevisionInput, CreateRevisionResult

_SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED
_FAILED = run_v2.Condition.State.CONDITION_FAILED

_Ingress = run_v2.IngressTraffic
_INGRESS: dict[str, int] = {
    "all": _Ingress.INGRESS_TRAFFIC_ALL,
    "internal": _Ingress.INGRESS_TRAFFIC_INTERNAL_ONLY,
    "internal-and-cloud-load-balancing": _Ingress.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER,
}


class RevisionCreation(CloudRunOperations):
    # ------------------------------------------------------------------ CreateRevision

    @activity.defn(name=Activity.CREATE_REVISION)
    @api_errors
    def create_revision(self, input: CreateRevisionInput) -> CreateRevisionResult:
        """Deploy `input.image` as revision `input.revision` with 0% traffic and a tag, bound to
        `input.database` (Cloud SQL volume + env var) when given. `before` in the result is the
        traffic found before the revision was added, LATEST pinned: the release's snapshot.

        Idempotent: when the revision already exists with this image (a retry after a crash),
        nothing is created and `created` is False. A revision that never becomes ready raises
        a non-retryable `RevisionNotReady` with the API's message.
        """
        ref = input.ref
        details: dict[str, Any] = {"revision": input.revision}
        prior = self._prior()
        if prior.get("op") and prior.get("revision") == input.revision:
            op_name = str(prior["op"])
            svc_or_none = self._resumed(
                ref,
                op_name,
                lambda op: self._finish_create(ref, input, op, {**details, "op": op}),
            )
            if svc_or_none is not None:
                svc = svc_or_none
                return CreateRevisionResult(
                    revision=input.revision,
                    tag_url=tag_url(svc, input.tag, input.revision),
                    created=True,
                    before=traffic_without(svc, input.revision),
                )

        # The revision name is unique to this release, so a first attempt cannot find it: only a
        # retry (or a reset workflow: the update's 409 below) looks for it before updating.
        if activity.info().attempt > 1 or prior:
            existing = self._revision(ref, input.revision)
            if existing is not None:
                return self._adopt_existing(ref, input, existing, details)

        svc = self._get(ref)
        before = traffic_without(svc, input.revision)
        body, paths = self._revision_body(svc, input)
        try:
            op = self._patch(ref, body, paths)
        except gexc.Conflict:
            existing = self._revision(ref, input.revision)
            if existing is None:
                raise
            return self._adopt_existing(ref, input, existing, details)
        name = op.operation.name
        svc = self._finish_create(ref, input, name, {**details, "op": name})
        return CreateRevisionResult(
            revision=input.revision,
            tag_url=tag_url(svc, input.tag, input.revision),
            created=True,
            before=before,
        )

    def _finish_create(
        self,
        ref: ServiceRef,
        input: CreateRevisionInput,
        op_name: str,
        details: dict[str, Any],
    ) -> run_v2.Service:
        try:
            svc = self._wait(ref, op_name, details)
        except gexc.GoogleAPICallError as exc:
            rev = self._revision(ref, input.revision)
            if rev is not None:
                cond = ready_condition(rev.conditions)
                if cond is None or cond.state != _SUCCEEDED:
                    raise permanent(
                        api_message(exc), "RevisionNotReady", revision=input.revision
                    ) from exc
            raise
        if not tag_url(svc, input.tag, input.revision):
            svc = self._get(ref)  # trafficStatuses may lag the operation's response
        return svc

    def _adopt_existing(
        self,
        ref: ServiceRef,
        input: CreateRevisionInput,
        rev: run_v2.Revision,
        details: dict[str, Any],
    ) -> CreateRevisionResult:
        image = rev.containers[0].image if rev.containers else ""
        if image != input.image:
            raise permanent(
                f"revision {input.revision!r} already exists with image {image!r}, "
                f"not {input.image!r}; a new release needs a new revision name",
                "AlreadyExists",
                revision=input.revision,
            )
        svc = self._get(ref)
        if svc.reconciling:
            svc = self._wait_reconciled(ref, details)
        rev = self._revision(ref, input.revision) or rev
        cond = ready_condition(rev.conditions)
        if cond is not None and cond.state == _FAILED:
            raise permanent(
                cond.message
                or f"Revision '{input.revision}' is not ready and cannot serve traffic.",
                "RevisionNotReady",
                revision=input.revision,
            )
        current = traffic_from_api(svc.traffic)
        if not any(t.revision == input.revision and t.tag == input.tag for t in current):
            # The tag went missing (someone edited traffic): put it back, 0%.
            tagged = self._traffic_with_tag(svc, input.revision, input.tag)
            svc = self._update(ref, self._traffic_body(svc, tagged), ["traffic"], details)
        url = tag_url(svc, input.tag, input.revision)
        activity.logger.info("revision %s already exists; not created again", input.revision)
        return CreateRevisionResult(
            revision=input.revision,
            tag_url=url,
            created=False,
            before=traffic_without(svc, input.revision),
        )

    @classmethod
    def _revision_body(
        cls, svc: run_v2.Service, input: CreateRevisionInput
    ) -> tuple[run_v2.Service, list[str]]:
        """The patch that creates the revision: the template fields Stagecoach sets, the traffic
        with the new revision tagged at 0%, the ingress when it changes; and the mask naming
        exactly those. Everything else in the template (also fields this client does not know)
        stays as the API has it. `containers` is a repeated field and goes whole (a field mask
        cannot reach into one element)."""
        ingress_before = svc.ingress
        connector_before = svc.template.vpc_access.connector
        cls._apply_template(svc, input)
        t = svc.template
        template = run_v2.RevisionTemplate(
            revision=t.revision,
            containers=list(t.containers),
            volumes=list(t.volumes),
            scaling=run_v2.RevisionScaling(
                min_instance_count=t.scaling.min_instance_count,
                max_instance_count=t.scaling.max_instance_count,
            ),
            vpc_access=run_v2.VpcAccess(connector=t.vpc_access.connector),
            max_instance_request_concurrency=t.max_instance_request_concurrency,
        )
        paths = [
            "template.revision",
            "template.containers",
            "template.volumes",
            "template.scaling.min_instance_count",
            "template.scaling.max_instance_count",
        ]
        if input.vpc_connector or connector_before:  # set, or cleared
            paths.append("template.vpc_access.connector")
        if cpu_count(input.sizing.cpu) < 1:
            paths.append("template.max_instance_request_concurrency")
        traffic = cls._traffic_with_tag(svc, input.revision, input.tag)
        body = cls._traffic_body(svc, traffic)
        body.template = template
        paths.append("traffic")
        if svc.ingress != ingress_before:
            body.ingress = svc.ingress
            paths.append("ingress")
        return body, paths

    @staticmethod
    def _apply_template(svc: run_v2.Service, input: CreateRevisionInput) -> None:
        template = svc.template
        template.revision = input.revision
        if not template.containers:
            template.containers.append(run_v2.Container())
        container = template.containers[0]
        container.image = input.image
        values = dict(input.env)
        if input.database is not None:
            values[input.database.env_var] = input.database.connection_name
        env = [run_v2.EnvVar(name=k, value=v) for k, v in sorted(values.items())]
        env += [
            run_v2.EnvVar(
                name=k,
                value_source=run_v2.EnvVarSource(
                    secret_key_ref=run_v2.SecretKeySelector(secret=secret, version="latest")
                ),
            )
            for k, secret in sorted(input.secrets.items())
        ]
        del container.env[:]
        container.env.extend(env)
        apply_binding(template, input.database)
        limits = dict(container.resources.limits)
        limits.update({"memory": input.sizing.memory, "cpu": input.sizing.cpu})
        container.resources.limits = limits
        if cpu_count(input.sizing.cpu) < 1:
            # Cloud Run below 1 CPU: at most one request at a time, and CPU allocated only
            # while a request is processed (the API rejects anything else).
            template.max_instance_request_concurrency = 1
            container.resources.cpu_idle = True
        template.scaling.min_instance_count = input.sizing.min_instances
        template.scaling.max_instance_count = input.sizing.max_instances
        if input.vpc_connector:
            template.vpc_access.connector = connector_name(input.ref, input.vpc_connector)
        elif template.vpc_access.connector:
            template.vpc_access.connector = ""
        if input.ingress in _INGRESS:
            svc.ingress = run_v2.IngressTraffic(_INGRESS[input.ingress])

    @staticmethod
    def _traffic_with_tag(svc: run_v2.Service, revision: str, tag: str) -> list[TrafficTarget]:
        """Current traffic, pinned, plus a 0% entry tagged `tag` for `revision`.

        LATEST entries are pinned to the current latest ready revision first: otherwise the new
        revision would take their share the moment it became ready.
        """
        latest_ready = short_name(svc.latest_ready_revision)
        current = traffic_from_api(svc.traffic)
        if not current and latest_ready:
            current = [TrafficTarget(type="REVISION", revision=latest_ready, percent=100)]
        out: list[TrafficTarget] = []
        for t in current:
            if t.type == "LATEST" and latest_ready:
                t = TrafficTarget(
                    type="REVISION", revision=latest_ready, percent=t.percent, tag=t.tag
                )
            if t.tag == tag:
                if not t.percent:
                    continue  # a tag-only entry: the tag moves to the new revision
                t = t.model_copy(update={"tag": ""})
            if t.revision == revision or not (t.percent or t.tag):
                continue  # the new revision's own entry comes last; 0% untagged means nothing
            out.append(t)
        out.append(TrafficTarget(type="REVISION", revision=revision, percent=0, tag=tag))
        return out

    # ------------------------------------------------------------------ SetTraffic
