"""The embedded stack behind `local up|down|status` (`stack`) and where it keeps its state
(`paths`)."""

from stagecoach.localstack.paths import home, private_home
from stagecoach.localstack.stack import (
    LOCAL_HOSTS,
    ComponentStatus,
    LocalStack,
    StackError,
    stop_all,
    ui_url,
)

__all__ = [
    "LOCAL_HOSTS",
    "ComponentStatus",
    "LocalStack",
    "StackError",
    "home",
    "private_home",
    "stop_all",
    "ui_url",
]
