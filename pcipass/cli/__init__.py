"""The command-line interface (typer). Everything here is presentation: the library never prints.

The modules that define commands (``app`` and ``*_cmds``) do without ``from __future__ import annotations``:
typer reads every parameter's annotation on each run, and postponed annotations are strings it would compile
and evaluate each time (~2 ms of a cold ``pcipass list``; tests/test_conventions.py).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``pcipass``, ``python -m pcipass``): see ``app.main``."""
    from .app import main as run

    run(argv)
