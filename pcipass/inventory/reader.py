"""One device's fields, read from its sysfs directory (``Reader.row``): a dict by the names of the field spec
(PciDevice, model.py), in its order, and the ids it found malformed.

Rows are plain values (``Row``) so that a forked child can read part of them and send them back (parallel.py); the
scan (scan.py) makes the PciDevice of each. Each device costs 16 system calls: ``uevent`` first (it holds the
ids, class, driver and modalias), one raw read per file (``sysfs.read_many``) on ``str`` paths (pathlib's joins
cost about as much as the reads they led to), and what repeats across devices (a whole identity, parsed ids,
pci.ids names) cached. Figures: bench/run.py and bench/RESULTS.md.
"""

from __future__ import annotations

import os
from operator import itemgetter
from typing import Any, TypeAlias

from ..address import pci_owner
from ..host import Host
from ..model import device_fields
from ..pciids import PciIds
from ..sysfs import link_name, list_dir, read_many, read_str
from .tables import HostTables, group_number

# Class codes of devices with a bridge header when config space is unreadable: PCI-to-PCI (0604),
# CardBus (0607) and semi-transparent PCI-to-PCI (0609). A host bridge (0600) has a type-0 header.
_BRIDGE_CLASSES = ("0604", "0607", "0609")

# The files every device is asked for (``sysfs.read_many``). ``uevent`` first: on a live kernel (and in
# a snapshot) it carries the ids, the class, the bound driver and the modalias in one read, where the separate
# attributes cost six opens (pci_uevent() in drivers/pci/pci-driver.c prints PCI_CLASS, PCI_ID,
# PCI_SUBSYS_ID and MODALIAS from the same struct pci_dev fields the attributes show; DRIVER= comes from
# dev_uevent() in drivers/base/core.c whenever a driver is bound). The separate attributes are read only for
# what ``uevent`` did not give (recorded trees usually have no ``uevent``). ``config`` gives the header
# type and the revision (pci_setup_device() takes dev->revision from the same register).
_DEVICE_FILES = ("uevent", "driver_override", "numa_node", "sriov_totalvfs")
# Read only for the full view (``show``, the preflight, the library default): link state and reset methods
# cost five more opens per device, which is most of a large ``list``.
_DETAIL_FILES = ("reset_method", "current_link_speed", "current_link_width", "max_link_speed", "max_link_width")
# The fallbacks when ``uevent`` is missing or incomplete.
_IDENTITY_ATTRS = ("vendor", "device", "subsystem_vendor", "subsystem_device", "class", "modalias")
# Config space bytes: revision (0x08) and header type (0x0E). 64 bytes are readable without root, and no
# more is needed, so ``config`` is read on its own with that limit.
_CONFIG_HEAD = 64
_BYTE_HEX = tuple(f"{i:02x}" for i in range(256))
# driver_override when none is set: the kernel prints the NULL pointer as "(null)"; empty in some snapshots.
_NO_OVERRIDE = (None, b"(null)\n", b"(null)", b"\n", b"")


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace").rstrip("\n")


