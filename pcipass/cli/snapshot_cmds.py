"""``pcipass snapshot``: a support bundle that ``--root`` reads back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from . import context
from .context import FormatOption, finish
from .render import Block, KeyValues


def _view(data: dict[str, Any]) -> list[Block]:
    return [KeyValues([("snapshot", data["path"]), ("entries", data["entries"]),
                       ("read back with", f"pcipass --root {data['path']} list")])]


def snapshot_cmd(
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE", help="Archive to write (.tar.gz, or .tar.xz for xz).",
                           dir_okay=False, writable=True)
    ],
    fmt: FormatOption = None,
) -> None:
    """Capture what pcipass reads into an archive that --root reads back (a support bundle)."""
    context.state(fmt)
    from ..errors import from_oserror
    from ..result import Result
    from ..snapshot import capture

    try:
        entries = capture(context.CURRENT.host(), output)
    except OSError as exc:
        raise from_oserror(exc, action="write", path=str(output)) from exc
    finish(Result("snapshot", data={"path": str(output), "entries": entries}), _view)


def register(app: typer.Typer) -> None:
    app.command("snapshot")(snapshot_cmd)
