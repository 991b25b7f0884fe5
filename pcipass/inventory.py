"""Reading every PCI device and IOMMU group of a host, tolerantly.

One pass over ``bus/pci/devices``; the per-host tables (slots, IOMMU groups, the class directories for
network, block and DRM objects, vfio variant modules) are read once, never per device, so a 16k-function
host costs the same per device as a small one.

Speed (bench/run.py): the per-device path works on ``str`` paths (profiled, pathlib's joins cost about as
much as the reads they led to), parses each address once, reads a device's text attributes in one call,
and reads the IOMMU group directory only when something needs it (``groups``, or a device whose
``iommu_group`` link is missing): ``list`` gets the groups from the links.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property, lru_cache

from .address import PciAddress
from .drivers import is_assignable
from .errors import DeviceNotFound
from .host import Host
from .model import GroupMember, GroupVerdict, IommuGroup, PciDevice, PciLink, Role, Sriov
from .pciids import PciIds
from .sysfs import link_name, link_target, list_dir, read_attrs, read_bytes, read_str

# Class codes of devices with a bridge header when config space is unreadable: PCI-to-PCI (0604),
# CardBus (0607) and semi-transparent PCI-to-PCI (0609). A host bridge (0600) has a type-0 header.
_BRIDGE_CLASSES = ("0604", "0607", "0609")

# The text attributes every device is asked for (read_attrs); the binary ``config`` and the links are read
# apart, and ``sriov_numvfs`` only for a physical function.
_DEVICE_ATTRS = (
    "vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision", "driver_override",
    "numa_node", "sriov_totalvfs", "boot_vga", "reset_method", "current_link_speed", "current_link_width",
    "max_link_speed", "max_link_width", "modalias",
)


def _hex4(host_value: str | None) -> str | None:
    """``0x10de`` → ``10de``; None for unreadable or malformed values."""
    if host_value is None:
        return None
    try:
        return f"{int(host_value.strip(), 16):04x}"
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    """``read_int`` on an attribute already read."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _hex_n(host_value: str | None, digits: int) -> str | None:
    if host_value is None:
        return None
    try:
        return f"{int(host_value.strip(), 16):0{digits}x}"
    except ValueError:
        return None


@lru_cache(maxsize=None)
def _address_part(part: str) -> str | None:
    """The canonical address if a path component is one. Cached: the same bridges appear in every path below
    them, and each device's own name is looked at twice (parent and class objects)."""
    addr = PciAddress.try_parse(part)
    return None if addr is None else str(addr)


def _nearest_pci_ancestor(path: str) -> str | None:
    """The last component of ``path`` that is a PCI address (the device owning a class object)."""
    for part in reversed(path.split("/")[:-1]):
        # Two colons first: cheap, and it skips "pci0000:00", "net", ... without a failed parse.
        if part.count(":") == 2:
            addr = _address_part(part)
            if addr is not None:
                return addr
    return None


@dataclass(frozen=True)
class _HostTables:
    host: Host
    slots: dict[str, str]  # slot id (dddd:bb:ss) -> physical slot name
    net: dict[str, tuple[str, ...]]
    block: dict[str, tuple[str, ...]]
    drm: dict[str, tuple[str, ...]]
    variant_modules: frozenset[str]

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


def _class_objects(host: Host, *class_dirs) -> dict[str, tuple[str, ...]]:
    out: dict[str, set[str]] = {}
    for cdir in class_dirs:
        cdir = os.fspath(cdir)
        names = list_dir(cdir)
        name_set = set(names)
        for name in names:
            target = link_target(os.path.join(cdir, name))
            if target is None:
                continue
            parts = target.split("/")
            # A partition's parent directory is its disk (block/sda/sda1, nvme0n1/nvme0n1p1).
            if len(parts) >= 2 and parts[-2] in name_set and parts[-2] != name:
                continue
            owner = _nearest_pci_ancestor(target)
            if owner:
                out.setdefault(owner, set()).add(name)
    return {k: tuple(sorted(v)) for k, v in out.items()}


def _read_tables(host: Host) -> _HostTables:
    slots: dict[str, str] = {}
    slots_dir = os.fspath(host.pci_slots_dir)
    for name in list_dir(slots_dir):
        addr = read_str(os.path.join(slots_dir, name, "address"))
        if addr:
            # The slot's address has no function; domain may be missing on old kernels.
            slot_id = addr.strip().lower()
            if slot_id.count(":") == 1:
                slot_id = "0000:" + slot_id
            slots[slot_id] = name
    variants = frozenset(list_dir(host.sys_module("vfio_pci_core") / "holders"))
    # /sys/block is the pre-2.6.25 layout kept as a compatibility directory; snapshots may have only it.
    return _HostTables(
        host=host,
        slots=slots,
        net=_class_objects(host, host.sys_class("net")),
        block=_class_objects(host, host.sys_class("block"), host.sys("block")),
        drm=_class_objects(host, host.sys_class("drm")),
        variant_modules=variants,
    )


