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
