"""PCI addresses: parsing user input and the canonical form."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from .errors import UsageError

# Domain: 4 hex digits normally, wider for Intel VMD (e.g. 10000:e0:00.0, see drivers/pci/controller/vmd.c).
_ADDR_RE = re.compile(
    r"^(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{2}):(?P<slot>[0-9a-fA-F]{2})\.(?P<func>[0-7])$"
)


@dataclass(frozen=True, order=True)
class PciAddress:
    """A PCI function's address: domain, bus, slot (device) and function; ``str()`` is the canonical form."""

    domain: int
    bus: int
    slot: int
    function: int

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        """Parse ``DDDD:BB:DD.F`` or ``BB:DD.F`` (any case). Raise UsageError naming the bad value."""
        m = _ADDR_RE.match(text.strip()) if isinstance(text, str) else None
        if not m or int(m["slot"], 16) > 0x1F:
            raise UsageError(f"invalid PCI address {text!r} (expected DDDD:BB:DD.F or BB:DD.F, e.g. 0000:3b:00.0)")
        return cls(int(m["domain"] or "0", 16), int(m["bus"], 16), int(m["slot"], 16), int(m["func"]))

    @classmethod
    def try_parse(cls, text: str) -> PciAddress | None:
        try:
            return cls.parse(text)
        except UsageError:
            return None

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function}"

    @property
    def slot_id(self) -> str:
        """The address without the function (``0000:3b:00``): what functions of one card share."""
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}"


# A PCI address as the kernel writes it (pci_name(): "%04x:%02x:%02x.%d"; VMD domains are wider).
CANONICAL = re.compile(r"[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]")


@cache
def _address_part(part: str) -> str | None:
    """The canonical address if a path component is one. Cached: the same bridges appear in every path below
    them."""
    if CANONICAL.fullmatch(part):
        return part
    addr = PciAddress.try_parse(part)
    return None if addr is None else str(addr)


def pci_owner(path: str | None) -> str | None:
    """The nearest PCI device above a sysfs object: the last component of ``path``, before its own, that is a
    PCI address (a device's parent bridge; the device of an interface, disk or input device)."""
    if path is None:
        return None
    # Most often the parent directory itself (a device below its bridge): one match instead of a split.
    head = path[: path.rfind("/")]
    parent = head[head.rfind("/") + 1 :]
    if CANONICAL.fullmatch(parent):
        return parent
    return pci_owner_in(path.split("/")[:-1])


def pci_owner_in(parts: list[str]) -> str | None:
    """``pci_owner`` of a path already split, its own component left out: the last of ``parts`` that is a PCI
    address."""
    for part in reversed(parts):
        # Two colons first: cheap, and it skips "pci0000:00", "net", ... without a failed parse.
        if part.count(":") == 2:
            addr = _address_part(part)
            if addr is not None:
                return addr
    return None
