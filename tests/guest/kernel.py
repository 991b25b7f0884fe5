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
