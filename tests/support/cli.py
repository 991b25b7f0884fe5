"""Run the real CLI entry point in-process and capture stdout, stderr and the exit code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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


def run_unprivileged(*args: str) -> subprocess.CompletedProcess:
    """The real CLI (``python -m pcipass ARGS``) in a process without root's file-access capabilities: tests run
    as root, which reads mode-0 files and 0700 directories; without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH the
    kernel checks the mode bits as for anyone else (a file owned by another uid is then unreadable)."""
    cmd = [sys.executable, "-m", "pcipass", *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to drop root's file-access capabilities")
        cmd = [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(Path(__file__).parents[2]))
