"""A worker SIGKILL during a release hook neither loses nor repeats it (the harness of
testing/stack.py: gcpsim, a Temporal dev server and `python worker.py` as separate processes).

The worker dies while StartHook's `:run` request is in flight (held by a latency fault, so the
execution is created after the worker is gone); a new worker's retry finds that execution by
its release label and follows it: one execution, one migration, the release promoted.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

from stagecoach.config import Hooks
from stagecoach.hooks import LABEL_RELEASE
from stagecoach.payloads.common import Outcome, Phase
from stagecoach.payloads.release import ReleaseStatus
from stagecoach.temporal import workflow_result
from testing.gcpsim import sim_call
from testing.releases import release_input, start_release, wait_for
from testing.stack import Stack

PROJECT = "legal-forms-staging"
JOB = "migrate-staging"
SIM_ARGS = ["--run-op-seconds", "0.2", "--request-rate", "1000"]


async def test_worker_sigkill_during_start_hook_runs_the_migration_once(tmp_path: Path) -> None:
    with Stack(tmp_path / "stack", gcpsim_args=SIM_ARGS) as stack:
        client = await stack.client()
        cfg = stack.config()
        env = cfg.environments["staging"]
        hooks = Hooks.model_validate(
            {
                "pre_deploy": [
                    {
                        "name": "migrate",
                        "image": "example.com/migrate",
                        "env": {"MIGRATION": "0100_chaos"},
                        "uses_database": True,
                    }
                ]
            }
        )
        release = env.release.model_copy(update={"hooks": hooks})
        envs = {**cfg.environments, "staging": env.model_copy(update={"release": release})}
        inp = release_input(
            cfg.model_copy(update={"environments": envs}),
            "staging",
            "v9.1.0",
            services=["python-pipeline"],
            steps=[(10, 2), (100, 0)],
        )
        sim_call(
            stack.gcpsim, "POST", "/_sim/job-behaviors",
            {"job": JOB, "version": "v9.1.0", "duration": 2},
        )  # fmt: skip
        sim_call(
            stack.gcpsim, "POST", "/_sim/faults",
            {"method": "run.jobs.run", "latency_ms": 4000, "times": 1},
        )  # fmt: skip
        handle = await start_release(client, stack.task_queue, inp)
        await wait_for(
            handle,
            lambda st: st.phase == Phase.RUNNING_HOOK and not st.hooks[0].execution,
            timeout=60,
        )
        await asyncio.sleep(1.5)  # StartHook is inside the held `:run` call
        stack.kill_worker(signal.SIGKILL)
        time.sleep(4)  # the held call goes through: the execution now exists, nobody knows it
        stack.start_worker()
        res: ReleaseStatus = await asyncio.wait_for(workflow_result(handle), timeout=120)

        assert res.outcome == Outcome.PROMOTED, res.error
        assert res.hooks[0].state == "succeeded"
        assert any("found the execution this release had started" in e for e in res.events)
        executions = run_v2.ExecutionsClient(
            credentials=AnonymousCredentials(),
            transport="rest",
            client_options=ClientOptions(api_endpoint=f"http://127.0.0.1:{stack.gcpsim.port}"),
        )
        mine = [
            e
            for e in executions.list_executions(
                parent=f"projects/{PROJECT}/locations/us-central1/jobs/{JOB}"
            )
            if e.labels[LABEL_RELEASE] == inp.release_id
        ]
        assert len(mine) == 1 and mine[0].succeeded_count == 1
