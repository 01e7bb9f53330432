"""Issue 9 end to end: the real Temporal dev server, a worker started here, the real Google
clients and gcpsim modelling what real Google Cloud does."""

from __future__ import annotations

from temporalio.client import Client

from stagecoach.cli_dr import drill_input
from stagecoach.dr_models import DrillReport, DrOutcome
from stagecoach.plan import instance_ref
from tests.conftest import GcpsimProcess
from tests.e2e.test_dr import assert_scratch_gone, config_for, result, start_drill, worker


async def test_drill_of_a_protected_instance_deletes_its_scratch_clone(
    gcpsim: GcpsimProcess, client: Client, task_queue: str
) -> None:
    """Item 4. prod's instance has deletion protection; the scratch clone inherits it. Before:
    the drill ended with `scratch instance NOT deleted` and a REGIONAL instance left running."""
    from stagecoach.clients import clients_for

    cfg = config_for(gcpsim)
    ref = instance_ref(cfg, "prod")
    sql = clients_for(ref.target).sqladmin()
    inst = sql.instances().get(project=ref.project, instance=ref.instance).execute()
    assert inst["settings"]["deletionProtectionEnabled"] is True
    async with worker(client, task_queue):
        handle = await start_drill(client, task_queue, drill_input(cfg, "prod"))
        r: DrillReport = await result(handle, timeout=180)
    assert r.outcome == DrOutcome.SUCCEEDED, r.error
    assert_scratch_gone(cfg, "prod", r)
    # the source keeps its protection
    inst = sql.instances().get(project=ref.project, instance=ref.instance).execute()
    assert inst["settings"]["deletionProtectionEnabled"] is True
