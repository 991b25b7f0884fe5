"""``pcipass snapshot``: a support bundle that ``--root`` reads back."""

from pathlib import Path
from typing import Annotated, Any

import typer

from . import context
from .context import FormatOption, finish
from .render import Block, KeyValues


def _view(data: dict[str, Any]) -> list[Block]:
    return [
        KeyValues(
            [
                ("snapshot", data["path"]),
                ("entries", data["entries"]),
                ("read back with", f"pcipass --root {data['path']} list"),
            ]
        )
    ]


def snapshot_cmd(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            dir_okay=False,
            writable=True,
            help="Archive to write (.tar.gz or .tgz; .tar.xz or .txz for xz).",
        ),
    ],
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace an existing FILE (a link named FILE is replaced, never its target)."),
    ] = False,
    fmt: FormatOption = None,
) -> None:
    """Capture what pcipass reads into an archive that --root reads back (a support bundle)."""
    context.state(fmt)
    import os

    from ..errors import UsageError, from_oserror
    from ..result import Result
    from ..snapshot import ARCHIVE_SUFFIXES, capture

    if not output.name.endswith(ARCHIVE_SUFFIXES):
        raise UsageError(f"-o {output}: the archive's name must end in {', '.join(ARCHIVE_SUFFIXES)}")
    if os.path.lexists(output) and not force:
        kind = "a link" if os.path.islink(output) else "a file"
        raise UsageError(f"-o {output}: {kind} of that name exists; pass --force to replace it")
    try:
        entries = capture(context.CURRENT.host(), output)
    except OSError as exc:
        raise from_oserror(
            exc,
            action="write",
            path=str(output),
            remedy="-o needs a file in a directory that exists and that you can write to",
        ) from exc
    finish(Result("snapshot", data={"path": str(output), "entries": entries}), _view)


def register(app: typer.Typer) -> None:
    app.command("snapshot")(snapshot_cmd)
