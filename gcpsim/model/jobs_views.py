"""Cloud Run Admin v2 jobs and executions as the API returns them (proto3 JSON), from the
stored state (gcpsim.model.jobs)."""

from __future__ import annotations

from typing import Any

from gcpsim.model import run_spec
from gcpsim.store import rfc3339

# Condition.State, ExecutionReference.CompletionStatus, Condition.ExecutionReason
RECONCILING, FAILED, SUCCEEDED = 2, 3, 4


STATUS = {"succeeded": 1, "failed": 2, "running": 3, "cancelled": 5}


REASON_NON_ZERO_EXIT, REASON_CANCELLED = 2, 3


def status_of(ex: dict[str, Any], t: float) -> str:
    if ex.get("cancelledAt") is not None:
        return "cancelled"
    if t < ex["doneAt"]:
        return "running"
    return ex["outcome"]


def execution_view(ex: dict[str, Any], t: float) -> dict[str, Any]:
    status = status_of(ex, t)
    n = ex["taskCount"]
    out: dict[str, Any] = {
        "name": ex["name"],
        "uid": ex["uid"],
        "creator": "gcpsim@example.com",
        "generation": "1",
        "labels": ex["labels"],
        "annotations": ex["annotations"],
        "createTime": rfc3339(ex["createTime"]),
        "startTime": rfc3339(ex["createTime"]),
        "updateTime": rfc3339(min(t, ex["doneAt"])),
        "job": ex["job"],
        "parallelism": ex["parallelism"],
        "taskCount": n,
        "template": ex["template"],
        "reconciling": status == "running",
        "observedGeneration": "1",
        "logUri": ex["logUri"],
        "etag": ex["etag"],
    }
    end = ex["doneAt"]
    if status == "running":
        out["runningCount"] = n
        cond = run_spec.condition("Completed", RECONCILING, ex["createTime"], "Running tasks.")
    elif status == "succeeded":
        out["succeededCount"] = n
        out["completionTime"] = rfc3339(end)
        cond = run_spec.condition("Completed", SUCCEEDED, end, f"Execution completed: {n} task(s).")
    elif status == "failed":
        out["failedCount"] = n
        out["retriedCount"] = ex.get("retried", 0)
        out["completionTime"] = rfc3339(end)
        cond = run_spec.condition(
            "Completed", FAILED, end, ex["message"], executionReason=REASON_NON_ZERO_EXIT
        )
    else:
        out["cancelledCount"] = n
        out["completionTime"] = rfc3339(end)
        cond = run_spec.condition(
            "Completed", FAILED, end, "The execution was cancelled.",
            executionReason=REASON_CANCELLED,
        )  # fmt: skip
    out["conditions"] = [cond]
    return run_spec.prune_zero(out)


def job_view(job: dict[str, Any], execs: dict[str, Any], t: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": job["name"],
        "uid": job["uid"],
        "generation": str(job["generation"]),
        "labels": job["labels"],
        "annotations": job["annotations"],
        "createTime": rfc3339(job["createTime"]),
        "updateTime": rfc3339(job["updateTime"]),
        "creator": "gcpsim@example.com",
        "lastModifier": "gcpsim@example.com",
        "template": job["template"],
        "observedGeneration": str(job["generation"]),
        "terminalCondition": run_spec.condition("Ready", SUCCEEDED, job["updateTime"]),
        "executionCount": job["executionCount"],
        "etag": job["etag"],
    }
    if execs:
        latest = max(execs.values(), key=lambda e: e["seq"])
        status = status_of(latest, t)
        ref: dict[str, Any] = {
            "name": latest["name"],
            "createTime": rfc3339(latest["createTime"]),
            "completionStatus": STATUS[status],
        }
        if status != "running":
            ref["completionTime"] = rfc3339(latest["doneAt"])
        out["latestCreatedExecution"] = ref
    return run_spec.prune_zero(out)
