"""vfio-pci's ``ids=`` parameter and the devices it claims, matched as the kernel matches them.

The parameter comes from the kernel command line (``vfio-pci.ids=``) or modprobe.d (``options vfio-pci
ids=``); at load, vfio-pci claims every device it matches, whatever its address. Each comma-separated entry is
read by ``sscanf(id, "%x:%x:%x:%x:%x:%x", &vendor, &device, &subvendor, &subdevice, &class, &class_mask)``
(drivers/vfio/pci/vfio_pci.c, vfio_pci_fill_ids): fewer than two fields and the entry is skipped, the
subsystem ids left out match any (PCI_ANY_ID), the class left out matches any class (mask 0); then
``pci_match_one_device`` (drivers/pci/pci.h) decides.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .model import PciDevice

PCI_ANY_ID = 0xFFFFFFFF
# One %x conversion: optional blanks, an optional 0x, hex digits (sscanf stops at the first non-hex character).
_HEX = re.compile(r"\s*(?:0[xX])?([0-9a-fA-F]+)")


class VfioId(NamedTuple):
    vendor: int
    device: int
    subvendor: int = PCI_ANY_ID
    subdevice: int = PCI_ANY_ID
    class_: int = 0
    class_mask: int = 0

    def matches(self, dev: PciDevice) -> bool:
        """pci_match_one_device: each id equal or PCI_ANY_ID, and the class equal under the mask. A field of
        the device that is unknown (None) matches only a wildcard."""

        def same(want: int, have: str | None) -> bool:
            return want == PCI_ANY_ID or (have is not None and int(have, 16) == want)

        if not (
            same(self.vendor, dev.vendor_id)
            and same(self.device, dev.device_id)
            and same(self.subvendor, dev.subsystem_vendor_id)
            and same(self.subdevice, dev.subsystem_device_id)
        ):
            return False
        if self.class_mask == 0:
            return True
        return dev.class_id is not None and not ((self.class_ ^ int(dev.class_id, 16)) & self.class_mask)


def _sscanf_hex(entry: str) -> list[int]:
    """The fields ``sscanf("%x:%x:...")`` converts before it stops (at most six)."""
    out: list[int] = []
    pos = 0
    while len(out) < 6:
        m = _HEX.match(entry, pos)
        if not m:
            break
        out.append(int(m.group(1), 16) & 0xFFFFFFFF)  # %x into an unsigned int
        pos = m.end()
        if not entry.startswith(":", pos):
            break
        pos += 1
    return out


def parse(value: str | None) -> list[VfioId]:
    """The entries of an ``ids=`` value the kernel would use, in order."""
    out = []
    for entry in (value or "").split(","):
        fields = _sscanf_hex(entry)
        if len(fields) >= 2:
            out.append(VfioId(*fields))
    return out


def claimed(ids: list[VfioId], dev: PciDevice) -> bool:
    return any(i.matches(dev) for i in ids)
