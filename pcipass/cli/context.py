"""Per-invocation state shared by the commands: the host root, the output format, --debug."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ExitCode
from .render import Format, View, render

if TYPE_CHECKING:
    from ..host import Host
    from ..result import Result


class State:
    # A plain class, not a dataclass: generating a dataclass's methods costs more at every start than this
    # whole module, and nothing compares or prints States.
    def __init__(self) -> None:
        self.root: str | None = None
        self.fmt: Format = Format.table
        self.debug = False
        self.command = "pcipass"
        self._host: Host | None = None

    def host(self) -> Host:
        if self._host is None:
            from ..host import Host  # here: `pcipass --version` and `--help` need no host

            self._host = Host.from_env(self.root)
        return self._host


#: The state of the running invocation; main() reads it to render errors in the chosen format.
CURRENT = State()

FormatOption = Annotated[
    Format | None,
    typer.Option("--format", "-f", help="Output format (overrides the global --format).", show_default=False),
]

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE",
        show_default=False,
        help="The desired-state file (default: /etc/pcipass/pcipass.yaml under --root).",
    ),
]


def name_subcommands(group: typer.Typer, name: str) -> None:
    """Make the running command's name the whole one (``emit harvester``, ``mdev create``), not just the group's:
    the envelope of an error names it."""

    @group.callback()
    def _named(ctx: typer.Context) -> None:
        CURRENT.command = f"{name} {ctx.invoked_subcommand}"


def state(fmt: Format | None = None) -> State:
    if fmt is not None:
        CURRENT.fmt = fmt
    return CURRENT


def finish(result: Result, view: View) -> None:
    """Render ``result`` and end the command with its exit code."""
    render(result, CURRENT.fmt, view)
    code = result.code
    if code is not ExitCode.OK:
        raise typer.Exit(int(code))
