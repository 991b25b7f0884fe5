"""Reading every PCI device and IOMMU group of a host, tolerantly.

One pass over ``bus/pci/devices``; the per-host tables (slots, IOMMU groups, the class directories for
network, block and DRM objects, vfio variant modules) are read once, on first use, never per device, so a
16k-function host costs the same per device as a small one. ``Inventory.scan(only=...)`` reads just a few
devices and their groups (the binding engine); ``detail=False`` skips what ``list`` does not show.

Speed (issue #2's target against lspci, bench/run.py): each device costs 16 system calls (``_Reader.row``,
``uevent`` first), on ``str`` paths (pathlib's joins cost about as much as the reads they led to); rows are
plain tuples, so on a large host a forked child reads part of them (pcipass/parallel.py), from before the
CLI is imported when it is to list the host (``EarlyScan``); the IOMMU group directory is read only when
something needs it (``groups``, or a device whose ``iommu_group`` link is missing): ``list`` gets the groups
from the links.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from functools import cached_property
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from .address import CANONICAL, PciAddress, pci_owner, pci_owner_in
from .drivers import is_assignable
from .errors import DeviceNotFound
from .host import Host
from .model import PciDevice, PciLink, Role, Sriov, build_frozen
from .parallel import ForkedReader
from .pciids import PciIds
from .sysfs import link_name, list_dir, read_many, read_str

if TYPE_CHECKING:
    from .group import GroupVerdict, IommuGroup

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
#: The PciDevice fields that only a ``detail`` scan reads; ``list`` leaves them out of its output.
DETAIL_FIELDS = ("reset_method", "link")
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


class _HostTables:
    """The per-host tables the devices are joined with, each read once, on first use: a forked scan child
    (pcipass/parallel.py) reads only what rows need, while the parent reads the rest meanwhile."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.drivers_dir = os.fspath(host.pci_drivers_dir)
        #: driver name -> its module, or None for a built-in driver; absent names are read on first use.
        self.modules: dict[str, str | None] = {}

    def driver_module(self, driver: str) -> str | None:
        """The module of a bound driver, from ``bus/pci/drivers/<driver>/module`` (where every bound device's
        ``driver`` link points), read once per driver rather than once per device. None: built in, or unknown."""
        try:
            return self.modules[driver]
        except KeyError:
            module = self.modules[driver] = link_name(os.path.join(self.drivers_dir, driver, "module"))
            return module

    def read_joins(self) -> None:
        """Read the tables rows are joined with (``_to_devices``) now."""
        self.slots, self.net, self.block, self.drm  # noqa: B018 - reading the cached properties fills them

    @cached_property
    def slots(self) -> dict[str, str]:
        """slot id (dddd:bb:ss) -> physical slot name."""
        slots: dict[str, str] = {}
        slots_dir = os.fspath(self.host.pci_slots_dir)
        for name in list_dir(slots_dir):
            addr = read_str(os.path.join(slots_dir, name, "address"))
            if addr:
                # The slot's address has no function; domain may be missing on old kernels.
                slot_id = addr.strip().lower()
                if slot_id.count(":") == 1:
                    slot_id = "0000:" + slot_id
                slots[slot_id] = name
        return slots

    @cached_property
    def net(self) -> dict[str, tuple[str, ...]]:
        return _class_objects(self.host.sys_class("net"))

    @cached_property
    def block(self) -> dict[str, tuple[str, ...]]:
        # /sys/block is the pre-2.6.25 layout kept as a compatibility directory; snapshots may have only it.
        return _class_objects(self.host.sys_class("block"), self.host.sys("block"))

    @cached_property
    def drm(self) -> dict[str, tuple[str, ...]]:
        return _class_objects(self.host.sys_class("drm"))

    @cached_property
    def variant_modules(self) -> frozenset[str]:
        return frozenset(list_dir(self.host.sys_module("vfio_pci_core") / "holders"))

    @cached_property
    def _groups(self) -> tuple[dict[str, int], dict[int, str | None]]:
        groups_dir: dict[str, int] = {}
        group_types: dict[int, str | None] = {}
        base = os.fspath(self.host.iommu_groups_dir)
        for gname in list_dir(base):
            try:
                gnum = int(gname)
            except ValueError:
                continue
            gdir = os.path.join(base, gname)
            group_types[gnum] = read_str(os.path.join(gdir, "type"))
            for dev in list_dir(os.path.join(gdir, "devices")):
                addr = PciAddress.try_parse(dev)
                if addr is not None:
                    groups_dir[str(addr)] = gnum
        return groups_dir, group_types

    @property
    def groups_dir(self) -> dict[str, int]:
        """address -> group, from kernel/iommu_groups/*/devices (read on first use)."""
        return self._groups[0]

    @property
    def group_types(self) -> dict[int, str | None]:
        return self._groups[1]

    def group_type(self, group: int) -> str | None:
        """One group's ``type``: from the walk of every group when it was made, else read alone (a partial
        inventory never needs the others)."""
        if "_groups" in self.__dict__:
            return self.group_types.get(group)
        return read_str(os.path.join(self.host.iommu_groups_dir, str(group), "type"))


