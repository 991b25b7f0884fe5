"""libvirt ``<hostdev>`` elements for PCI devices, built as element trees (never by string formatting).

Output shape (libvirt's formatdomain "Host device assignment", PCI, VFIO)::

    <hostdev mode="subsystem" type="pci" managed="yes|no">
      <driver name="vfio"/>
      <source><address domain="0x0000" bus="0x08" slot="0x00" function="0x0"/></source>
      [<rom bar="on|off"/>]
      [<address type="pci" domain="0x0000" bus="0x00" slot="0x10" function="0x0" multifunction="on"/>]
    </hostdev>

Attributes are written in that fixed order. ``managed="yes"`` lets libvirt detach the device from its host
driver when the VM starts and give it back when it stops; ``managed="no"`` says the device is already on
vfio-pci (bound by pcipass) and libvirt must not touch the binding. Valid for libvirt 9.0 and 11.3
(``domain.rng`` of both is checked in the tests).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..address import PciAddress
from ..errors import UsageError
from .choices import Managed

if TYPE_CHECKING:  # only for annotations: keeps this module cheap to import for the CLI's option types
    from .devices import Target

#: Guest slots used by ``--guest-address auto``, on guest bus 0: high enough to miss what libvirt places
#: by default (0x01-0x0f on i440fx and q35), below q35's ICH9 functions at 0x1d-0x1f.
FIRST_GUEST_SLOT = 0x10
LAST_GUEST_SLOT = 0x1C


@dataclass(frozen=True)
class GuestAddress:
    """Where a hostdev appears in the guest: its PCI bus, slot and function there."""

    bus: int
    slot: int
    function: int
    multifunction: bool = False


@dataclass(frozen=True)
class Hostdev:
    """One libvirt ``<hostdev mode='subsystem' type='pci'>``: the host device and how it is assigned."""

    source: PciAddress
    managed: bool
    rom_bar: bool | None = None  #: None: no ``<rom>`` element (libvirt's default applies)
    guest: GuestAddress | None = None  #: None: libvirt picks the guest address


def is_managed(target: Target, mode: Managed) -> bool:
    if mode is Managed.auto:
        return not target.vfio
    return mode is Managed.yes


def host_slots(sources: Sequence[PciAddress]) -> dict[str, list[PciAddress]]:
    """The functions of each host slot among ``sources``, slots and functions in address order: a card's
    functions (a GPU and its audio) are one slot's list."""
    slots: dict[str, list[PciAddress]] = {}
    for addr in sorted(set(sources)):
        slots.setdefault(addr.slot_id, []).append(addr)
    return slots


def guest_addresses(sources: Sequence[PciAddress], taken: Collection[int] = ()) -> dict[PciAddress, GuestAddress]:
    """One guest slot per host slot, in host address order, from ``FIRST_GUEST_SLOT`` on guest bus 0, skipping
    the slots in ``taken`` (those a domain's definition already uses: ``attach --config``).

    Functions of one host slot stay together on their guest slot. They keep their function numbers when
    the host slot's function 0 is among them; otherwise they are renumbered from 0 (a guest only scans a
    slot whose function 0 exists). Guest function 0 carries ``multifunction="on"`` when the slot has more
    than one function (a GPU and its audio function, as on the host).
    """
    slots = host_slots(sources)
    free = [s for s in range(FIRST_GUEST_SLOT, LAST_GUEST_SLOT + 1) if s not in taken]
    if len(slots) > len(free):
        raise UsageError(
            f"{len(slots)} host slots do not fit the {len(free)} guest slots of --guest-address auto; "
            "use --guest-address none and let libvirt place them"
        )
    out: dict[PciAddress, GuestAddress] = {}
    for slot, functions in zip(free, slots.values()):
        keep = functions[0].function == 0
        several = len(functions) > 1
        for n, addr in enumerate(functions):
            fn = addr.function if keep else n
            out[addr] = GuestAddress(0, slot, fn, multifunction=several and fn == 0)
    return out


def hostdevs(
    targets: Sequence[Target], *, managed: Managed = Managed.auto, rom_bar: bool | None = None, guest_auto: bool = True
) -> list[Hostdev]:
    sources = [t.pci for t in targets]
    guests = guest_addresses(sources) if guest_auto else {}
    return [
        Hostdev(source=t.pci, managed=is_managed(t, managed), rom_bar=rom_bar, guest=guests.get(t.pci)) for t in targets
    ]


def _pci_attrs(domain: int, bus: int, slot: int, function: int) -> dict[str, str]:
    return {"domain": f"0x{domain:04x}", "bus": f"0x{bus:02x}", "slot": f"0x{slot:02x}", "function": f"0x{function:x}"}


def hostdev_element(h: Hostdev) -> ET.Element:
    el = ET.Element("hostdev", {"mode": "subsystem", "type": "pci", "managed": "yes" if h.managed else "no"})
    ET.SubElement(el, "driver", {"name": "vfio"})
    src = ET.SubElement(el, "source")
    a = h.source
    ET.SubElement(src, "address", _pci_attrs(a.domain, a.bus, a.slot, a.function))
    if h.rom_bar is not None:
        ET.SubElement(el, "rom", {"bar": "on" if h.rom_bar else "off"})
    if h.guest is not None:
        g = h.guest
        attrs = {"type": "pci", **_pci_attrs(0, g.bus, g.slot, g.function)}
        if g.multifunction:
            attrs["multifunction"] = "on"
        ET.SubElement(el, "address", attrs)
    return el


def document(items: Sequence[Hostdev]) -> ET.Element:
    """One ``<hostdev>``, or a ``<devices>`` element holding several."""
    return wrap([hostdev_element(h) for h in items])


def wrap(elements: Sequence[ET.Element]) -> ET.Element:
    """One element as it is, or a ``<devices>`` element holding several (PCI and mediated hostdevs alike)."""
    if not elements:
        raise UsageError("no device to emit")
    if len(elements) == 1:
        return elements[0]
    wrapper = ET.Element("devices")
    wrapper.extend(elements)
    return wrapper


def to_xml(element: ET.Element) -> str:
    """Indented XML text with a trailing newline (no XML declaration: libvirt takes fragments as they are)."""
    tree = ET.ElementTree(element)
    ET.indent(tree, space="  ")
    return ET.tostring(element, encoding="unicode") + "\n"


def source_address(hostdev: ET.Element) -> PciAddress | None:
    """The host PCI address of a ``<hostdev type='pci'>`` element as libvirt writes it, else None."""
    if hostdev.get("type") != "pci":
        return None
    addr = hostdev.find("source/address")
    if addr is None:
        return None
    try:
        return PciAddress(*(int(addr.get(k, "0"), 0) for k in ("domain", "bus", "slot", "function")))
    except ValueError:
        return None
