"""gcpsim's Cloud SQL Admin API v1 through the real discovery client (googleapiclient).

Read-only checks use the seeded session simulator (tests/conftest.py): `legal-forms-db-{env}`
in `legal-forms-{env}`. Everything that mutates works on instances of its own, cloned from the
seeded dev instance into the project PROJECT and deleted again at the end of the module, so the
seeded instances keep their three automated backups and their data.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from testing.cloudsql import (
    DEV_DB,
    DEV_PROJECT,
    OwnInstances,
    connected,
    rfc3339,
    sqladmin,
    wait_ok,
    wait_op,
)
from testing.gcpsim import GcpsimProcess

PROJECT = "sqladmin-conformance"
BUSY = (
    "Operation failed because another operation was already in progress. "
    "Try your request after the current operation is complete."
)


def http_error(call: Callable[[], Any]) -> HttpError:
    with pytest.raises(HttpError) as info:
        call()
    return info.value


def reason(e: HttpError) -> str:
    return str(e.error_details[0]["reason"])


def restore(sql: Any, instance: str, body: dict[str, Any]) -> dict[str, Any]:
    """instances.restoreBackup of PROJECT/`instance`: the operation it starts."""
    op: dict[str, Any] = (
        sql.instances().restoreBackup(project=PROJECT, instance=instance, body=body).execute()
    )
    return op


def restore_run(sql: Any, instance: str, backup_id: str) -> dict[str, Any]:
    """Restore the instance's own backup run `backup_id` into it."""
    return restore(
        sql, instance, {"restoreBackupContext": {"backupRunId": backup_id, "instanceId": instance}}
    )


@pytest.fixture(scope="module")
def sql(gcpsim: GcpsimProcess) -> Any:
    return sqladmin(gcpsim.url)


@pytest.fixture(scope="module")
def own(sql: Any) -> Iterator[OwnInstances]:
    """Creates instances of this module's own (clones of the seeded dev instance)."""
    inst = OwnInstances(sql, PROJECT)
    yield inst
    inst.cleanup()


@pytest.fixture(scope="module")
def mine(own: OwnInstances) -> str:
    """One instance of this module's own, with the reference tables and data."""
    return own.clone("conf-main")


# ------------------------------------------------------------------------------ instances


