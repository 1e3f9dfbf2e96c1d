"""Commands that other parts of edge-runtime add to the one ``edge-runtime`` command.

The device package never imports the workstation's (``converters``) or the fleet
server's code. Those parts register their commands under the entry-point group
:data:`ENTRY_POINT_GROUP`, and a command is loaded only when it is called (or
listed by ``--help``). When the extra a command needs is not installed, the
command still exists and answers with one line naming the extra to install,
instead of click's "No such command".
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any

import click

__all__ = ["ENTRY_POINT_GROUP", "EXTRA_COMMANDS", "ExtensibleGroup", "extra_missing"]

ENTRY_POINT_GROUP = "edge_runtime.commands"
# Commands that optional parts add, and the pip extra that brings each part.
EXTRA_COMMANDS = {"export": "export", "bundle": "export", "demo": "export", "collector": "collector",
                  "fleet": "collector"}


@functools.cache
def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def extra_missing(name: str, extra: str, cause: BaseException | None) -> click.ClickException:
    """The one-line error of a command whose extra is not installed, naming the install line."""
    missing = f" ({cause})" if cause is not None else ""
    return click.ClickException(f"'edge-runtime {name}' needs the {extra} extra, which is not "
                                f"installed{missing}: pip install 'edge-runtime[{extra}]'")


def _needs_extra(name: str, extra: str, cause: BaseException | None) -> click.Command:
    """A stand-in for a command whose extra is missing: it fails with the install line."""

    def refuse(**_: Any) -> None:
        raise extra_missing(name, extra, cause)

    return click.Command(name, callback=refuse, help=f"(needs: pip install 'edge-runtime[{extra}]')",
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                         params=[click.Argument(["args"], nargs=-1, required=False)])


class ExtensibleGroup(click.Group):
    """A click group that also serves the commands registered under :data:`ENTRY_POINT_GROUP`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_entry_points()) | set(EXTRA_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        extra = EXTRA_COMMANDS.get(cmd_name, cmd_name)
        entry = _entry_points().get(cmd_name)
        if entry is None:
            return _needs_extra(cmd_name, extra, None) if cmd_name in EXTRA_COMMANDS else None
        try:
            loaded = entry.load()
        except ImportError as exc:  # the module checks for its extra's packages when imported
            return _needs_extra(cmd_name, extra, exc)
        if not isinstance(loaded, click.Command):
            raise TypeError(f"entry point '{cmd_name}' ({entry.value}) is not a click command")
        self.add_command(loaded, cmd_name)
        return loaded
