"""Conversions between the payloads (stagecoach.payloads) and the Cloud Run Admin API v2 types:
traffic, scaling, the Cloud SQL binding of a revision template, tag URLs. No API calls."""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import run_v2

from activities.errors import to_application_error
from stagecoach.payloads.common import DatabaseBinding, ServiceRef, TrafficTarget
from stagecoach.payloads.run import ScalingRecord, ServiceState
from stagecoach.splits import pin_latest

LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
MANUAL = run_v2.ServiceScaling.ScalingMode.MANUAL
AUTOMATIC = run_v2.ServiceScaling.ScalingMode.AUTOMATIC


# ---------------------------------------------------------------------------- conversions


def short_name(name: str) -> str:
    """`projects/p/locations/l/services/s/revisions/r` -> `r` (short names stay as they are)."""
    return name.rsplit("/", 1)[-1] if name else ""


def traffic_from_api(entries: Any) -> list[TrafficTarget]:
    out = []
    for t in entries:
        is_latest = t.type_ == LATEST
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
            out.append(run_v2.TrafficTarget(type_=LATEST, percent=t.percent, tag=t.tag))
        else:
            out.append(
                run_v2.TrafficTarget(
                    type_=REVISION, revision=t.revision, percent=t.percent, tag=t.tag
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
    return scaling.scaling_mode == MANUAL and int(scaling.manual_instance_count or 0) == 0


def tag_only(traffic: list[TrafficTarget]) -> list[TrafficTarget]:
    return [t for t in traffic if t.tag and not t.percent and t.type == "REVISION"]


def scaling_record(svc: run_v2.Service) -> ScalingRecord:
    sc = svc.scaling
    mode = {MANUAL: "MANUAL", AUTOMATIC: "AUTOMATIC"}.get(sc.scaling_mode, "")
    return ScalingRecord(
        mode=mode,
        min_instances=int(sc.min_instance_count),
        max_instances=int(sc.max_instance_count),
        manual_instances=int(sc.manual_instance_count) if "manual_instance_count" in sc else None,
        tags=tag_only(traffic_from_api(svc.traffic)),
    )


def same_scaling(a: ScalingRecord, b: ScalingRecord) -> bool:
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


def ready_condition(conditions: Any) -> Any | None:
    for c in conditions:
        if c.type_ == "Ready":
            return c
    return None


def tag_url(svc: run_v2.Service, tag: str, revision: str) -> str:
    for st in svc.traffic_statuses:
        if st.tag == tag and (not revision or short_name(st.revision) == revision):
            return str(st.uri)
    for st in svc.traffic_statuses:
        if st.tag == tag:
            return str(st.uri)
    return ""


def traffic_without(svc: run_v2.Service, revision: str) -> list[TrafficTarget]:
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


def connector_name(ref: ServiceRef, connector: str) -> str:
    if "/" in connector:
        return connector
    return f"projects/{ref.project}/locations/{ref.region}/connectors/{connector}"


def api_message(exc: gexc.GoogleAPICallError) -> str:
    mapped = to_application_error(exc)
    return mapped.message if mapped is not None else str(exc)


# ---------------------------------------------------------------------------- the activities
