#!/usr/bin/env python3
"""Benchmark: pcipass against lspci on large synthetic servers, and pcipass's cold start against typer's.

    .venv/bin/python bench/run.py                 # 4,096 and 16,384 functions, 7 repetitions, writes bench/RESULTS.md
    .venv/bin/python bench/run.py --reps 3 --sizes 4096 --no-write
    .venv/bin/python bench/run.py --venv /tmp/old --no-write   # an install made beforehand, e.g. another version

What is measured is a plain install, as a user has it: unless ``--venv`` names one, a new venv in the scratch
directory gets ``pip install REPO`` (not editable; pip compiles the bytecode at install time, as for typer).
The development venv (``pip install -e``) is not measured: its editable finder is imported at every start of
its interpreter, the hello-world's included (pathlib, re, urllib.parse, ipaddress...), which inflates the
baseline more than pcipass and flatters the ratios (docs/performance.md).

For each size, bench/gen_tree.py writes a server tree into a scratch directory (tmpfs when there is one), then
``pcipass --root T list --format json`` and ``lspci -D -nn -k -A linux-sysfs -O sysfs.path=T/sys/bus/pci`` run
alternately (after one warm-up run each, so both read from the page cache), stdout to /dev/null; the median
of the repetitions is reported. Both use the system's pci.ids (PCIPASS_PCI_IDS and PCIPASS_ROOT are removed
from the environment). Cold start: new processes of ``pcipass --version`` and ``pcipass --root SMALL list``
(a 64-function host) against bench/hello.py, a bare typer hello-world, and against the bare interpreter
(``python -c pass``), all with the measured venv's python, alternating.

A breakdown of where ``list --format json`` spends its time (import, scan, serialisation) is measured in a
separate process per size with the same library calls the command makes.

The machine's load average is recorded at the start and the end: on a shared machine wall times follow it,
CPU times (user + system of the process) much less.

Targets (issue 2, issue 18): list ratio <= 1.0 at both sizes; cold start <= 1.3x the hello-world. Only reads
/sys-like trees under the scratch directory.
"""

from __future__ import annotations

import argparse
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


def machine(python: str) -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lspci_version = subprocess.run(["lspci", "--version"], capture_output=True, text=True).stdout.strip()
    versions = subprocess.run(
        [
            python,
            "-c",
            "import platform, typer, pcipass; print(platform.python_version(), typer.__version__, pcipass.__version__)",
        ],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.split()
    return {
        "CPU": f"{model}, {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))})",
        "Kernel": platform.release(),
        "Python": versions[0],
        "typer": versions[1],
        "pcipass": versions[2],
        "pciutils": lspci_version,
    }


def _editable(python: str) -> bool:
    """Whether pcipass is installed editable in the venv of ``python`` (``pip install -e``): every interpreter
    start then imports setuptools' editable finder (pathlib, re, urllib.parse, ipaddress...), the
    hello-world's too."""
    code = "import site, glob; print(any(glob.glob(d + '/__editable__*pcipass*.pth') for d in site.getsitepackages()))"
    return subprocess.run([python, "-c", code], capture_output=True, check=True, text=True).stdout.strip() == "True"


def plain_install(venv: Path) -> Path:
    """A new venv at ``venv`` with pcipass installed from this repository as a user installs it (``pip install``,
    not editable); its python."""
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO)],
        check=False,
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        raise SystemExit(f"bench: pip install {REPO} failed: {pip.stderr[-2000:]}")
    return python


