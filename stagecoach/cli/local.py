"""The embedded stack (`local up|down|status`) and `sim ARGS` (gcpsim's own CLI)."""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from stagecoach.cli import render
from stagecoach.cli.app import (
    EXIT_OK,
    EXIT_UNREACHABLE,
    STARTER,
    ConfigOpt,
    JsonOpt,
    app,
    fail,
    load,
    loaded_config_file,
    out,
    print_json,
    settings,
)
from stagecoach.cli.schemas import ComponentOutput, to_json
from stagecoach.localstack import LocalStack, StackError, home, stop_all, ui_url

local_app = typer.Typer(
    help="The embedded stack: Temporal dev server, gcpsim and a worker, in the background.",
    no_args_is_help=True,
)
app.add_typer(local_app, name="local")


@local_app.command("up")
def local_up(config: ConfigOpt = None) -> None:
    """Start the Temporal dev server (7233, Web UI 8233), gcpsim and a worker in the background."""
    cfg = load(config)
    stack = LocalStack(
        cfg,
        loaded_config_file(),
        settings(),
        say=lambda m: out.print(m, markup=False, soft_wrap=True),
    )
    try:
        stack.up()
    except StackError as e:
        fail(str(e), EXIT_UNREACHABLE)
    env = "prod" if "prod" in cfg.environments else next(iter(cfg.environments))
    out.print(
        f"Up. Web UI: {ui_url(settings())}. Try: {STARTER} deploy {env} v1.2.0",
        markup=False,
        soft_wrap=True,
    )


@local_app.command("down")
def local_down() -> None:
    """Stop what `local up` started (SIGTERM, then SIGKILL)."""
    stop_all(say=lambda m: out.print(m, markup=False, soft_wrap=True))


@local_app.command("status")
def local_status(json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show each component of the embedded stack: pid, port, health. Exit 3 if one is down."""
    cfg = load(config)
    rows = LocalStack(cfg, loaded_config_file(), settings()).status()
    if json_out:
        print_json(to_json([ComponentOutput(**r.__dict__).model_dump(mode="json") for r in rows]))
    else:
        out.print(render.stack_table(rows))
    raise typer.Exit(EXIT_OK if all(r.healthy for r in rows) else EXIT_UNREACHABLE)


# =============================================================================== sim


@app.command(
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
    add_help_option=False,
)
def sim(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Pass ARGS through to gcpsim's CLI (`python -m gcpsim ARGS`) on the config's ports."""
    cfg = load(config)
    env = {
        **os.environ,
        "GCPSIM_PORT": str(cfg.gcpsim.port),
        "GCPSIM_GRPC_PORT": str(cfg.gcpsim.grpc_port),
        "GCPSIM_STATE_DIR": os.environ.get("GCPSIM_STATE_DIR") or str(home() / "gcpsim"),
    }
    try:
        code = subprocess.call([sys.executable, "-m", "gcpsim", *ctx.args], env=env)
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)
