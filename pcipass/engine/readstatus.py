"""``status``: what pcipass did and what the kernel says now. Read-only (no lock taken, nothing written).

Passive by default: it opens nothing under ``/dev/vfio``. VFIO allows one open file per group
(drivers/vfio/group.c vfio_group_fops_open), so a ``status`` from monitoring that opened a group at the instant
a VM starts would make the VM's own open fail with EBUSY. A group's viability is decided from sysfs by the
kernel's rule instead (every endpoint on vfio-pci, a vfio variant, pci-stub or no driver: the drivers that
leave DMA ownership to VFIO, ``driver_managed_dma``), and the ``/proc`` holder scan says who has it open.
``probe=True`` (``status --probe``) asks the kernel with ``VFIO_GROUP_GET_STATUS`` on groups nobody holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..address import PciAddress
from ..bootbind import BootBinding, BootConfig
from ..drivers import is_assignable, is_vfio_driver
from ..errors import DeviceNotFound, PcipassError
from ..host import Host
from ..inventory import Inventory
from ..model import PciDevice
from ..pciids import PciIds
from .kernel import Kernel, SysfsKernel
from .state import interrupted_message, load_for_reading, lock_is_free, pid_alive
from .vfio import VfioGroupStatus, VfioOpeners, status_unless_held


@dataclass(frozen=True)
class DeviceStatus:
    """One device as ``status`` reports it: its binding now, what pcipass recorded, what binds it at boot."""

    address: str
    group: int | None
    driver: str | None
    driver_override: str | None
    recorded_driver: str | None  #: the driver pcipass recorded before enabling (None: none or not recorded)
    recorded_override: str | None
    recorded_known: bool | None  #: None: no record; False: enabled outside pcipass, originals unknown
    phase: str | None  #: enabled | enabling | disabling | gone (None: no record; unknown: the state is unreadable)
    interrupted: bool  #: the run that wrote an in-flight record died
    since: str | None
    group_verdict: str  #: ready | bindable | none (sysfs view of the group)
    #: Can a VM open the group: from sysfs by the kernel's rule, or (``viable_from`` "kernel") the kernel's
    #: VFIO_GROUP_GET_STATUS answer. None: not on a vfio driver, held by a process, or not answered.
    vfio_viable: bool | None
    vfio_detail: str | None
    viable_from: str | None  #: sysfs | kernel (None: no verdict)
    #: What binds the device at the next boot (``bootbind``): the driver, ``driverctl`` or ``vfio-pci ids=``, and
    #: the file (or ``kernel command line``). All None: nothing does; a runtime binding ends with the boot.
    boot_driver: str | None
    boot_by: str | None
    boot_where: str | None
    #: Why pcipass's boot unit will refuse the entry that names the device (``verify``'s reasons: another card at
    #: the address, its group changed, a second owner); ``boot_driver`` is then None: nothing binds it.
    boot_refused: str | None


@dataclass(frozen=True)
class StatusReport:
    """What ``status`` found: the devices, notes for the user, and per-device errors."""

    devices: tuple[DeviceStatus, ...]
    messages: tuple[str, ...]
    errors: tuple[PcipassError, ...]


def status(
    host: Host, addresses: list[str] | None = None, *, kernel: Kernel | None = None, probe: bool = False
) -> StatusReport:
    """Each named device, or (none named) every device pcipass recorded, on a vfio driver, or with an
    override set. ``probe``: ask the kernel (VFIO_GROUP_GET_STATUS) instead of judging from sysfs."""
    kernel = kernel or SysfsKernel(host)
    messages: list[str] = []
    records, unreadable = load_for_reading(host, messages)
    free = lock_is_free(host)
    boot = BootConfig(host)
    errors: list[PcipassError] = []
    if addresses:
        wanted = list(dict.fromkeys(str(PciAddress.parse(a)) for a in addresses))
        # The named devices and their groups (the verdict needs every member), not the whole host.
        inv = Inventory.scan(host, ids=PciIds(None), detail=False, only=wanted)
    else:
        inv = Inventory.scan(host, ids=PciIds(None), detail=False)
        wanted = sorted(
            {a for a in records}
            | {
                d.address
                for d in inv.devices.values()
                if is_vfio_driver(d.driver, inv.variant_modules)
                or d.driver_override
                or is_vfio_driver(_boot_driver(boot, d), inv.variant_modules)
            },
            key=PciAddress.parse,
        )
    vfio_cache: dict[int, tuple[VfioGroupStatus, str | None]] = {}
    openers = VfioOpeners(host)
    out: list[DeviceStatus] = []
    for a in wanted:
        rec = records.get(a)
        dev = inv.devices.get(a)
        if dev is None:
            if rec is None:
                errors.append(DeviceNotFound(f"no PCI device {a}", address=a))
                continue
            messages.append(f"{a}: recorded by pcipass but no longer present")
        interrupted = bool(rec and rec.in_flight and (free or not pid_alive(rec.pid)))
        viable = detail = source = None
        group = dev.iommu_group if dev else (rec.group if rec else None)
        if dev is not None and group is not None and is_vfio_driver(dev.driver, inv.variant_modules):
            if group not in vfio_cache:
                ask = kernel.vfio_status if probe else lambda g: _from_sysfs(inv, g)
                st = status_unless_held(openers, inv, group, ask)
                vfio_cache[group] = (st, None if st.viable is None else "kernel" if probe else "sysfs")
            st, source = vfio_cache[group]
            viable, detail = st.viable, st.detail
        at_boot = boot.of(dev) if dev else None
        out.append(
            DeviceStatus(
                address=a,
                group=group,
                driver=dev.driver if dev else None,
                driver_override=dev.driver_override if dev else None,
                recorded_driver=rec.original_driver if rec and rec.known else None,
                recorded_override=rec.original_override if rec and rec.known else None,
                recorded_known=rec.known if rec else None,
                phase=rec.phase.value if rec else ("unknown" if unreadable else None),
                interrupted=interrupted,
                since=rec.since if rec else None,
                group_verdict=inv.group_verdict(a).value if dev else "none",
                vfio_viable=viable,
                vfio_detail=detail,
                viable_from=source,
                boot_driver=at_boot.driver if at_boot and not at_boot.refused else None,
                boot_by=at_boot.by if at_boot else None,
                boot_where=at_boot.where if at_boot else None,
                boot_refused=at_boot.refused if at_boot else None,
            )
        )
        if dev is not None:
            note = _boot_note(dev, at_boot, inv.variant_modules)
            if note:
                messages.append(note)
        if interrupted and rec is not None:
            messages.append(interrupted_message(rec))
    if vfio_cache and not probe:
        messages.append(
            "viability judged from sysfs and the /proc holder scan; no /dev/vfio node was opened "
            "(status --probe asks the kernel)"
        )
    return StatusReport(tuple(out), tuple(messages), tuple(errors))


def _from_sysfs(inv: Inventory, group: int) -> VfioGroupStatus:
    """The kernel's viability rule applied to sysfs: the endpoints that keep the group from a VM."""
    blocking = [
        f"{m.address} on {m.driver}"
        for m in (inv.groups[group].endpoints if group in inv.groups else ())
        if not is_assignable(m.driver, inv.variant_modules)
    ]
    if blocking:
        return VfioGroupStatus(group, False, False, "on a host driver: " + ", ".join(blocking))
    return VfioGroupStatus(group, True, False, None)


