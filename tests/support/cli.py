"""Run the real CLI entry point in-process and capture stdout, stderr and the exit code."""

from __future__ import annotations

from dataclasses import dataclass

from pcipass.cli import context
from pcipass.cli.app import main
from pcipass.cli.render import Format


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(capsys, *args: str) -> Run:
    # Each invocation starts from fresh global state, as a new process would.
    context.CURRENT.__init__()
    context.CURRENT.fmt = Format.table
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)
