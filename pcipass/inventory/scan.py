"""A host's PCI devices and IOMMU groups, read tolerantly: ``Inventory.scan``.

One pass over ``bus/pci/devices``: the devices' names say their order and slot siblings before any is read
(``device_jobs``); a ``Reading`` reads the rows (reader.py), in two processes on a large host (parallel.py),
while the host tables (tables.py) are read; the rows become PciDevices joined with those tables
(``to_devices``). ``scan(only=...)`` reads just a few devices and their groups (the binding engine);
``detail=False`` skips what ``list`` does not show. The IOMMU group directory is read only when something
needs it (``groups``, or a device whose ``iommu_group`` link is missing): ``list`` gets the groups from the
links. Figures: bench/run.py and bench/RESULTS.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cached_property
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING

from ..address import CANONICAL, PciAddress
from ..drivers import is_assignable
from ..errors import DeviceNotFound
from ..host import Host
from ..model import PciDevice, PciLink, Role, Sriov, build_frozen
from ..pciids import PciIds
from ..sysfs import link_name, list_dir
from .parallel import ForkedReader
from .reader import Reader, Row, row_from_wire, row_to_wire
from .tables import HostTables

if TYPE_CHECKING:
    from ..group import GroupVerdict, IommuGroup

# Hosts with at least this many functions are read by two processes (parallel.py); below it a fork costs more
# than it saves.
PARALLEL_MIN = 1024


def virtual_functions(rows: list[Row], devices_dir: str, partial: bool) -> set[str]:
    """The SR-IOV VFs among the devices read and, for a partial scan, among their slot siblings.

    Why: a device's ``functions`` are its multifunction siblings, and the kernel makes every VF single-function
    (pci_iov_add_virtfn() in drivers/pci/iov.c sets ``virtfn->multifunction = 0``), although a VF's routing ID
    may fall in its PF's slot (the recorded HPE A2: PF 08:00.0, VFs 08:00.4-.7) or fill slots of its own. A
    full scan has read every sibling; a partial one (``only``) asks an unread sibling's ``physfn`` link."""
    vfs = {values["address"] for values, _ in rows if values["physfn"] is not None}
    if partial:
        read = {values["address"] for values, _ in rows}
        for values, _ in rows:
            for name in values["functions"]:
                if name not in read and name not in vfs and os.path.lexists(f"{devices_dir}/{name}/physfn"):
                    vfs.add(name)
    return vfs


def to_devices(rows: list[Row], jobs: list[tuple], tables: HostTables, vfs: set[str]) -> dict[str, PciDevice]:
    """The PciDevice of each row (by name, in order), joined with the host tables (physical slot, net/block/DRM
    objects) and with the scan's VFs (``virtual_functions``: none are multifunction siblings, and a VF has
    none). One loop with the tables at hand: on a large host this is the scan's last step, which no second
    process shares."""
    slots, net, block, drm = tables.slots, tables.net, tables.block, tables.drm
    devices = {}
    for (values, _), (name, slot_id, functions) in zip(rows, jobs):
        # The row's own dict becomes the device's: its keys are the fields, in order (Reader.row).
        if vfs and functions:
            values["functions"] = () if name in vfs else tuple(f for f in functions if f not in vfs)
        values["physical_slot"] = slots.get(slot_id)
        values["net"] = net.get(name, ())
        values["block"] = block.get(name, ())
        values["drm"] = drm.get(name, ())
        sriov, link = values["sriov"], values["link"]
        if sriov is not None:
            values["sriov"] = Sriov(*sriov)
        if link is not None:
            values["link"] = PciLink(*link)
        devices[name] = build_frozen(PciDevice, values)
    return devices


def with_group_members(host: Host, devices_dir: str, devices: set[str], only: Iterable[str]) -> set[str]:
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
    vfs: list[str] = []
    for name in wanted:
        d = devices_dir + "/" + name
        if os.path.exists(d + "/sriov_totalvfs"):
            links = (link_name(d + "/" + e) for e in list_dir(d) if e.startswith("virtfn"))
            vfs.extend(v for v in links if v in devices)
    add_groups(vfs, wanted)
    return wanted


