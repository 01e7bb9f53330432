"""Activities of a regional failover (DR Scenario 3): a Cloud SQL instance in another region, a
Cloud Run service brought up (or adopted) there, and their removal.

Idempotent like every mutating activity: `CreateInstance` adopts an instance that already exists
in the requested region (a retry, or a retried failover), `DeployService` leaves a service alone
when it already serves exactly the requested image and database binding from one revision (an
existing service is changed with the same update-mask patches and `operations.wait` as a
release's), and `DeleteService` / `DeleteInstance` count a missing resource as deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import run_v2
from googleapiclient.errors import HttpError
from temporalio import activity

from activities.cloud_run_convert import REVISION, bound_connection, short_name
from activities.cloud_run_ops import CloudRunOperations
from activities.cloud_run_revisions import RevisionCreation
from activities.cloud_sql import CloudSqlActivities
from activities.errors import api_errors, permanent
from stagecoach.clients import Clients, clients_for
from stagecoach.contract import Activity
from stagecoach.payloads.common import Target
from stagecoach.payloads.failover import (
    CreateInstanceInput,
    CreateInstanceResult,
    DeleteServiceInput,
    DeployServiceInput,
    DeployServiceResult,
)
from stagecoach.payloads.run import CreateRevisionInput


class RegionalActivities(CloudRunOperations):
    """Cloud SQL instance creation and Cloud Run service deployment in a chosen region (the
    Cloud Run reads, patches and operations are CloudRunOperations', like a release's)."""

    def __init__(self, clients: Callable[[Target], Clients] = clients_for) -> None:
        super().__init__(clients)
        self._sqlacts = CloudSqlActivities(clients)

    # ------------------------------------------------------------------ CreateInstance

    @activity.defn(name=Activity.CREATE_INSTANCE)
    @api_errors
    def create_instance(self, input: CreateInstanceInput) -> CreateInstanceResult:
        """Create the instance in `input.region` with the tier and availability, waited until
        RUNNABLE. One that exists in that region is adopted (`created=False`); one that exists
        in another region is a non-retryable `InstanceElsewhere`."""
        ref = input.ref
        sql = self._sqlacts
        started = time.time()
        details: dict[str, Any] = {"create": ref.instance}
        prior = sql._prior(**details)
        if prior.get("op"):
            sql._resume_op(ref, str(prior["op"]), prior)
            sql._wait_instance(ref, ref.instance, details, gone=False)
            return CreateInstanceResult(
                instance=ref.instance, region=input.region, created=True,
                seconds=round(time.time() - float(prior.get("started", started)), 3),
            )  # fmt: skip
        inst = sql._get_instance(ref, ref.instance)
        if inst is not None:
            if inst.get("region") != input.region:
                raise permanent(
                    f"instance {ref.instance} exists in {inst.get('region')}, not in "
                    f"{input.region}; delete it or choose another region",
                    "InstanceElsewhere",
                )
            sql._wait_instance(ref, ref.instance, details, gone=False)
            return CreateInstanceResult(instance=ref.instance, region=input.region, created=False)
        body = {
            "name": ref.instance,
            "region": input.region,
            "databaseVersion": input.database_version,
            "settings": {"tier": input.tier, "availabilityType": input.availability},
        }
        try:
            op = sql._sql(ref).instances().insert(project=ref.project, body=body).execute()
        except HttpError as e:
            if e.status_code != 409:
                raise
            if sql._get_instance(ref, ref.instance) is None:
                # Cloud SQL keeps a deleted instance's name reserved for up to a week.
                raise permanent(
                    f"the instance name {ref.instance} is not available (Cloud SQL reserves a "
                    "deleted instance's name for up to a week); fail over to another region or "
                    "wait",
                    "InstanceNameUnavailable",
                ) from e
            # created by an attempt that died before recording it
            sql._wait_instance(ref, ref.instance, details, gone=False)
            return CreateInstanceResult(instance=ref.instance, region=input.region, created=False)
        name = str(op["name"])
        sql._wait_op(ref, name, {**details, "op": name, "started": started})
        sql._wait_instance(ref, ref.instance, details, gone=False)
        return CreateInstanceResult(
            instance=ref.instance, region=input.region, created=True,
            seconds=round(time.time() - started, 3),
        )  # fmt: skip

    # ------------------------------------------------------------------ DeployService

    def _serves_exactly(self, svc: run_v2.Service, input: DeployServiceInput) -> str:
        """The revision serving 100% when it has this image and binding, else ""."""
        traffic = [t for t in svc.traffic if t.percent]
        if len(traffic) != 1 or traffic[0].percent != 100:
            return ""
        t = traffic[0]
        name = short_name(t.revision) if t.type_ == REVISION else short_name(
            svc.latest_ready_revision
        )  # fmt: skip
        rev = self._revision(input.ref, name) if name else None
        if rev is None or not rev.containers or rev.containers[0].image != input.image:
            return ""
        env_var = input.database.env_var if input.database else ""
        want = input.database.connection_name if input.database else ""
        return name if bound_connection(rev, env_var) == want else ""

    def _template_input(self, input: DeployServiceInput) -> CreateRevisionInput:
        return CreateRevisionInput(
            ref=input.ref, revision=input.revision, image=input.image, tag="",
            sizing=input.sizing, env=input.env, secrets=input.secrets, ingress=input.ingress,
            vpc_connector=input.vpc_connector, database=input.database,
        )  # fmt: skip

    @activity.defn(name=Activity.DEPLOY_SERVICE)
    @api_errors
    def deploy_service(self, input: DeployServiceInput) -> DeployServiceResult:
        """Make the service in `input.ref.region` serve `input.image` at 100% from revision
        `input.revision` (same sizing, env, secrets, ingress, connector, database binding),
        creating the service when it does not exist. Waited until the revision is ready."""
        ref = input.ref
        services = self._clients(ref.target).services
        details: dict[str, Any] = {"deploy": ref.service, "revision": input.revision}
        try:
            svc: run_v2.Service | None = services.get_service(name=ref.name)
        except gexc.NotFound:
            svc = None
        if svc is not None and svc.reconciling:
            svc = self._wait_reconciled(ref, details)
        traffic = [run_v2.TrafficTarget(type_=REVISION, revision=input.revision, percent=100)]
        if svc is None:
            new = run_v2.Service(template=run_v2.RevisionTemplate())
            RevisionCreation._apply_template(new, self._template_input(input))
            new.traffic = traffic
            try:
                op = services.create_service(
                    parent=f"projects/{ref.project}/locations/{ref.region}",
                    service=new,
                    service_id=ref.service,
                )
            except gexc.AlreadyExists:  # an earlier attempt created it: converge from there
                return self.deploy_service(input)
            svc = self._finish(ref, op, {**details, "op": op.operation.name}, input)
            return self._result(svc, input, created=True, changed=True)
        serving = self._serves_exactly(svc, input)
        if serving:
            return self._result(svc, input, created=False, changed=False, revision=serving)
        # an update-mask patch like every Cloud Run change (RevisionCreation._patch): only the
        # template fields Stagecoach sets, the traffic and a changed ingress; never the whole
        # Service read back (the client drops fields it does not know)
        if self._revision(ref, input.revision) is None:
            body, paths = RevisionCreation._revision_body(svc, self._template_input(input))
        else:  # the revision exists (an earlier attempt): only the traffic moves to it
            body, paths = run_v2.Service(etag=svc.etag), ["traffic"]
        body.traffic = traffic
        op = self._patch(ref, body, paths)
        svc = self._finish(ref, op, {**details, "op": op.operation.name}, input)
        return self._result(svc, input, created=False, changed=True)

    def _finish(
        self, ref: Any, op: Any, details: dict[str, Any], input: DeployServiceInput
    ) -> run_v2.Service:
        try:
            return self._wait(ref, op.operation.name, details)
        except gexc.GoogleAPICallError as exc:
            rev = self._revision(ref, input.revision)
            if rev is not None:
                raise permanent(
                    f"revision {input.revision} of {ref.service} in {ref.region} did not become "
                    f"ready: {exc.message}",
                    "RevisionNotReady",
                ) from exc
            raise

    @staticmethod
    def _result(
        svc: run_v2.Service,
        input: DeployServiceInput,
        *,
        created: bool,
        changed: bool,
        revision: str = "",
    ) -> DeployServiceResult:
        return DeployServiceResult(
            service=input.ref.service, region=input.ref.region,
            revision=revision or input.revision, uri=str(svc.uri),
            created=created, changed=changed,
        )  # fmt: skip

    # ------------------------------------------------------------------ DeleteService

    @activity.defn(name=Activity.DELETE_SERVICE)
    @api_errors
    def delete_service(self, input: DeleteServiceInput) -> bool:
        """Delete the service; True when it existed. Waited until it is gone."""
        ref = input.ref
        services = self._clients(ref.target).services
        try:
            op = services.delete_service(name=ref.name)
        except gexc.NotFound:
            return False
        self._wait(ref, op.operation.name, {"delete": ref.service})
        return True
