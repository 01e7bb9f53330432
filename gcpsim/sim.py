"""The simulator object every API module receives: the store, the faults, and the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gcpsim.faults import Faults
from gcpsim.store import Store


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8780
    grpc_port: int = 8781
    # Seconds a Cloud Run or Cloud SQL long-running operation takes to finish.
    run_op_seconds: float = 0.3
    sql_op_seconds: float = 1.0
    # How far a Cloud SQL read replica's data trails its primary (gcpsim.model.sql_replicas).
    replica_lag_seconds: float = 1.0
    # Synthetic requests per second each service receives, split by its traffic percents.
    request_rate: float = 50.0
    # Cloud Monitoring's timing (gcpsim.model.metrics.Timing): requests are collected into
    # samples of this many seconds, and a sample becomes visible this many seconds after it
    # ends. Real Cloud Run: 60 s and up to 180 s. 1 and 0 (the defaults) mean live: a
    # second's requests are visible while it runs. Timing rules set at run time override
    # these per service.
    metric_sample_period: int = 1
    metric_delay: float = 0.0
    seed: int = 0


@dataclass
class Sim:
    store: Store
    settings: Settings = field(default_factory=Settings)
    faults: Faults = field(init=False)

    def __post_init__(self) -> None:
        self.faults = Faults(self.store, self.settings.seed)

    @classmethod
    def open(cls, state_dir: str | Path, settings: Settings, reset: bool = False) -> Sim:
        return cls(Store(state_dir, reset=reset), settings)
