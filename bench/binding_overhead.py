#!/usr/bin/env python3
"""Benchmark: the binding engine's overhead on a real kernel, against a shell loop doing the same raw writes.

    .venv/bin/python bench/binding_overhead.py [--reps 3]

Boots the real-kernel guest (tests/realkernel, iommu_on; qemu/TCG) and, inside it, with vfio-pci already
loaded, alternates REPS times:

* ``pcipass enable <every free endpoint>`` then ``pcipass disable <the same>`` (two processes);
* a shell loop writing the same attributes by hand: driver_override, driver/unbind, drivers_probe per device,
  then driver/unbind, driver_override "\\n", drivers_probe (no checks, no waits, no verification);

and times ``pcipass --version`` (the interpreter and import floor, large under emulation). The ratio is

    (median enable + median disable - 2 x median --version) / (median shell enable + median shell disable)

and must be <= 1.5. Also reported: the same with ``--format json`` (no table rendering), and the engine alone
(``engine.enable`` + ``engine.disable`` called in one Python process: no interpreter start, no CLI framework,
no imports). Nothing here runs on the host's own /sys: the writes happen inside the guest.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
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
REPS={reps}
OUT={out}
t() {{ date +%s%N; }}
dt() {{ echo $(( ($2 - $1) / 1000000 )); }}
check_back() {{
    for d in $DEVS; do
        drv=$(basename "$(readlink /sys/bus/pci/devices/$d/driver)")
        case "$drv" in vfio-pci|"") echo "device $d not back on its driver ($drv)"; exit 7;; esac
    done
}}
modprobe vfio-pci || exit 3
for d in $DEVS; do [ -e /sys/bus/pci/devices/$d/driver ] || exit 4; done
echo "{{" > $OUT
first=1
for i in $(seq 1 $REPS); do
    a=$(t); $PCIPASS --version >/dev/null; b=$(t)
    $PCIPASS enable $DEVS >/tmp/enable.out 2>&1 || {{ cat /tmp/enable.out; exit 5; }}
    c=$(t)
    $PCIPASS disable $DEVS >/tmp/disable.out 2>&1 || {{ cat /tmp/disable.out; exit 6; }}
    e=$(t)
    check_back
    $PCIPASS --format json enable $DEVS >/tmp/enable.out 2>&1 || {{ cat /tmp/enable.out; exit 5; }}
    j=$(t)
    $PCIPASS --format json disable $DEVS >/tmp/disable.out 2>&1 || {{ cat /tmp/disable.out; exit 6; }}
    k=$(t)
    check_back
    lib=$($PYTHON -c "
import time, sys
from pcipass import engine
from pcipass.host import Host
devs = sys.argv[1:]
t0 = time.monotonic(); r = engine.enable(Host('/'), devs); t1 = time.monotonic()
assert r.exit_code == 0, r.data()
r = engine.disable(Host('/'), devs); t2 = time.monotonic()
assert r.exit_code == 0, r.data()
print(int((t1 - t0) * 1000), int((t2 - t1) * 1000))
" $DEVS) || exit 8
    check_back
    f=$(t)
    for d in $DEVS; do
        echo vfio-pci > /sys/bus/pci/devices/$d/driver_override
        echo $d > /sys/bus/pci/devices/$d/driver/unbind
        echo $d > /sys/bus/pci/drivers_probe
    done
    g=$(t)
    for d in $DEVS; do
        echo $d > /sys/bus/pci/devices/$d/driver/unbind
        echo > /sys/bus/pci/devices/$d/driver_override
        echo $d > /sys/bus/pci/drivers_probe
    done
    h=$(t)
    check_back
    [ $first = 1 ] || echo "," >> $OUT
    first=0
    set -- $lib
    echo "\"$i\": {{\"version\": $(dt $a $b), \"enable\": $(dt $b $c), \"disable\": $(dt $c $e), \"enable_json\": $(dt $e $j), \"disable_json\": $(dt $j $k), \"lib_enable\": $1, \"lib_disable\": $2, \"shell_enable\": $(dt $f $g), \"shell_disable\": $(dt $g $h)}}" >> $OUT
done
echo "}}" >> $OUT
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    devs = " ".join(topo.FREE_ENDPOINTS)
    out = f"{GUEST_IO_MOUNT}/binding-bench.json"
    script = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in topo.guest_env("iommu_on").items())
    script += f"cd {shlex.quote(str(REPO))}\n"
    script += GUEST_SCRIPT.format(pcipass=shlex.quote(str(REPO / ".venv" / "bin" / "pcipass")),
                                  python=shlex.quote(sys.executable), devs=devs, reps=args.reps, out=out)
    run = run_guest("iommu_on", script, timeout_s=300 + 120 * args.reps, run_name="bench-binding")
    result = run.io_dir / "binding-bench.json"
    if run.command_rc != 0 or not result.exists():
        print(run.diagnostics(), file=sys.stderr)
        return 1
    reps = json.loads(result.read_text())
    med = {k: statistics.median(r[k] for r in reps.values()) for k in next(iter(reps.values()))}
    shell_ms = med["shell_enable"] + med["shell_disable"]
    table_ms = med["enable"] + med["disable"] - 2 * med["version"]
    json_ms = med["enable_json"] + med["disable_json"] - 2 * med["version"]
    lib_ms = med["lib_enable"] + med["lib_disable"]
    ratio = json_ms / shell_ms
    print(f"devices: {len(topo.FREE_ENDPOINTS)} ({devs}); {args.reps} repetitions; medians in ms (qemu TCG guest)")
    for k, v in med.items():
        print(f"  {k:14s} {v:8.0f}")
    print(f"  shell loop of the same raw writes (enable + disable): {shell_ms:.0f} ms")
    print(f"  CLI, table output:  enable + disable - 2 x --version = {table_ms:.0f} ms, ratio {table_ms / shell_ms:.2f}")
    print(f"  CLI, --format json: enable + disable - 2 x --version = {json_ms:.0f} ms, ratio {ratio:.2f}")
    print(f"  library (engine.enable + engine.disable in one process, imports excluded): {lib_ms:.0f} ms, "
          f"ratio {lib_ms / shell_ms:.2f}")
    print("  target: ratio <= 1.5")
    return 0 if ratio <= 1.5 else 2


if __name__ == "__main__":
    sys.exit(main())