def _int(text: str | None) -> int | None:
    """``read_int`` on an attribute already read."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _hex_id(value: str | None, digits: int) -> str | None:
    """A hex id as the kernel prints it (``0x10de``, ``10DE``, ``60400``) → ``10de`` / ``060400``; None for
    unreadable or malformed values: anything but one to ``digits`` hex digits after an optional ``0x`` (a
    100-digit vendor, ``-001``, ``1_0``), which no PCI register holds."""
    if value is None:
        return None
    text = value.strip()
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    if not (0 < len(text) <= digits and text.isascii() and text.isalnum()):
        return None
    try:
        return f"{int(text, 16):0{digits}x}"
    except ValueError:
        return None


# Where each id is read (the field's name, its uevent key and the part of it, the attribute) and its width: the
# sources of a value ``_identity`` found malformed, for the warning (``_malformed``).
_ID_SOURCES = (
    ("vendor", "PCI_ID", 0, "vendor", 4),
    ("device", "PCI_ID", 2, "device", 4),
    ("subsystem_vendor", "PCI_SUBSYS_ID", 0, "subsystem_vendor", 4),
    ("subsystem_device", "PCI_SUBSYS_ID", 2, "subsystem_device", 4),
    ("class", "PCI_CLASS", None, "class", 6),
)
# How much of a malformed value a warning quotes.
_QUOTED = 24


def _malformed(ev: dict[str, str], raw: dict[str, bytes], values: tuple) -> tuple[str, ...]:
    """For each id left unknown (None in ``values``, in ``_ID_SOURCES`` order) although the device gave one: what
    it gave, as a warning's phrase."""
    out = []
    for value, (name, key, part, attribute, digits) in zip(values, _ID_SOURCES, strict=True):
        if value is not None:
            continue
        given = _text(raw.get(attribute))
        if given is None and key in ev:
            given = ev[key] if part is None else ev[key].partition(":")[part]
        if given is not None:
            shown = given if len(given) <= _QUOTED else given[:_QUOTED] + "..."
            out.append(f"{name} {shown!r} is not {digits} hex digits")
    return tuple(out)


#: What ``Reader.row`` gives: a device's fields by name, and the phrases of its malformed ids (for warnings).
Row: TypeAlias = tuple[dict[str, Any], tuple[str, ...]]

_NAMES = tuple(f.name for f in device_fields())
_VALUES = itemgetter(*_NAMES)


def row_to_wire(row: Row) -> tuple:
    """A row as a forked reader sends it (parallel.py): the values in the spec's order, without their names,
    which marshal would otherwise write and read again for every device (it then costs twice as much)."""
    return _VALUES(row[0]), row[1]


def row_from_wire(wire: tuple) -> Row:
    """The row ``row_to_wire`` sent."""
    return dict(zip(_NAMES, wire[0])), wire[1]


