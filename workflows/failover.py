"""Where the worker registers `FailoverWorkflow` from (stagecoach.temporal.workflows); the
workflow itself is workflows/dr/failover.py."""

from workflows.dr.failover import FailoverWorkflow

__all__ = ["FailoverWorkflow"]
