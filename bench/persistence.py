#!/usr/bin/env python3
"""Benchmark: what persistence costs at every boot (issue 16), natively, on fake and recorded roots.

    .venv/bin/python bench/persistence.py [--reps 15] [--write bench/PERSISTENCE.md]

* ``pcipass apply`` on an already converged host with 16 entries (16 endpoints on vfio-pci, each in its own
  IOMMU group, the desired-state file persisted from them) against ``pcipass status`` of the same 16 devices:
  this is what pcipass-apply.service runs at every boot. Target: at most 1.2x.
* ``pcipass verify`` of every endpoint of the recorded HPE host (examples/hpe-gen9-a2.tar.xz, 226 functions;
  the file persisted from it) against ``pcipass list`` of that host. Target: within 1.5x.

Each command runs as its own process (as a provisioning script or the unit runs it), alternating with its
baseline; medians of wall time and of CPU time (user + system of the child). Figures are recorded, not asserted
(a benchmark, not a timed test). Nothing touches the real /sys: every command has --root.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.fakehost import FakeHost  # noqa: E402

PCIPASS = [sys.executable, "-m", "pcipass"]
N = 16


def converged_host(root: Path) -> list[str]:
    """16 endpoints on vfio-pci (override set, as enable leaves them), an IOMMU, the file persisted."""
    f = FakeHost(root)
    f.enable_iommu()
    f.add_driver("vfio-pci")
    addrs = []
    for i in range(N):
        a = f"0000:{0x10 + i:02x}:00.0"
        f.add_device(
            a, vendor="10de", device="1eb8", class_="030200", driver="vfio-pci", group=i + 1, override="vfio-pci"
        )
        (root / "dev/vfio").mkdir(parents=True, exist_ok=True)
        (root / f"dev/vfio/{i + 1}").touch()
        addrs.append(a)
    f.write("lib/modules/6.1.0-test-amd64/modules.dep", "kernel/drivers/vfio/pci/vfio-pci.ko:\n")
    subprocess.run([*PCIPASS, "--root", str(root), "persist", *addrs], check=True, capture_output=True)
    return addrs


def recorded_host(dest: Path) -> None:
    with tarfile.open(REPO / "examples" / "hpe-gen9-a2.tar.xz") as tar:
        tar.extractall(dest)  # our own example archive (Debian 12's Python has no extraction filter)
    # The file persisted from every endpoint (bridges cannot be persisted).
    out = subprocess.run(
        [*PCIPASS, "--root", str(dest), "-f", "json", "list"], check=True, capture_output=True, text=True
    ).stdout
    import json

    endpoints = [d["address"] for d in json.loads(out)["data"] if not d["is_bridge"]]
    subprocess.run([*PCIPASS, "--root", str(dest), "persist", *endpoints], check=True, capture_output=True)


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``cmd`` (its exit status is not judged: verify of a snapshot may drift)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def compare(a: list[str], b: list[str], reps: int) -> dict[str, float]:
    wa, ca, wb, cb = [], [], [], []
    timed(a), timed(b)  # warm the page cache
    for _ in range(reps):
        w, c = timed(a)
        wa.append(w)
        ca.append(c)
        w, c = timed(b)
        wb.append(w)
        cb.append(c)
    m = statistics.median
    return {"wall": m(wa), "cpu": m(ca), "base_wall": m(wb), "base_cpu": m(cb)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--write", type=Path, help="write the results as Markdown to this file")
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="pcipass-bench-") as tmp:
        root = Path(tmp) / "converged"
        addrs = converged_host(root)
        r = compare(
            [*PCIPASS, "--root", str(root), "apply"], [*PCIPASS, "--root", str(root), "status", *addrs], opts.reps
        )
        rows.append(("`apply`, converged, 16 entries", r, "`status` of the 16", 1.2))
        hpe = Path(tmp) / "hpe"
        recorded_host(hpe)
        r = compare([*PCIPASS, "--root", str(hpe), "verify"], [*PCIPASS, "--root", str(hpe), "list"], opts.reps)
        rows.append(("`verify`, recorded HPE host (every endpoint)", r, "`list` (226 functions)", 1.5))
    lines = [
        "# Persistence benchmark",
        "",
        f"Written by `bench/persistence.py` (medians of {opts.reps} alternating runs, each command its own process; "
        "CPU = user + system time of the process). Recorded, not asserted.",
        "",
        "| benchmark | pcipass wall | CPU | baseline | wall | CPU | ratio (wall) | ratio (CPU) | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r, base, target in rows:
        lines.append(
            f"| {name} | {r['wall'] * 1e3:.1f} ms | {r['cpu'] * 1e3:.1f} ms | {base} | {r['base_wall'] * 1e3:.1f} ms | "
            f"{r['base_cpu'] * 1e3:.1f} ms | **{r['wall'] / r['base_wall']:.2f}** | {r['cpu'] / r['base_cpu']:.2f} | "
            f"≤ {target} |"
        )
    lines += [
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
        f"{os.getloadavg()[0]:.1f} at the end (other work on the machine inflates both sides).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if opts.write:
        opts.write.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
