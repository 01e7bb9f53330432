"""The Cloud SQL helpers of the conformance modules, now in the shared harness
(testing/cloudsql.py); the names stay importable from here for the modules that use them."""

from testing.cloudsql import (
    DEV_DB,
    DEV_PROJECT,
    STATUS_ORDER,
    OwnInstances,
    connect,
    connected,
    rfc3339,
    sqladmin,
    wait_ok,
    wait_op,
)

__all__ = [
    "DEV_DB",
    "DEV_PROJECT",
    "STATUS_ORDER",
    "OwnInstances",
    "connect",
    "connected",
    "rfc3339",
    "sqladmin",
    "wait_ok",
    "wait_op",
]
