"""Regional failover (DR Scenario 3), failback, and the regional drill: one workflow, `Failover`.

Failover (`mode: failover`), workflow id `deploy-<app>-<env>` (no release or restore can run
meanwhile):
1. nothing is read from the failed region: the images come from the input (the last promoted
   release recorded in Temporal, or `--version`, resolved by the CLI);
2. database: the newest SUCCESSFUL backup of the environment's instance (backups are
   multi-regional: listable while the region is down) is restored into `<instance>-<region>`,
   created in the target region with the environment's tier and availability, and validated;
   the data-loss window (the start of the failover minus the newest restored row, an upper
   bound) is reported against the RPO;
3. services: each `<name>-<env>` is created in the target region in dependency order with the
   release's image, sizing, env, secrets, ingress and connector, bound to the new instance, and
   smoke-tested;
4. approval where `restore_requires_approval` is set; then the DNS record is moved (one Cloud
   DNS change, waited until `done`) and the name is checked to answer from the target region;
5. each phase's duration and the total are reported against the RTO, with the next steps.

Nothing is half-switched: users move only in step 4, after every service answered its smoke
test. A failure (or abort) before it leaves DNS untouched and lists the new resources; they are
kept for a retry (whose activities adopt them) or removed when `cleanup_on_failure` is set.

Failback (`mode: failback`): a fresh backup of the secondary instance restored into the
primary's instance, the primary region's services made to serve the same images bound to it,
DNS back; the rows written in the secondary after that backup are reported as the window that
did not travel back. Read replicas of the primary (e.g. `database.replicas` in the secondary
region, still following the primary after a `failover --from backup`): Cloud SQL restores no
backup into an instance with replicas, so they are listed before the fresh backup, read again
and deleted just before the restore, and recreated from the restored primary after the DNS
move (in the cleanup: whatever ended the run once one was deleted); one that cannot be
recreated leaves the outcome as it was and `left_in` / `next_steps` give the gcloud command
(workflows/dr/replica_steps.py, shared with `restore`). After `failover --from replica` the
promoted replica is no replica any more: the primary has none, and nothing is done. Runs
recorded before `workflow.patched(FAILBACK_REPLICAS)` never look for replicas.

Drill (`mode: drill`, id `dr-drill-regional-<app>-<env>`): steps 1-3 into scratch resources
(`<instance>-dr-<stamp>`, `<name>-<env>-dr-<stamp>`), no approval, no DNS; the scratch resources
are ALWAYS deleted (success, failure, abort, cancellation), shielded from cancellation. A
scheduled drill (workflows/dr/scheduled.py) names its scratch resources after its own start
and, with `images_from: serving`, first reads the images serving in the primary region now
(instead of step 1's recorded release): the primary down or a service missing stops it there,
before anything is created.

Step 2, the failback's read replicas and the data-loss windows are the `FailoverDatabase` mixin
(workflows/dr/failover_database.py); the ending's `left_in` / `next_steps`, failover_ending.py.
Deterministic: no I/O, durations are `workflow.now()` deltas.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.common import API_RETRY, QUICK, error_message

with workflow.unsafe.imports_passed_through():
    from activities.cloud_sql import CloudSqlActivities
    from activities.dns import DnsActivities
    from activities.regional import RegionalActivities
    from activities.smoke import smoke_test
    from stagecoach.contract import Message, WorkflowType
    from stagecoach.payloads.common import (
        AbortInput,
        ApproveInput,
        ApproveResult,
        Outcome,
        Phase,
    )
    from stagecoach.payloads.failover import (
        DeleteServiceInput,
        DeployServiceInput,
        DeployServiceResult,
        FailoverInput,
        FailoverStatus,
        MoveDnsInput,
        MoveDnsResult,
        PhaseTime,
        RehearsedImage,
        VerifyDnsInput,
        VerifyDnsResult,
    )
    from stagecoach.payloads.policy import TargetClaim, WorkerPolicy
    from stagecoach.payloads.run import SmokeTestInput, SmokeTestResult
    from stagecoach.payloads.sql import DeleteInstanceInput

from workflows.dr.common import (
    CLEANUP_DEADLINE,
    CLEANUP_RETRY,
    HEARTBEAT,
    OPERATION,
    DrStop,
    instance_claim,
    seconds,
)
from workflows.dr.failover_database import FailoverDatabase
from workflows.dr.failover_ending import describe_ending
from workflows.dr.scheduled import per_run_names, serving_images

SERVICE_DEPLOY = timedelta(minutes=30)
DNS_CHANGE = timedelta(minutes=30)
VERIFY = timedelta(minutes=5)


@workflow.defn(name=WorkflowType.FAILOVER)
class FailoverWorkflow(FailoverDatabase):
    @workflow.init
    def __init__(self, inp: FailoverInput) -> None:
        inp = per_run_names(inp)  # a scheduled drill: scratch names of this run's start
        self.inp = inp
        self.env = inp.env
        self.version = f"{inp.mode}:{inp.to_region}"
        self.st = FailoverStatus(
            app=inp.app,
            env=inp.env,
            mode=inp.mode,
            source=inp.source,
            from_region=inp.from_region,
            to_region=inp.to_region,
            version=inp.version,
            instance=inp.instance.instance,
            source_instance=inp.source_instance.instance,
            rpo_seconds=inp.rpo.total_seconds(),
            rto_seconds=inp.rto.total_seconds(),
            images_from=inp.images_from,
        )
        if inp.images_from == "input":
            self.st.images = [
                RehearsedImage(
                    service=s.deploy.ref.service,
                    image=s.deploy.image,
                    source=inp.version_source or inp.version,
                )
                for s in inp.services
            ]
        self.abort_requested: AbortInput | None = None
        self.policy: WorkerPolicy | None = None
        self._dns_started = False
        self._instance_requested = False
        self._replica_promoting = False  # promotion requested (it cannot be undone)
        self._deploys: list[DeployServiceInput] = []  # requested in the target region

    def _state(self) -> FailoverStatus:
        return self.st

    # ------------------------------------------------------------------ messages

    @workflow.query(name=Message.STATUS)
    def status(self) -> FailoverStatus:
        return self.st

    @workflow.signal(name=Message.ABORT)
    def abort(self, inp: AbortInput | None = None) -> None:
        super().abort(inp)

    def _abort_refused(self) -> str:
        return "the DNS record is being moved" if self._dns_started else ""

    @workflow.update(name=Message.APPROVE)
    async def approve(self, inp: ApproveInput) -> ApproveResult:
        """Counts only with proof of who sent it, judged against the worker's policy like a
        restore's (stagecoach.trust): bound to this workflow id and run, the version
        `<mode>:<to_region>` and step 0. A refused attempt is recorded, then the update fails."""
        authenticated = self._accept_approval(inp)
        how = f" ({authenticated})" if authenticated else ""
        self._event(f"DNS move approved by {inp.by}{how}: {inp.comment or 'no comment'}")
        return ApproveResult(approved_weight=0, by=inp.by)

    @approve.validator
    def _validate_approve(self, inp: ApproveInput) -> None:
        self._check_approvable(f"{self.inp.mode} of {self.inp.env}")

    def _claims(self) -> list[TargetClaim]:
        """Every target the input names: the worker checks kind, host, project and region (the
        target region must be the environment's or one of its `failover.regions`)."""
        inp = self.inp
        claims = [instance_claim(inp.source_instance), instance_claim(inp.instance)]
        if inp.create_instance is not None:
            ci = inp.create_instance
            claims.append(
                TargetClaim(
                    what=f"instance {ci.ref.instance}", kind=ci.ref.target.kind,
                    host=ci.ref.target.host, project=ci.ref.project, region=ci.region,
                )
            )  # fmt: skip
        for svc in inp.services:
            refs = [svc.deploy.ref] + ([svc.primary] if svc.primary is not None else [])
            for r in refs:
                claims.append(
                    TargetClaim(
                        what=f"service {r.service}", kind=r.target.kind, host=r.target.host,
                        project=r.project, region=r.region,
                    )
                )  # fmt: skip
        if inp.dns is not None:
            rec = inp.dns.record
            claims.append(
                TargetClaim(
                    what=f"DNS record {rec.name}", kind=rec.target.kind, host=rec.target.host,
                    project=rec.project,
                )
            )  # fmt: skip
        return claims

    # ------------------------------------------------------------------ run

    def _title(self) -> str:
        return f"{self.inp.mode} of {self.inp.env} to {self.inp.to_region}"

    def _cancelled_line(self) -> str:
        return f"{self.inp.mode} cancelled"

    @workflow.run
    async def run(self, inp: FailoverInput) -> FailoverStatus:
        inp = self.inp  # a scheduled drill's: the scratch names of this run
        what = {"failover": "failover", "failback": "failback", "drill": "regional drill"}
        self._begin(
            Phase.PLANNING,
            f"{what[inp.mode]} of {inp.env} from {inp.from_region} to {inp.to_region} "
            f"requested by {inp.requested_by or 'unknown'}: {self._images_said()}, "
            f"database {inp.instance.instance}",
        )
        await self._run_to_end()
        return self.st

    def _images_said(self) -> str:
        inp = self.inp
        if inp.images_from == "serving":
            return f"the images serving in {inp.from_region} when the run starts"
        return f"images of {inp.version} ({inp.version_source or 'given'})"

    async def _resolve_images(self) -> None:
        """`images_from: serving` (a scheduled drill): read what serves in the primary region
        now and deploy that; nothing is created before (workflows/dr/scheduled.py)."""
        inp, st = self.inp, self.st
        if inp.images_from != "serving":
            return
        self._progress(f"reading the images serving in {inp.from_region}")
        st.images = await serving_images(inp)
        for img in st.images:
            self._event(f"{img.service} will run {img.image} ({img.source})")
        tags = {i.image.rsplit(":", 1)[-1] for i in st.images if ":" in i.image.rsplit("/", 1)[-1]}
        if len(tags) == 1:
            st.version = tags.pop()

    async def _work(self) -> None:
        inp = self.inp
        await self._load_policy(self._claims(), inp.approvers)
        await self._resolve_images()
        await self._timed(Phase.DATABASE, self._database)
        self._check_abort()
        await self._timed(Phase.SERVICES, self._services)
        self._check_abort()
        if inp.mode != "drill" and inp.dns is not None:
            if self._needs_approval():
                await self._timed(Phase.AWAITING_APPROVAL, self._await_approval)
            self._check_abort()
            await self._timed(Phase.DNS, self._dns)

    async def _clean_up(self) -> None:
        if self.inp.mode == "failback":
            await self._recreate_primary_replicas()
            return
        await self._timed(Phase.CLEANING_UP, self._clean)

    async def _report(self, cancelled: bool) -> None:
        inp, st = self.inp, self.st
        self._finish()
        if st.outcome != Outcome.SUCCEEDED and not cancelled:
            await self._notify(
                inp.notify, "failed", f"{inp.mode} of {inp.env} to {inp.to_region} "
                f"{st.outcome.value}: {st.error or st.abort_reason}. " + "; ".join(st.left_in),
            )  # fmt: skip
        elif st.outcome == Outcome.SUCCEEDED and self._replica_recreate_failed():
            # users are back, but someone must recreate a read replica by hand
            await self._notify(
                inp.notify, "failed", f"{inp.mode} of {inp.env} to {inp.to_region} succeeded, "
                "but not every read replica was recreated. " + "; ".join(st.left_in),
            )  # fmt: skip

    def _needs_cleanup(self) -> bool:
        inp, st = self.inp, self.st
        if inp.mode == "drill":
            return True
        if inp.mode == "failback":
            return bool(self._replicas_to_recreate())
        return (
            inp.mode == "failover"
            and inp.cleanup_on_failure
            and st.outcome != Outcome.SUCCEEDED
            and not self._dns_started
        )

    async def _timed(self, phase: Phase, step: Callable[[], Awaitable[None]]) -> None:
        self._set_phase(phase)
        start = workflow.now()
        try:
            await step()
        finally:
            self.st.phases.append(
                PhaseTime(phase=phase.value, seconds=seconds(start, workflow.now()))
            )

    # ------------------------------------------------------------------ services

    async def _services(self) -> None:
        inp = self.inp
        for svc in inp.services:
            d = svc.deploy
            self._check_abort()
            self._progress(f"bringing up {d.ref.service} in {d.ref.region} ({d.image})")
            self._deploys.append(d)
            res: DeployServiceResult = await workflow.execute_activity_method(
                RegionalActivities.deploy_service,
                d,
                start_to_close_timeout=SERVICE_DEPLOY,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=API_RETRY,
                summary=f"deploy {d.ref.service} in {d.ref.region}",
            )
            self.st.services = [s for s in self.st.services if s.service != res.service] + [res]
            label = f"service {d.ref.service} ({d.ref.region})"
            if inp.mode != "failback" and label not in self.st.created:
                self.st.created.append(label)
            how = "created" if res.created else "updated" if res.changed else "already serving"
            bound = f", bound to {d.database.instance}" if d.database else ""
            self._event(f"{d.ref.service} in {d.ref.region}: {how}, {res.revision}{bound}")
            if svc.smoke == "none":
                self._event(
                    f"{d.ref.service} in {d.ref.region}: no smoke test (services[].smoke: none; "
                    "its URL is not reachable from the worker)"
                )
                continue
            smoke: SmokeTestResult = await workflow.execute_activity(
                smoke_test,
                SmokeTestInput(url=res.uri, path=svc.health_path),
                start_to_close_timeout=QUICK,
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary=f"smoke test {d.ref.service} in {d.ref.region}",
            )
            if not smoke.ok:
                raise DrStop(
                    Outcome.FAILED,
                    f"smoke test of {d.ref.service} in {d.ref.region} failed: {smoke.detail}",
                )
            self._event(f"{d.ref.service} in {d.ref.region}: smoke test passed ({smoke.status})")

    # ------------------------------------------------------------------ approval and DNS

    async def _await_approval(self) -> None:
        inp, policy = self.inp, self.policy
        if policy is None or not self._needs_approval():
            return
        who = " or ".join(policy.approvers)
        await self._wait_for_approval(
            Phase.AWAITING_APPROVAL,
            f"services ready in {inp.to_region}; awaiting approval by {who} to move DNS",
            f"awaiting approval by {who} before the DNS move",
            f"{inp.mode} of {inp.env} to {inp.to_region} awaits approval ({who}) to move DNS",
        )

    async def _dns(self) -> None:
        inp, st = self.inp, self.st
        dns = inp.dns
        assert dns is not None
        rec = dns.record
        self._progress(f"moving {rec.name} {rec.type} to {dns.rrdatas[0]}")
        self._dns_started = True
        moved: MoveDnsResult = await workflow.execute_activity_method(
            DnsActivities.move_dns,
            MoveDnsInput(record=rec, rrdatas=dns.rrdatas),
            start_to_close_timeout=DNS_CHANGE,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=API_RETRY,
            summary=f"move {rec.name} to {inp.to_region}",
        )
        st.dns_before, st.dns_after, st.dns_moved = moved.before, moved.after, True
        self._event(
            f"{rec.name} {rec.type} {', '.join(moved.before) or '(none)'} -> "
            f"{', '.join(moved.after)}"
            + (f" (change {moved.change_id} done)" if moved.change_id else " (already there)")
        )
        front = next((s for s in inp.services if s.deploy.ref.service == dns.service), None)
        check: VerifyDnsResult = await workflow.execute_activity_method(
            DnsActivities.verify_dns,
            VerifyDnsInput(
                record=rec, rrdatas=dns.rrdatas, region=inp.to_region, service=dns.service,
                health_path=front.health_path if front else "/",
            ),
            start_to_close_timeout=VERIFY,
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=API_RETRY,
            summary=f"verify {rec.name} answers from {inp.to_region}",
        )  # fmt: skip
        st.dns_verified = check.ok
        if not check.ok:
            raise DrStop(
                Outcome.FAILED,
                f"DNS moved to {inp.to_region}, but the name does not answer from there yet: "
                f"{check.detail}",
            )
        self._event(f"verified: {check.detail}")
        if inp.mode == "failback":
            await self._carried_back()

    # ------------------------------------------------------------------ cleanup and report

    async def _clean(self) -> None:
        inp, st = self.inp, self.st
        self._progress(f"deleting what this {inp.mode} created in {inp.to_region}")
        for d in reversed(self._deploys):
            try:
                await workflow.execute_activity_method(
                    RegionalActivities.delete_service,
                    DeleteServiceInput(ref=d.ref),
                    start_to_close_timeout=SERVICE_DEPLOY,
                    schedule_to_close_timeout=CLEANUP_DEADLINE,
                    retry_policy=CLEANUP_RETRY,
                    summary=f"delete {d.ref.service} in {d.ref.region}",
                )
                st.deleted.append(f"service {d.ref.service} ({d.ref.region})")
                self._event(f"{d.ref.service} in {d.ref.region} deleted")
            except ActivityError as err:
                self._event(f"{d.ref.service} NOT deleted: {error_message(err)}")
        if self._instance_requested and inp.create_instance is not None:
            ref = inp.create_instance.ref
            try:
                await workflow.execute_activity_method(
                    CloudSqlActivities.delete_instance,
                    DeleteInstanceInput(ref=ref),
                    start_to_close_timeout=OPERATION,
                    schedule_to_close_timeout=CLEANUP_DEADLINE,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=CLEANUP_RETRY,
                    summary=f"delete {ref.instance}",
                )
                st.deleted.append(f"instance {ref.instance} ({inp.to_region})")
                self._event(f"{ref.instance} deleted")
            except ActivityError as err:
                self._event(f"{ref.instance} NOT deleted: {error_message(err)}")

    def _finish(self) -> None:
        inp, st = self.inp, self.st
        st.ended_at = workflow.now()
        assert st.started_at is not None
        st.total_seconds = seconds(st.started_at, st.ended_at)
        after_dns = sum(p.seconds for p in st.phases if p.phase == "replicas")
        st.recovery_seconds = round(max(st.total_seconds - after_dns, 0.0), 3)
        st.rto_met = st.outcome == Outcome.SUCCEEDED and st.recovery_seconds <= st.rto_seconds
        describe_ending(
            inp, st, deploys=self._deploys, dns_started=self._dns_started,
            instance_requested=self._instance_requested,
            replica_promoting=self._replica_promoting,
        )  # fmt: skip
        self._set_phase(Phase.DONE)
        self._progress(
            f"{st.outcome.value} in {st.total_seconds:g}s (RTO {st.rto_seconds:g}s)"
            + (f": {st.error or st.abort_reason}" if st.error or st.abort_reason else "")
        )
