#!/usr/bin/env python3
"""Profile ``pcipass enable``/``disable`` where the overhead benchmark measures them: in the qemu/TCG guest.

    .venv/bin/python bench/profile_binding.py [--top 40]

Boots the real-kernel guest (tests/realkernel, iommu_on) and, inside it, on every free endpoint:

* ``python -X importtime`` of ``pcipass --version`` and of ``pcipass --format json enable``/``disable``
  (after one warm-up run, so the byte code is compiled): what the binding commands import beyond the
  interpreter and import floor;
* cProfile of ``engine.enable`` and ``engine.disable`` called in one process (the engine imported first,
  as bench/binding_overhead.py's in-process figure does), twice each, the second pair being profiled;
* cProfile of whole CLI processes (``--version``; ``enable``, ``disable`` with table and JSON output);
* wall times of each of these.

Under emulation the costs are not native ones (compiling a dataclass's methods, a thread start, an fsync
each cost far more relative to a sysfs write), which is why this runs in the guest. Prints the importtime
lines above 5 ms (cumulative) that ``enable`` adds to ``--version``, and the top functions of the profile.
"""

from __future__ import annotations

import argparse
import pstats
import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.realkernel import topology as topo  # noqa: E402
from tests.realkernel.vm import GUEST_IO_MOUNT, run_guest  # noqa: E402

GUEST_SCRIPT = r"""
set -u
PCIPASS={pcipass}
PYTHON={python}
DEVS="{devs}"
OUT={out}
t() { date +%s%N; }
dt() { echo $(( ($2 - $1) / 1000000 )); }
modprobe vfio-pci || exit 3
# Warm-up: byte code compiled into the overlay, page cache filled.
$PCIPASS --format json enable $DEVS >/tmp/o 2>&1 || { cat /tmp/o; exit 5; }
$PCIPASS --format json disable $DEVS >/tmp/o 2>&1 || { cat /tmp/o; exit 6; }
for i in 1 2 3; do
    a=$(t); $PCIPASS --version >/dev/null; b=$(t)
    $PCIPASS --format json enable $DEVS >/dev/null 2>&1 || exit 5
    c=$(t)
    $PCIPASS --format json disable $DEVS >/dev/null 2>&1 || exit 6
    d=$(t)
    echo "wall $i: version $(dt $a $b) enable $(dt $b $c) disable $(dt $c $d)" >> $OUT/walls.txt
done
$PYTHON -X importtime -m pcipass --version >/dev/null 2>$OUT/imp-version.txt
$PYTHON -X importtime -m pcipass --format json enable $DEVS >/dev/null 2>$OUT/imp-enable.txt || exit 5
$PYTHON -X importtime -m pcipass --format json disable $DEVS >/dev/null 2>$OUT/imp-disable.txt || exit 6
$PYTHON -m cProfile -o $OUT/cli-version.prof -m pcipass --version >/dev/null || exit 9
$PYTHON -m cProfile -o $OUT/cli-enable.prof -m pcipass enable $DEVS >/dev/null || exit 9
$PYTHON -m cProfile -o $OUT/cli-disable.prof -m pcipass disable $DEVS >/dev/null || exit 9
$PYTHON -m cProfile -o $OUT/cli-enable-json.prof -m pcipass --format json enable $DEVS >/dev/null || exit 9
$PYTHON -m cProfile -o $OUT/cli-disable-json.prof -m pcipass --format json disable $DEVS >/dev/null || exit 9
$PYTHON - $OUT $DEVS <<'EOF' || exit 8
import cProfile, sys, time
out, devs = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
from pcipass import engine
from pcipass.host import Host
t1 = time.monotonic()
times = [f"import engine {int((t1 - t0) * 1000)} ms"]
for rep in range(3):
    prof = cProfile.Profile() if rep == 2 else None
    for action in ("enable", "disable"):
        if prof:
            prof.enable()
        a = time.monotonic()
        r = getattr(engine, action)(Host("/"), devs)
        b = time.monotonic()
        if prof:
            prof.disable()
        assert r.exit_code == 0, r.data()
        times.append(f"rep {rep} {action} {int((b - a) * 1000)} ms (wait: {r.wait})")
prof.dump_stats(out + "/engine.prof")
open(out + "/walls.txt", "a").write("\n".join(times) + "\n")
EOF
"""

_IMP = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def _imports(path: Path) -> dict[str, tuple[int, int, int]]:
    """module -> (self us, cumulative us, depth)."""
    out = {}
    for line in path.read_text().splitlines():
        m = _IMP.match(line)
        if m:
            out[m[4]] = (int(m[1]), int(m[2]), len(m[3]) // 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args(argv)
    devs = " ".join(topo.FREE_ENDPOINTS)
    script = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in topo.guest_env("iommu_on").items())
    script += f"cd {shlex.quote(str(REPO))}\n"
    subst = {
        "{pcipass}": shlex.quote(str(REPO / ".venv" / "bin" / "pcipass")),
        "{python}": shlex.quote(sys.executable),
        "{devs}": devs,
        "{out}": GUEST_IO_MOUNT,
    }
    body = GUEST_SCRIPT
    for key, value in subst.items():
        body = body.replace(key, value)
    script += body
    run = run_guest("iommu_on", script, timeout_s=900, run_name="profile-binding")
    if run.command_rc != 0:
        print(run.diagnostics(), file=sys.stderr)
        return 1
    io = run.io_dir
    print(f"run directory: {run.run_dir}")
    print((io / "walls.txt").read_text())
    base = _imports(io / "imp-version.txt")
    for name in ("enable", "disable"):
        mods = _imports(io / f"imp-{name}.txt")
        extra = {m: v for m, v in mods.items() if m not in base}
        total = sum(v[0] for v in extra.values())
        print(f"imports of {name} beyond --version: {len(extra)} modules, {total / 1000:.0f} ms (self times)")
        for m, (self_us, cum_us, depth) in mods.items():
            if m in extra and cum_us >= 5000:
                print(f"  {cum_us / 1000:8.1f} ms cum {self_us / 1000:7.1f} ms self  {'  ' * depth}{m}")
    for name in ("version", "enable", "enable-json"):
        print(f"--- whole CLI process: pcipass {name} ---")
        pstats.Stats(str(io / f"cli-{name}.prof")).sort_stats("cumulative").print_stats(args.top)
    stats = pstats.Stats(str(io / "engine.prof"))
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
