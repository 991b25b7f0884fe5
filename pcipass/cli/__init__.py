"""The command-line interface (typer). Everything here is presentation: the library never prints.

The modules that define commands (``app`` and ``*_cmds``) do without ``from __future__ import annotations``:
typer reads every parameter's annotation on each run, and postponed annotations are strings it would compile
and evaluate each time (tests/test_conventions.py).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``pcipass``, ``python -m pcipass``): start, then parse, run and render
    (``app.main``). As the process's entry (no ``argv``) it first does the process-start work (cli/startup.py);
    in-process callers of main(), such as the tests, skip it."""
    if argv is None:
        import sys

        from .startup import start

        start(sys.argv[1:])
    from .app import main as run

    run(argv)
