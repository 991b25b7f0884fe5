"""A PCI device's identity: what must be found at an address before pcipass binds what is there.

An address says where, not what: a card moved, added or swapped shifts addresses and a mapping made for one
card then points at another (harvester/harvester#6518). Proxmox re-checks vendor:device, subsystem and group at
each VM start; pcipass records a fingerprint when a device is persisted and compares it at every ``apply`` and
``verify``:

- the ids the kernel shows as ``vendor``, ``device``, ``subsystem_vendor``, ``subsystem_device`` and ``class``
  (what the card is; the revision is left out: a firmware update may change it);
- where the host has them, the physical slot (``bus/pci/slots/<name>``, from the firmware) and the device's
  path from its root bus, one ``device.function`` per hop (``0000:00/1c.0/00.0``). Bus numbers below a root port
  are handed out at enumeration and shift when another card with a bridge is added; the device and function
  numbers of each hop are wired, so the path still names the same physical position.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, fields

from .address import CANONICAL
from .host import Host
from .model import PciDevice

#: The fingerprint's keys as the desired-state file spells them, in file order (``class`` is a keyword in Python).
KEYS = ("vendor", "device", "subsystem_vendor", "subsystem_device", "class", "physical_slot", "path")
#: Keys compared only when both the recorded fingerprint and the host have a value.
_WHERE = ("physical_slot", "path")


@dataclass(frozen=True)
class Fingerprint:
    """What a device is (ids, lower-case hex as sysfs shows them) and where it sits; None: unknown or not recorded."""

    vendor: str | None
    device: str | None
    subsystem_vendor: str | None = None
    subsystem_device: str | None = None
    class_id: str | None = None
    physical_slot: str | None = None
    path: str | None = None

    @classmethod
    def from_mapping(cls, data: dict) -> Fingerprint:
        """From the file's mapping (keys as in ``KEYS``)."""
        return cls(*(data.get(k) for k in KEYS))

    def to_mapping(self) -> dict[str, str]:
        """The file's mapping, in ``KEYS`` order, unknown values left out."""
        return {k: v for k, v in zip(KEYS, self._values()) if v is not None}

    def _values(self) -> tuple[str | None, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def ids(self) -> str:
        """``vvvv:dddd`` with the subsystem when known (``vvvv:dddd sub ssss:ssss``), for messages."""
        text = f"{self.vendor}:{self.device}"
        if self.subsystem_vendor and self.subsystem_device:
            text += f" (subsystem {self.subsystem_vendor}:{self.subsystem_device})"
        return text


def pci_path(host: Host, address: str) -> str | None:
    """``DDDD:BB/dd.f/.../dd.f``: the root bus of ``address`` and the device.function of every hop down to it,
    from the target of its ``bus/pci/devices`` link (``../../../devices/pci0000:00/0000:00:1c.0/0000:02:00.0``);
    None when the entry is not a link (a flattened snapshot) or holds no address."""
    try:
        target = os.readlink(host.pci_device(address))
    except OSError:
        return None
    hops = [p for p in target.split("/") if CANONICAL.fullmatch(p)]
    if not hops or hops[-1] != address:
        return None
    root = hops[0].rsplit(":", 1)[0]  # domain:bus of the first hop: the root bus
    return "/".join([root, *(h.rsplit(":", 1)[1] for h in hops)])


def of(host: Host, dev: PciDevice) -> Fingerprint:
    """The fingerprint of ``dev`` as the host shows it now."""
    return Fingerprint(
        dev.vendor_id,
        dev.device_id,
        dev.subsystem_vendor_id,
        dev.subsystem_device_id,
        dev.class_id,
        dev.physical_slot,
        pci_path(host, dev.address),
    )


@dataclass(frozen=True)
class Difference:
    """One key of a fingerprint that the host does not match."""

    key: str  #: as in ``KEYS``
    recorded: str | None
    found: str | None


def differences(recorded: Fingerprint, found: Fingerprint) -> tuple[Difference, ...]:
    """The keys where ``found`` (the host now) differs from ``recorded``. An id recorded as unknown is not
    compared; the physical slot and the path are compared only when both sides know them (a host without slot
    information, a snapshot without links)."""
    out = []
    for key, rec, now in zip(KEYS, recorded._values(), found._values()):
        if rec is None or (key in _WHERE and now is None):
            continue
        if rec != now:
            out.append(Difference(key, rec, now))
    return tuple(out)


def same_card(recorded: Fingerprint, found: Fingerprint) -> bool:
    """The ids match (the position aside): a card of the same make and model."""
    return not [d for d in differences(recorded, found) if d.key not in _WHERE]


def describe(diffs: Iterable[Difference]) -> str:
    """``vendor 8086 != 10de, path 0000:00/02.0 != 0000:00/03.0`` (recorded, then found)."""
    return ", ".join(f"{d.key} {d.recorded} recorded, {d.found or 'none'} found" for d in diffs)
