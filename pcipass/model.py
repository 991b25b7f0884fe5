"""The inventory's data: frozen dataclasses named after the kernel's attributes. ``None`` means unknown.
IOMMU groups are in pcipass/group.py."""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
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


def _spec(source: str, doc: str, *, detail: bool = False) -> dict[str, object]:
    """A PciDevice field's entry in the field spec (``device_fields``): where the kernel shows it, what it
    means, and whether only a ``detail`` scan reads it."""
    return {"source": source, "doc": doc, "detail": detail}


@dataclass(frozen=True)
class PciDevice:
    """One PCI function, as sysfs shows it under ``bus/pci/devices/<address>``.

    The declaration is the field spec: each field's name, type, source and meaning (``device_fields``). The
    reader (inventory/reader.py) builds a device's fields by these names in this order, ``show``/``list`` write
    them in this order (the JSON goldens' keys, tests/test_inventory.py), and scripts/gen_docs.py writes the
    JSON field table of docs/contract.md from it. Sources are relative to the device's directory."""

    address: str = field(
        metadata=_spec("the entry's name in `bus/pci/devices`", "canonical `dddd:bb:dd.f`, lower-case hex")
    )
    vendor_id: str | None = field(metadata=_spec("`uevent` `PCI_ID`, else `vendor`", "4 lower-case hex digits"))
    device_id: str | None = field(metadata=_spec("`uevent` `PCI_ID`, else `device`", "4 lower-case hex digits"))
    subsystem_vendor_id: str | None = field(
        metadata=_spec("`uevent` `PCI_SUBSYS_ID`, else `subsystem_vendor`", "4 lower-case hex digits")
    )
    subsystem_device_id: str | None = field(
        metadata=_spec("`uevent` `PCI_SUBSYS_ID`, else `subsystem_device`", "4 lower-case hex digits")
    )
    class_id: str | None = field(
        metadata=_spec("`uevent` `PCI_CLASS`, else `class`", "6 hex digits: class, subclass, programming interface")
    )
    revision: str | None = field(metadata=_spec("`config` byte 0x08, else `revision`", "2 hex digits"))
    vendor_name: str | None = field(
        metadata=_spec("pci.ids", "the vendor's name (null without a pci.ids, or when it does not list the id)")
    )
    device_name: str | None = field(metadata=_spec("pci.ids", "the device's name"))
    subsystem_vendor_name: str | None = field(
        metadata=_spec("pci.ids", "the subsystem vendor's name (null for subsystem vendor 0000 or ffff: none)")
    )
    subsystem_device_name: str | None = field(metadata=_spec("pci.ids", "the subsystem's name"))
    class_name: str | None = field(metadata=_spec("pci.ids", "the class's name"))
    subclass_name: str | None = field(metadata=_spec("pci.ids", "the subclass's name"))
    prog_if_name: str | None = field(metadata=_spec("pci.ids", "the programming interface's name"))
    driver: str | None = field(
        metadata=_spec("`uevent` `DRIVER`, else the `driver` link", "the bound driver (null: none bound)")
    )
    driver_override: str | None = field(
        metadata=_spec("`driver_override`", "the `driver_override` attribute (null: none set)")
    )
    module: str | None = field(
        metadata=_spec("`bus/pci/drivers/<driver>/module`", "the bound driver's module (null: built in, or no driver)")
    )
    modalias: str | None = field(
        metadata=_spec("`uevent` `MODALIAS`, else `modalias`", "what modules.alias matches (`pci:v...`)")
    )
    iommu_group: int | None = field(
        metadata=_spec("the `iommu_group` link, else `kernel/iommu_groups`", "null: no IOMMU group (IOMMU off)")
    )
    numa_node: int | None = field(metadata=_spec("`numa_node`", "null: no NUMA affinity"))
    is_bridge: bool = field(
        metadata=_spec(
            "`config` header type, else a `pci_bus` directory or the class",
            "a bridge or port (config header type 1 or 2), not an endpoint",
        )
    )
    header_type: int | None = field(
        metadata=_spec("`config` byte 0x0E", "the config header type (0 endpoint, 1 bridge, 2 CardBus bridge)")
    )
    physical_slot: str | None = field(
        metadata=_spec("`bus/pci/slots/*/address`", "the slot name, from `bus/pci/slots`")
    )
    parent_bridge: str | None = field(
        metadata=_spec("the directory the device's link points into", "the upstream bridge or port")
    )
    functions: tuple[str, ...] = field(
        metadata=_spec(
            "the names in `bus/pci/devices`, less the VFs",
            "multifunction siblings: the slot's other functions, not SR-IOV VFs; empty for a VF",
        )
    )
    physfn: str | None = field(metadata=_spec("the `physfn` link", "for an SR-IOV VF, its PF"))
    sriov: Sriov | None = field(
        metadata=_spec("`sriov_totalvfs`, `sriov_numvfs`, the `virtfnN` links", "for an SR-IOV PF")
    )
    boot_vga: bool | None = field(
        metadata=_spec("`boot_vga`", "the firmware boot display device (VGA-class devices only)")
    )
    reset_method: tuple[str, ...] | None = field(
        metadata=_spec(
            "`reset_method`",
            "the reset methods the kernel tries; null when the scan skipped details",
            detail=True,
        )
    )
    link: PciLink | None = field(
        metadata=_spec(
            "`current_link_speed`, `current_link_width`, `max_link_speed`, `max_link_width`",
            "PCIe link speed and width; null when the scan skipped details",
            detail=True,
        )
    )
    net: tuple[str, ...] = field(default=(), metadata=_spec("`class/net`", "network interfaces on the device"))
    block: tuple[str, ...] = field(default=(), metadata=_spec("`class/block`, `block`", "disks on the device"))
    drm: tuple[str, ...] = field(default=(), metadata=_spec("`class/drm`", "DRM cards on the device"))

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


def device_fields() -> tuple[Field, ...]:
    """The field spec of a device, in order: PciDevice's fields, each with ``metadata`` ``source`` (where the
    kernel shows it), ``doc`` (what it means) and ``detail`` (only a detail scan reads it)."""
    return fields(PciDevice)


#: The fields only a ``detail`` scan reads (``Inventory.scan(detail=False)`` leaves them None).
DETAIL_FIELDS = tuple(f.name for f in fields(PciDevice) if f.metadata["detail"])
