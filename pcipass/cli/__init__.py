"""The command-line interface (typer). Everything here is presentation: the library never prints."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``pcipass``, ``python -m pcipass``): see ``app.main``."""
    from .app import main as run

    run(argv)
