"""The DR drill (monthly, on a schedule, or `starter.py dr-drill ENV`): restore the newest
SUCCESSFUL backup into a scratch instance, validate it against the source, report restore time
against the RTO and the data-loss window against the RPO, and always delete the scratch.

Deterministic: measured durations are `workflow.now()` deltas.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from stagecoach.contract import Message, WorkflowType
    from stagecoach.payloads.common import InstanceRef, Outcome, Phase
    from stagecoach.payloads.dr import DrillInput, DrillReport, DrillTable
    from stagecoach.payloads.sql import BackupInfo, CloneInstanceInput, ValidationReport

from workflows.dr.clone import CloneRun
from workflows.dr.common import DrStop, list_backups, newest_successful, seconds


def drill_instance_name(instance: str, at: datetime) -> str:
    return f"{instance}-drill-{at.strftime('%Y%m%d%H%M%S')}"


@workflow.defn(name=WorkflowType.DR_DRILL)
class DrDrillWorkflow(CloneRun):
    """The monthly drill: clone the newest SUCCESSFUL backup into a scratch instance
    `<instance>-drill-<YYYYMMDDHHMMSS>`, run the validation queries on the scratch and on the
    source, report (see `DrillReport`: restore time vs RTO, data-loss window vs RPO), and delete
    the scratch instance ALWAYS: on success, failed verification, activity failure, `abort` and
    Temporal cancellation (the delete runs in `finally`, shielded from cancellation).

    Definitions:
    - measured restore time = `workflow.now()` after CloneInstance (backup restored into the
      scratch instance, which is then usable) minus `workflow.now()` before it;
    - data-loss window = newest `created_at` on the source (read after the clone) minus newest
      `created_at` on the scratch: what restoring this backup would lose right now.
    """

    @workflow.init
    def __init__(self, inp: DrillInput) -> None:
        self.inp = inp
        self.env = inp.env
        self.version = "drill"
        self.st = DrillReport(
            app=inp.app,
            env=inp.env,
            source_instance=inp.instance.instance,
            rpo_seconds=inp.rpo.total_seconds(),
            rto_seconds=inp.rto.total_seconds(),
        )
        self._clone_requested = False

    def _state(self) -> DrillReport:
        return self.st

    @workflow.query(
        name=Message.STATUS,
        description=(
            "The drill's report (JSON): {source_instance, scratch_instance, backup, phase, "
            "outcome, tables, restore_seconds vs rto_seconds, data_loss_seconds vs "
            "rpo_seconds, scratch_deleted, events}. No input."
        ),
    )
    def status(self) -> DrillReport:
        return self.st

    def _title(self) -> str:
        return f"DR drill of {self.st.source_instance}"

    def _failure_message(self) -> str:
        return f"{self._title()}: {self._summary()}"

    @workflow.run
    async def run(self, inp: DrillInput) -> DrillReport:
        st = self.st
        st.scratch_instance = drill_instance_name(inp.instance.instance, workflow.now())
        self._begin(
            Phase.CLONING,
            f"DR drill of {st.source_instance} ({inp.env}) into {st.scratch_instance} "
            f"requested by {inp.requested_by or 'schedule'}",
        )
        await self._run_to_end()
        return st

    def _needs_cleanup(self) -> bool:
        return self._clone_requested

    async def _clean_up(self) -> None:
        st = self.st
        st.scratch_deleted, err = await self._delete(self._scratch_ref(), "drill over")
        if err:
            lost = f"scratch {st.scratch_instance} NOT deleted: {err}"
            st.error = f"{st.error}; {lost}" if st.error else lost
            if st.outcome == Outcome.SUCCEEDED:
                st.outcome = Outcome.FAILED

    async def _report(self, cancelled: bool) -> None:
        st = self.st
        if not self._clone_requested:
            st.scratch_deleted = True  # never created
        st.ended_at = workflow.now()
        self._set_phase(Phase.DONE)
        self._progress(f"{st.outcome.value}: {self._summary()}")
        if not cancelled:
            await self._notify(
                self.inp.notify, "drill", f"DR drill {self.inp.env}: {self._summary()}"
            )

    def _scratch_ref(self) -> InstanceRef:
        return self.inp.instance.model_copy(update={"instance": self.st.scratch_instance})

    def _summary(self) -> str:
        st = self.st
        parts = [f"{st.outcome.value}"]
        if st.restore_seconds is not None:
            parts.append(f"restore {st.restore_seconds:g}s (RTO {st.rto_seconds:g}s)")
        if st.data_loss_seconds is not None:
            parts.append(f"data-loss window {st.data_loss_seconds:g}s (RPO {st.rpo_seconds:g}s)")
        parts.append("scratch deleted" if st.scratch_deleted else "SCRATCH NOT DELETED")
        if st.error or st.abort_reason:
            parts.append(st.error or st.abort_reason)
        return ", ".join(parts)

    async def _work(self) -> None:
        inp, st = self.inp, self.st
        self._progress(f"finding the newest successful backup of {st.source_instance}")
        backups: list[BackupInfo] = await list_backups(inp.instance)
        backup = newest_successful(backups)
        if backup is None:
            raise DrStop(Outcome.FAILED, f"{st.source_instance} has no SUCCESSFUL backup")
        st.backup = backup
        self._event(
            f"drilling backup {backup.id} ({backup.type}, "
            f"{backup.enqueued_time.isoformat() if backup.enqueued_time else 'no time'})"
        )

        self._set_phase(Phase.CLONING)
        self._progress(f"restoring backup {backup.id} into {st.scratch_instance}")
        self._clone_requested = True
        start = workflow.now()
        await self._clone(
            CloneInstanceInput(
                ref=inp.instance, destination=st.scratch_instance, backup_id=backup.id
            ),
            f"restore {backup.id} into {st.scratch_instance}",
        )
        st.restore_seconds = seconds(start, workflow.now())
        st.rto_met = st.restore_seconds <= st.rto_seconds
        self._event(f"{st.scratch_instance} restored in {st.restore_seconds:g}s")

        st.scratch = await self._validate(inp.verification, self._scratch_ref())
        st.source = await self._validate(inp.verification, inp.instance)
        self._compare(st.source, st.scratch)
        if not st.verified:
            problems = [f"scratch: {p}" for p in st.scratch.problems]
            problems += [f"source: {p}" for p in st.source.problems]
            raise DrStop(Outcome.FAILED, "verification failed: " + "; ".join(problems))

    def _compare(self, source: ValidationReport, scratch: ValidationReport) -> None:
        st = self.st
        src = {t.table: t for t in source.tables}
        scr = {t.table: t for t in scratch.tables}
        st.tables = [
            DrillTable(
                table=name,
                source_rows=src[name].rows if name in src else None,
                scratch_rows=scr[name].rows if name in scr else None,
                source_newest=src[name].newest if name in src else None,
                scratch_newest=scr[name].newest if name in scr else None,
            )
            for name in self.inp.verification.tables
        ]
        st.source_newest = source.newest
        st.scratch_newest = scratch.newest
        if st.source_newest is not None and st.scratch_newest is not None:
            st.data_loss_seconds = max(
                0.0, round((st.source_newest - st.scratch_newest).total_seconds(), 3)
            )
            st.rpo_met = st.data_loss_seconds <= st.rpo_seconds
        st.verified = source.ok and scratch.ok
