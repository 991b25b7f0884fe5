"""End-to-end environment check: a device bound to vfio-pci in the guest reaches a nested qemu VM.

Raw sysfs + the host's qemu (visible through the 9p root); no pcipass. Proves the guest supports
the later end-to-end tests (caching-mode intel-iommu, /dev/vfio, nested TCG qemu). ~4 s.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .test_vfio_kernel import _driver, _restore, _to_vfio

TOPOLOGY = "iommu_on"


def test_vfio_device_is_assigned_to_a_nested_vm(addr):
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.fail("qemu-system-x86_64 not visible in the guest (it comes from the host's / over 9p)")
    subprocess.run(["modprobe", "vfio-pci"], check=True, capture_output=True)
    a = addr["e1000e"]
    original = _driver(a)
    try:
        _to_vfio(a)
        assert _driver(a) == "vfio-pci"
        p = subprocess.run(
            [
                qemu,
                "-accel",
                "tcg",
                "-machine",
                "q35",
                "-nodefaults",
                "-display",
                "none",
                "-m",
                "64",
                "-device",
                f"vfio-pci,host={a}",
                "-S",
                "-monitor",
                "stdio",
            ],
            input="info pci\nquit\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        assert "Ethernet controller: PCI device 8086:10d3" in p.stdout, p.stdout + p.stderr
    finally:
        _restore(a, original)
