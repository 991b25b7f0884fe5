"""IOMMU groups as the inventory reports them: their members, and whether a group can be assigned to a VM.

Apart from the device model (pcipass/model.py) because only some commands need groups: a plain ``list``
does not import this module, and each frozen dataclass costs its import the generation of its methods, at
every start (bench/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .model import Role


class GroupVerdict(str, Enum):
    READY = "ready"  #: every endpoint is on a vfio driver, pci-stub, or no driver: the group can be assigned
    BINDABLE = "bindable"  #: some endpoints are on host drivers that would have to be moved first
    NONE = "none"  #: no IOMMU group at all (IOMMU off, or the device is not behind one)


@dataclass(frozen=True)
class GroupMember:
    """A device as its IOMMU group lists it: enough to judge the group without the whole PciDevice."""

    address: str
    role: Role
    driver: str | None
    vendor_id: str | None
    device_id: str | None
    class_id: str | None
    name: str | None


@dataclass(frozen=True)
class IommuGroup:
    """An IOMMU group (``kernel/iommu_groups/<N>``): its members and whether it can be assigned."""

    group: int
    verdict: GroupVerdict
    type: str | None  #: default DMA domain type (identity, DMA, DMA-FQ), from the group's ``type``
    devices: tuple[GroupMember, ...] = field(default_factory=tuple)

    @property
    def endpoints(self) -> tuple[GroupMember, ...]:
        return tuple(m for m in self.devices if m.role is Role.ENDPOINT)
