"""The guest kernel's VFIO behaviour that pcipass relies on, driven through raw sysfs (no pcipass).

Environment checks for the binding tests: with the IOMMU on, vfio-pci binds a free endpoint,
``/dev/vfio/<group>`` appears and the kernel's own viability flag follows the group's members;
with the IOMMU off, vfio-pci refuses. Every test restores the original driver.
Only FREE_ENDPOINTS / the multifunction pair are touched, never the protected 9p devices.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.guest.kernel import SYS_PCI
from tests.guest.kernel import driver as _driver
from tests.guest.kernel import raw_write as _write

TOPOLOGY = ("iommu_on", "iommu_off")

VFIO_GROUP_GET_STATUS = (ord(";") << 8) | (100 + 3)  # _IO(VFIO_TYPE, VFIO_BASE + 3)
VFIO_GROUP_FLAGS_VIABLE = 1


def _to_vfio(a: str) -> None:
    _write(SYS_PCI / a / "driver_override", "vfio-pci")
    if _driver(a):
        _write(SYS_PCI / a / "driver" / "unbind", a)
    try:
        _write(Path("/sys/bus/pci/drivers_probe"), a)
    except OSError:
        pass  # vfio-pci probe failure surfaces as EINVAL with no IOMMU


def _restore(a: str, original: str | None) -> None:
    if _driver(a):
        _write(SYS_PCI / a / "driver" / "unbind", a)
    _write(SYS_PCI / a / "driver_override", "\n")
    _write(Path("/sys/bus/pci/drivers_probe"), a)
    deadline = time.monotonic() + 10
    while _driver(a) != original and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _driver(a) == original, f"{a} not restored to {original}"


def _group_status(group: int) -> int:
    fd = os.open(f"/dev/vfio/{group}", os.O_RDWR)
    try:
        buf = bytearray(struct.pack("II", 8, 0))
        fcntl.ioctl(fd, VFIO_GROUP_GET_STATUS, buf)
        return struct.unpack("II", buf)[1]
    finally:
        os.close(fd)


@pytest.fixture(scope="module", autouse=True)
def vfio_module():
    subprocess.run(["modprobe", "vfio-pci"], check=True, capture_output=True)


def test_override_reads_null_when_unset(addr):
    assert (SYS_PCI / addr["e1000e"] / "driver_override").read_text().strip() == "(null)"


def test_bind_free_endpoint_to_vfio_and_back(addr, topology, protected):
    a = addr["e1000e"]
    assert a not in protected
    original = _driver(a)
    assert original == "e1000e"
    try:
        _to_vfio(a)
        if topology["iommu"]:
            assert _driver(a) == "vfio-pci"
            group = int(os.path.basename(os.readlink(SYS_PCI / a / "iommu_group")))
            assert Path(f"/dev/vfio/{group}").exists()
            assert _group_status(group) & VFIO_GROUP_FLAGS_VIABLE
        else:
            assert _driver(a) is None, "vfio-pci must not bind without an IOMMU"
    finally:
        _restore(a, original)


def test_shared_group_viable_only_when_all_endpoints_moved(addr, topology):
    if not topology["iommu"]:
        assert not (SYS_PCI / addr["mf_virtio_net"] / "iommu_group").exists()
        return
    first, second = addr["mf_virtio_net"], addr["mf_e1000"]
    originals = {first: _driver(first), second: _driver(second)}
    group = int(os.path.basename(os.readlink(SYS_PCI / first / "iommu_group")))
    try:
        _to_vfio(first)
        assert _driver(first) == "vfio-pci"
        assert _group_status(group) & VFIO_GROUP_FLAGS_VIABLE == 0, "peer still on e1000: not viable"
        _to_vfio(second)
        assert _driver(second) == "vfio-pci"
        assert _group_status(group) & VFIO_GROUP_FLAGS_VIABLE
    finally:
        for a, drv in originals.items():
            _restore(a, drv)