def _boot_driver(boot: BootConfig, dev: PciDevice) -> str | None:
    at_boot = boot.of(dev)
    return at_boot.driver if at_boot and not at_boot.refused else None


def _boot_note(dev: PciDevice, at_boot: BootBinding | None, variants: frozenset[str]) -> str | None:
    """The reboot trap, said: a vfio binding nothing renews at boot, or a host driver now that a boot-time
    configuration will take away again."""
    on_vfio = is_vfio_driver(dev.driver, variants)
    if at_boot is not None and at_boot.refused:
        # The entry is there but the unit will not apply it: neither "nothing binds it" nor "pcipass binds it".
        until = f"on {dev.driver} until the next boot only: " if on_vfio else ""
        return (
            f"{dev.address}: {until}pcipass's boot unit refuses its entry ({at_boot.where}): {at_boot.refused}; "
            f"'pcipass verify' says more; 'pcipass persist {dev.address}' again records the card now there, "
            f"'pcipass unpersist {dev.address}' drops the entry"
        )
    if on_vfio and (at_boot is None or not is_vfio_driver(at_boot.driver, variants)):
        driverctl = (
            f"driverctl set-override {dev.address} {dev.driver} (while no VM uses it: driverctl rebinds the device "
            "at once)"
        )
        if at_boot is None:
            why = "nothing binds it at boot (no pcipass entry, no driverctl override, not in vfio-pci's ids=)"
            keep = f"pcipass persist {dev.address} (and 'pcipass boot install' once), or {driverctl}"
        else:
            driver = "no driver" if at_boot.driver == "none" else at_boot.driver  # driverctl's "none": unbound
            why = f"{at_boot.by} ({at_boot.where}) gives it {driver}"
            keep = driverctl
        return f"{dev.address}: on {dev.driver} until the next boot only: {why}; to keep it there: {keep}"
    if not on_vfio and at_boot is not None and is_vfio_driver(at_boot.driver, variants):
        return (
            f"{dev.address}: on {dev.driver or 'no driver'} now, but {at_boot.by} ({at_boot.where}) binds it "
            f"to {at_boot.driver} at the next boot"
        )
    return None
