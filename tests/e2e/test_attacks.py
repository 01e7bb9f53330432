"""Attacks on the trust boundaries (issue 15), end to end: the real Temporal dev server, a real
worker, gcpsim, and the plain `temporal` CLI where an attacker would use it."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError

from stagecoach.bounds import MAX_TEXT
from stagecoach.keys import create_key, sign
from stagecoach.payloads.common import ApprovalRecord, ApproveInput, Outcome, Phase
from stagecoach.payloads.release import ReleaseInput, ReleaseStatus
from stagecoach.temporal import temporal_binary, workflow_result
from testing.cloudrun import live_traffic
from testing.gcpsim import GcpsimProcess
from testing.gcpsim import served_percents as canary_history
from testing.releases import start_release as start
from testing.releases import wait_for, worker, worker_config
from tests.e2e.test_release import release_input

pytestmark = pytest.mark.asyncio

MB = 1_000_000


async def temporal_cli(address: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        temporal_binary(), *args, "--address", address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def long_bake(inp: ReleaseInput) -> ReleaseInput:
    steps = [
        s.model_copy(update={"bake": timedelta(minutes=10)}) if s.weight < 100 else s
        for s in inp.steps
    ]
    return inp.model_copy(update={"steps": steps})


async def baking(client: Client, task_queue: str, inp: ReleaseInput) -> WorkflowHandle:
    handle = await start(client, task_queue, inp)
    await wait_for(handle, lambda st: st.phase == Phase.BAKING)
    return handle


@pytest.mark.parametrize("payload", ["123", "[1, 2]", '"stop it"', None])
async def test_malformed_abort_still_aborts(
    client: Client, task_queue: str, gcpsim: GcpsimProcess, temporal_address: str,
    payload: str | None,
) -> None:  # fmt: skip
    """A number, a list, a bare string or no payload at all: the emergency brake still acts."""
    before = live_traffic(gcpsim, "legal-forms-staging", "node-server-staging")
    inp = long_bake(release_input(gcpsim, "staging", "v1.5.1", ["node-server"]))
    async with worker(client, task_queue):
        handle = await baking(client, task_queue, inp)
        extra = ["--input", payload] if payload is not None else []
        await temporal_cli(
            temporal_address, "workflow", "signal", "--workflow-id", handle.id,
            "--name", "abort", *extra,
        )  # fmt: skip
        result: ReleaseStatus = await asyncio.wait_for(workflow_result(handle), 60)
    assert result.outcome == Outcome.ABORTED
    assert result.abort_reason
    if payload == '"stop it"':
        assert result.abort_reason == "stop it"
    assert live_traffic(gcpsim, "legal-forms-staging", "node-server-staging") == before


async def test_a_1mb_abort_reason_ends_the_release_cleanly(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    before = live_traffic(gcpsim, "legal-forms-staging", "node-server-staging")
    inp = long_bake(release_input(gcpsim, "staging", "v1.5.2", ["node-server"]))
    async with worker(client, task_queue):
        handle = await baking(client, task_queue, inp)
        huge: dict[str, Any] = {"reason": "r" * MB, "by": "b" * MB}
        await handle.signal("abort", huge)
        result: ReleaseStatus = await asyncio.wait_for(workflow_result(handle), 60)
    assert result.outcome == Outcome.ABORTED
    assert 0 < len(result.abort_reason) <= MAX_TEXT
    assert len(result.model_dump_json()) < 100_000
    assert live_traffic(gcpsim, "legal-forms-staging", "node-server-staging") == before


# ----------------------------------------------------------------------------- policy


async def start_with_temporal_cli(
    address: str, task_queue: str, workflow_type: str, workflow_id: str, inp: Any
) -> None:
    """What any local user who reaches the Temporal frontend can do: start a workflow with an
    input of their choosing, no starter.py involved."""
    await temporal_cli(
        address, "workflow", "start", "--type", workflow_type, "--task-queue", task_queue,
        "--workflow-id", workflow_id, "--input", inp.model_dump_json(),
    )  # fmt: skip


async def test_plain_cli_start_with_weakened_policy_still_waits_for_a_valid_approval(
    client: Client, task_queue: str, gcpsim: GcpsimProcess, temporal_address: str
) -> None:
    """`approval: null` and a pre-filled `resume` with a fake approval in the input: the
    worker's policy still holds prod at 50% until a signed approval arrives."""
    inp = release_input(gcpsim, "prod", "v1.7.0", ["python-pipeline"])
    fake = ReleaseStatus(app=inp.app, env="prod", version=inp.version)
    fake.approvals = [ApprovalRecord(by="release-manager", at=datetime.now(UTC), before_weight=100)]
    weakened = inp.model_copy(update={"approval": None, "resume": fake})
    wid = f"deploy-legal-forms-prod-{secrets.token_hex(4)}"
    async with worker(client, task_queue):
        await start_with_temporal_cli(temporal_address, task_queue, "Release", wid, weakened)
        handle = client.get_workflow_handle(wid, result_type=ReleaseStatus)
        st = await wait_for(handle, lambda s: s.phase == Phase.AWAITING_APPROVAL, timeout=120)
        assert st.awaiting_approval_for == 100 and st.approvals == []
        assert st.services[0].percent == 50
        assert any("resume state in the input ignored" in e for e in st.events)
        # an unsigned approval does not count either
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update("approve", ApproveInput(by="release-manager"))
        assert "no proof" in str(err.value.cause)
        await handle.signal("abort", {"reason": "test over"})
        result: ReleaseStatus = await asyncio.wait_for(workflow_result(handle), 60)
    assert result.outcome == Outcome.ABORTED and result.approvals == []
    assert [r.claimed for r in result.rejected_approvals] == ["release-manager"]
    svc = result.services[0]
    assert 100 not in canary_history(
        gcpsim, "legal-forms-prod", svc.run_service, svc.canary_revision
    )