_EDITABLE_NOTE = [
    "The measured pcipass is installed editable (`--venv` named a development venv): every start of its",
    "interpreter imports the editable finder (pathlib, re, urllib.parse, ...), the hello-world's and the bare",
    "interpreter's included, which lowers the cold-start ratios; a plain install (the default) is what a user runs.",
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
        "--venv", help="measure the pcipass installed in this venv (default: a plain install made in the scratch dir)"
    )
    parser.add_argument(
        "--cold-only",
        action="store_true",
        help="only the cold-start part (implies --no-write: RESULTS.md holds every benchmark)",
    )
    opts = parser.parse_args(argv)
    if opts.cold_only:
        opts.sizes, opts.no_write = [], True

    if opts.sizes and not shutil.which("lspci"):
        raise SystemExit("bench: lspci not found (apt install pciutils)")
    env = _env()
    base = opts.workdir or tempfile.mkdtemp(
        prefix="pcipass-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    work = Path(base)
    if opts.venv:
        python = str(Path(opts.venv) / "bin" / "python")
        # Bytecode as an installed package has it (pip compiles at install time; typer's is): under
        # PYTHONDONTWRITEBYTECODE, set in some shells and CI images, an edited source tree would otherwise be
        # compiled from source on every run, which measures the compiler, not pcipass (~20 ms of a cold start).
        subprocess.run(
            [
                python,
                "-c",
                "import compileall, os, pcipass; compileall.compile_dir(os.path.dirname(pcipass.__file__), quiet=1)",
            ],
            check=True,
        )
    else:
        python = str(plain_install(work / "venv"))
    pcipass = str(Path(python).parent / "pcipass")
    if not os.access(pcipass, os.X_OK):
        raise SystemExit(f"bench: no {pcipass}")
    load_start = os.getloadavg()
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
                        [python, "-c", _PHASES, str(root)], capture_output=True, check=True, env=env, text=True
                    ).stdout
                )
                for _ in range(3)
            ]
            phases[size] = {k: statistics.median(x[k] for x in ph) for k in ph[0]}
        small = work / "host-small"
        if not small.exists():
            gen_tree.write_tree(gen_tree.build(64), str(small))
        hello = [python, str(HERE / "hello.py")]
        cold = _alternate(
            {
                "version": [pcipass, "--version"],
                "list": [pcipass, "--root", str(small), "list"],
                "hello": hello,
                "python": [python, "-c", "pass"],
            },
            opts.cold_reps,
            env,
        )
        h, hc = cold["hello"]
        b, bc = cold["python"]
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
        v, vc = cold["list"]
        rows.append(
            (
                "cold `pcipass list`, 64 functions",
                _fmt(v),
                _fmt(vc),
                f"bare `python -c pass` {_fmt(b)}",
                _fmt(bc),
                f"{v / b:.2f}",
                f"{vc / bc:.2f}",
                "(none)",
            )
        )
        rows.append(
            (
                "cold typer hello-world",
                _fmt(h),
                _fmt(hc),
                f"bare `python -c pass` {_fmt(b)}",
                _fmt(bc),
                f"{h / b:.2f}",
                f"{hc / bc:.2f}",
                "(none)",
            )
        )
    finally:
        if not opts.workdir:
            shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()

    header = ("benchmark", "pcipass wall", "CPU", "baseline wall", "CPU", "ratio (wall)", "ratio (CPU)", "target")
    table = [header, ("---",) * len(header), *rows]
    lines = ["| " + " | ".join(r) + " |" for r in table]
    phase_names = list(next(iter(phases.values()))) if phases else []
    phase_lines = ["| functions | " + " | ".join(phase_names) + " |", "|---" * (len(phase_names) + 1) + "|"]
    for size, ph in phases.items():
        phase_lines.append(f"| {size:,} | " + " | ".join(_fmt(ph[k]) for k in phase_names) + " |")
    info = machine(python)
    loads = [" / ".join(f"{x:.1f}" for x in avg) for avg in (load_start, load_end)]
    info["Load average (1, 5, 15 min)"] = f"{loads[0]} at the start, {loads[1]} at the end"
    info["Measured install"] = opts.venv or "a plain `pip install` of this repository in a new venv"
    met = all(v <= (LIST_TARGET if k.startswith("list") else COLD_TARGET) for k, v in results.items())
    text = "\n".join(
        [
            "# Benchmark results",
            "",
            "Written by `bench/run.py` (medians of "
            f"{opts.reps} alternating runs per size, {opts.cold_reps} for cold start; CPU = user + system time of "
            f"the process; {'the venv ' + opts.venv if opts.venv else 'a plain install, not editable'}). "
            f"Targets (on wall time) {'met' if met else 'NOT met'}.",
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
            *(_EDITABLE_NOTE if _editable(python) else []),
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
