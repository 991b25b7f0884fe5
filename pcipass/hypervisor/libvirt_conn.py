"""Attach and detach PCI host devices to and from libvirt domains (libvirt-python, imported lazily).

Each device is one ``virDomainAttachDeviceFlags`` / ``virDomainDetachDeviceFlags`` call with the flags
``--live`` / ``--config`` map to (neither: ``VIR_DOMAIN_AFFECT_CURRENT``, as virsh does). A driver that
does not implement those calls (libvirt's ``test:///`` driver) still has its persistent configuration
edited when only the configuration is affected: the inactive XML is read, the ``<hostdev>`` added or
removed, and the domain redefined. Live changes need the real call.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from ..address import PciAddress
from ..emit.libvirt import Hostdev, guest_addresses, host_slots, hostdev_element, source_address, to_xml
from ..errors import HypervisorError, PcipassError, Refused

_INSTALL_HINT = (
    "install it with: pip install 'pcipass[libvirt]' (building it needs the libvirt development "
    "files and pkg-config: apt-get install libvirt-dev pkg-config)"
)


def _libvirt() -> Any:
    try:
        import libvirt
    except ImportError as exc:
        raise HypervisorError("libvirt-python is not installed", remedy=_INSTALL_HINT) from exc
    # libvirt's default handler prints every error on stderr; errors are raised to us as exceptions anyway.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


@dataclass(frozen=True)
class Change:
    """What was done to one device of one domain."""

    address: str
    domain: str
    action: str  #: "attached" or "detached"
    live: bool
    config: bool


def _error(exc: Any, what: str, address: str | None = None) -> HypervisorError:
    return HypervisorError(f"{what}: {exc.get_error_message() or exc}", address=address)


@contextmanager
def _domain(uri: str | None, name: str) -> Iterator[tuple[Any, Any, Any]]:
    lv = _libvirt()
    try:
        conn = lv.open(uri)
    except lv.libvirtError as exc:
        raise _error(exc, f"cannot connect to libvirt{f' at {uri}' if uri else ''}") from exc
    try:
        try:
            dom = conn.lookupByName(name)
        except lv.libvirtError as exc:
            raise _error(exc, f"no libvirt domain {name!r}") from exc
        yield lv, conn, dom
    finally:
        conn.close()


def _flags(lv: Any, live: bool, config: bool) -> int:
    flags = lv.VIR_DOMAIN_AFFECT_CURRENT
    if live:
        flags |= lv.VIR_DOMAIN_AFFECT_LIVE
    if config:
        flags |= lv.VIR_DOMAIN_AFFECT_CONFIG
    return flags


def _affected(dom: Any, live: bool, config: bool) -> tuple[bool, bool]:
    """(live, config) as libvirt applies the flags: CURRENT means live on a running domain, else config."""
    if not live and not config:
        return (True, False) if dom.isActive() else (False, True)
    return live, config


def _hostdevs(lv: Any, dom: Any, inactive: bool) -> tuple[ET.Element, dict[PciAddress, ET.Element]]:
    root = ET.fromstring(dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE if inactive else 0))
    found = {}
    for el in root.iterfind("devices/hostdev"):
        addr = source_address(el)
        if addr is not None:
            found[addr] = el
    return root, found


def _redefine(lv: Any, conn: Any, root: ET.Element, what: str, address: str) -> None:
    try:
        conn.defineXML(ET.tostring(root, encoding="unicode"))
    except lv.libvirtError as exc:
        raise _error(exc, what, address) from exc


#: How long a live detach may take to complete after libvirt returned. virDomainDetachDeviceFlags only
#: *requests* the unplug and returns after waiting a few seconds for the guest; the device is gone only when
#: it has left the live XML (libvirt's docs: check the XML or wait for VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED).
LIVE_UNPLUG_WAIT = 10.0
_POLL = 0.25


def _still_live(lv: Any, dom: Any, source: PciAddress, wait: float) -> bool:
    """True when ``source`` is still in the running domain after waiting up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        if not dom.isActive() or source not in _hostdevs(lv, dom, inactive=False)[1]:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(_POLL)


def _unsupported(lv: Any, exc: Any) -> bool:
    return exc.get_error_code() == lv.VIR_ERR_NO_SUPPORT