def _read_device(
    devices_dir: str, name: str, addr: PciAddress, functions: tuple[str, ...], ids: PciIds, tables: _HostTables
) -> PciDevice:
    entry = os.path.join(devices_dir, name)
    # Follow the bus symlink textually once so each attribute read is a direct path (and a dangling link
    # still yields a device with unknown attributes rather than a lost device).
    real = link_target(entry) or entry
    d = real + "/"

    attr = read_attrs(real, _DEVICE_ATTRS).get
    vendor = _hex4(attr("vendor"))
    device = _hex4(attr("device"))
    sub_vendor = _hex4(attr("subsystem_vendor"))
    sub_device = _hex4(attr("subsystem_device"))
    class_id = _hex_n(attr("class"), 6)
    revision = _hex_n(attr("revision"), 2)

    header_type: int | None = None
    config = read_bytes(d + "config", 64)
    if config and len(config) > 0x0E:
        header_type = config[0x0E] & 0x7F
    if header_type is not None:
        is_bridge = header_type in (1, 2)
    elif os.path.isdir(d + "pci_bus"):
        is_bridge = True
    else:
        is_bridge = bool(class_id and class_id[:4] in _BRIDGE_CLASSES)

    driver = link_name(d + "driver")
    override = attr("driver_override")
    if override is not None and override.strip() in ("(null)", ""):
        override = None
    module = link_name(d + "driver/module") if driver else None

    group_name = link_name(d + "iommu_group")
    iommu_group: int | None = None
    if group_name is not None:
        try:
            iommu_group = int(group_name)
        except ValueError:
            iommu_group = None
    if iommu_group is None:
        iommu_group = tables.groups_dir.get(name)

    numa = _int(attr("numa_node"))
    if numa is not None and numa < 0:
        numa = None

    physfn = link_name(d + "physfn")
    sriov: Sriov | None = None
    total = _int(attr("sriov_totalvfs"))
    if total is not None:
        vf_links = [e for e in list_dir(real) if e.startswith("virtfn")]
        vf_links.sort(key=lambda e: int(e[6:]) if e[6:].isdigit() else 1 << 30)
        vfs = tuple(v for v in (link_name(os.path.join(real, e)) for e in vf_links) if v)
        sriov = Sriov(totalvfs=total, numvfs=_int(read_str(d + "sriov_numvfs")), vfs=vfs)

    boot_vga_raw = attr("boot_vga")
    boot_vga = None if boot_vga_raw is None else boot_vga_raw.strip() == "1"
    reset_raw = attr("reset_method")
    reset_method = None if reset_raw is None else tuple(reset_raw.split())

    link = PciLink(
        current_link_speed=attr("current_link_speed"),
        current_link_width=_int(attr("current_link_width")),
        max_link_speed=attr("max_link_speed"),
        max_link_width=_int(attr("max_link_width")),
    )

    parent = _nearest_pci_ancestor(real + "/x") if real != entry else None
    if parent == name:
        parent = _nearest_pci_ancestor(real)
    cname, subname, progname = ids.class_names(class_id)
    return PciDevice(
        address=name,
        vendor_id=vendor,
        device_id=device,
        subsystem_vendor_id=sub_vendor,
        subsystem_device_id=sub_device,
        class_id=class_id,
        revision=revision,
        vendor_name=ids.vendor_name(vendor),
        device_name=ids.device_name(vendor, device),
        subsystem_vendor_name=ids.vendor_name(sub_vendor),
        subsystem_device_name=ids.subsystem_name(vendor, device, sub_vendor, sub_device),
        class_name=cname,
        subclass_name=subname,
        prog_if_name=progname,
        driver=driver,
        driver_override=override,
        module=module,
        modalias=attr("modalias"),
        iommu_group=iommu_group,
        numa_node=numa,
        is_bridge=is_bridge,
        header_type=header_type,
        physical_slot=tables.slots.get(addr.slot_id),
        parent_bridge=parent,
        functions=functions,
        physfn=physfn,
        sriov=sriov,
        boot_vga=boot_vga,
        reset_method=reset_method,
        link=link,
        net=tables.net.get(name, ()),
        block=tables.block.get(name, ()),
        drm=tables.drm.get(name, ()),
    )


class Inventory:
    """All PCI devices and IOMMU groups of one host, sorted by address."""

    def __init__(self, host: Host, devices: dict[str, PciDevice], tables: _HostTables) -> None:
        self.host = host
        self.devices = devices
        self._tables = tables

    @classmethod
    def scan(cls, host: Host, ids: PciIds | None = None) -> Inventory:
        if ids is None:
            ids = PciIds.load(host.find_pci_ids())
        tables = _read_tables(host)
        devices_dir = os.fspath(host.pci_devices_dir)
        parsed: dict[str, PciAddress] = {}
        for n in list_dir(devices_dir):
            a = PciAddress.try_parse(n)
            if a is not None:
                parsed[n] = a
        names = sorted(parsed, key=parsed.__getitem__)
        # Multifunction siblings are known from the names alone, before any device is read.
        by_slot: dict[str, list[str]] = {}
        for n in names:
            by_slot.setdefault(parsed[n].slot_id, []).append(n)
        devices: dict[str, PciDevice] = {}
        for n in names:
            addr = parsed[n]
            others = tuple(a for a in by_slot[addr.slot_id] if a != n)
            devices[n] = _read_device(devices_dir, n, addr, others, ids, tables)
        return cls(host, devices, tables)

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
        members: dict[int, list[PciDevice]] = {}
        for dev in self.devices.values():
            if dev.iommu_group is not None:
                members.setdefault(dev.iommu_group, []).append(dev)
        for gnum in self._tables.group_types:
            members.setdefault(gnum, [])
        out: dict[int, IommuGroup] = {}
        for gnum in sorted(members):
            devs = members[gnum]
            out[gnum] = IommuGroup(
                group=gnum,
                verdict=self._verdict(devs),
                type=self._tables.group_types.get(gnum),
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
        group = self.group_of(address)
        return group.verdict if group else GroupVerdict.NONE

    def peers(self, address: str) -> list[PciDevice]:
        """The other devices of ``address``'s IOMMU group (empty when it has none)."""
        group = self.group_of(address)
        if group is None:
            return []
        return [self.devices[m.address] for m in group.devices if m.address != address and m.address in self.devices]
