"""The DR workflow payloads under their old import path (stagecoach.payloads.dr holds them now).

Kept while other branches still import from here. `DrPhase` and `DrOutcome` are the one
vocabulary `stagecoach.payloads.common.Phase` / `Outcome` under their old names.
"""

from __future__ import annotations

from stagecoach.payloads.common import Outcome, Phase
from stagecoach.payloads.dr import (
    DEFAULT_RPO,
    DEFAULT_RTO,
    BackupInput,
    BackupResult,
    DrillInput,
    DrillReport,
    DrillTable,
    PointInTimeInput,
    PointInTimeResult,
    RestoreInput,
    RestoreStatus,
    ServiceScaling,
    Verification,
)

DrPhase = Phase
DrOutcome = Outcome

__all__ = [
    "DEFAULT_RPO",
    "DEFAULT_RTO",
    "BackupInput",
    "BackupResult",
    "DrOutcome",
    "DrPhase",
    "DrillInput",
    "DrillReport",
    "DrillTable",
    "PointInTimeInput",
    "PointInTimeResult",
    "RestoreInput",
    "RestoreStatus",
    "ServiceScaling",
    "Verification",
]