def _class_objects(*class_dirs: os.PathLike[str]) -> dict[str, tuple[str, ...]]:
    """PCI address -> the names of the class objects (net, block, drm) whose device path runs through it."""
    out: dict[str, list[str]] = {}
    readlink = os.readlink
    for cdir in class_dirs:
        cdir = os.fspath(cdir)
        names = list_dir(cdir)
        name_set = set(names)
        prefix = cdir + "/"
        for name in names:
            # The link's own components are enough (no normpath): "../../devices/pci0000:00/0000:00:03.0/net/x".
            try:
                parts = readlink(prefix + name).split("/")
            except OSError:
                continue
            # A partition's parent directory is its disk (block/sda/sda1, nvme0n1/nvme0n1p1).
            if len(parts) >= 2 and parts[-2] in name_set and parts[-2] != name:
                continue
            owner = pci_owner_in(parts[:-1])
            if owner is not None:
                if owner in out:
                    out[owner].append(name)
                else:
                    out[owner] = [name]
    # /sys/block and /sys/class/block name the same disks: each once.
    return {k: tuple(sorted(set(v))) for k, v in out.items()}


def _hex_id(value: str | None, digits: int) -> str | None:
    """A hex id as the kernel prints it (``0x10de``, ``10DE``, ``60400``) → ``10de`` / ``060400``; None for
    unreadable or malformed values."""
    if value is None:
        return None
    try:
        return f"{int(value.strip(), 16):0{digits}x}"
    except ValueError:
        return None


