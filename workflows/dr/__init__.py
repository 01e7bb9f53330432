"""Disaster-recovery workflows: on-demand backup, restore (Scenario 1), point-in-time recovery
(Scenario 2), the DR drill, and regional failover / failback / drill (Scenario 3). The brief's
runbook as code that is rehearsed, not a wiki page.

One module each (backup, restore, pitr, drill, failover, drill_replica); what they share is in
`common` (the run skeleton `DrRun`: work, cleanup shielded from cancellation, report, the end of
the run), `clone` (the drill's and the point-in-time recovery's clone and delete),
`replica_steps` (deleting and recreating read replicas around a restore: restore, failback) and
`scheduled` (what a scheduled regional drill decides per run). The failover's database step is
in `failover_database`, the description of how it ended in `failover_ending`.
"""

from workflows.dr.backup import BackupWorkflow
from workflows.dr.common import newest_successful
from workflows.dr.drill import DrDrillWorkflow, drill_instance_name
from workflows.dr.failover import FailoverWorkflow
from workflows.dr.pitr import PointInTimeWorkflow
from workflows.dr.restore import RestoreWorkflow

__all__ = [
    "BackupWorkflow",
    "DrDrillWorkflow",
    "FailoverWorkflow",
    "PointInTimeWorkflow",
    "RestoreWorkflow",
    "drill_instance_name",
    "newest_successful",
]