def attach(
    uri: str | None, domain: str, items: Sequence[Hostdev], *, live: bool = False, config: bool = False
) -> tuple[list[Change], list[PcipassError]]:
    """Attach each hostdev; a device already in the affected definition is refused, others go on.

    Attached to the persistent definition only (``--config``), devices get the guest addresses ``emit libvirt``
    gives them, each host slot on a guest slot of bus 0 the definition does not use yet, so a card's functions
    (several functions of one host slot) stay together: functions 0..N of one slot, ``multifunction='on'`` on
    function 0. A live attach of a card is refused: libvirt hot-plugs one function at a time onto a slot of its
    own (qemu cannot hot-plug a multifunction slot function by function), which would split the card."""
    changes: list[Change] = []
    errors: list[PcipassError] = []
    with _domain(uri, domain) as (lv, conn, dom):
        eff_live, eff_config = _affected(dom, live, config)
        cards = [fns for fns in host_slots([h.source for h in items]).values() if len(fns) > 1]
        if eff_live and cards:
            errors += _split_cards(domain, cards)
            split = {a for fns in cards for a in fns}
            items = [h for h in items if h.source not in split]
        elif eff_config and not eff_live:
            items = _placed(items, _hostdevs(lv, dom, inactive=True)[0])
        for h in items:
            addr = str(h.source)
            views = [v for v, on in ((False, eff_live), (True, eff_config)) if on]
            if any(h.source in _hostdevs(lv, dom, inactive)[1] for inactive in views):
                errors.append(Refused(f"{addr} is already attached to {domain}", address=addr))
                continue
            xml = to_xml(hostdev_element(h))
            try:
                dom.attachDeviceFlags(xml, _flags(lv, live, config))
            except lv.libvirtError as exc:
                if not (_unsupported(lv, exc) and eff_config and not eff_live):
                    errors.append(_error(exc, f"attaching {addr} to {domain}", addr))
                    continue
                root, _ = _hostdevs(lv, dom, inactive=True)
                devices = root.find("devices")
                if devices is None:
                    devices = ET.SubElement(root, "devices")
                devices.append(hostdev_element(h))
                try:
                    _redefine(lv, conn, root, f"attaching {addr} to {domain}", addr)
                except HypervisorError as err:
                    errors.append(err)
                    continue
            changes.append(Change(addr, domain, "attached", eff_live, eff_config))
    return changes, errors


def _split_cards(domain: str, cards: list[list[PciAddress]]) -> list[PcipassError]:
    out: list[PcipassError] = []
    for fns in cards:
        listed = " ".join(str(a) for a in fns)
        for a in fns:
            out.append(
                Refused(
                    f"{a} is one of the functions {listed} of one card: libvirt cannot hot-plug a multifunction "
                    f"device into the running domain {domain} (each function would arrive on a slot of its own)",
                    address=str(a),
                    remedy=f"attach them to the persistent definition, together on one guest slot, and restart the "
                    f"domain: pcipass attach {domain} {listed} --config",
                )
            )
    return out


def _used_slots(root: ET.Element) -> set[int]:
    """The slots of guest bus 0 that the domain's devices already use (their ``<address type='pci'>``)."""
    used = set()
    for el in root.iterfind("devices//address[@type='pci']"):
        try:
            if int(el.get("domain", "0"), 0) == 0 and int(el.get("bus", "0"), 0) == 0:
                used.add(int(el.get("slot", "0"), 0))
        except ValueError:
            continue
    return used


def _placed(items: Sequence[Hostdev], root: ET.Element) -> list[Hostdev]:
    """``items`` with the guest addresses ``emit libvirt`` gives them, on slots of bus 0 ``root`` (the
    persistent definition) does not use."""
    guests = guest_addresses([h.source for h in items], taken=_used_slots(root))
    return [replace(h, guest=h.guest or guests.get(h.source)) for h in items]


def detach(
    uri: str | None,
    domain: str,
    addresses: Sequence[PciAddress],
    *,
    live: bool = False,
    config: bool = False,
    wait: float | None = None,
) -> tuple[list[Change], list[PcipassError]]:
    """Detach the hostdev of each address, using the element as the domain itself describes it.

    A live detach counts only once the device has left the running domain: a guest that ignores the unplug
    request (no OS yet, or ACPI hot-plug not handled) leaves it attached, and that is reported as an error,
    never as "detached"."""
    changes: list[Change] = []
    errors: list[PcipassError] = []
    wait = LIVE_UNPLUG_WAIT if wait is None else wait
    with _domain(uri, domain) as (lv, conn, dom):
        eff_live, eff_config = _affected(dom, live, config)
        for source in addresses:
            addr = str(source)
            _, present = _hostdevs(lv, dom, inactive=not eff_live)
            el = present.get(source)
            if el is None:
                errors.append(HypervisorError(f"{addr} is not attached to {domain}", address=addr))
                continue
            try:
                dom.detachDeviceFlags(ET.tostring(el, encoding="unicode"), _flags(lv, live, config))
            except lv.libvirtError as exc:
                if not (_unsupported(lv, exc) and eff_config and not eff_live):
                    errors.append(_error(exc, f"detaching {addr} from {domain}", addr))
                    continue
                root, inactive = _hostdevs(lv, dom, inactive=True)
                devices = root.find("devices")
                assert devices is not None  # _hostdevs found the hostdevs in it
                devices.remove(inactive[source])
                try:
                    _redefine(lv, conn, root, f"detaching {addr} from {domain}", addr)
                except HypervisorError as err:
                    errors.append(err)
                    continue
            else:
                if eff_live and _still_live(lv, dom, source, wait):
                    errors.append(
                        HypervisorError(
                            f"{addr}: unplug requested, but it is still attached to the running domain {domain} "
                            f"after {wait:g} s: the guest has not released it",
                            address=addr,
                            remedy="the guest OS must acknowledge the hot-unplug (boot it, or check its ACPI/PCIe "
                            "hot-plug support); or detach with --config and restart the domain",
                        )
                    )
                    if eff_config:
                        changes.append(Change(addr, domain, "detached", False, True))
                    continue
            changes.append(Change(addr, domain, "detached", eff_live, eff_config))
    return changes, errors
