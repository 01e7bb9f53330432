"""Cloud Run Admin API v2 activities: read a service, create a tagged 0% revision, move traffic,
drain and resume scaling.

Every mutating activity is idempotent (a retry after a crash at any line converges on the same
end state) and waits for its long-running operation itself, heartbeating, with the operation's
name kept in the heartbeat details: a retried attempt resumes polling that operation instead of
issuing the update again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import operation as lro
from google.cloud import run_v2
from google.protobuf import field_mask_pb2
from temporalio import activity

from activities.errors import api_errors, permanent, to_application_error, transient
from stagecoach.clients import Clients, clients_for
from stagecoach.models import (
    CreateRevisionInput,
    CreateRevisionResult,
    DatabaseBinding,
    ReadServingInput,
    ScalingRecord,
    ServiceRef,
    ServiceState,
    ServingRevision,
    SetScalingInput,
    SetTrafficInput,
    SetTrafficResult,
    Target,
    TrafficTarget,
)
from stagecoach.splits import pin_latest

log = logging.getLogger(__name__)

_LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
_SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED
_FAILED = run_v2.Condition.State.CONDITION_FAILED
_MANUAL = run_v2.ServiceScaling.ScalingMode.MANUAL
_AUTOMATIC = run_v2.ServiceScaling.ScalingMode.AUTOMATIC

_Ingress = run_v2.IngressTraffic
_INGRESS: dict[str, int] = {
    "all": _Ingress.INGRESS_TRAFFIC_ALL,
    "internal": _Ingress.INGRESS_TRAFFIC_INTERNAL_ONLY,
    "internal-and-cloud-load-balancing": _Ingress.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER,
}

# How long one activity attempt waits for an operation before giving up (transient: the retry
# resumes the same operation). Normally the activity's start-to-close timeout ends it first.
OPERATION_DEADLINE_SECONDS = 30 * 60
# Concurrent-modification (stale etag) retries inside one attempt before leaving it to Temporal.
ETAG_RETRIES = 5
# One operations.wait call waits at most this long (then heartbeats and waits again).
WAIT_SECONDS = 10.0


# ---------------------------------------------------------------------------- conversions


def short_name(name: str) -> str:
    """`projects/p/locations/l/services/s/revisions/r` -> `r` (short names stay as they are)."""
    return name.rsplit("/", 1)[-1] if name else ""


def traffic_from_api(entries: Any) -> list[TrafficTarget]:
    out = []
    for t in entries:
        is_latest = t.type_ == _LATEST
        out.append(
            TrafficTarget(
                type="LATEST" if is_latest else "REVISION",
                revision="" if is_latest else short_name(t.revision),
                percent=int(t.percent),
                tag=t.tag or "",
            )
        )
    return out


def traffic_to_api(entries: list[TrafficTarget]) -> list[run_v2.TrafficTarget]:
    out = []
    for t in entries:
        if t.type == "LATEST":
            out.append(run_v2.TrafficTarget(type_=_LATEST, percent=t.percent, tag=t.tag))
        else:
            out.append(
                run_v2.TrafficTarget(
                    type_=_REVISION, revision=t.revision, percent=t.percent, tag=t.tag
                )
            )
    return out


def _traffic_key(entries: list[TrafficTarget]) -> list[tuple[str, str, int, str]]:
    """Order-insensitive comparison key; entries with 0% and no tag mean nothing."""
    return sorted(
        (t.type, t.revision if t.type == "REVISION" else "", t.percent, t.tag)
        for t in entries
        if t.percent or t.tag
    )


def same_traffic(a: list[TrafficTarget], b: list[TrafficTarget]) -> bool:
    return _traffic_key(a) == _traffic_key(b)


def is_drained(svc: run_v2.Service) -> bool:
    scaling = svc.scaling
    return scaling.scaling_mode == _MANUAL and int(scaling.manual_instance_count or 0) == 0


def tag_only(traffic: list[TrafficTarget]) -> list[TrafficTarget]:
    return [t for t in traffic if t.tag and not t.percent and t.type == "REVISION"]


def scaling_record(svc: run_v2.Service) -> ScalingRecord:
    sc = svc.scaling
    mode = {_MANUAL: "MANUAL", _AUTOMATIC: "AUTOMATIC"}.get(sc.scaling_mode, "")
    return ScalingRecord(
        mode=mode,
        min_instances=int(sc.min_instance_count),
        max_instances=int(sc.max_instance_count),
        manual_instances=int(sc.manual_instance_count) if "manual_instance_count" in sc else None,
        tags=tag_only(traffic_from_api(svc.traffic)),
    )


def _same_scaling(a: ScalingRecord, b: ScalingRecord) -> bool:
    def key(r: ScalingRecord) -> tuple[str, int, int, int]:
        manual = r.mode == "MANUAL"
        return (
            "MANUAL" if manual else "AUTOMATIC",
            0 if manual else r.min_instances,
            0 if manual else r.max_instances,
            (r.manual_instances or 0) if manual else 0,
        )

    return key(a) == key(b)


def service_state(svc: run_v2.Service) -> ServiceState:
    template = svc.template
    image = template.containers[0].image if template.containers else ""
    return ServiceState(
        traffic=traffic_from_api(svc.traffic),
        latest_ready_revision=short_name(svc.latest_ready_revision),
        latest_created_revision=short_name(svc.latest_created_revision),
        image=image,
        uri=svc.uri,
        min_instances=int(template.scaling.min_instance_count),
        max_instances=int(template.scaling.max_instance_count),
        drained=is_drained(svc),
        scaling=scaling_record(svc),
    )


CLOUDSQL_VOLUME = "cloudsql"
CLOUDSQL_MOUNT = "/cloudsql"  # Cloud Run's Cloud SQL connection: unix sockets under here


def bound_connection(template: Any, env_var: str) -> str:
    """The Cloud SQL connection name a revision (or service template) is bound to: the value of
    `env_var` in its first container, else the first instance of its `cloudsql` volume."""
    containers = list(template.containers)
    if containers and env_var:
        for e in containers[0].env:
            if e.name == env_var and e.value:
                return str(e.value)
    for v in template.volumes:
        if v.name == CLOUDSQL_VOLUME and v.cloud_sql_instance.instances:
            return str(v.cloud_sql_instance.instances[0])
    return ""


def apply_binding(template: run_v2.RevisionTemplate, binding: DatabaseBinding | None) -> None:
    """Bind the template to `binding`'s instance (Cloud SQL volume + mount + env var), or remove
    the Cloud SQL volume when the service uses no database. The env list is set by the caller
    (the binding's env var is appended there, see `_apply_template`)."""
    volumes = [v for v in template.volumes if v.name != CLOUDSQL_VOLUME]
    container = template.containers[0]
    mounts = [m for m in container.volume_mounts if m.name != CLOUDSQL_VOLUME]
    if binding is not None:
        volumes.append(
            run_v2.Volume(
                name=CLOUDSQL_VOLUME,
                cloud_sql_instance=run_v2.CloudSqlInstance(instances=[binding.connection_name]),
            )
        )
        mounts.append(run_v2.VolumeMount(name=CLOUDSQL_VOLUME, mount_path=CLOUDSQL_MOUNT))
    del template.volumes[:]
    template.volumes.extend(volumes)
    del container.volume_mounts[:]
    container.volume_mounts.extend(mounts)


def _ready_condition(conditions: Any) -> Any | None:
    for c in conditions:
        if c.type_ == "Ready":
            return c
    return None


def _tag_url(svc: run_v2.Service, tag: str, revision: str) -> str:
    for st in svc.traffic_statuses:
        if st.tag == tag and (not revision or short_name(st.revision) == revision):
            return str(st.uri)
    for st in svc.traffic_statuses:
        if st.tag == tag:
            return str(st.uri)
    return ""


def _without(svc: run_v2.Service, revision: str) -> list[TrafficTarget]:
    """The traffic as it was before `revision` was added at 0%: the service's traffic without
    `revision`'s entries (a retry finds one), LATEST pinned to the revision it routes to (an
    empty list means LATEST 100%)."""
    rest = [t for t in traffic_from_api(svc.traffic) if t.revision != revision]
    latest = short_name(svc.latest_ready_revision)
    return pin_latest(rest, latest) if latest and latest != revision else rest


def cpu_count(value: str) -> float:
    """`"0.5"`, `"1"`, `"500m"`, `"2000m"` -> CPUs (unparseable: 1, the API then judges)."""
    text = str(value).strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return 1.0


def _connector_name(ref: ServiceRef, connector: str) -> str:
    if "/" in connector:
        return connector
    return f"projects/{ref.project}/locations/{ref.region}/connectors/{connector}"


def _api_message(exc: gexc.GoogleAPICallError) -> str:
    mapped = to_application_error(exc)
    return mapped.message if mapped is not None else str(exc)


# ---------------------------------------------------------------------------- the activities


class CloudRunActivities:
    """Cloud Run activities. Holds nothing but the client factory."""

    def __init__(self, clients: Callable[[Target], Clients] = clients_for) -> None:
        self._clients = clients

    # ------------------------------------------------------------------ helpers

    def _get(self, ref: ServiceRef) -> run_v2.Service:
        return self._clients(ref.target).services.get_service(name=ref.name)

    def _revision(self, ref: ServiceRef, revision: str) -> run_v2.Revision | None:
        try:
            return self._clients(ref.target).revisions.get_revision(
                name=f"{ref.name}/revisions/{revision}"
            )
        except gexc.NotFound:
            return None

    @staticmethod
    def _prior() -> dict[str, Any]:
        """Heartbeat details a previous attempt of this activity left behind."""
        details = activity.info().heartbeat_details
        if details and isinstance(details[0], dict):
            return dict(details[0])
        return {}

    def _resumed(
        self,
        ref: ServiceRef,
        op_name: str,
        finish: Callable[[str], run_v2.Service],
    ) -> run_v2.Service | None:
        """Finish the operation an earlier attempt started (its name from the heartbeat details).

        None when there is nothing to resume: the operation is unknown, or it failed with a
        transient error (starting over is then the way forward, not failing on it again).
        """
        try:
            self._clients(ref.target).run_wait_operation(op_name, 0.0)
        except gexc.NotFound:
            return None
        activity.logger.info("resuming operation %s", op_name)
        try:
            return finish(op_name)
        except gexc.GoogleAPICallError as exc:
            mapped = to_application_error(exc)
            if mapped is not None and not mapped.non_retryable:
                activity.logger.info("operation %s failed (%s); starting over", op_name, exc)
                return None
            raise

    def _wait(self, ref: ServiceRef, op_name: str, details: dict[str, Any]) -> run_v2.Service:
        """Wait for the operation with `operations.wait` (one call per WAIT_SECONDS, not a poll
        every few hundred ms), heartbeating in between; its error raises GoogleAPICallError."""
        clients = self._clients(ref.target)
        start = time.monotonic()
        while True:
            activity.heartbeat(details)
            try:
                op = clients.run_wait_operation(op_name, WAIT_SECONDS)
            except (gexc.ServiceUnavailable, gexc.TooManyRequests, OSError) as exc:
                activity.logger.info("waiting for %s: %s; again", op_name, exc)
                time.sleep(1.0)
                op = None
            if op is not None and op.done:
                if op.HasField("error"):
                    raise gexc.from_grpc_status(op.error.code, op.error.message)
                return run_v2.Service.deserialize(op.response.value)
            if time.monotonic() - start > OPERATION_DEADLINE_SECONDS:
                raise transient(
                    f"operation {op_name} still running after {OPERATION_DEADLINE_SECONDS}s",
                    "Timeout",
                )

    def _patch(self, ref: ServiceRef, body: run_v2.Service, paths: list[str]) -> lro.Operation:
        """services.patch with an update mask: only the fields named in `paths` change.

        Never the whole Service read back: the installed client drops fields it does not know
        (newer API fields a real service may use), and echoing the template would re-send its
        revision name with whatever the client lost (409 "with different configuration")."""
        body.name = ref.name
        request = run_v2.UpdateServiceRequest(
            service=body, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        return self._clients(ref.target).services.update_service(request=request)

    def _update(
        self, ref: ServiceRef, body: run_v2.Service, paths: list[str], details: dict[str, Any]
    ) -> run_v2.Service:
        op = self._patch(ref, body, paths)
        name = op.operation.name
        return self._wait(ref, name, {**details, "op": name})

    @staticmethod
    def _traffic_body(svc: run_v2.Service, traffic: list[TrafficTarget]) -> run_v2.Service:
        """A patch body that sets the traffic alone (the etag guards against a concurrent
        change between our read and this write)."""
        return run_v2.Service(traffic=traffic_to_api(traffic), etag=svc.etag)

    def _wait_reconciled(self, ref: ServiceRef, details: dict[str, Any]) -> run_v2.Service:
        """Poll the service until it is no longer reconciling (an update is in flight)."""
        start = time.monotonic()
        delay = 0.2
        while True:
            activity.heartbeat(details)
            svc = self._get(ref)
            if not svc.reconciling:
                return svc
            if time.monotonic() - start > OPERATION_DEADLINE_SECONDS:
                raise transient(f"service {ref.service} still reconciling", "Timeout")
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    # ------------------------------------------------------------------ GetServiceState

    @activity.defn(name="GetServiceState")
    @api_errors
    def get_service_state(self, input: ServiceRef) -> ServiceState:
        """What serves now: traffic (short revision names, LATEST kept), image, scaling."""
        return service_state(self._get(input))

    # ------------------------------------------------------------------ ReadServing

    @activity.defn(name="ReadServing")
    @api_errors
    def read_serving(self, input: ReadServingInput) -> list[ServingRevision]:
        """The revisions that receive traffic now (LATEST resolved to the latest ready one),
        most traffic first, each with its image and the Cloud SQL connection it is bound to."""
        svc = self._get(input.ref)
        latest = short_name(svc.latest_ready_revision)
        shares: dict[str, int] = {}
        for t in traffic_from_api(svc.traffic):
            name = latest if t.type == "LATEST" else t.revision
            if name and t.percent:
                shares[name] = shares.get(name, 0) + t.percent
        out = []
        for name, percent in sorted(shares.items(), key=lambda kv: (-kv[1], kv[0])):
            rev = self._revision(input.ref, name)
            if rev is None:
                raise transient(
                    f"serving revision {name} of {input.ref.service} not found", "NotFound"
                )
            out.append(
                ServingRevision(
                    revision=name,
                    percent=percent,
                    image=rev.containers[0].image if rev.containers else "",
                    connection_name=bound_connection(rev, input.env_var),
                )
            )
        return out

    # ------------------------------------------------------------------ CreateRevision

    @activity.defn(name="CreateRevision")
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
                    tag_url=_tag_url(svc, input.tag, input.revision),
                    created=True,
                    before=_without(svc, input.revision),
                )

        # The revision name is unique to this release, so a first attempt cannot find it: only a
        # retry (or a reset workflow: the update's 409 below) looks for it before updating.
        if activity.info().attempt > 1 or prior:
            existing = self._revision(ref, input.revision)
            if existing is not None:
                return self._adopt_existing(ref, input, existing, details)

        svc = self._get(ref)
        before = _without(svc, input.revision)
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
            tag_url=_tag_url(svc, input.tag, input.revision),
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
                cond = _ready_condition(rev.conditions)
                if cond is None or cond.state != _SUCCEEDED:
                    raise permanent(
                        _api_message(exc), "RevisionNotReady", revision=input.revision
                    ) from exc
            raise
        if not _tag_url(svc, input.tag, input.revision):
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
        cond = _ready_condition(rev.conditions)
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
        url = _tag_url(svc, input.tag, input.revision)
        activity.logger.info("revision %s already exists; not created again", input.revision)
        return CreateRevisionResult(
            revision=input.revision,
            tag_url=url,
            created=False,
            before=_without(svc, input.revision),
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
            template.vpc_access.connector = _connector_name(input.ref, input.vpc_connector)
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

    @activity.defn(name="SetTraffic")
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

    @activity.defn(name="SetScaling")
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
                body.scaling = run_v2.ServiceScaling(scaling_mode=_MANUAL, manual_instance_count=0)
                paths.append("scaling")
            if warm:
                body.traffic = traffic_to_api([t for t in current if t not in warm])
                paths.append("traffic")
            return body, paths
        rec = input.record
        if rec is not None:
            if not _same_scaling(scaling_record(svc), rec):
                body.scaling = run_v2.ServiceScaling(
                    scaling_mode=_MANUAL if rec.mode == "MANUAL" else _AUTOMATIC,
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
        elif svc.scaling.scaling_mode == _MANUAL or "manual_instance_count" in svc.scaling:
            body.scaling = run_v2.ServiceScaling(
                scaling_mode=_AUTOMATIC,
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