def device_jobs(entries: list[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, slot id, the slot's other functions) for every entry of ``bus/pci/devices`` that is a PCI address,
    in address order: multifunction siblings are known from the names, before any device is read (the VFs among
    them are dropped once the devices are read, ``virtual_functions``).

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
    jobs: list[tuple[str, str, tuple[str, ...]]] = []
    for slot_id, group in groupby(pairs, key=itemgetter(1)):
        members = [n for n, _ in group]
        if len(members) == 1:
            jobs.append((members[0], slot_id, ()))
        else:
            for i, n in enumerate(members):
                jobs.append((n, slot_id, tuple(members[:i] + members[i + 1 :])))
    return jobs


class Reading:
    """One scan's reading of the device rows, begun: which devices (``jobs``), with which pci.ids, host tables
    and row reader, and how: in this process alone when the rows are asked for (``devices``), or, on a host of
    PARALLEL_MIN devices or more, with a forked child already reading from the other end (parallel.py).

    ``Inventory.scan`` begins its own, or takes one begun earlier by whoever knew the scan was coming (the CLI
    at process start, cli/startup.py, so that the child reads while the CLI is imported)."""

    def __init__(self, host: Host, ids: PciIds | None, *, detail: bool, only: Iterable[str] | None) -> None:
        self.devices_dir = os.fspath(host.pci_devices_dir)
        #: What this reading was begun for (``serves``).
        self.asked = (self.devices_dir, detail, None if only is None else tuple(only))
        self.ids_given = ids
        jobs = device_jobs(list_dir(self.devices_dir))
        if only is not None:
            wanted = with_group_members(host, self.devices_dir, {job[0] for job in jobs}, only)
            jobs = [job for job in jobs if job[0] in wanted]
        self.jobs = jobs
        self.partial = only is not None
        self.tables = HostTables(host)
        self.reader = Reader(host, PciIds.load(host.find_pci_ids()) if ids is None else ids, self.tables, detail)
        self.child = (
            ForkedReader.start(self.reader.row, jobs, row_to_wire, row_from_wire) if len(jobs) >= PARALLEL_MIN else None
        )
        #: What ``devices`` read but did not believe (an id that is not 4 hex digits is None): for stderr.
        self.warnings: tuple[str, ...] = ()

    def serves(self, host: Host, ids: PciIds | None, detail: bool, only: Iterable[str] | None) -> bool:
        """Whether this is the reading ``Inventory.scan(host, ids, detail=detail, only=only)`` would begin."""
        return ids is self.ids_given and self.asked == (
            os.fspath(host.pci_devices_dir),
            detail,
            None if only is None else tuple(only),
        )

    def devices(self) -> dict[str, PciDevice]:
        """Every device read, by name, in address order. While a child reads, this process reads the host
        tables the rows are joined with, then rows from its end until it meets the child."""
        if self.child is not None:
            rows = self.child.join(self.reader.row, self.tables.read_joins)
        else:
            self.tables.read_joins()
            rows = [self.reader.row(job) for job in self.jobs]
        vfs = virtual_functions(rows, self.devices_dir, partial=self.partial)
        self.warnings = tuple(
            f"{values['address']}: {', '.join(malformed)}: shown as unknown" for values, malformed in rows if malformed
        )
        return to_devices(rows, self.jobs, self.tables, vfs)

    def cancel(self) -> None:
        """End the child, if any (a reading not taken); idempotent."""
        if self.child is not None:
            self.child.cancel()


class Inventory:
    """All PCI devices and IOMMU groups of one host, sorted by address."""

    def __init__(
        self,
        host: Host,
        devices: dict[str, PciDevice],
        tables: HostTables,
        *,
        partial: bool = False,
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.devices = devices
        self._tables = tables
        #: What was read but not believed (an id that is not 4 hex digits is None): for stderr.
        self.warnings = warnings
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
        reading: Reading | None = None,
    ) -> Inventory:
        """Read the host's PCI devices.

        ``detail=False`` skips the fields only ``show`` and the preflight use (``reset_method``, ``link``: they
        stay None): on a large host they are a third of the reads. ``only``: read just these addresses, every
        member of their IOMMU groups and the VFs of a PF among them (``with_group_members``: what the binding
        engine needs about a few devices on a host of thousands); addresses that are not devices are left out,
        and the caller's ``device()`` says so. ``reading``: one begun already, taken if it is this scan's
        (``Reading.serves``), else cancelled.
        """
        if reading is not None and not reading.serves(host, ids, detail, only):
            reading.cancel()
            reading = None
        if reading is None:
            reading = Reading(host, ids, detail=detail, only=only)
        devices = reading.devices()
        return cls(host, devices, reading.tables, partial=reading.partial, warnings=reading.warnings)

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
        from ..group import GroupMember, IommuGroup  # here: a plain ``list`` never needs them (group.py)

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
        from ..group import GroupVerdict

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
        from ..group import GroupVerdict

        group = self.group_of(address)
        return group.verdict if group else GroupVerdict.NONE

    def peers(self, address: str) -> list[PciDevice]:
        """The other devices of ``address``'s IOMMU group (empty when it has none)."""
        group = self.group_of(address)
        if group is None:
            return []
        return [self.devices[m.address] for m in group.devices if m.address != address and m.address in self.devices]
