#!/usr/bin/env python3
"""What the engine's plan classes (pcipass/engine/plan.py) being ``NamedTuple``s buys natively, against the
same classes as frozen dataclasses.

    .venv/bin/python bench/plan_classes.py              # 41 alternating imports, prints a Markdown table
    .venv/bin/python bench/plan_classes.py --write       # and records it in bench/PLAN_CLASSES.md

Two copies of plan.py are written to a scratch directory: the module as it is, and the same text with each
``class X(NamedTuple):`` made ``@dataclass(frozen=True) class X:`` (with a docstring, as the conventions ask
of every dataclass: without one ``@dataclass`` builds it with ``inspect.signature``). Both are compiled first
(as an installed package is), then imported alternately, each in a new interpreter that has already imported
``dataclasses``, ``enum`` and ``typing`` (the engine imports them before plan.py either way): the median wall
and CPU time of the import alone. Then, in this process, what a plan's use costs per object: building a
``Step`` by keywords, reading a field, ``to_dict``, and building a whole ``Plan`` of 8 groups.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAN = HERE.parent / "pcipass" / "engine" / "plan.py"

_IMPORT = r"""
import sys, time, dataclasses, enum, typing
sys.path.insert(0, sys.argv[1])
t, c = time.perf_counter(), time.process_time()
import {name}
print(time.perf_counter() - t, time.process_time() - c)
"""


def as_dataclasses(text: str) -> str:
    """plan.py's text with its NamedTuples made frozen dataclasses, each with a docstring."""
    text = text.replace(
        "from typing import Any, NamedTuple\n", "from dataclasses import dataclass\nfrom typing import Any\n"
    )

    def convert(m: re.Match[str]) -> str:
        name, body = m.group(1), m.group(2)
        doc = "" if body.lstrip().startswith('"""') else f'    """{name}."""\n\n'
        return f"@dataclass(frozen=True)\nclass {name}:\n{doc}{body}"

    out, n = re.subn(r"^class (\w+)\(NamedTuple\):\n((?:    .*\n|\n)*?)(?=^\S)", convert, text + "\n#\n", flags=re.M)
    if n == 0:
        raise SystemExit("bench: no NamedTuple in plan.py (already converted?)")
    return out.removesuffix("\n#\n")


def as_namedtuples(text: str) -> str:
    """plan.py's text with its frozen dataclasses made NamedTuples (for when the module uses dataclasses)."""
    text = text.replace("from dataclasses import dataclass\n", "")
    text = text.replace("from typing import Any\n", "from typing import Any, NamedTuple\n")
    return re.sub(r"^@dataclass\(frozen=True\)\nclass (\w+):\n", r"class \1(NamedTuple):\n", text, flags=re.M)


def _workload(module: object) -> dict[str, float]:
    """Microseconds per operation of using the plan classes of ``module``."""
    ns = {"m": module}
    step = "m.Step(op=m.Op.WRITE, address='0000:01:00.0', path='/sys/x', value='vfio-pci', note='n', group=3)"
    setup = f"s = {step}"
    plan = (
        "m.Plan(action='enable', groups=tuple(m.GroupPlan(group=g, moves=(m.Move('0000:01:00.0', g, True, 'e1000e',"
        f" None, 'e1000e', None, 'vfio-pci'),), steps=tuple({step} for _ in range(6))) for g in range(8)))"
    )
    out = {}
    for label, stmt, number in (
        ("build a Step (keywords)", step, 100_000),
        ("read a field", "s.address", 1_000_000),
        ("Step.to_dict()", "s.to_dict()", 100_000),
        ("build a Plan of 8 groups, 48 steps", plan, 2_000),
    ):
        t = timeit.Timer(stmt, setup, globals=ns)
        out[label] = min(t.repeat(5, number)) / number * 1e6
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=41, help="imports of each variant (alternating)")
    parser.add_argument("--write", action="store_true", help="record the table in bench/PLAN_CLASSES.md")
    opts = parser.parse_args(argv)
    text = PLAN.read_text()
    named = text if "(NamedTuple):" in text else as_namedtuples(text)
    frozen = as_dataclasses(named)
    with tempfile.TemporaryDirectory(prefix="pcipass-plan-") as d:
        Path(d, "plan_namedtuple.py").write_text(named)
        Path(d, "plan_dataclass.py").write_text(frozen)
        compileall.compile_dir(d, quiet=1)
        names = ("plan_namedtuple", "plan_dataclass")
        runs: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        load0 = os.getloadavg()[0]
        for r in range(opts.reps + 1):
            for name in names if r % 2 else reversed(names):
                res = subprocess.run(
                    [sys.executable, "-c", _IMPORT.format(name=name), d], capture_output=True, text=True, check=True
                )
                if r:  # the first round warms the page cache
                    wall, cpu = map(float, res.stdout.split())
                    runs[name].append((wall, cpu))
        load1 = os.getloadavg()[0]
        sys.path.insert(0, d)
        import plan_dataclass
        import plan_namedtuple

        use = {"plan_namedtuple": _workload(plan_namedtuple), "plan_dataclass": _workload(plan_dataclass)}

    def med(name: str, i: int) -> float:
        return statistics.median(x[i] for x in runs[name]) * 1000

    nt, dc = use["plan_namedtuple"], use["plan_dataclass"]
    lines = [
        "| what | NamedTuple | frozen dataclass | difference |",
        "| --- | --- | --- | --- |",
        f"| import plan.py, wall (median of {opts.reps}) | {med(names[0], 0):.2f} ms | {med(names[1], 0):.2f} ms "
        f"| {med(names[1], 0) - med(names[0], 0):+.2f} ms |",
        f"| import plan.py, CPU | {med(names[0], 1):.2f} ms | {med(names[1], 1):.2f} ms "
        f"| {med(names[1], 1) - med(names[0], 1):+.2f} ms |",
        *(f"| {k} | {nt[k]:.2f} µs | {dc[k]:.2f} µs | {dc[k] - nt[k]:+.2f} µs |" for k in nt),
    ]
    machine = (
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load0:.1f} at the start and {load1:.1f} at the end"
    )
    print("\n".join(lines) + "\n\n" + machine)
    if opts.write:
        out = HERE / "PLAN_CLASSES.md"
        out.write_text(
            "# The engine's plan classes: NamedTuple or frozen dataclass\n\n"
            "Written by `bench/plan_classes.py` (its docstring says how it measures).\n\n"
            + "\n".join(lines)
            + f"\n\n{machine}.\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