class _Reader:
    """Reads devices one by one (``row``), caching what repeats across them: a device's whole identity by
    its ``uevent`` (``_identity``), the ids parsed from a uevent line or an attribute, and the names pci.ids
    gives an id tuple (the 127 VFs of a PF share all three).

    Speed matters here (issue #2: ``list`` against lspci on 16k functions, bench/run.py), hence a few
    departures from the obvious code, each measured: one raw read per file (``sysfs.read_many``), the bus
    symlink resolved by string slicing when it has the kernel's ``../../../devices/`` shape, and devices
    built with ``build_frozen`` instead of a 33-argument frozen-dataclass ``__init__``.
    """

    def __init__(self, host: Host, ids: PciIds, tables: _HostTables, detail: bool) -> None:
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
        hit = self._classes.get(value, False)
        if hit is False:
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
        key = None
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
        modalias = ev.get("MODALIAS") or _text(attr("modalias"))
        # No DRIVER= in a readable uevent means no driver bound; without a uevent, the link says.
        driver = ev.get("DRIVER") if ev else link_name(d + "driver")
        module = self.tables.driver_module(driver) if driver else None
        names = self._names_of((vendor, device, sub_vendor, sub_device, class_id))
        identity = (vendor, device, sub_vendor, sub_device, class_id, names, driver, module, modalias)
        if complete:
            self._identities[key] = identity
        return identity

    def row(self, job: tuple[str, str, tuple[str, ...]]) -> tuple:
        """One device's fields (``job``: its name, slot id and slot siblings, ``_device_jobs``), in PciDevice
        field order, as plain values (``sriov`` and ``link`` as tuples): what a forked reader can send back
        (pcipass/parallel.py); ``_to_devices`` makes the PciDevice."""
        name, _, functions = job
        entry = self.devices_dir + "/" + name
        # Follow the bus symlink textually once so each attribute read is a direct path (and a dangling link
        # still yields a device with unknown attributes rather than a lost device).
        real = self._real_path(entry)
        d = real + "/"

        raw: dict[str, bytes] = {}
        read_many(d, _DEVICE_FILES, raw)
        read_many(d, ("config",), raw, _CONFIG_HEAD)
        attr = raw.get
        vendor, device, sub_vendor, sub_device, class_id, names, driver, module, modalias = self._identity(
            d, name, attr("uevent"))

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
            iommu_group: int | None = int(os.readlink(d + "iommu_group").rpartition("/")[2])
        except (OSError, ValueError):
            iommu_group = self.tables.groups_dir.get(name)

        try:
            numa: int | None = int(attr("numa_node"))  # int() takes the bytes, newline included
        except (TypeError, ValueError):
            numa = None
        else:
            if numa < 0:
                numa = None  # -1: no NUMA affinity

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

        return (
            name, vendor, device, sub_vendor, sub_device, class_id, revision, *names,
            driver, override, module, modalias, iommu_group, numa, is_bridge, header_type,
            None,  # physical_slot: host tables, joined by _to_devices
            pci_owner(real) if real != entry else None,
            functions, physfn, sriov, boot_vga, reset_method, link,
            None, None, None,  # net, block, drm: likewise
        )


_FIELDS = tuple(f.name for f in dataclasses.fields(PciDevice))
_SRIOV_AT = _FIELDS.index("sriov")
_LINK_AT = _FIELDS.index("link")
_FUNCTIONS_AT = _FIELDS.index("functions")
_PHYSFN_AT = _FIELDS.index("physfn")


def _virtual_functions(rows: list[tuple], devices_dir: str, partial: bool) -> set[str]:
    """The SR-IOV VFs among the devices read and, for a partial scan, among their slot siblings.

    Why: a device's ``functions`` are its multifunction siblings, and the kernel makes every VF single-function
    (pci_iov_add_virtfn() in drivers/pci/iov.c sets ``virtfn->multifunction = 0``), although a VF's routing ID
    may fall in its PF's slot (the recorded HPE A2: PF 08:00.0, VFs 08:00.4-.7) or fill slots of its own. A
    full scan has read every sibling; a partial one (``only``) asks an unread sibling's ``physfn`` link."""
    vfs = {row[0] for row in rows if row[_PHYSFN_AT] is not None}
    if partial:
        read = {row[0] for row in rows}
        for row in rows:
            for name in row[_FUNCTIONS_AT]:
                if name not in read and name not in vfs and os.path.lexists(f"{devices_dir}/{name}/physfn"):
                    vfs.add(name)
    return vfs


def _to_devices(rows: list[tuple], jobs: list[tuple], tables: _HostTables, vfs: set[str]) -> dict[str, PciDevice]:
    """The PciDevice of each row (by name, in order), joined with the host tables (physical slot, net/block/DRM
    objects) and with the scan's VFs (``_virtual_functions``: none are multifunction siblings, and a VF has
    none). One loop with the tables at hand: on a large host this is the scan's last step, which no second
    process shares."""
    slots, net, block, drm = tables.slots, tables.net, tables.block, tables.drm
    devices = {}
    for row, (name, slot_id, functions) in zip(rows, jobs):
        values = dict(zip(_FIELDS, row))
        if vfs and functions:
            values["functions"] = () if name in vfs else tuple(f for f in functions if f not in vfs)
        values["physical_slot"] = slots.get(slot_id)
        values["net"] = net.get(name, ())
        values["block"] = block.get(name, ())
        values["drm"] = drm.get(name, ())
        if row[_SRIOV_AT] is not None:
            values["sriov"] = Sriov(*row[_SRIOV_AT])
        if row[_LINK_AT] is not None:
            values["link"] = PciLink(*row[_LINK_AT])
        devices[name] = build_frozen(PciDevice, values)
    return devices


