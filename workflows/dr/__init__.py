"""Disaster-recovery workflows: on-demand backup, restore (Scenario 1), point-in-time recovery
(Scenario 2), the DR drill, and regional failover / failback / drill (Scenario 3). The brief's
runbook as code that is rehearsed, not a wiki page.

One module each (backup, restore, pitr, drill, failover); what they share is in `common` (the
run skeleton `DrRun`: work, cleanup shielded from cancellation, report, the end of the run)
and `clone` (the drill's and the point-in-time recovery's clone and delete).
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
