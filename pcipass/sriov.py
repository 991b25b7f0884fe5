"""An SR-IOV physical function as ``pcipass sriov`` shows it (``PhysicalFunction``): its VF counts, whether
drivers probe new VFs, and each VF with its driver, IOMMU group and users. This module reads what the kernel
shows of a PF; the view itself, which adds the engine's verdicts (who holds a VF, the PF guard), is made by
``engine.sriov.physical_function``.

The kernel's attributes of a PF (drivers/pci/pci-sysfs.c, drivers/pci/iov.c ``sriov_*``; present when the
device has the SR-IOV capability, whatever its driver): ``sriov_totalvfs`` (the most VFs it can have),
``sriov_numvfs`` (how many exist), ``sriov_drivers_autoprobe`` (1: drivers probe each VF as it is created;
0: a VF binds only to the driver its ``driver_override`` names, drivers/pci/pci-driver.c
pci_device_can_probe), ``sriov_offset``/``sriov_stride`` (where the VFs' routing IDs are, from the
capability) and ``sriov_vf_device`` (the VFs' device ID). Each VF is linked as ``virtfnN`` from its PF and
links back through ``physfn``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .address import PciAddress
from .host import Host
from .inventory import Inventory
from .sysfs import link_name, list_dir


@dataclass(frozen=True)
class VirtualFunction:
    """One VF of a PF, with what holds it."""

    virtfn: int  #: N of the PF's ``virtfnN`` link
    address: str
    driver: str | None
    driver_override: str | None
    iommu_group: int | None
    vfio_users: tuple[str, ...]  #: processes holding its VFIO group (or device) open: ``comm (pid N)``
    host_use: tuple[str, ...]  #: why the host uses it (an interface with an address, a mounted disk)

    @property
    def held(self) -> bool:
        return bool(self.vfio_users or self.host_use)


@dataclass(frozen=True)
class PhysicalFunction:
    """An SR-IOV PF: its ``sriov_*`` attributes and its VFs."""

    address: str
    vendor_id: str | None
    device_id: str | None
    driver: str | None
    sriov_totalvfs: int | None
    sriov_numvfs: int | None
    sriov_drivers_autoprobe: bool | None
    sriov_offset: int | None
    sriov_stride: int | None
    sriov_vf_device: str | None
    vfs: tuple[VirtualFunction, ...]
    #: Why ``enable`` refuses to unbind this PF (its VFs on host drivers would go with it); None: it does not.
    pf_guard: str | None

    def vf_addresses(self, count: int) -> tuple[str, ...]:
        """The addresses the first ``count`` VFs get: routing ID = the PF's + offset + i * stride (PCIe base
        spec, SR-IOV capability; drivers/pci/iov.c pci_iov_virtfn_bus/devfn). () when offset or stride is
        unknown."""
        if self.sriov_offset is None or self.sriov_stride is None:
            return ()
        pf = PciAddress.parse(self.address)
        rid = (pf.bus << 8) | (pf.slot << 3) | pf.function
        out = []
        for i in range(count):
            vf = rid + self.sriov_offset + i * self.sriov_stride
            out.append(str(PciAddress(pf.domain, (vf >> 8) & 0xFF, (vf >> 3) & 0x1F, vf & 7)))
        return tuple(out)


def scan(host: Host, address: str) -> Inventory:
    """What ``physical_function`` needs: the PF, its VFs and their IOMMU groups' members (not the whole host;
    no pci.ids names: the output shows ids)."""
    from .pciids import PciIds

    return Inventory.scan(host, ids=PciIds(None), detail=False, only=[address])


def virtfns(host: Host, address: str) -> list[tuple[int, str]]:
    """The PF's ``virtfnN`` links: (N, the VF's address), by N."""
    d = host.pci_device(address)
    out = []
    for entry in list_dir(d):
        if entry.startswith("virtfn") and entry[6:].isdigit():
            vf = link_name(d / entry)
            if vf:
                out.append((int(entry[6:]), vf))
    return sorted(out)


def vf_device_id(text: str | None) -> str | None:
    """``sriov_vf_device`` as the other ids are shown: four hex digits (the kernel prints it with %x)."""
    try:
        return f"{int(text or '', 16):04x}"
    except ValueError:
        return None
