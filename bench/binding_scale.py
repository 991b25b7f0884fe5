#!/usr/bin/env python3
"""Benchmark: planning and guards of ``enable`` for many SR-IOV VFs in one call cost the same per device.

    .venv/bin/python bench/binding_scale.py [--sizes 128 1024] [--reps 5]

For each size N, a fake host (tests/support/fakehost.py; plain files, nothing touches the real /sys) with one SR-IOV
PF and N VFs, each VF in its own IOMMU group with its own network interface, and host tables that grow with
the host: an IPv6 link-local address per VF interface, N routes and N mounts elsewhere. Then one
``enable --dry-run`` of all N VFs (inventory, host-use tables, guards, plan: everything but the writes) is
timed; the median of REPS runs is reported per device. A per-device rescan of routes, mounts or the device tree
would make the per-device cost grow with N (1024/128 = 8x); a flat per-device cost means none happens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pcipass import engine  # noqa: E402
from pcipass.host import Host  # noqa: E402
from tests.support.fakehost import FakeHost  # noqa: E402

PF = "0000:3b:00.0"


def vf_address(i: int) -> str:
    # VFs on the PF's bus and the following ones (ARI: 256 functions per bus).
    bus, fn = 0x3B + (i + 1) // 256, (i + 1) % 256
    return f"0000:{bus:02x}:{fn >> 3:02x}.{fn & 7}"


def build(root: Path, n: int) -> list[str]:
    f = FakeHost(root)
    f.enable_iommu()
    f.add_device("0000:00:03.0", vendor="8086", device="1533", driver="igb", group=1)
    f.add_net("0000:00:03.0", "mgmt0")
    f.add_device(
        PF,
        vendor="15b3",
        device="101d",
        driver="mlx5_core",
        group=2,
        extra={"sriov_totalvfs": str(n), "sriov_numvfs": str(n)},
    )
    f.add_net(PF, "ens1f0")
    vfs = []
    inet6, routes, mounts = [], [], []
    for i in range(n):
        a = vf_address(i)
        f.add_device(a, vendor="15b3", device="101e", driver="mlx5_core", group=10 + i)
        f.symlink(f"sys/bus/pci/devices/{PF}/virtfn{i}", f.devices[a].path)
        f.symlink(f"sys/bus/pci/devices/{a}/physfn", f.devices[PF].path)
        f.add_net(a, f"ens1f0v{i}")
        inet6.append(f"fe80000000000000{i:016x} {i + 10:02x} 40 20 80 ens1f0v{i}\n")
        routes.append(f"mgmt0\t{(i << 8) | 10:08X}\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
        mounts.append(f"{100 + i} 1 0:{50 + i} / /srv/vol{i} rw - tmpfs tmpfs rw\n")
        vfs.append(a)
    f.write("proc/net/if_inet6", "".join(inet6))
    f.write(
        "proc/net/route",
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" + "".join(routes),
    )
    f.write("proc/self/mountinfo", "".join(mounts))
    f.add_driver("vfio-pci", module="vfio_pci")
    return vfs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    per_device = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="pcipass-bench-") as tmp:
            vfs = build(Path(tmp) / "root", n)
            host = Host(Path(tmp) / "root")
            times = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                r = engine.enable(host, vfs, dry_run=True)
                times.append(time.perf_counter() - t0)
                assert r.exit_code == 0 and len(r.devices) == n, r.errors
            med = statistics.median(times)
            per_device[n] = med / n
            print(
                f"{n:6d} VFs: plan + guards {med * 1000:8.1f} ms, {per_device[n] * 1e6:7.1f} us per device "
                f"({len(r.steps)} steps)"
            )
    if len(per_device) >= 2:
        lo, hi = min(per_device), max(per_device)
        print(
            f"per-device cost, {hi} vs {lo} VFs: x{per_device[hi] / per_device[lo]:.2f} "
            f"(a per-device rescan would be about x{hi / lo:.0f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