# Hosts with at least this many functions are read by two processes (pcipass/parallel.py); below it a fork
# costs more than it saves.
PARALLEL_MIN = 1024


def _start_reading(host: Host, ids: PciIds | None, detail: bool, jobs: list) -> tuple:
    """What reading ``jobs`` takes: pci.ids (the host's, unless given), the host tables, the row reader, and on a
    host of PARALLEL_MIN devices or more the forked reader, already reading (else None)."""
    if ids is None:
        ids = PciIds.load(host.find_pci_ids())
    tables = _HostTables(host)
    reader = _Reader(host, ids, tables, detail)
    child = ForkedReader.start(reader.row, jobs) if len(jobs) >= PARALLEL_MIN else None
    return ids, tables, reader, child


class EarlyScan:
    """``Inventory.scan(host, detail=False)`` of a large host, begun before anybody asked for it: the CLI starts
    it as soon as its arguments say ``list`` or ``groups``, before it imports typer and the command modules,
    and the scan that wants exactly this one (``Inventory.scan(early=...)``: the same devices directory, the
    default pci.ids, ``detail=False``, every device) joins its forked reader (pcipass/parallel.py) and goes on
    with what it made; any other scan cancels it.

    Why: those imports take ~50 ms of one CPU while the other idles; a child forked before them has read a good
    part of a 4,096-function host by the time the command asks (issue #2's target against lspci,
    bench/run.py). The child is forked once the inventory is imported and the devices listed, which this
    process needs anyway: forked before, it spent as long importing them itself, beside this process's own
    imports. Nothing depends on the child (pcipass/parallel.py)."""

    def __init__(self, host: Host, ids: PciIds, tables: _HostTables, jobs: list, reader: _Reader,
                 child: ForkedReader) -> None:
        self.host, self.ids, self.tables, self.jobs, self.reader, self.child = host, ids, tables, jobs, reader, child

    @classmethod
    def start(cls, root: str) -> EarlyScan | None:
        """The scan of the host under ``root`` begun, or None: fewer than PARALLEL_MIN devices, or no fork.
        ``root`` must be a directory (the caller leaves archives and errors to the command)."""
        host = Host(root)
        jobs = _device_jobs(list_dir(os.fspath(host.pci_devices_dir)))
        if len(jobs) < PARALLEL_MIN:
            return None
        ids, tables, reader, child = _start_reading(host, None, False, jobs)
        return None if child is None else cls(host, ids, tables, jobs, reader, child)

    def fits(self, host: Host, ids: PciIds | None, detail: bool, only: Iterable[str] | None) -> bool:
        return (ids is None and not detail and only is None
                and os.fspath(host.pci_devices_dir) == os.fspath(self.host.pci_devices_dir))


def summary(dev: PciDevice) -> dict[str, Any]:
    """The device as ``list`` reports it: ``jsonable(dev)`` without ``DETAIL_FIELDS``.

    Written for PciDevice rather than through jsonable's generic walk, which was a tenth of a large
    ``list --format json`` (bench/run.py); tests/test_inventory.py holds the two equal on recorded hosts."""
    row = dict(dev.__dict__)  # the fields, in field order (set in that order by __init__ and _to_devices)
    del row["reset_method"], row["link"]
    row["functions"] = list(dev.functions)
    row["net"] = list(dev.net)
    row["block"] = list(dev.block)
    row["drm"] = list(dev.drm)
    sriov = dev.sriov
    if sriov is not None:
        row["sriov"] = {"totalvfs": sriov.totalvfs, "numvfs": sriov.numvfs, "vfs": list(sriov.vfs)}
    return row


