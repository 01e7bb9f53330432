"""Cloud Run Admin API v2 jobs: the release hooks (`pre_deploy` migrations, `post_deploy` checks).

- `StartHook`: create or update the hook's job (`<hook>-<env>`) for this release and run it once.
  Run once: the job's execution template carries the label `stagecoach-release: <release id>`
  (Cloud Run copies template labels onto each execution), and StartHook first looks for an
  execution of the job with that label. A retry after a crash anywhere (even after `:run` was
  accepted and before the answer arrived) finds the execution it started instead of running the
  migration twice. `:run` passes the etag of the job it just wrote, so it runs exactly that
  template.
- `ReadHookExecution`: the execution's state and task counts (polled by the workflow with timers,
  so the status shows them live and `abort` can interrupt the wait).
- `CancelHookExecution`: cancel it (idempotent: an execution already finished or gone is fine).

Nothing secret passes through: secrets are Secret Manager references resolved by Cloud Run.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import run_v2
from google.protobuf import duration_pb2
from temporalio import activity

from activities.cloud_run_convert import CLOUDSQL_MOUNT, CLOUDSQL_VOLUME, short_name
from activities.errors import api_errors
from stagecoach.clients import Clients, clients_for
from stagecoach.contract import Activity
from stagecoach.hooks import LABEL_HOOK, LABEL_RELEASE, LABEL_VERSION, label_value
from stagecoach.payloads.common import Target
from stagecoach.payloads.hooks import ExecutionRef, HookExecution, HookPlan, StartHookInput

log = logging.getLogger(__name__)

OPERATION_TIMEOUT = 90.0  # seconds a job create/update operation may take


def _ts(value: Any) -> datetime | None:
    """A proto-plus timestamp (DatetimeWithNanoseconds) or None when unset."""
    if not value:
        return None
    dt: datetime = value
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def execution_result(ex: run_v2.Execution, reused: bool = False) -> HookExecution:
    n = int(ex.task_count or 1)
    completed = _ts(ex.completion_time)
    message = ""
    for c in ex.conditions:
        if c.type_ == "Completed" and c.message:
            message = c.message
    state: Any = "running"
    if completed is not None:
        if ex.cancelled_count:
            state = "cancelled"
        elif ex.failed_count or ex.succeeded_count < n:
            state = "failed"
        else:
            state = "succeeded"
    return HookExecution(
        execution=short_name(ex.name),
        state=state,
        task_count=n,
        running=int(ex.running_count),
        succeeded=int(ex.succeeded_count),
        failed=int(ex.failed_count),
        cancelled=int(ex.cancelled_count),
        retried=int(ex.retried_count),
        log_uri=ex.log_uri,
        message=message if state != "succeeded" else "",
        started_at=_ts(ex.start_time) or _ts(ex.create_time),
        completed_at=completed,
        reused=reused,
    )


def job_for(inp: StartHookInput) -> run_v2.Job:
    """The job a release wants: its image, command, env, secrets, database binding, timeout,
    and the labels that make its executions findable (run once)."""
    h: HookPlan = inp.hook
    env = [run_v2.EnvVar(name=k, value=v) for k, v in sorted(h.env.items())]
    if h.database is not None:
        env.append(run_v2.EnvVar(name=h.database.env_var, value=h.database.connection_name))
    env += [
        run_v2.EnvVar(
            name=k,
            value_source=run_v2.EnvVarSource(
                secret_key_ref=run_v2.SecretKeySelector(secret=secret, version="latest")
            ),
        )
        for k, secret in sorted(h.secrets.items())
    ]
    container = run_v2.Container(image=h.image, command=h.command, args=h.args, env=env)
    volumes = []
    if h.database is not None:
        volumes.append(
            run_v2.Volume(
                name=CLOUDSQL_VOLUME,
                cloud_sql_instance=run_v2.CloudSqlInstance(instances=[h.database.connection_name]),
            )
        )
        container.volume_mounts = [
            run_v2.VolumeMount(name=CLOUDSQL_VOLUME, mount_path=CLOUDSQL_MOUNT)
        ]
    labels = {
        LABEL_RELEASE: label_value(inp.release_id),
        LABEL_HOOK: label_value(h.name),
        LABEL_VERSION: label_value(inp.version),
    }
    return run_v2.Job(
        labels={"managed-by": "stagecoach", LABEL_HOOK: label_value(h.name)},
        template=run_v2.ExecutionTemplate(
            labels=labels,
            task_count=h.task_count,
            template=run_v2.TaskTemplate(
                containers=[container],
                volumes=volumes,
                max_retries=h.max_retries,
                timeout=duration_pb2.Duration(seconds=max(int(h.timeout.total_seconds()), 1)),
            ),
        ),
    )


class CloudRunJobsActivities:
    """Hook activities. Holds nothing but the client factory."""

    def __init__(self, clients: Any = clients_for) -> None:
        self._clients = clients

    def _c(self, target: Target) -> Clients:
        c: Clients = self._clients(target)
        return c

    def _started(self, inp: StartHookInput) -> run_v2.Execution | None:
        """The execution of this hook this release started already, if any (newest first)."""
        c = self._c(inp.hook.ref.target)
        want = (label_value(inp.release_id), label_value(inp.hook.name))
        for ex in c.executions.list_executions(parent=inp.hook.ref.name):
            if (ex.labels.get(LABEL_RELEASE), ex.labels.get(LABEL_HOOK)) == want:
                return ex
        return None

    @activity.defn(name=Activity.START_HOOK)
    @api_errors
    def start_hook(self, input: StartHookInput) -> HookExecution:
        """Create or update the hook's job for this release and run it, once per release."""
        c = self._c(input.hook.ref.target)
        ref = input.hook.ref
        activity.heartbeat("find")
        try:
            c.jobs.get_job(name=ref.name)
            exists = True
        except gexc.NotFound:
            exists = False
        if exists:
            found = self._started(input)
            if found is not None:
                log.info("hook %s: found execution %s started before", ref.job, found.name)
                return execution_result(found, reused=True)
        job = job_for(input)
        activity.heartbeat("write job")
        if exists:
            job.name = ref.name
            written = c.jobs.update_job(job=job).result(timeout=OPERATION_TIMEOUT)
        else:
            try:
                written = c.jobs.create_job(parent=ref.parent, job=job, job_id=ref.job).result(
                    timeout=OPERATION_TIMEOUT
                )
            except gexc.Conflict:  # created meanwhile: write over it
                job.name = ref.name
                written = c.jobs.update_job(job=job).result(timeout=OPERATION_TIMEOUT)
        activity.heartbeat("run")
        op = c.jobs.run_job(request=run_v2.RunJobRequest(name=ref.name, etag=written.etag))
        ex = op.metadata
        if not ex or not ex.name:  # the operation carries the execution; look it up otherwise
            ex = self._started(input)
            if ex is None:
                raise RuntimeError(f"job {ref.job}: run accepted but no execution found")
        log.info("hook %s: started execution %s", ref.job, ex.name)
        return execution_result(ex)

    @activity.defn(name=Activity.READ_HOOK_EXECUTION)
    @api_errors
    def read_hook_execution(self, input: ExecutionRef) -> HookExecution:
        ex = self._c(input.ref.target).executions.get_execution(name=input.name)
        return execution_result(ex)

    @activity.defn(name=Activity.CANCEL_HOOK_EXECUTION)
    @api_errors
    def cancel_hook_execution(self, input: ExecutionRef) -> HookExecution:
        c = self._c(input.ref.target)
        try:
            op = c.executions.cancel_execution(name=input.name)
        except gexc.NotFound:
            return HookExecution(execution=input.execution, state="cancelled", message="gone")
        except gexc.FailedPrecondition as err:  # already finished
            log.info("cancel %s: %s", input.execution, err)
        else:
            try:
                op.result(timeout=OPERATION_TIMEOUT)
            except gexc.GoogleAPICallError as err:  # the operation's own error: read the state
                log.info("cancel %s: %s", input.execution, err)
        return execution_result(c.executions.get_execution(name=input.name))
