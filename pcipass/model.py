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

    address: str  #: canonical ``dddd:bb:dd.f``, lower-case hex
    vendor_id: str | None  #: 4 lower-case hex digits
    device_id: str | None  #: 4 lower-case hex digits
    subsystem_vendor_id: str | None  #: 4 lower-case hex digits
    subsystem_device_id: str | None  #: 4 lower-case hex digits
    class_id: str | None  #: 6 hex digits: class, subclass, programming interface
    revision: str | None  #: 2 hex digits
    vendor_name: str | None  #: from pci.ids (null without one, or when it does not list the id)
    device_name: str | None  #: from pci.ids
    subsystem_vendor_name: str | None  #: from pci.ids
    subsystem_device_name: str | None  #: from pci.ids
    class_name: str | None  #: from pci.ids
    subclass_name: str | None  #: from pci.ids
    prog_if_name: str | None  #: from pci.ids
    driver: str | None  #: the bound driver (null: none bound)
    driver_override: str | None  #: the ``driver_override`` attribute (null: none set)
    module: str | None  #: the bound driver's module (null: built in, or no driver)
    modalias: str | None  #: what modules.alias matches (``pci:v...``)
    iommu_group: int | None  #: null: no IOMMU group (IOMMU off)
    numa_node: int | None  #: null: no NUMA affinity
    is_bridge: bool  #: a bridge or port (config header type 1 or 2), not an endpoint
    header_type: int | None  #: the config header type (0 endpoint, 1 bridge, 2 CardBus bridge)
    physical_slot: str | None  #: the slot name, from ``bus/pci/slots``
    parent_bridge: str | None  #: the upstream bridge or port
    functions: tuple[str, ...]  #: multifunction siblings: the slot's other functions, not SR-IOV VFs; empty for a VF
    physfn: str | None  #: for an SR-IOV VF, its PF
    sriov: Sriov | None  #: for an SR-IOV PF
    boot_vga: bool | None  #: the firmware boot display device (VGA-class devices only)
    reset_method: tuple[str, ...] | None  #: the reset methods the kernel tries; null when the scan skipped details
    link: PciLink | None  #: PCIe link speed and width; null when the scan skipped details
    net: tuple[str, ...] = ()  #: network interfaces on the device
    block: tuple[str, ...] = ()  #: disks on the device
    drm: tuple[str, ...] = ()  #: DRM cards on the device

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