async def test_plain_cli_restore_with_no_approvers_still_waits_for_approval(
    client: Client, task_queue: str, gcpsim: GcpsimProcess, temporal_address: str
) -> None:
    """A Restore of prod started with `approvers: []`: the worker's policy (prod:
    restore_requires_approval) holds it before anything is drained or restored."""
    from activities.cloud_sql import CloudSqlActivities
    from stagecoach.payloads.common import Outcome
    from stagecoach.payloads.dr import RestoreInput, RestoreStatus, Verification
    from stagecoach.payloads.sql import ListBackupsInput
    from stagecoach.plan import instance_ref, service_ref
    from testing.gcpsim import config_for

    cfg = config_for(gcpsim)
    ref = instance_ref(cfg, "prod")
    backups = CloudSqlActivities().list_backups(ListBackupsInput(ref=ref, limit=5))
    done = next(b for b in backups if b.status == "SUCCESSFUL")
    inp = RestoreInput(
        app="legal-forms", env="prod", instance=ref, backup_id=done.id,
        services=[service_ref(cfg, "prod", "node-server")],
        verification=Verification(database=cfg.database.name, tables=[]),
        approvers=[], requested_by="mallory",
    )  # fmt: skip
    wid = f"deploy-legal-forms-prod-{secrets.token_hex(4)}"
    async with worker(client, task_queue):
        await start_with_temporal_cli(temporal_address, task_queue, "Restore", wid, inp)
        handle = client.get_workflow_handle(wid, result_type=RestoreStatus)
        for _ in range(300):
            st = await handle.query("status", result_type=RestoreStatus)
            if st.awaiting_approval or st.outcome != Outcome.RUNNING:
                break
            await asyncio.sleep(0.2)
        assert st.awaiting_approval, st
        assert all(s.state == "untouched" for s in st.services)
        await handle.signal("abort", "test over")
        result: RestoreStatus = await asyncio.wait_for(workflow_result(handle), 60)
    assert result.outcome == Outcome.ABORTED
    assert result.database_state == "untouched"


async def test_non_loopback_simulator_host_is_refused_by_the_worker(
    client: Client, task_queue: str, gcpsim: GcpsimProcess, temporal_address: str
) -> None:
    inp = release_input(gcpsim, "staging", "v1.7.1", ["node-server"])
    far = inp.services[0].ref.target.model_copy(update={"host": "10.255.255.1"})
    services = [p.model_copy(update={"ref": p.ref.model_copy(update={"target": far})})
                for p in inp.services]  # fmt: skip
    wid = f"deploy-legal-forms-staging-{secrets.token_hex(4)}"
    async with worker(client, task_queue):
        await start_with_temporal_cli(
            temporal_address, task_queue, "Release", wid,
            inp.model_copy(update={"services": services}),
        )  # fmt: skip
        handle = client.get_workflow_handle(wid, result_type=ReleaseStatus)
        result: ReleaseStatus = await asyncio.wait_for(workflow_result(handle), 60)
    assert result.outcome == Outcome.FAILED
    assert "not loopback" in result.error and "refused by the worker's policy" in result.error
    assert result.services[0].canary_revision == ""  # nothing was created anywhere