def test_get_seeded_instance(sql: Any) -> None:
    inst = sql.instances().get(project=DEV_PROJECT, instance=DEV_DB).execute()
    assert inst["kind"] == "sql#instance"
    assert inst["name"] == DEV_DB and inst["project"] == DEV_PROJECT
    assert inst["state"] == "RUNNABLE"
    assert inst["databaseVersion"] == "POSTGRES_15"
    assert inst["region"] == "us-central1"
    assert inst["connectionName"] == f"{DEV_PROJECT}:us-central1:{DEV_DB}"
    assert inst["ipAddresses"] == [{"type": "PRIMARY", "ipAddress": "127.0.0.1"}]
    datetime.fromisoformat(inst["createTime"].replace("Z", "+00:00"))
    s = inst["settings"]
    assert s["tier"] == "db-f1-micro" and s["availabilityType"] == "ZONAL"
    assert isinstance(s["settingsVersion"], str)
    b = s["backupConfiguration"]
    assert b["enabled"] is True and b["pointInTimeRecoveryEnabled"] is True
    assert b["transactionLogRetentionDays"] == 7 and b["startTime"] == "03:00"
    assert b["backupRetentionSettings"]["retainedBackups"] == 30
    conn = inst["gcpsimConnection"]
    assert set(conn["databases"]) >= {"legalforms", "postgres"}
    with connected(inst) as c:
        tables = {r[0] for r in c.run("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert tables >= {"cases", "parties", "party_issue_selections"}
        for t in ("cases", "parties", "party_issue_selections"):
            n, newest = c.run(f"SELECT count(*), max(created_at) FROM {t}")[0]
            assert n > 0 and newest is not None


def test_get_seeded_prod_instance_is_regional(sql: Any) -> None:
    inst = sql.instances().get(project="legal-forms-prod", instance="legal-forms-db-prod").execute()
    assert inst["settings"]["tier"] == "db-custom-2-7680"
    assert inst["settings"]["availabilityType"] == "REGIONAL"


def test_get_missing_instance_is_404(sql: Any) -> None:
    e = http_error(lambda: sql.instances().get(project=DEV_PROJECT, instance="nope").execute())
    assert e.status_code == 404
    assert reason(e) == "instanceDoesNotExist"
    assert json.loads(e.content) == {
        "error": {
            "code": 404,
            "message": "The Cloud SQL instance does not exist.",
            "errors": [
                {
                    "message": "The Cloud SQL instance does not exist.",
                    "domain": "global",
                    "reason": "instanceDoesNotExist",
                }
            ],
        }
    }


def test_list_instances_pages(sql: Any, own: OwnInstances, mine: str) -> None:
    second = own.clone("conf-list")
    req = sql.instances().list(project=PROJECT, maxResults=1)
    names: list[str] = []
    pages = 0
    while req is not None and pages < 20:
        resp = req.execute()
        assert resp["kind"] == "sql#instancesList"
        assert len(resp.get("items", [])) <= 1
        names += [i["name"] for i in resp.get("items", [])]
        req = sql.instances().list_next(req, resp)
        pages += 1
    assert {mine, second} <= set(names)
    assert len(names) == len(set(names))
    empty = sql.instances().list(project="no-such-project").execute()
    assert empty == {"kind": "sql#instancesList"}


def test_insert_patch_delete(sql: Any) -> None:
    name = f"conf-new-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "region": "europe-west1", "databaseVersion": "POSTGRES_15",
            "settings": {"tier": "db-g1-small", "availabilityType": "REGIONAL"}}  # fmt: skip
    op = sql.instances().insert(project=PROJECT, body=body).execute()
    assert op["kind"] == "sql#operation" and op["operationType"] == "CREATE"
    assert op["targetId"] == name and op["status"] in ("PENDING", "RUNNING")
    assert sql.instances().get(project=PROJECT, instance=name).execute()["state"] == (
        "PENDING_CREATE"
    )
    e = http_error(lambda: sql.instances().insert(project=PROJECT, body=body).execute())
    assert e.status_code == 409 and reason(e) == "instanceAlreadyExists"
    wait_ok(sql, PROJECT, op)
    inst = sql.instances().get(project=PROJECT, instance=name).execute()
    assert inst["state"] == "RUNNABLE"
    assert inst["region"] == "europe-west1" and inst["gceZone"] == "europe-west1-a"
    assert inst["settings"]["tier"] == "db-g1-small"
    assert list(inst["gcpsimConnection"]["databases"]) == ["postgres"]
    version = int(inst["settings"]["settingsVersion"])

    op = (
        sql.instances()
        .patch(project=PROJECT, instance=name, body={"settings": {"tier": "db-custom-2-7680"}})
        .execute()
    )
    assert op["operationType"] == "UPDATE"
    wait_ok(sql, PROJECT, op)
    inst = sql.instances().get(project=PROJECT, instance=name).execute()
    assert inst["settings"]["tier"] == "db-custom-2-7680"
    assert inst["settings"]["availabilityType"] == "REGIONAL"
    assert int(inst["settings"]["settingsVersion"]) == version + 1

    op = sql.instances().delete(project=PROJECT, instance=name).execute()
    assert op["operationType"] == "DELETE"
    wait_ok(sql, PROJECT, op)
    e = http_error(lambda: sql.instances().get(project=PROJECT, instance=name).execute())
    assert e.status_code == 404
    e = http_error(lambda: sql.instances().delete(project=PROJECT, instance=name).execute())
    assert e.status_code == 404 and reason(e) == "instanceDoesNotExist"


def test_insert_without_name_is_400(sql: Any) -> None:
    e = http_error(lambda: sql.instances().insert(project=PROJECT, body={}).execute())
    assert e.status_code == 400


# ------------------------------------------------------------------------------ backupRuns


def test_seeded_automated_backups(sql: Any) -> None:
    resp = sql.backupRuns().list(project=DEV_PROJECT, instance=DEV_DB).execute()
    assert resp["kind"] == "sql#backupRunsList"
    runs = resp["items"]
    automated = [r for r in runs if r["type"] == "AUTOMATED"]
    assert len(automated) >= 3
    for r in automated:
        assert r["kind"] == "sql#backupRun" and r["status"] == "SUCCESSFUL"
        assert r["instance"] == DEV_DB and isinstance(r["id"], str) and r["id"].isdigit()
        assert r["enqueuedTime"].endswith("Z") and r["endTime"] > r["startTime"]
        assert r["enqueuedTime"][11:16] == "03:00"
    enqueued = [r["enqueuedTime"] for r in runs]
    assert enqueued == sorted(enqueued, reverse=True)
    one = sql.backupRuns().get(project=DEV_PROJECT, instance=DEV_DB, id=runs[0]["id"]).execute()
    assert one == runs[0]


def test_backup_insert_lifecycle(sql: Any, own: OwnInstances, mine: str) -> None:
    desc = "Pre-deployment backup v1.2.0 2024-05-02T10:00:00Z"
    op = (
        sql.backupRuns()
        .insert(project=PROJECT, instance=mine, body={"description": desc})
        .execute()
    )
    assert op["kind"] == "sql#operation"
    assert op["operationType"] == "BACKUP_VOLUME" and op["targetId"] == mine
    assert op["targetProject"] == PROJECT and op["status"] == "PENDING"
    assert op["selfLink"].endswith(f"/projects/{PROJECT}/operations/{op['name']}")
    backup_id = op["backupContext"]["backupId"]
    assert isinstance(backup_id, str) and backup_id.isdigit()
    run = sql.backupRuns().get(project=PROJECT, instance=mine, id=backup_id).execute()
    assert run["status"] in ("ENQUEUED", "RUNNING") and run["type"] == "ON_DEMAND"
    done = wait_ok(sql, PROJECT, op)
    assert done["startTime"] <= done["endTime"]
    assert done["backupContext"]["backupId"] == backup_id
    run = sql.backupRuns().get(project=PROJECT, instance=mine, id=backup_id).execute()
    assert run["status"] == "SUCCESSFUL" and run["description"] == desc
    assert run["type"] == "ON_DEMAND" and "error" not in run
    newest = sql.backupRuns().list(project=PROJECT, instance=mine, maxResults=1).execute()
    assert newest["items"][0]["id"] == backup_id


def test_busy_instance_is_409_operation_in_progress(sql: Any, own: OwnInstances, mine: str) -> None:
    op = sql.backupRuns().insert(project=PROJECT, instance=mine, body={}).execute()
    backup_id = op["backupContext"]["backupId"]
    calls: list[Callable[[], Any]] = [
        lambda: sql.backupRuns().insert(project=PROJECT, instance=mine, body={}).execute(),
        lambda: restore_run(sql, mine, backup_id),
        lambda: (
            sql.instances()
            .patch(project=PROJECT, instance=mine, body={"settings": {"tier": "db-g1-small"}})
            .execute()
        ),
        lambda: (
            sql.instances()
            .clone(
                project=PROJECT,
                instance=mine,
                body={"cloneContext": {"destinationInstanceName": f"x-{uuid.uuid4().hex[:6]}"}},
            )
            .execute()
        ),
        lambda: sql.instances().delete(project=PROJECT, instance=mine).execute(),
    ]
    for call in calls:
        e = http_error(call)
        assert e.status_code == 409
        assert e.reason == BUSY
        assert e.error_details == [
            {"message": BUSY, "domain": "global", "reason": "operationInProgress"}
        ]
        assert json.loads(e.content) == {
            "error": {
                "code": 409,
                "message": BUSY,
                "errors": [{"message": BUSY, "domain": "global", "reason": "operationInProgress"}],
            }
        }
    wait_ok(sql, PROJECT, op)
    # Free again once the operation is DONE.
    wait_ok(
        sql, PROJECT, sql.backupRuns().insert(project=PROJECT, instance=mine, body={}).execute()
    )


def test_backup_runs_list_pages(sql: Any, own: OwnInstances) -> None:
    name = own.clone("conf-pages")
    ids = []
    for i in range(3):
        op = (
            sql.backupRuns()
            .insert(project=PROJECT, instance=name, body={"description": f"page test {i}"})
            .execute()
        )
        wait_ok(sql, PROJECT, op)
        ids.append(op["backupContext"]["backupId"])
    req = sql.backupRuns().list(project=PROJECT, instance=name, maxResults=2)
    pages: list[list[dict[str, Any]]] = []
    while req is not None and len(pages) < 20:
        resp = req.execute()
        pages.append(resp.get("items", []))
        req = sql.backupRuns().list_next(req, resp)
    assert [len(p) for p in pages] == [2, 1]
    got = [r["id"] for p in pages for r in p]
    assert got == list(reversed(ids))
    # instance '-' means every instance of the project.
    everything = sql.backupRuns().list(project=PROJECT, instance="-").execute()["items"]
    assert set(ids) <= {r["id"] for r in everything}
    assert {r["instance"] for r in everything} >= {name}
    times = [r["enqueuedTime"] for r in everything]
    assert times == sorted(times, reverse=True)


def test_backup_run_errors(sql: Any, own: OwnInstances, mine: str) -> None:
    e = http_error(lambda: sql.backupRuns().get(project=PROJECT, instance=mine, id="123").execute())
    assert e.status_code == 404 and reason(e) == "backupRunDoesNotExist"
    e = http_error(
        lambda: sql.backupRuns().delete(project=PROJECT, instance=mine, id="123").execute()
    )
    assert e.status_code == 404
    e = http_error(lambda: sql.backupRuns().list(project=PROJECT, instance="nope").execute())
    assert e.status_code == 404 and reason(e) == "instanceDoesNotExist"
    e = http_error(lambda: sql.backupRuns().insert(project=PROJECT, instance="nope").execute())
    assert e.status_code == 404 and reason(e) == "instanceDoesNotExist"


def test_backup_run_delete(sql: Any, own: OwnInstances, mine: str) -> None:
    op = sql.backupRuns().insert(project=PROJECT, instance=mine, body={}).execute()
    wait_ok(sql, PROJECT, op)
    backup_id = op["backupContext"]["backupId"]
    op = sql.backupRuns().delete(project=PROJECT, instance=mine, id=backup_id).execute()
    assert op["operationType"] == "DELETE_VOLUME"
    wait_ok(sql, PROJECT, op)
    e = http_error(
        lambda: sql.backupRuns().get(project=PROJECT, instance=mine, id=backup_id).execute()
    )
    assert e.status_code == 404


def test_backup_op_error_fault(
    gcpsim: GcpsimProcess, sql: Any, own: OwnInstances, mine: str
) -> None:
    out = gcpsim.cli(
        "fault", "sql.backupRuns.insert", "--op-error", "--times", "1",
        "--message", "simulated backup failure",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    op = sql.backupRuns().insert(project=PROJECT, instance=mine, body={}).execute()
    done = wait_op(sql, PROJECT, op)
    assert done["error"] == {
        "kind": "sql#operationErrors",
        "errors": [
            {
                "kind": "sql#operationError",
                "code": "INTERNAL_ERROR",
                "message": "simulated backup failure",
            }
        ],
    }
    run = (
        sql.backupRuns()
        .get(project=PROJECT, instance=mine, id=op["backupContext"]["backupId"])
        .execute()
    )
    assert run["status"] == "FAILED"
    assert run["error"]["message"] == "simulated backup failure"
    # A FAILED backup cannot be restored.
    e = http_error(lambda: restore_run(sql, mine, run["id"]))
    assert e.status_code == 400 and "SUCCESSFUL" in e.reason


def test_fault_status_on_get(gcpsim: GcpsimProcess, sql: Any) -> None:
    out = gcpsim.cli("fault", "sql.instances.get", "--status", "503", "--times", "1")
    assert out.returncode == 0, out.stderr
    e = http_error(lambda: sql.instances().get(project=DEV_PROJECT, instance=DEV_DB).execute())
    assert e.status_code == 503
    assert sql.instances().get(project=DEV_PROJECT, instance=DEV_DB).execute()["name"] == DEV_DB


# ------------------------------------------------------------------------------ restoreBackup


def test_restore_backup(sql: Any, own: OwnInstances, mine: str) -> None:
    op = sql.backupRuns().insert(project=PROJECT, instance=mine, body={}).execute()
    wait_ok(sql, PROJECT, op)
    body = {
        "restoreBackupContext": {
            "backupRunId": op["backupContext"]["backupId"],
            "instanceId": mine,
            "project": PROJECT,
        }
    }
    rop = restore(sql, mine, body)
    assert rop["operationType"] == "RESTORE_VOLUME" and rop["targetId"] == mine
    wait_ok(sql, PROJECT, rop)
    assert own.get(mine)["state"] == "RUNNABLE"


def test_restore_errors(sql: Any, own: OwnInstances, mine: str) -> None:
    e = http_error(lambda: restore_run(sql, mine, "1"))
    assert e.status_code == 404 and reason(e) == "backupRunDoesNotExist"
    e = http_error(lambda: restore(sql, "nope", {"restoreBackupContext": {"backupRunId": "1"}}))
    assert e.status_code == 404 and reason(e) == "instanceDoesNotExist"
    e = http_error(lambda: restore(sql, mine, {}))
    assert e.status_code == 400
    both = {"restoreBackupContext": {"backupRunId": "1"}, "backup": "projects/p/b/1"}
    e = http_error(lambda: restore(sql, mine, both))
    assert e.status_code == 400


def test_restore_op_error_fault(
    gcpsim: GcpsimProcess, sql: Any, own: OwnInstances, mine: str
) -> None:
    op = sql.backupRuns().insert(project=PROJECT, instance=mine, body={}).execute()
    wait_ok(sql, PROJECT, op)
    out = gcpsim.cli("fault", "sql.instances.restoreBackup", "--op-error", "--times", "1")
    assert out.returncode == 0, out.stderr
    rop = restore_run(sql, mine, op["backupContext"]["backupId"])
    done = wait_op(sql, PROJECT, rop)
    assert done["status"] == "DONE"
    [err] = done["error"]["errors"]
    assert err["kind"] == "sql#operationError" and err["code"] == "INTERNAL_ERROR"
    assert err["message"]
    # The fault was spent: the next restore succeeds.
    wait_ok(sql, PROJECT, restore_run(sql, mine, op["backupContext"]["backupId"]))


# ------------------------------------------------------------------------------ clone


def test_clone_point_in_time(sql: Any, own: OwnInstances, mine: str) -> None:
    dest = f"conf-pitr-{uuid.uuid4().hex[:6]}"
    when = rfc3339(datetime.now(UTC) - timedelta(seconds=1))
    body = {"cloneContext": {"destinationInstanceName": dest, "pointInTime": when}}
    op = sql.instances().clone(project=PROJECT, instance=mine, body=body).execute()
    own.names.append(dest)
    assert op["operationType"] == "CLONE" and op["targetId"] == mine
    assert own.get(dest)["state"] == "PENDING_CREATE"
    wait_ok(sql, PROJECT, op)
    inst = own.get(dest)
    assert inst["state"] == "RUNNABLE"
    assert inst["settings"]["tier"] == own.get(mine)["settings"]["tier"]
    with connected(inst) as c:
        [[n]] = c.run("SELECT count(*) FROM cases")
        assert n > 0


def test_clone_errors(sql: Any, own: OwnInstances, mine: str) -> None:
    def clone(ctx: dict[str, Any], instance: str = mine) -> HttpError:
        return http_error(
            lambda: (
                sql.instances()
                .clone(project=PROJECT, instance=instance, body={"cloneContext": ctx})
                .execute()
            )
        )

    e = clone({"destinationInstanceName": mine})
    assert e.status_code == 409 and reason(e) == "instanceAlreadyExists"
    future = rfc3339(datetime.now(UTC) + timedelta(hours=1))
    e = clone({"destinationInstanceName": "conf-future", "pointInTime": future})
    assert e.status_code == 400 and "future" in e.reason
    old = rfc3339(datetime.now(UTC) - timedelta(days=8))
    e = clone({"destinationInstanceName": "conf-old", "pointInTime": old})
    assert e.status_code == 400 and "earliest" in e.reason
    e = clone({"pointInTime": future})
    assert e.status_code == 400 and "destinationInstanceName" in e.reason
    e = clone({"destinationInstanceName": "conf-bad", "backupRunId": "1"})
    assert e.status_code == 400 and "backupRunId" in e.reason
    e = clone({"destinationInstanceName": "conf-bad", "pointInTime": "yesterday"})
    assert e.status_code == 400
    e = clone({"destinationInstanceName": "conf-x"}, instance="nope")
    assert e.status_code == 404 and reason(e) == "instanceDoesNotExist"
    listed = sql.instances().list(project=PROJECT).execute().get("items", [])
    assert not {"conf-future", "conf-old", "conf-bad", "conf-x"} & {i["name"] for i in listed}


def test_clone_op_error_removes_the_new_instance(
    gcpsim: GcpsimProcess, sql: Any, own: OwnInstances, mine: str
) -> None:
    out = gcpsim.cli("fault", "sql.instances.clone", "--op-error", "--times", "1")
    assert out.returncode == 0, out.stderr
    dest = f"conf-fail-{uuid.uuid4().hex[:6]}"
    body = {"cloneContext": {"destinationInstanceName": dest}}
    op = sql.instances().clone(project=PROJECT, instance=mine, body=body).execute()
    assert own.get(dest)["state"] == "PENDING_CREATE"
    done = wait_op(sql, PROJECT, op)
    assert done["error"]["errors"][0]["code"] == "INTERNAL_ERROR"
    e = http_error(lambda: sql.instances().get(project=PROJECT, instance=dest).execute())
    assert e.status_code == 404


# ------------------------------------------------------------------------------ operations


def test_operations_get_and_list(sql: Any, own: OwnInstances) -> None:
    name = own.clone("conf-ops")
    ops = []
    for _ in range(3):
        op = sql.backupRuns().insert(project=PROJECT, instance=name, body={}).execute()
        wait_ok(sql, PROJECT, op)
        ops.append(op["name"])
    resp = sql.operations().list(project=PROJECT, instance=name).execute()
    assert resp["kind"] == "sql#operationsList"
    listed = [o["name"] for o in resp["items"]]
    assert listed[:3] == list(reversed(ops))
    assert all(o["targetId"] == name for o in resp["items"])
    req = sql.operations().list(project=PROJECT, instance=name, maxResults=2)
    paged: list[str] = []
    for _ in range(20):
        if req is None:
            break
        page = req.execute()
        assert len(page.get("items", [])) <= 2
        paged += [o["name"] for o in page.get("items", [])]
        req = sql.operations().list_next(req, page)
    assert paged == listed
    got = sql.operations().get(project=PROJECT, operation=ops[0]).execute()
    assert got["name"] == ops[0] and got["status"] == "DONE"
    assert got["insertTime"] <= got["startTime"] <= got["endTime"]
    e = http_error(lambda: sql.operations().get(project=PROJECT, operation="nope").execute())
    assert e.status_code == 404
    e = http_error(lambda: sql.operations().list(project=PROJECT, instance="nope").execute())
    assert e.status_code == 404


def test_sim_summary(gcpsim: GcpsimProcess, mine: str) -> None:
    with urllib.request.urlopen(f"{gcpsim.url}/_sim/sql", timeout=30) as resp:
        summary = json.loads(resp.read())
    assert summary["postgres"]["running"] is True
    entry = next(i for i in summary["instances"] if i["name"] == mine)
    assert entry["rows"]["legalforms"]["cases"]["rows"] > 0
