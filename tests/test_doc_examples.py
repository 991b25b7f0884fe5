"""The shell examples of the README and the manual, run: the docs cannot drift from what pcipass prints.

Every ```console block of README.md and docs/*.md is a session: lines starting with ``$ `` are commands, run
one after another by bash in a scratch directory (where ``examples/`` is the repository's), with this venv's
``pcipass`` first on PATH; the lines after a command up to the next one are its stdout, compared exactly.
Stderr is not compared (it is talk, not data). A ```sh block lists commands without their output; it must
not run pcipass against the bundled example host, which a console block shows with its output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def _blocks(kind: str) -> list[tuple[str, str]]:
    return [
        (p.relative_to(REPO).as_posix(), m.group(2))
        for p in PAGES
        for m in _BLOCK.finditer(p.read_text())
        if m.group(1) == kind
    ]


def _session(text: str) -> list[tuple[str, str]]:
    """(command, expected stdout) pairs of a console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return [(cmd, "".join(f"{ln}\n" for ln in out)) for cmd, out in steps]


SESSIONS = _blocks("console")


def test_the_docs_have_sessions_to_run():
    assert any(page == "README.md" for page, _ in SESSIONS)


@pytest.mark.parametrize("page, block", SESSIONS, ids=[f"{p}#{i}" for i, (p, _) in enumerate(SESSIONS)])
def test_console_session_prints_what_the_docs_show(page, block, tmp_path):
    (tmp_path / "examples").symlink_to(REPO / "examples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for cmd, expected in _session(block):
        run = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {cmd}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, f"{page}: {cmd}: exit {run.returncode}: {run.stderr}"
        assert run.stdout == expected, f"{page}: {cmd}"


def test_sh_blocks_leave_the_example_host_to_console_blocks():
    offenders = [
        (page, line)
        for page, block in _blocks("sh")
        for line in block.splitlines()
        if "pcipass" in line and "examples/" in line
    ]
    assert offenders == []
