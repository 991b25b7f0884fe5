"""The command-line interface (typer). Everything here is presentation: the library never prints."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point.

    ``pcipass --version`` is what provisioning scripts call most often to probe the tool; it is answered
    before typer and the command modules are imported (about a third of a cold start). Everything else,
    including ``--version`` combined with other options, goes through the full CLI.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--version"]:
        from .. import __version__

        sys.stdout.write(f"pcipass {__version__}\n")
        sys.exit(0)
    from .app import main as run

    run(args)
