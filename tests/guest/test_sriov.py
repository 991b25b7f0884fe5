"""SR-IOV on a real kernel: QEMU's nvme as a PF, on the root complex and behind a PCIe root port.

For each PF, through the library in-process (one guest boot for everything): ``--numvfs 2 --no-autoprobe
--vfio`` (the VFs appear where offset/stride say, each on vfio-pci in a group of its own, and the kernel calls
the group viable), the refusal while a process holds a VF's group open (``--force`` or not, nothing written),
2 -> 1 through 0, and back to 0 with no VF, VFIO node or state record left. The kernel's view is read by
tests/guest/kernel.py and raw sysfs, not by pcipass.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import subprocess
import time
from pathlib import Path

import pytest

from pcipass.engine import Outcome, set_numvfs, sriov
from pcipass.engine.state import StateStore
from pcipass.errors import ExitCode
from pcipass.host import Host
from tests.guest.kernel import SYS_PCI, attr, driver, group, nvme_vf, raw_write, virtfns

TOPOLOGY = "sriov"

VFIO_GROUP_GET_STATUS = (ord(";") << 8) | (100 + 3)  # _IO(VFIO_TYPE, VFIO_BASE + 3)


def _viable(g: int) -> bool:
    fd = os.open(f"/dev/vfio/{g}", os.O_RDWR)
    try:
        buf = bytearray(struct.pack("II", 8, 0))
        fcntl.ioctl(fd, VFIO_GROUP_GET_STATUS, buf)
        return bool(struct.unpack("II", buf)[1] & 1)
    finally:
        os.close(fd)


@pytest.fixture(params=["sriov_pf", "sriov_pf_rp"])
def pf(request, addr):
    a = addr[request.param]
    assert driver(a) == "nvme" and attr(a, "sriov_numvfs") == "0"
    yield a
    # Leave the PF as the guest booted it, whatever happened (raw writes: not through the code under test).
    for vf in virtfns(a):
        if driver(vf):
            raw_write(SYS_PCI / vf / "driver" / "unbind", vf)
    raw_write(SYS_PCI / a / "sriov_numvfs", "0")
    raw_write(SYS_PCI / a / "sriov_drivers_autoprobe", "1")


def test_vfs_on_vfio_refusal_while_held_and_back_to_zero(pf, run_cli):
    host = Host("/")
    shown = sriov.show(host, pf)
    assert (shown.sriov_totalvfs, shown.sriov_numvfs, shown.sriov_drivers_autoprobe, shown.vfs) == (2, 0, True, ())
    vfs = (nvme_vf(pf, 1), nvme_vf(pf, 2))
    assert shown.vf_addresses(2) == vfs

    # 0 -> 2, no host driver probes them, both on vfio-pci.
    r = set_numvfs(host, pf, 2, autoprobe=False, vfio=True)
    assert r.exit_code is ExitCode.OK, (r.errors, r.steps, r.binding)
    assert r.vfs == vfs and virtfns(pf) == list(vfs) and attr(pf, "sriov_drivers_autoprobe") == "0"
    groups = [group(vf) for vf in vfs]
    assert None not in groups and len(set(groups)) == 2
    for vf, g in zip(vfs, groups):
        assert driver(vf) == "vfio-pci"
        assert Path(f"/dev/vfio/{g}").exists() and _viable(g)
    assert [d.outcome for d in r.binding.devices] == [Outcome.DONE, Outcome.DONE]
    shown = sriov.show(host, pf)
    assert [(v.address, v.driver, v.iommu_group) for v in shown.vfs] == list(zip(vfs, ["vfio-pci"] * 2, groups))
    # The command line says the same (one CLI run: each costs seconds under TCG).
    p = run_cli("sriov", pf, "--format", "json", check=True)
    data = json.loads(p.stdout)["data"]
    assert (data["sriov_numvfs"], data["sriov_drivers_autoprobe"], data["pf_guard"]) == (2, False, None)
    assert [(v["address"], v["driver"], v["iommu_group"]) for v in data["vfs"]] == [
        (vf, "vfio-pci", g) for vf, g in zip(vfs, groups)
    ]

    # A process holds VF 1's group: lowering (or zeroing) is refused, --force or not, and nothing is written.
    holder = subprocess.Popen(
        ["sh", "-c", f"exec 3<>/dev/vfio/{groups[1]}; echo held; exec sleep 120"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for force in (False, True):
            r = set_numvfs(host, pf, 1, force=force)
            assert r.exit_code is ExitCode.REFUSED and r.outcome is Outcome.REFUSED and r.steps == ()
            assert f"VF {vfs[1]} (virtfn1): IOMMU group {groups[1]} is open by sleep (pid {holder.pid})" in (
                r.errors[0].message
            )
        assert virtfns(pf) == list(vfs) and driver(vfs[1]) == "vfio-pci"
        assert [v.vfio_users for v in sriov.show(host, pf).vfs] == [(), (f"sleep (pid {holder.pid})",)]
    finally:
        holder.kill()
        holder.wait()

    # 2 -> 1 goes through 0; the one left is bound again.
    r = set_numvfs(host, pf, 1, vfio=True)
    assert r.exit_code is ExitCode.OK, (r.errors, r.steps)
    assert [(s.step.value, s.status) for s in r.steps] == [("0", "done"), ("1", "done"), ("1", "done")]
    assert virtfns(pf) == [vfs[0]] and not (SYS_PCI / vfs[1]).exists()
    assert driver(vfs[0]) == "vfio-pci" and _viable(group(vfs[0]))
    assert vfs[1] not in StateStore(host).load()

    # Back to 0: nothing left (no VF, no VFIO node of theirs, no state record).
    r = set_numvfs(host, pf, 0)
    assert r.exit_code is ExitCode.OK and r.vfs == () and r.numvfs_after == 0, r.errors
    assert virtfns(pf) == [] and attr(pf, "sriov_numvfs") == "0"
    deadline = time.monotonic() + 5
    while any(Path(f"/dev/vfio/{g}").exists() for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)  # devtmpfs nodes go with the device's release
    assert not any(Path(f"/dev/vfio/{g}").exists() for g in groups)
    assert not set(vfs) & set(StateStore(host).load())
    assert driver(pf) == "nvme"
