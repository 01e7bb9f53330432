"""SetTraffic and SetScaling: move a Cloud Run service's traffic, drain and resume its scaling
(idempotent; concurrent changes retried on a stale etag)."""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import run_v2
from temporalio import activity

from activities.cloud_run_convert import (
    AUTOMATIC,
    MANUAL,
    is_drained,
    same_scaling,
    same_traffic,
    scaling_record,
    service_state,
    tag_only,
    traffic_from_api,
    traffic_to_api,
)
from activities.cloud_run_ops import ETAG_RETRIES, CloudRunOperations
from activities.errors import api_errors, to_application_error, transient
from stagecoach.contract import Activity
from stagecoach.payloads.common import ServiceRef, TrafficTarget
from stagecoach.payloads.run import (
    ServiceState,
    SetScalingInput,
    SetTrafficInput,
    SetTrafficResult,
)


class TrafficAndScaling(CloudRunOperations):
    @activity.defn(name=Activity.SET_TRAFFIC)
    @api_errors
    def set_traffic(self, input: SetTrafficInput) -> SetTrafficResult:
        """Make the service's traffic exactly `input.traffic`; unchanged when it already is."""
        ref = input.ref
        details: dict[str, Any] = {"traffic": [t.model_dump() for t in input.traffic]}
        prior = self._prior()
        if prior.get("op") and prior.get("traffic") == details["traffic"]:
            op_name = str(prior["op"])
            resumed = self._resumed(
                ref, op_name, lambda op: self._wait(ref, op, {**details, "op": op})
            )
            if resumed is not None:
                return SetTrafficResult(traffic=traffic_from_api(resumed.traffic), changed=True)

        for attempt in range(ETAG_RETRIES):
            svc = self._get(ref)
            if same_traffic(traffic_from_api(svc.traffic), input.traffic):
                if svc.reconciling:  # an earlier attempt's update is still rolling out
                    svc = self._wait_reconciled(ref, details)
                    if same_traffic(traffic_from_api(svc.traffic), input.traffic):
                        return SetTrafficResult(
                            traffic=traffic_from_api(svc.traffic), changed=False
                        )
                    continue
                return SetTrafficResult(traffic=traffic_from_api(svc.traffic), changed=False)
            try:
                svc = self._update(
                    ref, self._traffic_body(svc, input.traffic), ["traffic"], details
                )
            except gexc.Conflict as exc:
                mapped = to_application_error(exc)
                if mapped is None or mapped.non_retryable or attempt == ETAG_RETRIES - 1:
                    raise
                activity.logger.info("service %s changed under us; re-reading", ref.service)
                continue
            activity.logger.info(
                "traffic of %s set to %s (%s)",
                ref.service,
                ", ".join(f"{t.revision or 'LATEST'}={t.percent}" for t in input.traffic),
                input.reason or "no reason given",
            )
            return SetTrafficResult(traffic=traffic_from_api(svc.traffic), changed=True)
        raise transient(f"service {ref.service} kept changing; try again", "Conflict")

    # ------------------------------------------------------------------ SetScaling

    @activity.defn(name=Activity.SET_SCALING)
    @api_errors
    def set_scaling(self, input: SetScalingInput) -> ServiceState:
        """Drain (service scaling MANUAL, 0 instances) or resume (AUTOMATIC, recorded min/max).

        Resuming writes the recorded min/max into the revision template only when they differ
        from it (and only when a max was recorded): a drain never touches the template, so
        resuming after a drain normally changes the service-level scaling alone.
        """
        ref = input.ref
        details: dict[str, Any] = {
            "drained": input.drained,
            "min": input.min_instances,
            "max": input.max_instances,
        }
        prior = self._prior()
        if prior.get("op") and all(prior.get(k) == v for k, v in details.items()):
            op_name = str(prior["op"])
            resumed = self._resumed(
                ref, op_name, lambda op: self._wait(ref, op, {**details, "op": op})
            )
            if resumed is not None:
                return service_state(resumed)

        for attempt in range(ETAG_RETRIES):
            svc = self._get(ref)
            patch = self._scaling_patch(ref, svc, input)
            if patch is None:
                if svc.reconciling:
                    svc = self._wait_reconciled(ref, details)
                return service_state(svc)
            try:
                svc = self._update(ref, patch[0], patch[1], details)
            except gexc.Conflict as exc:
                mapped = to_application_error(exc)
                if mapped is None or mapped.non_retryable or attempt == ETAG_RETRIES - 1:
                    raise
                continue
            return service_state(svc)
        raise transient(f"service {ref.service} kept changing; try again", "Conflict")

    def _warm_tags(self, ref: ServiceRef, svc: run_v2.Service) -> list[TrafficTarget]:
        """Tag-only entries whose revision asks for minimum instances: Cloud Run keeps those
        instances running (writing to the database) even while the service is drained."""
        out = []
        for t in tag_only(traffic_from_api(svc.traffic)):
            rev = self._revision(ref, t.revision)
            if rev is not None and rev.scaling.min_instance_count > 0:
                out.append(t)
        return out

    def _scaling_patch(
        self, ref: ServiceRef, svc: run_v2.Service, input: SetScalingInput
    ) -> tuple[run_v2.Service, list[str]] | None:
        """The patch (body, mask) that moves `svc` towards the wanted scaling; None when it
        already is there.

        Drain: service-level manual scaling with 0 instances (Cloud Run then unsets the
        service's min/max: the caller's record keeps them), and the tag-only entries whose
        revision keeps minimum instances removed. Resume with a record: the service-level
        scaling and the removed tags exactly as recorded."""
        body = run_v2.Service(etag=svc.etag)
        paths: list[str] = []
        current = traffic_from_api(svc.traffic)
        if input.drained:
            warm = self._warm_tags(ref, svc)
            if is_drained(svc) and not warm:
                return None
            if not is_drained(svc):
                body.scaling = run_v2.ServiceScaling(scaling_mode=MANUAL, manual_instance_count=0)
                paths.append("scaling")
            if warm:
                body.traffic = traffic_to_api([t for t in current if t not in warm])
                paths.append("traffic")
            return body, paths
        rec = input.record
        if rec is not None:
            if not same_scaling(scaling_record(svc), rec):
                body.scaling = run_v2.ServiceScaling(
                    scaling_mode=MANUAL if rec.mode == "MANUAL" else AUTOMATIC,
                    min_instance_count=rec.min_instances,
                    max_instance_count=rec.max_instances,
                )
                if rec.mode == "MANUAL" and rec.manual_instances is not None:
                    body.scaling.manual_instance_count = rec.manual_instances
                paths.append("scaling")
            taken = {t.tag for t in current}
            missing = [
                t
                for t in rec.tags
                if t.tag not in taken and self._revision(ref, t.revision) is not None
            ]
            if missing:
                body.traffic = traffic_to_api(current + missing)
                paths.append("traffic")
        elif svc.scaling.scaling_mode == MANUAL or "manual_instance_count" in svc.scaling:
            body.scaling = run_v2.ServiceScaling(
                scaling_mode=AUTOMATIC,
                min_instance_count=svc.scaling.min_instance_count,
                max_instance_count=svc.scaling.max_instance_count,
            )
            paths.append("scaling")
        template_scaling = svc.template.scaling
        if input.max_instances and (
            template_scaling.min_instance_count != input.min_instances
            or template_scaling.max_instance_count != input.max_instances
        ):
            # A changed template is a new revision; its name is left empty for the API to pick
            # (reusing the current name with a different configuration is rejected).
            body.template = run_v2.RevisionTemplate(
                scaling=run_v2.RevisionScaling(
                    min_instance_count=input.min_instances,
                    max_instance_count=input.max_instances,
                )
            )
            paths += [
                "template.revision",
                "template.scaling.min_instance_count",
                "template.scaling.max_instance_count",
            ]
        return (body, paths) if paths else None
