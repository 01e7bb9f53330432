"""`keys create NAME`: an approver's Ed25519 key (an approval is signed with it)."""

from __future__ import annotations

from typing import Annotated

import typer

from stagecoach.cli.app import app, fail, note, print_json
from stagecoach.config import ConfigError

keys_app = typer.Typer(
    help="Approver keys: an approval is signed with its approver's Ed25519 key.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Approver name.")],
) -> None:
    """Create NAME's key on this machine (kept if it exists) and print its public half for the
    worker's config (`approver_keys`)."""
    from stagecoach.keys import create_key

    try:
        public, path, created = create_key(name)
    except ConfigError as e:
        fail(str(e))
    note(
        f"{'created' if created else 'kept the existing'} private key {path} (0600; never share it)"
    )
    note("add this to the worker's config (deploy.yaml), then approve with --by " + name + ":")
    print_json(f"approver_keys:\n  {name}: {public}")
