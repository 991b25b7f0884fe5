"""Selecting devices: class aliases and the ``list`` filters, as pure functions over the inventory."""

from __future__ import annotations

from collections.abc import Iterable

from .drivers import is_vfio_driver, normalize
from .errors import UsageError
from .model import PciDevice

# Friendly names for PCI class codes (PCI Code and ID Assignment Specification, section 1). Each maps to
# class-code prefixes (base class, or base+subclass) in hex.
CLASS_ALIASES: dict[str, tuple[str, ...]] = {
    "storage": ("01",),
    "nvme": ("0108",),
    "nic": ("02",),
    "network": ("02",),
    "gpu": ("03", "1200"),  # display controllers and "processing accelerators" (e.g. data-centre GPUs)
    "display": ("03",),
    "multimedia": ("04",),
    "audio": ("0401", "0403"),
    "memory": ("05",),
    "bridge": ("06",),
    "communication": ("07",),
    "system": ("08",),
    "input": ("09",),
    "serial-bus": ("0c",),
    "usb": ("0c03",),
    "smbus": ("0c05",),
    "wireless": ("0d",),
    "crypto": ("10",),
    "signal": ("11",),
    "accel": ("12",),
}


def class_prefixes(value: str) -> tuple[str, ...]:
    """Class-code prefixes for an alias (``gpu``) or a hex class code (``0x0300``, ``0c03``, ``03``)."""
    key = value.strip().lower()
    if key in CLASS_ALIASES:
        return CLASS_ALIASES[key]
    hexpart = key[2:] if key.startswith("0x") else key
    if hexpart and len(hexpart) in (2, 4, 6) and all(c in "0123456789abcdef" for c in hexpart):
        return (hexpart,)
    raise UsageError(
        f"unknown device class {value!r} (use one of {', '.join(sorted(CLASS_ALIASES))} or a hex class code)"
    )


def filter_devices(
    devices: Iterable[PciDevice],
    *,
    classes: Iterable[str] = (),
    vendor: str | None = None,
    driver: str | None = None,
    group: int | None = None,
    vfio: bool = False,
    variant_modules: frozenset[str] = frozenset(),
) -> list[PciDevice]:
    prefixes = tuple(p for c in classes for p in class_prefixes(c))
    vendor_key = vendor.strip().lower() if vendor else None
    if vendor_key and vendor_key.startswith("0x"):
        vendor_key = vendor_key[2:]
    driver_key = normalize(driver.strip()) if driver else None
    if not (prefixes or vendor_key or driver_key is not None or group is not None or vfio):
        return list(devices)  # no filter (most listings): no per-device tests on a host of thousands
    out = []
    for dev in devices:
        if prefixes and not (dev.class_id and dev.class_id.startswith(prefixes)):
            continue
        if vendor_key and not (
            dev.vendor_id == vendor_key or (dev.vendor_name and vendor_key in dev.vendor_name.lower())
        ):
            continue
        if driver_key is not None:
            if driver_key == "none":
                if dev.driver is not None:
                    continue
            elif dev.driver is None or normalize(dev.driver) != driver_key:
                continue
        if group is not None and dev.iommu_group != group:
            continue
        if vfio and not is_vfio_driver(dev.driver, variant_modules):
            continue
        out.append(dev)
    return out
