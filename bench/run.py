#!/usr/bin/env python3
"""Benchmark: pcipass against lspci on large synthetic servers, and pcipass's cold start against typer's.

    .venv/bin/python bench/run.py                 # 4,096 and 16,384 functions, 7 repetitions, writes bench/RESULTS.md
    .venv/bin/python bench/run.py --reps 3 --sizes 4096 --no-write

For each size, bench/gen_tree.py writes a server tree into a scratch directory (tmpfs when there is one), then
``pcipass --root T list --format json`` and ``lspci -D -nn -k -A linux-sysfs -O sysfs.path=T/sys/bus/pci`` run
alternately (after one warm-up run each, so both read from the page cache), stdout to /dev/null; the median
of the repetitions is reported. Both use the system's pci.ids (PCIPASS_PCI_IDS and PCIPASS_ROOT are removed
from the environment). Cold start: new processes of ``pcipass --version`` and ``pcipass --root SMALL list``
(a 64-function host) against bench/hello.py, a bare typer hello-world, all with this venv's python.

A breakdown of where ``list --format json`` spends its time (import, scan, serialisation) is measured in a
separate process per size with the same library calls the command makes.

Targets (issue 2): list ratio <= 1.0 at both sizes; cold start <= 1.3x the hello-world. Only reads /sys-like
trees under the scratch directory.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import gen_tree  # noqa: E402

LIST_TARGET = 1.0
COLD_TARGET = 1.3

# Runs in a fresh interpreter: the phases of `pcipass --root T list --format json`, timed one by one.
_PHASES = r"""
import sys, time, json
t0 = time.perf_counter()
import pcipass.cli.app
from pcipass.host import Host
from pcipass.inventory import Inventory
from pcipass.cli.inventory_cmds import summary
from pcipass.pciids import PciIds
from pcipass.result import Records, Result
from pcipass.cli.render import dump_json
t1 = time.perf_counter()
host = Host(sys.argv[1])
ids = PciIds.load(host.find_pci_ids())
t2 = time.perf_counter()
inv = Inventory.scan(host, ids, detail=False)
t3 = time.perf_counter()
text = dump_json(Result("list", data=Records(inv.devices.values(), summary)).envelope(lazy=True))
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "pci.ids read": t2 - t1, "scan (names included)": t3 - t2,
                  "JSON (convert + encode)": t4 - t3}))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCIPASS_")}
    env["NO_COLOR"] = "1"
    return env


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _time(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run; CPU = user + system of the child, which other load on the machine
    does not inflate the way it inflates wall time."""
    c0 = _children_cpu()
    t0 = time.perf_counter()
    run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - t0
    cpu = _children_cpu() - c0
    # lspci exits 0 even without libkmod resources (it only warns); anything else is a broken benchmark.
    if run.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed ({run.returncode}): {run.stderr.decode()[-500:]}")
    return elapsed, cpu


def _alternate(cmds: dict[str, list[str]], reps: int, env: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Each command once to warm caches, then ``reps`` rounds, rotating the order every round; the median
    (wall, CPU) per command."""
    names = list(cmds)
    for name in names:
        _time(cmds[name], env)
    runs: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            runs[name].append(_time(cmds[name], env))
    return {n: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for n, v in runs.items()}


def _check_same_devices(pcipass: str, root: Path, lspci: list[str], env: dict[str, str], functions: int) -> None:
    data = json.loads(
        subprocess.run(
            [pcipass, "--root", str(root), "list", "--format", "json"], capture_output=True, check=True, env=env
        ).stdout
    )["data"]
    lines = subprocess.run(lspci, capture_output=True, check=True, env=env, text=True).stdout.splitlines()
    from_lspci = [ln.split()[0] for ln in lines if ln and not ln[0].isspace()]
    ours = [d["address"] for d in data]
    if not (len(ours) == functions and ours == from_lspci):
        raise SystemExit(f"bench: pcipass ({len(ours)}) and lspci ({len(from_lspci)}) disagree on the devices")


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lspci_version = subprocess.run(["lspci", "--version"], capture_output=True, text=True).stdout.strip()
    import typer

    from pcipass import __version__

    return {
        "CPU": f"{model}, {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))})",
        "Kernel": platform.release(),
        "Python": platform.python_version(),
        "typer": typer.__version__,
        "pcipass": __version__,
        "pciutils": lspci_version,
    }


def _editable() -> bool:
    """Whether pcipass is installed editable in this venv (``pip install -e``): every interpreter start then
    imports setuptools' editable finder (pathlib, re, urllib.parse, ipaddress...), the hello-world's too."""
    import site

    return any(Path(d).glob("__editable__*pcipass*.pth") for d in site.getsitepackages())


_EDITABLE_NOTE = [
    "pcipass is installed editable here: every start of this venv's interpreter imports the editable finder",
    "(pathlib, re, urllib.parse, ...), the hello-world's included, which lowers both cold-start ratios; against",
    "a plain install (`pip install .`) they are higher (docs/performance.md).",
    "",
]

#: Text of RESULTS.md after this line is kept when the file is rewritten (notes on runs made by hand).
NOTES = "<!-- notes below: kept by bench/run.py -->"


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384], help="PCI functions per tree")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per command (median reported)")
    parser.add_argument("--cold-reps", type=int, default=21, help="repetitions of the cold-start commands")
    parser.add_argument("--workdir", help="scratch directory (default: a new one under /dev/shm or $TMPDIR)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument(
        "--cold-only",
        action="store_true",
        help="only the cold-start part (implies --no-write: RESULTS.md holds every benchmark)",
    )
    opts = parser.parse_args(argv)
    if opts.cold_only:
        opts.sizes, opts.no_write = [], True

    bindir = Path(sys.executable).parent
    pcipass = str(bindir / "pcipass")
    if not os.access(pcipass, os.X_OK):
        raise SystemExit(f"bench: no {pcipass}; run with the venv's python (scripts/setup.sh run)")
    if opts.sizes and not shutil.which("lspci"):
        raise SystemExit("bench: lspci not found (apt install pciutils)")
    env = _env()
    # Bytecode for pcipass as an installed package has it (pip compiles at install time; typer's is): under
    # PYTHONDONTWRITEBYTECODE, set in some shells and CI images, an edited source tree would otherwise be
    # compiled from source on every run, which measures the compiler, not pcipass (~20 ms of a cold start).
    from pcipass import __file__ as package_init

    compileall.compile_dir(str(Path(package_init).parent), quiet=1)
    base = opts.workdir or tempfile.mkdtemp(
        prefix="pcipass-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    work = Path(base)
    rows: list[tuple[str, ...]] = []
    phases: dict[int, dict[str, float]] = {}
    results: dict[str, float] = {}
    try:
        for size in opts.sizes:
            root = work / f"host-{size}"
            if not root.exists():
                t0 = time.perf_counter()
                m = gen_tree.build(size)
                gen_tree.write_tree(m, str(root))
                print(
                    f"generated {size} functions ({m.next_group} IOMMU groups) in {time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                )
            lspci = ["lspci", "-D", "-nn", "-k", "-A", "linux-sysfs", "-O", f"sysfs.path={root}/sys/bus/pci"]
            ours = [pcipass, "--root", str(root), "list", "--format", "json"]
            _check_same_devices(pcipass, root, lspci, env, size)
            times = _alternate({"pcipass": ours, "lspci": lspci}, opts.reps, env)
            (p, pc), (q, qc) = times["pcipass"], times["lspci"]
            results[f"list-{size}"] = p / q
            rows.append(
                (
                    f"`list --format json`, {size:,} functions",
                    _fmt(p),
                    _fmt(pc),
                    f"lspci {_fmt(q)}",
                    _fmt(qc),
                    f"**{p / q:.2f}**",
                    f"{pc / qc:.2f}",
                    f"≤ {LIST_TARGET}",
                )
            )
            ph = [
                json.loads(
                    subprocess.run(
                        [sys.executable, "-c", _PHASES, str(root)], capture_output=True, check=True, env=env, text=True
                    ).stdout
                )
                for _ in range(3)
            ]
            phases[size] = {k: statistics.median(x[k] for x in ph) for k in ph[0]}
        small = work / "host-small"
        if not small.exists():
            gen_tree.write_tree(gen_tree.build(64), str(small))
        hello = [sys.executable, str(HERE / "hello.py")]
        cold = _alternate(
            {"version": [pcipass, "--version"], "list": [pcipass, "--root", str(small), "list"], "hello": hello},
            opts.cold_reps,
            env,
        )
        h, hc = cold["hello"]
        for name, label in (("version", "`pcipass --version`"), ("list", "`pcipass list`, 64 functions")):
            v, vc = cold[name]
            results[f"cold-{name}"] = v / h
            rows.append(
                (
                    f"cold {label}",
                    _fmt(v),
                    _fmt(vc),
                    f"typer hello {_fmt(h)}",
                    _fmt(hc),
                    f"**{v / h:.2f}**",
                    f"{vc / hc:.2f}",
                    f"≤ {COLD_TARGET}",
                )
            )
    finally:
        if not opts.workdir:
            shutil.rmtree(work, ignore_errors=True)

    header = ("benchmark", "pcipass wall", "CPU", "baseline wall", "CPU", "ratio (wall)", "ratio (CPU)", "target")
    table = [header, ("---",) * len(header), *rows]
    lines = ["| " + " | ".join(r) + " |" for r in table]
    phase_names = list(next(iter(phases.values()))) if phases else []
    phase_lines = ["| functions | " + " | ".join(phase_names) + " |", "|---" * (len(phase_names) + 1) + "|"]
    for size, ph in phases.items():
        phase_lines.append(f"| {size:,} | " + " | ".join(_fmt(ph[k]) for k in phase_names) + " |")
    info = machine()
    met = all(v <= (LIST_TARGET if k.startswith("list") else COLD_TARGET) for k, v in results.items())
    text = "\n".join(
        [
            "# Benchmark results",
            "",
            "Written by `bench/run.py` (medians of "
            f"{opts.reps} alternating runs per size, {opts.cold_reps} for cold start; CPU = user + system time of "
            f"the process). Targets (on wall time) {'met' if met else 'NOT met'}.",
            "",
            *lines,
            "",
            "Where `pcipass --root T list --format json` spends its time (one process, phase by phase, median of 3):",
            "",
            *phase_lines,
            "",
            "Machine:",
            "",
            *(f"- {k}: {v}" for k, v in info.items()),
            "",
            *(_EDITABLE_NOTE if _editable() else []),
        ]
    )
    print(text)
    if not opts.no_write:
        results = HERE / "RESULTS.md"
        old = results.read_text() if results.exists() else ""
        kept = old[old.index(NOTES) :] if NOTES in old else ""
        results.write_text(text + ("\n" + kept if kept else ""))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