async def test_another_project_is_refused_by_the_worker(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    inp = release_input(gcpsim, "staging", "v1.7.2", ["node-server"])
    services = [
        p.model_copy(update={"ref": p.ref.model_copy(update={"project": "legal-forms-prod"})})
        for p in inp.services
    ]
    async with worker(client, task_queue):
        handle = await start(client, task_queue, inp.model_copy(update={"services": services}))
        result: ReleaseStatus = await asyncio.wait_for(workflow_result(handle), 60)
    assert result.outcome == Outcome.FAILED
    assert "is not staging's project" in result.error


# ----------------------------------------------------------------------------- approvals


async def test_forged_replayed_self_and_1mb_approvals_are_refused_and_recorded(
    client: Client, task_queue: str, gcpsim: GcpsimProcess, tmp_path: Path, own_keys: Path
) -> None:
    """One prod release waiting for approval, requested by release-manager, on a worker whose
    config forbids self-approval and adds qa-lead as an approver. Refused, each recorded with
    the claimed and the authenticated identity: a forged signature, a signature replayed from
    another release, a self-approval, a 1 MB comment whose signature covers the whole text.
    Then qa-lead's signed approval with a 1 MB comment (capped before signing, as starter.py
    does) promotes it, and the result stays small."""
    qa_public, _, _ = create_key("qa-lead")
    create_key("mallory")
    policy = worker_config(
        tmp_path / "worker.yaml",
        lambda d: (
            d["environments"]["prod"]["release"]["approval"].update(
                approvers=["release-manager", "qa-lead"], forbid_self_approval=True
            ),
            d.update(approver_keys={"qa-lead": qa_public}),
        ),
    )
    inp = release_input(gcpsim, "prod", "v1.8.0", ["python-pipeline"])
    inp = inp.model_copy(update={"requested_by": "release-manager"})
    async with worker(client, task_queue, policy):
        handle = await start(client, task_queue, inp)
        await wait_for(handle, lambda s: s.phase == Phase.AWAITING_APPROVAL, timeout=120)
        desc = await handle.describe()

        def signed(by: str, comment: str = "", **bound: Any) -> dict[str, Any]:
            where = {"workflow_id": handle.id, "run_id": desc.run_id, "version": "v1.8.0",
                     "step": 100, **bound}  # fmt: skip
            proof = sign(by, comment=comment, **where)
            assert proof is not None
            return {"by": by, "comment": comment, "proof": proof.model_dump()}

        forged = signed("mallory")
        forged["by"] = "release-manager"  # mallory's signature, release-manager's name
        replayed = signed("release-manager", workflow_id="deploy-legal-forms-prod",
                          run_id="0193-another-release")  # fmt: skip
        self_approval = signed("release-manager", comment="my own release")
        huge = signed("qa-lead", comment="c" * MB)  # signed over the whole 1 MB
        reasons = []
        for attempt in (forged, replayed, self_approval, huge):
            with pytest.raises(WorkflowUpdateFailedError) as err:
                await handle.execute_update("approve", attempt)
            reasons.append(str(err.value.cause))
        assert "does not verify" in reasons[0]
        assert "another release" in reasons[1]
        assert "may not approve it" in reasons[2]
        assert "does not verify" in reasons[3]
        ok = ApproveInput(by="qa-lead", comment="q" * MB)  # capped here, then signed
        ok.proof = sign("qa-lead", workflow_id=handle.id, run_id=desc.run_id, version="v1.8.0",
                        step=100, comment=ok.comment)  # fmt: skip
        await handle.execute_update("approve", ok)
        result: ReleaseStatus = await asyncio.wait_for(workflow_result(handle), 120)
    assert result.outcome == Outcome.PROMOTED, result.error
    got = [(r.claimed, r.authenticated.split(" (")[0]) for r in result.rejected_approvals]
    assert got == [
        ("release-manager", ""),
        ("release-manager", ""),
        ("release-manager", "release-manager"),  # authenticated, and still refused
        ("qa-lead", ""),
    ]
    assert [a.by for a in result.approvals] == ["qa-lead"]
    assert len(result.approvals[0].comment) <= MAX_TEXT
    assert len(result.model_dump_json()) < 100_000


# ----------------------------------------------------------------------------- service lock


async def test_two_configs_releasing_the_same_service_second_is_refused(
    client: Client, task_queue: str, gcpsim: GcpsimProcess
) -> None:
    """Two configs with different `app` (so different workflow ids) release the same Cloud Run
    service: the second is refused naming the first, before it touches anything; once the
    first ends, its lock is gone."""
    from stagecoach.locks import lock_id

    first = long_bake(release_input(gcpsim, "staging", "v1.9.1", ["node-server"]))
    second = release_input(gcpsim, "staging", "v1.9.2", ["node-server"])
    second = second.model_copy(update={"app": "other-app"})
    async with worker(client, task_queue):
        h1 = await baking(client, task_queue, first)
        h2 = await start(client, task_queue, second)
        r2: ReleaseStatus = await asyncio.wait_for(workflow_result(h2), 60)
        assert r2.outcome == Outcome.FAILED
        assert "node-server-staging is being released by" in r2.error and h1.id in r2.error
        assert r2.services[0].canary_revision == ""  # refused before anything was touched
        st = await h1.query("status", result_type=ReleaseStatus)
        assert st.outcome == Outcome.RUNNING  # the holder goes on, untouched
        await h1.signal("abort", {"reason": "test over"})
        r1: ReleaseStatus = await asyncio.wait_for(workflow_result(h1), 60)
        assert r1.outcome == Outcome.ABORTED
        lock = await client.get_workflow_handle(lock_id(first.services[0].ref)).describe()
        assert lock.status is not None and lock.status.name == "TERMINATED"  # released
