"""What every workflow shares: API references, the phase/outcome vocabulary of the search
attributes, approvals, abort and notifications."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from stagecoach.bounds import Name, Text
from stagecoach.payloads.base import Payload


class Phase(StrEnum):
    """Values of the StagecoachPhase search attribute (and every status's `phase`): one
    vocabulary for releases, rollbacks, DR workflows and regional failovers."""

    VALIDATING = "validating"
    PLANNING = "planning"  # a failover
    BACKING_UP = "backing_up"
    DEPLOYING = "deploying"
    SMOKE_TESTING = "smoke_testing"
    SHIFTING = "shifting"
    BAKING = "baking"
    AWAITING_APPROVAL = "awaiting_approval"
    FROZEN = "frozen"  # a freeze window holds the next traffic step
    RUNNING_HOOK = "running_hook"  # a pre_deploy / post_deploy hook (Cloud Run job) runs
    PAUSED = "paused"
    ROLLING_BACK = "rolling_back"
    DRAINING = "draining"  # a restore drains the services that use the database
    RESTORING = "restoring"
    CLONING = "cloning"
    VERIFYING = "verifying"
    RESUMING = "resuming"
    DATABASE = "database"  # a failover brings the database up in the target region
    SERVICES = "services"  # ... then the services
    DNS = "dns"  # ... then moves the DNS record
    CLEANING_UP = "cleaning_up"
    DONE = "done"


class Outcome(StrEnum):
    """Values of the StagecoachOutcome search attribute (and every status's `outcome`)."""

    RUNNING = "running"
    PROMOTED = "promoted"  # a release
    ROLLED_BACK = "rolled_back"  # a release or a rollback
    SUCCEEDED = "succeeded"  # a DR workflow or a failover
    FAILED = "failed"
    ABORTED = "aborted"
    CANCELLED = "cancelled"


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class Target(Payload):
    """Where the activities send their API calls (no credentials: the worker has those)."""

    kind: Literal["gcpsim", "gcp"] = "gcpsim"
    host: str = "127.0.0.1"
    port: int = 8780
    grpc_port: int = 8781


class TrafficTarget(Payload):
    """One Cloud Run traffic entry, exactly as the API holds it."""

    type: Literal["LATEST", "REVISION"] = "REVISION"
    revision: str = ""
    percent: int = 0
    tag: str = ""


class ServiceRef(Payload):
    target: Target
    project: str
    region: str
    service: str  # Cloud Run service name, e.g. node-server-prod

    @property
    def name(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/services/{self.service}"


class InstanceRef(Payload):
    target: Target
    project: str
    instance: str


class DatabaseBinding(Payload):
    """How a revision reaches its Cloud SQL instance: Cloud Run's Cloud SQL connection (volume
    `cloudsql`, mounted at /cloudsql) plus one env var holding the connection name."""

    env_var: str = "INSTANCE_CONNECTION_NAME"
    connection_name: str  # project:region:instance

    @property
    def instance(self) -> str:
        return self.connection_name.rsplit(":", 1)[-1]


class NotifyInput(Payload):
    event: Literal["started", "awaiting_approval", "promoted", "rolled_back", "failed", "drill"]
    text: str


# --------------------------------------------------------------------------- approvals, abort


class ApprovalRecord(Payload):
    by: Name
    at: datetime
    comment: Text = ""
    before_weight: int
    # who the proof says sent it: "<name> (ed25519 key <fingerprint>)", or how it was let
    # through without proof ("unverified: environments.<env>...proof is none")
    authenticated: str = ""


class RejectedApproval(Payload):
    """An `approve` that was refused: kept in the status (newest MAX_REJECTED) and logged."""

    at: datetime
    claimed: Name  # the `by` of the payload
    authenticated: str = ""  # who the proof verified as ("" when it did not verify)
    reason: Text


class ApprovalProof(Payload):
    """Proof of who sent an `approve`: an Ed25519 signature by the approver's own key over
    `stagecoach.trust.statement(...)`, bound to one release (workflow id and run id), its
    version and the step (weight; 0 for a restore), the name and the comment."""

    workflow_id: Name
    run_id: Name
    version: Name
    step: int
    key: Name = ""  # fingerprint of the public key, for the record and the error message
    signature: Name  # base64 of the 64-byte signature


class ApproveInput(Payload):
    by: Name = Field(min_length=1)
    comment: Text = ""
    proof: ApprovalProof | None = None


class ApproveResult(Payload):
    approved_weight: int
    by: str


class AbortInput(Payload):
    reason: Text = "aborted by operator"
    by: Name = ""
