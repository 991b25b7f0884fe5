"""The host-wide tables a scan joins its devices with: physical slots, IOMMU groups, the class objects
(network, block, DRM) under each PCI function, bound drivers' modules and vfio variant modules. Each is read
once, on first use, never per device, so a 16k-function host costs the same per device as a small one."""

from __future__ import annotations

import os
from functools import cached_property

from ..address import PciAddress, pci_owner_in
from ..host import Host
from ..sysfs import link_name, list_dir, read_str


def group_number(text: str) -> int | None:
    """An IOMMU group's number from its directory name: the kernel names groups by a non-negative decimal
    (iommu_group_alloc() in drivers/iommu/iommu.c, ``"%d"`` of an ida id); anything else (``-1``) is no group."""
    return int(text) if text.isascii() and text.isdigit() else None


class HostTables:
    """The per-host tables the devices are joined with, each read once, on first use: a forked scan child
    (parallel.py) reads only what rows need, while the parent reads the rest meanwhile."""

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
        """Read the tables rows are joined with (``scan.to_devices``) now."""
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
        return class_objects(self.host.sys_class("net"))

    @cached_property
    def block(self) -> dict[str, tuple[str, ...]]:
        return class_objects(self.host.sys_class("block"), self.host.sys_block_dir)

    @cached_property
    def drm(self) -> dict[str, tuple[str, ...]]:
        return class_objects(self.host.sys_class("drm"))

    @cached_property
    def variant_modules(self) -> frozenset[str]:
        return frozenset(list_dir(self.host.sys_module("vfio_pci_core") / "holders"))

    @cached_property
    def _groups(self) -> tuple[dict[str, int], dict[int, str | None]]:
        groups_dir: dict[str, int] = {}
        group_types: dict[int, str | None] = {}
        base = os.fspath(self.host.iommu_groups_dir)
        for gname in list_dir(base):
            gnum = group_number(gname)
            if gnum is None:
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


def class_objects(*class_dirs: os.PathLike[str]) -> dict[str, tuple[str, ...]]:
    """PCI address -> the names of the class objects (net, block, drm) whose device path runs through it."""
    out: dict[str, list[str]] = {}
    readlink = os.readlink
    for class_dir in class_dirs:
        cdir = os.fspath(class_dir)
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
