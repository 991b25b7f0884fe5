"""``status``: what pcipass did and what the kernel says now. Read-only (no lock taken, nothing written)."""

from __future__ import annotations

from dataclasses import dataclass

from ..address import PciAddress
from ..drivers import is_vfio_driver
from ..errors import DeviceNotFound, PcipassError
from ..host import Host
from ..inventory import Inventory
from ..pciids import PciIds
from .kernel import Kernel, SysfsKernel
from .state import StateStore, interrupted_message, lock_is_free, pid_alive
from .vfio import VfioGroupStatus, VfioOpeners, status_unless_held


@dataclass(frozen=True)
class DeviceStatus:
    address: str
    group: int | None
    driver: str | None
    driver_override: str | None
    recorded_driver: str | None  #: the driver pcipass recorded before enabling (None: none or not recorded)
    recorded_override: str | None
    recorded_known: bool | None  #: None: no record; False: enabled outside pcipass, originals unknown
    phase: str | None  #: enabled | enabling | disabling (None: no record)
    interrupted: bool  #: the run that wrote an in-flight record died
    since: str | None
    group_verdict: str  #: ready | bindable | none (sysfs view of the group)
    vfio_viable: bool | None  #: the kernel's VFIO_GROUP_GET_STATUS answer (None: not asked / unavailable)
    vfio_detail: str | None


@dataclass(frozen=True)
class StatusReport:
    devices: tuple[DeviceStatus, ...]
    messages: tuple[str, ...]
    errors: tuple[PcipassError, ...]


def status(host: Host, addresses: list[str] | None = None, *, kernel: Kernel | None = None) -> StatusReport:
    """Each named device, or (none named) every device pcipass recorded, on a vfio driver, or with an
    override set."""
    kernel = kernel or SysfsKernel(host)
    records = StateStore(host).load()
    free = lock_is_free(host)
    errors: list[PcipassError] = []
    if addresses:
        wanted = list(dict.fromkeys(str(PciAddress.parse(a)) for a in addresses))
        # The named devices and their groups (the verdict needs every member), not the whole host.
        inv = Inventory.scan(host, ids=PciIds(None), detail=False, only=wanted)
    else:
        inv = Inventory.scan(host, ids=PciIds(None), detail=False)
        wanted = sorted(
            {a for a in records}
            | {d.address for d in inv.devices.values()
               if is_vfio_driver(d.driver, inv.variant_modules) or d.driver_override},
            key=PciAddress.parse,
        )
    vfio_cache: dict[int, VfioGroupStatus] = {}
    openers = VfioOpeners(host)
    out: list[DeviceStatus] = []
    messages: list[str] = []
    for a in wanted:
        rec = records.get(a)
        dev = inv.devices.get(a)
        if dev is None:
            if rec is None:
                errors.append(DeviceNotFound(f"no PCI device {a}", address=a))
                continue
            messages.append(f"{a}: recorded by pcipass but no longer present")
        interrupted = bool(rec and rec.in_flight and (free or not pid_alive(rec.pid)))
        viable = detail = None
        group = dev.iommu_group if dev else (rec.group if rec else None)
        if dev is not None and group is not None and is_vfio_driver(dev.driver, inv.variant_modules):
            if group not in vfio_cache:
                vfio_cache[group] = status_unless_held(openers, inv, group, kernel.vfio_status)
            viable, detail = vfio_cache[group].viable, vfio_cache[group].detail
        out.append(DeviceStatus(
            address=a,
            group=group,
            driver=dev.driver if dev else None,
            driver_override=dev.driver_override if dev else None,
            recorded_driver=rec.original_driver if rec and rec.known else None,
            recorded_override=rec.original_override if rec and rec.known else None,
            recorded_known=rec.known if rec else None,
            phase=rec.phase.value if rec else None,
            interrupted=interrupted,
            since=rec.since if rec else None,
            group_verdict=inv.group_verdict(a).value if dev else "none",
            vfio_viable=viable,
            vfio_detail=detail,
        ))
        if interrupted:
            messages.append(interrupted_message(rec))
    return StatusReport(tuple(out), tuple(messages), tuple(errors))
