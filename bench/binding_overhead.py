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

and must be <= 1.5, for the default output and for ``--format json`` alike. Also reported: the engine alone
(``engine.enable`` + ``engine.disable`` called in one Python process: no interpreter start, no CLI framework,
no imports), and each step's CPU time (user + system, bash's ``time``) beside its wall time. The CPU figures
say what the wall ratio is made of under emulation: the shell loop spends most of its wall time waiting in
the drivers (probe, reset, remove), which TCG does not stretch, while pcipass's time is the interpreter's
CPU time, which TCG stretches many times over. Nothing here runs on the host's own /sys: the writes happen
inside the guest.
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

# Runs under bash in the guest (``time`` with TIMEFORMAT gives each step's wall, user and system time).
GUEST_SCRIPT = r"""
set -u
PCIPASS={pcipass}
PYTHON={python}
DEVS="{devs}"
REPS={reps}
OUT={out}
TIMEFORMAT='%3R %3U %3S'
check_back() {{
    for d in $DEVS; do
        drv=$(basename "$(readlink /sys/bus/pci/devices/$d/driver)")
        case "$drv" in vfio-pci|"") echo "device $d not back on its driver ($drv)"; exit 7;; esac
    done
}}
# step NAME CMD...: run CMD, append "NAME wall user sys" (seconds) to /tmp/times; stop the run if it fails.
step() {{
    local name=$1; shift
    local t
    t=$( {{ time "$@" >/tmp/step.out 2>&1; }} 2>&1 ) || {{ echo "$name failed"; cat /tmp/step.out; exit 5; }}
    echo "$name $t" >> /tmp/times
}}
shell_enable() {{
    for d in $DEVS; do
        echo vfio-pci > /sys/bus/pci/devices/$d/driver_override
        echo $d > /sys/bus/pci/devices/$d/driver/unbind
        echo $d > /sys/bus/pci/drivers_probe
    done
}}
shell_disable() {{
    for d in $DEVS; do
        echo $d > /sys/bus/pci/devices/$d/driver/unbind
        echo > /sys/bus/pci/devices/$d/driver_override
        echo $d > /sys/bus/pci/drivers_probe
    done
}}
modprobe vfio-pci || exit 3
for d in $DEVS; do [ -e /sys/bus/pci/devices/$d/driver ] || exit 4; done
echo "{{" > $OUT
for i in $(seq 1 $REPS); do
    : > /tmp/times
    step version $PCIPASS --version
    step enable $PCIPASS enable $DEVS
    step disable $PCIPASS disable $DEVS
    check_back
    step enable_json $PCIPASS --format json enable $DEVS
    step disable_json $PCIPASS --format json disable $DEVS
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
print(t1 - t0, t2 - t1)
" $DEVS) || exit 8
    set -- $lib
    echo "lib_enable $1 0 0" >> /tmp/times
    echo "lib_disable $2 0 0" >> /tmp/times
    check_back
    step shell_enable shell_enable
    step shell_disable shell_disable
    check_back
    [ $i = 1 ] || echo "," >> $OUT
    echo "\"$i\": {{" >> $OUT
    sep=""
    while read -r name wall user sys; do
        echo "$sep\"$name\": [$wall, $user, $sys]" >> $OUT
        sep=","
    done < /tmp/times
    echo "}}" >> $OUT
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
    script += "cat > /tmp/bench.sh <<'EOS'\n"
    script += GUEST_SCRIPT.format(
        pcipass=shlex.quote(str(REPO / ".venv" / "bin" / "pcipass")),
        python=shlex.quote(sys.executable),
        devs=devs,
        reps=args.reps,
        out=out,
    )
    script += "EOS\nbash /tmp/bench.sh\n"
    run = run_guest("iommu_on", script, timeout_s=300 + 120 * args.reps, run_name="bench-binding")
    result = run.io_dir / "binding-bench.json"
    if run.command_rc != 0 or not result.exists():
        print(run.diagnostics(), file=sys.stderr)
        return 1
    reps = json.loads(result.read_text())
    names = list(next(iter(reps.values())))
    wall = {k: 1000 * statistics.median(r[k][0] for r in reps.values()) for k in names}
    cpu = {k: 1000 * statistics.median(r[k][1] + r[k][2] for r in reps.values()) for k in names}

    def overhead(t: dict[str, float], suffix: str = "") -> float:
        return t["enable" + suffix] + t["disable" + suffix] - 2 * t["version"]

    shell_ms, shell_cpu = wall["shell_enable"] + wall["shell_disable"], cpu["shell_enable"] + cpu["shell_disable"]
    table, as_json, lib = overhead(wall), overhead(wall, "_json"), wall["lib_enable"] + wall["lib_disable"]
    print(f"devices: {len(topo.FREE_ENDPOINTS)} ({devs}); {args.reps} repetitions; medians in ms (qemu TCG guest)")
    print(f"  {'step':14s} {'wall':>8s} {'CPU':>8s}")
    for k in names:
        print(f"  {k:14s} {wall[k]:8.0f} {cpu[k]:8.0f}" if not k.startswith("lib_") else f"  {k:14s} {wall[k]:8.0f}")
    print(f"  shell loop of the same raw writes (enable + disable): {shell_ms:.0f} ms, of which CPU {shell_cpu:.0f} ms")
    print(f"  CLI, table output:  enable + disable - 2 x --version = {table:.0f} ms, ratio {table / shell_ms:.2f}")
    print(f"  CLI, --format json: enable + disable - 2 x --version = {as_json:.0f} ms, ratio {as_json / shell_ms:.2f}")
    print(
        f"  library (engine.enable + engine.disable in one process, imports excluded): {lib:.0f} ms, "
        f"ratio {lib / shell_ms:.2f}"
    )
    print(
        f"  CPU time (user + system), CLI table output minus 2 x --version: {overhead(cpu):.0f} ms, "
        f"{overhead(cpu) / shell_cpu:.1f} x the shell loop's"
    )
    print("  target: ratio <= 1.5 (wall), both outputs")
    return 0 if max(table, as_json) / shell_ms <= 1.5 else 2


if __name__ == "__main__":
    sys.exit(main())
