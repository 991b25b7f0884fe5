"""The kernel's own view of a guest device, read straight from sysfs: what guest tests compare pcipass with
(and restore devices by). Deliberately not pcipass's code, so a pcipass bug cannot hide behind it."""

from __future__ import annotations

import os
from pathlib import Path

SYS_PCI = Path("/sys/bus/pci/devices")


def driver(address: str) -> str | None:
    link = SYS_PCI / address / "driver"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def override(address: str) -> str | None:
    text = (SYS_PCI / address / "driver_override").read_text().strip()
    return None if text == "(null)" else text


def group(address: str) -> int | None:
    link = SYS_PCI / address / "iommu_group"
    return int(os.path.basename(os.readlink(link))) if link.is_symlink() else None


def attr(address: str, name: str) -> str:
    """A device's sysfs attribute, stripped (``sriov_numvfs``...)."""
    return (SYS_PCI / address / name).read_text().strip()


def virtfns(pf: str) -> list[str]:
    """The PF's VFs, by ``virtfnN`` order."""
    links = sorted((int(e.name[6:]), e) for e in (SYS_PCI / pf).iterdir() if e.name.startswith("virtfn"))
    return [os.path.basename(os.readlink(link)) for _, link in links]


def nvme_vf(pf: str, n: int) -> str:
    """QEMU's nvme puts VF n (from 1) at the PF's routing ID + n (offset 1, stride 1)."""
    return pf[:-1] + str(int(pf[-1]) + n)


def binding(address: str) -> tuple[str | None, str | None]:
    """(driver, override): what a test restores a device to."""
    return driver(address), override(address)


def raw_write(path: Path, value: str) -> None:
    """One write(2) to a sysfs attribute, as ``echo`` does it (never creating a file)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def put_back(address: str, drv: str | None, ovr: str | None) -> None:
    """Force a device onto ``drv`` with override ``ovr`` by raw writes (no pcipass: a pcipass failure must not
    keep a device off its boot driver for the next tests)."""
    if driver(address) is not None:
        raw_write(SYS_PCI / address / "driver" / "unbind", address)
    raw_write(SYS_PCI / address / "driver_override", (ovr or "") + "\n")
    if drv is not None:
        raw_write(Path("/sys/bus/pci/drivers") / drv / "bind", address)