def _with_group_members(host: Host, devices_dir: str, devices: set[str], only: Iterable[str]) -> set[str]:
    """``only`` (canonicalised; non-addresses and names not in ``devices`` dropped), the members of their IOMMU
    groups, and the VFs of any SR-IOV PF among those (with their groups' members): what is done to a PF concerns
    its VFs (unbinding it destroys them), so the binding engine's guards look at them too."""
    groups_dir = os.fspath(host.iommu_groups_dir)

    def add_groups(names: Iterable[str], into: set[str]) -> None:
        for name in names:
            into.add(name)
            group = link_name(devices_dir + "/" + name + "/iommu_group")
            if group is not None:
                into.update(m for m in list_dir(os.path.join(groups_dir, group, "devices")) if m in devices)

    asked = set()
    for text in only:
        addr = PciAddress.try_parse(text)
        if addr is not None and str(addr) in devices:
            asked.add(str(addr))
    wanted: set[str] = set()
    add_groups(asked, wanted)
    vfs = []
    for name in wanted:
        d = devices_dir + "/" + name
        if os.path.exists(d + "/sriov_totalvfs"):
            links = (link_name(d + "/" + e) for e in list_dir(d) if e.startswith("virtfn"))
            vfs.extend(v for v in links if v in devices)
    add_groups(vfs, wanted)
    return wanted