class Reader:
    """Reads devices one by one (``row``), caching what repeats across them: a device's whole identity by
    its ``uevent`` (``_identity``), the ids parsed from a uevent line or an attribute, and the names pci.ids
    gives an id tuple (the 127 VFs of a PF share all three). The bus symlink is resolved by string slicing
    when it has the kernel's ``../../../devices/`` shape (the module docstring says why speed matters here).
    """

    def __init__(self, host: Host, ids: PciIds, tables: HostTables, detail: bool) -> None:
        self.devices_dir = os.fspath(host.pci_devices_dir)
        self.sys_dir = os.fspath(host.sys())
        self.ids = ids
        self.tables = tables
        self.detail = detail
        self._pairs: dict[str, tuple[str | None, str | None]] = {}
        self._classes: dict[str, str | None] = {}
        self._names: dict[tuple, tuple] = {}
        self._identities: dict[bytes, tuple] = {}

    def _real_path(self, entry: str) -> str:
        try:
            target = os.readlink(entry)
        except OSError:
            return entry  # not a link (a flattened snapshot) or unreadable: read through the entry
        # The kernel's bus links are "../../../devices/pci0000:00/...": resolve those by slicing (this is
        # most of what normpath would do, at a fraction of its cost); anything else the general way.
        if target.startswith("../../../devices/") and "/." not in target[8:] and "//" not in target:
            return self.sys_dir + target[8:]
        return os.path.normpath(os.path.join(self.devices_dir, target))

    def _pair(self, value: str | None) -> tuple[str | None, str | None]:
        """uevent's ``PCI_ID``/``PCI_SUBSYS_ID`` (``8086:2031``) → ("8086", "2031")."""
        if value is None:
            return None, None
        hit = self._pairs.get(value)
        if hit is None:
            left, sep, right = value.partition(":")
            hit = self._pairs[value] = (_hex_id(left, 4), _hex_id(right, 4)) if sep else (None, None)
        return hit

    def _class(self, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return self._classes[value]
        except KeyError:
            hit = self._classes[value] = _hex_id(value, 6)
            return hit

    def _names_of(self, key: tuple) -> tuple:
        hit = self._names.get(key)
        if hit is None:
            vendor, device, sub_vendor, sub_device, class_id = key
            ids = self.ids
            # A subsystem vendor of 0000 or ffff means the function has no subsystem id: lspci prints no
            # Subsystem line then (pciutils' lspci.c, ``if (subsys_v && subsys_v != 0xffff)``), and pci.ids
            # has no vendor 0000 (it has "ffff  Illegal Vendor ID"), so it is not looked up.
            named = sub_vendor not in (None, "0000", "ffff")
            hit = self._names[key] = (
                ids.vendor_name(vendor),
                ids.device_name(vendor, device),
                ids.vendor_name(sub_vendor) if named else None,
                ids.subsystem_name(vendor, device, sub_vendor, sub_device) if named else None,
                *ids.class_names(class_id),
            )
        return hit

    def _identity(self, d: str, name: str, uevent: bytes | None) -> tuple:
        """(vendor, device, subsystem vendor, subsystem device, class, the names, driver, module, modalias) of
        the device in directory ``d``, from its ``uevent`` (read by the caller), else from the attributes.

        A complete ``uevent`` differs between devices of the same kind and driver only in its PCI_SLOT_NAME
        line, so the rest of it keys a cache of the whole result: the VFs of a PF, the ports of a switch and
        the functions of identical cards are parsed and named once."""
        key = b""  # complete (cached) only with a uevent, which sets it
        if uevent:
            key = uevent.replace(b"PCI_SLOT_NAME=" + name.encode() + b"\n", b"", 1)
            hit = self._identities.get(key)
            if hit is not None:
                return hit
        ev: dict[str, str] = {}
        if uevent:
            for line in uevent.decode("utf-8", "replace").split("\n"):
                k, sep, value = line.partition("=")
                if sep:
                    ev[k] = value
        raw: dict[str, bytes] = {}
        complete = "PCI_ID" in ev and "PCI_SUBSYS_ID" in ev and "PCI_CLASS" in ev and "MODALIAS" in ev
        if not complete:
            read_many(d, _IDENTITY_ATTRS, raw)
        attr = raw.get

        vendor, device = self._pair(ev.get("PCI_ID"))
        if vendor is None:
            vendor = _hex_id(_text(attr("vendor")), 4)
        if device is None:
            device = _hex_id(_text(attr("device")), 4)
        sub_vendor, sub_device = self._pair(ev.get("PCI_SUBSYS_ID"))
        if sub_vendor is None:
            sub_vendor = _hex_id(_text(attr("subsystem_vendor")), 4)
        if sub_device is None:
            sub_device = _hex_id(_text(attr("subsystem_device")), 4)
        class_id = self._class(ev.get("PCI_CLASS"))
        if class_id is None:
            class_id = _hex_id(_text(attr("class")), 6)
        ids = (vendor, device, sub_vendor, sub_device, class_id)
        malformed = _malformed(ev, raw, ids) if None in ids else ()
        modalias = ev.get("MODALIAS") or _text(attr("modalias"))
        # No DRIVER= in a readable uevent means no driver bound; without a uevent, the link says.
        driver = ev.get("DRIVER") if ev else link_name(d + "driver")
        module = self.tables.driver_module(driver) if driver else None
        names = self._names_of((vendor, device, sub_vendor, sub_device, class_id))
        identity = (vendor, device, sub_vendor, sub_device, class_id, names, driver, module, modalias, malformed)
        if complete:
            self._identities[key] = identity
        return identity

    def row(self, job: tuple[str, str, tuple[str, ...]]) -> Row:
        """One device's fields (``job``: its name, slot id and slot siblings, ``scan.device_jobs``) by PciDevice's
        field names and in its order, as plain values (``sriov`` and ``link`` as tuples), and the phrases of the
        ids it found malformed: what a forked reader can send back (parallel.py); ``scan.to_devices`` makes the
        PciDevice."""
        name, _, functions = job
        entry = self.devices_dir + "/" + name
        # Follow the bus symlink textually once so each attribute read is a direct path (and a dangling link
        # still yields a device with unknown attributes rather than a lost device).
        real = self._real_path(entry)
        d = real + "/"

        raw: dict[str, bytes] = {}
        read_many(d, _DEVICE_FILES, raw)
        read_many(d, ("config",), raw, _CONFIG_HEAD, head=True)
        attr = raw.get
        vendor, device, sub_vendor, sub_device, class_id, names, driver, module, modalias, malformed = self._identity(
            d, name, attr("uevent")
        )

        config = attr("config")
        if config and len(config) > 0x0E:
            header_type: int | None = config[0x0E] & 0x7F
            revision: str | None = _BYTE_HEX[config[0x08]]
            is_bridge = header_type in (1, 2)
        else:
            header_type = None
            revision = _hex_id(read_str(d + "revision"), 2)
            if os.path.isdir(d + "pci_bus"):
                is_bridge = True
            else:
                is_bridge = bool(class_id and class_id[:4] in _BRIDGE_CLASSES)

        override_raw = attr("driver_override")
        override = None if override_raw in _NO_OVERRIDE else _text(override_raw)

        try:
            iommu_group = group_number(os.readlink(d + "iommu_group").rpartition("/")[2])
        except OSError:
            iommu_group = None
        if iommu_group is None:
            iommu_group = self.tables.groups_dir.get(name)

        try:
            node = int(attr("numa_node") or b"")  # int() takes the bytes, newline included
        except ValueError:
            node = -1
        numa = node if node >= 0 else None  # -1: no NUMA affinity

        physfn = link_name(d + "physfn")
        sriov: tuple | None = None
        if "sriov_totalvfs" in raw:
            total = _int(_text(attr("sriov_totalvfs")))
            if total is not None:
                vf_links = [e for e in list_dir(real) if e.startswith("virtfn")]
                vf_links.sort(key=lambda e: int(e[6:]) if e[6:].isdigit() else 1 << 30)
                vfs = tuple(v for v in (link_name(d + e) for e in vf_links) if v)
                sriov = (total, _int(read_str(d + "sriov_numvfs")), vfs)

        # The kernel shows boot_vga only on VGA-class devices (pci_dev_attrs_are_visible(), pci_is_vga());
        # asking every other device would be one failed open each.
        boot_vga: bool | None = None
        if class_id is None or class_id[:4] in ("0300", "0001"):
            boot_vga_raw = read_str(d + "boot_vga")
            boot_vga = None if boot_vga_raw is None else boot_vga_raw.strip() == "1"

        reset_method: tuple[str, ...] | None = None
        link: tuple | None = None
        if self.detail:
            read_many(d, _DETAIL_FILES, raw)
            reset_raw = _text(attr("reset_method"))
            reset_method = None if reset_raw is None else tuple(reset_raw.split())
            link = (
                _text(attr("current_link_speed")),
                _int(_text(attr("current_link_width"))),
                _text(attr("max_link_speed")),
                _int(_text(attr("max_link_width"))),
            )

        # By the field spec's names (PciDevice, model.py), in its order: ``summary`` and the JSON keep this order,
        # and tests/test_inventory.py holds the keys to the spec.
        values = {
            "address": name,
            "vendor_id": vendor,
            "device_id": device,
            "subsystem_vendor_id": sub_vendor,
            "subsystem_device_id": sub_device,
            "class_id": class_id,
            "revision": revision,
            "vendor_name": names[0],
            "device_name": names[1],
            "subsystem_vendor_name": names[2],
            "subsystem_device_name": names[3],
            "class_name": names[4],
            "subclass_name": names[5],
            "prog_if_name": names[6],
            "driver": driver,
            "driver_override": override,
            "module": module,
            "modalias": modalias,
            "iommu_group": iommu_group,
            "numa_node": numa,
            "is_bridge": is_bridge,
            "header_type": header_type,
            "physical_slot": None,  # from the host tables, joined by scan.to_devices
            "parent_bridge": pci_owner(real) if real != entry else None,
            "functions": functions,
            "physfn": physfn,
            "sriov": sriov,
            "boot_vga": boot_vga,
            "reset_method": reset_method,
            "link": link,
            "net": (),  # net, block, drm: likewise
            "block": (),
            "drm": (),
        }
        return values, malformed
