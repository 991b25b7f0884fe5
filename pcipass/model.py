"""The inventory's data: frozen dataclasses named after the kernel's attributes. ``None`` means unknown.
IOMMU groups are in pcipass/group.py."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

T = TypeVar("T")


def build_frozen(cls: type[T], values: dict[str, object]) -> T:
    """An instance of the frozen dataclass ``cls`` from ``values``, which must hold every field, in field order.

    What the generated ``__init__`` does, without its one ``object.__setattr__`` call per field: for a 33-field
    PciDevice that was a fifth of a 16k-device scan (bench/run.py). Only the inventory's hot loop uses it;
    tests/test_inventory.py checks that it builds what ``__init__`` builds."""
    obj = object.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    return obj


class Role(str, Enum):
    ENDPOINT = "endpoint"
    BRIDGE = "bridge"


@dataclass(frozen=True)
class Sriov:
    """SR-IOV state of a physical function (``sriov_*`` attributes and ``virtfnN`` links)."""

    totalvfs: int | None
    numvfs: int | None
    vfs: tuple[str, ...] = ()


@dataclass(frozen=True)
class PciLink:
    """PCIe link attributes (``current_link_speed`` etc.); all None on conventional PCI."""

    current_link_speed: str | None = None
    current_link_width: int | None = None
    max_link_speed: str | None = None
    max_link_width: int | None = None


@dataclass(frozen=True)
class PciDevice:
    """One PCI function, as sysfs shows it under ``bus/pci/devices/<address>``."""

    address: str
    vendor_id: str | None
    device_id: str | None
    subsystem_vendor_id: str | None
    subsystem_device_id: str | None
    class_id: str | None
    revision: str | None
    vendor_name: str | None
    device_name: str | None
    subsystem_vendor_name: str | None
    subsystem_device_name: str | None
    class_name: str | None
    subclass_name: str | None
    prog_if_name: str | None
    driver: str | None
    driver_override: str | None
    module: str | None
    modalias: str | None
    iommu_group: int | None
    numa_node: int | None
    is_bridge: bool
    header_type: int | None
    physical_slot: str | None
    parent_bridge: str | None
    functions: tuple[str, ...]  #: multifunction siblings: the slot's other functions, not SR-IOV VFs; () for a VF
    physfn: str | None  #: for an SR-IOV VF, its PF
    sriov: Sriov | None  #: for an SR-IOV PF
    boot_vga: bool | None
    reset_method: tuple[str, ...] | None  #: None too when the scan skipped details (cli.inventory_cmds.DETAIL_FIELDS)
    link: PciLink | None  #: None when the scan skipped details
    net: tuple[str, ...] = ()
    block: tuple[str, ...] = ()
    drm: tuple[str, ...] = ()

    @property
    def role(self) -> Role:
        return Role.BRIDGE if self.is_bridge else Role.ENDPOINT

    @property
    def id_pair(self) -> str | None:
        """``vvvv:dddd`` (lower-case), or None when either id is unknown."""
        if self.vendor_id and self.device_id:
            return f"{self.vendor_id}:{self.device_id}"
        return None

    @property
    def display_name(self) -> str:
        if self.vendor_name or self.device_name:
            return " ".join(x for x in (self.vendor_name, self.device_name) if x)
        return self.id_pair or "unknown device"