def _device_jobs(entries: list[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, slot id, the slot's other functions) for every entry of ``bus/pci/devices`` that is a PCI address,
    in address order: multifunction siblings are known from the names, before any device is read (the VFs among
    them are dropped once the devices are read, ``_virtual_functions``).

    The kernel names devices canonically (pci_name(): ``%04x:%02x:%02x.%d``, the domain wider behind Intel VMD),
    so the names' order as strings, stably re-sorted by length (the domain's width), is their address order,
    and a slot's functions are neighbours; an entry that is not canonical but parses as an address (a snapshot
    made by hand) sends them all through PciAddress. ``entries`` come sorted (``sysfs.list_dir``).
    """
    canonical = CANONICAL.fullmatch
    if all(map(canonical, entries)):
        pairs = [(n, n[:-2]) for n in sorted(entries, key=len)]
    else:
        keyed = []
        for n in entries:
            if canonical(n):
                keyed.append(((int(n[:-8], 16), n[-7:]), n, n[:-2]))
            else:
                a = PciAddress.try_parse(n)
                if a is not None:
                    keyed.append(((a.domain, str(a)[-7:]), n, a.slot_id))
        keyed.sort()
        pairs = [(n, slot_id) for _, n, slot_id in keyed]
    jobs = []
    for slot_id, group in groupby(pairs, key=itemgetter(1)):
        members = [n for n, _ in group]
        if len(members) == 1:
            jobs.append((members[0], slot_id, ()))
        else:
            for i, n in enumerate(members):
                jobs.append((n, slot_id, tuple(members[:i] + members[i + 1:])))
    return jobs


class Inventory:
    """All PCI devices and IOMMU groups of one host, sorted by address."""

    def __init__(
        self, host: Host, devices: dict[str, PciDevice], tables: _HostTables, *, partial: bool = False
    ) -> None:
        self.host = host
        self.devices = devices
        self._tables = tables
        #: Only some devices were read (``scan(only=...)``): their groups are complete, nothing else is there.
        self.partial = partial

    @classmethod
    def scan(
        cls,
        host: Host,
        ids: PciIds | None = None,
        *,
        detail: bool = True,
        only: Iterable[str] | None = None,
        early: EarlyScan | None = None,
    ) -> Inventory:
        """Read the host's PCI devices.

        ``detail=False`` skips the fields in ``DETAIL_FIELDS`` (they stay None): ``list`` and ``groups`` do
        not show them, and on a large host they are a third of the reads. ``only``: read just these addresses,
        every member of their IOMMU groups and the VFs of a PF among them (``_with_group_members``: what the
        binding engine needs about a few devices on a host of thousands); addresses that are not devices are
        left out, and the caller's ``device()`` says so. ``early``: an EarlyScan to take over if it is this
        scan (else it is cancelled).
        """
        if early is not None and not early.fits(host, ids, detail, only):
            early.child.cancel()
            early = None
        devices_dir = os.fspath(host.pci_devices_dir)
        if early is not None:
            ids, tables, jobs, reader, child = early.ids, early.tables, early.jobs, early.reader, early.child
        else:
            jobs = _device_jobs(list_dir(devices_dir))
            if only is not None:
                wanted = _with_group_members(host, devices_dir, {job[0] for job in jobs}, only)
                jobs = [job for job in jobs if job[0] in wanted]
            ids, tables, reader, child = _start_reading(host, ids, detail, jobs)
        # While the child reads, this process also reads the host tables the rows are joined with.
        if child is not None:
            rows = child.join(reader.row, tables.read_joins)
        else:
            tables.read_joins()
            rows = [reader.row(job) for job in jobs]
        vfs = _virtual_functions(rows, devices_dir, partial=only is not None)
        devices = _to_devices(rows, jobs, tables, vfs)
        return cls(host, devices, tables, partial=only is not None)

    @property
    def variant_modules(self) -> frozenset[str]:
        return self._tables.variant_modules

    def device(self, address: str | PciAddress) -> PciDevice:
        key = str(address) if isinstance(address, PciAddress) else str(PciAddress.parse(address))
        dev = self.devices.get(key)
        if dev is None:
            raise DeviceNotFound(f"no PCI device {key}", address=key)
        return dev

    @cached_property
    def groups(self) -> dict[int, IommuGroup]:
        from .group import GroupMember, IommuGroup  # here: a plain ``list`` never needs them (group.py)

        members: dict[int, list[PciDevice]] = {}
        for dev in self.devices.values():
            if dev.iommu_group is not None:
                members.setdefault(dev.iommu_group, []).append(dev)
        if not self.partial:
            # Groups without PCI members (possible on a partial snapshot) are still groups of the host.
            for gnum in self._tables.group_types:
                members.setdefault(gnum, [])
        out: dict[int, IommuGroup] = {}
        for gnum in sorted(members):
            devs = members[gnum]
            out[gnum] = IommuGroup(
                group=gnum,
                verdict=self._verdict(devs),
                type=self._tables.group_type(gnum),
                devices=tuple(
                    GroupMember(
                        address=d.address,
                        role=d.role,
                        driver=d.driver,
                        vendor_id=d.vendor_id,
                        device_id=d.device_id,
                        class_id=d.class_id,
                        name=d.display_name if (d.vendor_name or d.device_name) else None,
                    )
                    for d in devs
                ),
            )
        return out

    def _verdict(self, devs: list[PciDevice]) -> GroupVerdict:
        from .group import GroupVerdict

        endpoints = [d for d in devs if d.role is Role.ENDPOINT]
        if all(is_assignable(d.driver, self.variant_modules) for d in endpoints):
            return GroupVerdict.READY
        return GroupVerdict.BINDABLE

    def group_of(self, address: str) -> IommuGroup | None:
        dev = self.device(address)
        if dev.iommu_group is None:
            return None
        return self.groups.get(dev.iommu_group)

    def group_verdict(self, address: str) -> GroupVerdict:
        from .group import GroupVerdict

        group = self.group_of(address)
        return group.verdict if group else GroupVerdict.NONE

    def peers(self, address: str) -> list[PciDevice]:
        """The other devices of ``address``'s IOMMU group (empty when it has none)."""
        group = self.group_of(address)
        if group is None:
            return []
        return [self.devices[m.address] for m in group.devices if m.address != address and m.address in self.devices]
