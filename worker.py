"""Stagecoach worker: runs every workflow and activity on the task queue.

Temporal connection from Temporal's own environment conventions (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH /
TEMPORAL_TLS_SERVER_CA_CERT_PATH), task queue from STAGECOACH_TASK_QUEUE; the config
(--config FILE, STAGECOACH_CONFIG or ./deploy.yaml) supplies the notification webhook, exported
as STAGECOACH_WEBHOOK_URL unless that is already set, and the worker's own policy (approvers,
approval proof, restore approval, allowed projects and regions; activities/policy.py), with the
approver public keys of STAGECOACH_APPROVER_KEYS. SIGTERM/SIGINT shut down gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from temporalio.client import Client

from stagecoach.config import ConfigError
from stagecoach.config_file import config_path, load_config
from stagecoach.temporal import TemporalSettings, build_worker, connect

log = logging.getLogger("stagecoach.worker")


def _exit(message: str, code: int) -> NoReturn:
    print("error: " + " ".join(message.split()), file=sys.stderr)
    raise SystemExit(code)


async def _connect(settings: TemporalSettings, wait_seconds: float) -> Client:
    """Connect, retrying while the server comes up (a worker usually starts with it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    delay = 0.5
    while True:
        try:
            return await connect(settings)
        except RuntimeError as e:
            if loop.time() >= deadline:
                reason = str(e).removeprefix("Failed client connect: ").split("(", 1)[0]
                _exit(
                    f"Temporal is not reachable at {settings.address} ({reason.strip(' :')}); "
                    "check TEMPORAL_ADDRESS or start it with `python starter.py local up`",
                    3,
                )
            log.warning("Temporal not reachable at %s yet; retrying", settings.address)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def main(config: str | None) -> None:
    try:
        cfg = load_config(config)
    except ConfigError as e:
        _exit(str(e), 2)
    if cfg.notifications.webhook_url and not os.environ.get("STAGECOACH_WEBHOOK_URL"):
        os.environ["STAGECOACH_WEBHOOK_URL"] = cfg.notifications.webhook_url
    settings = TemporalSettings.from_env()
    wait = float(os.environ.get("STAGECOACH_WORKER_CONNECT_SECONDS", "60"))
    client = await _connect(settings, wait)
    # the worker's own policy: this config file (re-read at the start of every run) and the
    # approver keys in STAGECOACH_APPROVER_KEYS; never a workflow's input
    worker, executor = build_worker(client, settings.task_queue, config=config_path(config))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    running = asyncio.create_task(worker.run())
    log.info(
        "worker polling task queue %r on %s (namespace %s, target %s)",
        settings.task_queue, settings.address, settings.namespace, cfg.target,
    )  # fmt: skip
    ready = os.environ.get("STAGECOACH_READY_FILE")
    if ready:
        Path(ready).write_text(f"{os.getpid()}\n")
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        stopped.cancel()
        running.result()  # the worker died on its own: raise its error
        return
    log.info("shutting down")
    await worker.shutdown()
    await running
    executor.shutdown(wait=False, cancel_futures=True)
    log.info("worker stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", "-c", metavar="FILE", help="release config (deploy.yaml)")
    args = parser.parse_args()
    logging.basicConfig(
        level=os.environ.get("STAGECOACH_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    code = 0
    try:
        asyncio.run(main(args.config))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except KeyboardInterrupt:
        code = 130
    except Exception:
        log.exception("worker failed")
        code = 1
    # Skip interpreter teardown: the Temporal client's native threads can crash it
    # (temporalio/sdk-python#300). Everything that matters is flushed and shut down by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
