"""What pcipass reads about mediated devices, named after the kernel's attributes (None: unknown)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from ..errors import UsageError

# The kernel parses the UUID written to ``create`` with uuid_parse() (drivers/vfio/mdev/mdev_sysfs.c
# create_store): 36 characters, 8-4-4-4-12 hex digits; the device is then named by "%pUl" (lower case).
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(text: str) -> bool:
    return bool(_UUID.fullmatch(text))


def canonical_uuid(text: str) -> str:
    """``text`` as the kernel names the device (lower case); UsageError when it is not a UUID."""
    if not is_uuid(text):
        raise UsageError(
            f"{shown(text)} is not a UUID (8-4-4-4-12 hex digits, e.g. 83b8f4f2-509f-382f-3c1e-e6bfe0fa1001)"
        )
    return text.lower()


def shown(text: str) -> str:
    """A host string fit for a message: as it is when plain printable ASCII, else quoted with escapes (a
    --root tree may name a directory with control characters)."""
    return text if text.isascii() and text.isprintable() else repr(text)


class Interface(str, Enum):
    """How a type is created: the mdev core's ``create`` file, or NVIDIA's per-VF vGPU interface (vGPU 17+ on
    SR-IOV GPUs: ``/sys/bus/pci/devices/<VF>/nvidia/creatable_vgpu_types`` and ``current_vgpu_type``)."""

    MDEV = "mdev"
    NVIDIA_VGPU = "nvidia-vgpu"


@dataclass(frozen=True)
class MdevType:
    """One mediated-device type a parent offers (a directory of ``mdev_supported_types``, or an NVIDIA vGPU type
    a VF can take)."""

    parent: str  #: the parent's device name (a PCI address, or a virtual device's name such as ``mtty``)
    type_id: str  #: the type's directory name (``mtty-2``, ``nvidia-747``), or NVIDIA's numeric vGPU type ID
    name: str | None
    description: str | None
    device_api: str | None  #: vfio-pci, vfio-ccw, vfio-ap
    available_instances: int | None
    devices: tuple[str, ...]  #: the instances of this type (mdev UUIDs; for nvidia-vgpu: the VF when current)
    interface: Interface = Interface.MDEV
    parent_driver: str | None = None
    parent_vendor_id: str | None = None  #: a PCI parent's vendor ID (``10de``); None for a virtual parent
    parent_class_id: str | None = None  #: a PCI parent's class (``030200``)


@dataclass(frozen=True)
class MediatedDevice:
    """One existing mediated device (``/sys/bus/mdev/devices/<uuid>``)."""

    uuid: str
    parent: str | None
    mdev_type: str | None  #: the type's ID (the target of the ``mdev_type`` link)
    type_name: str | None  #: that type's ``name``
    device_api: str | None
    iommu_group: int | None
    driver: str | None
    held_by: tuple[str, ...]  #: ``comm (pid N)`` of each process holding its VFIO group or device node
    created_by_pcipass: bool  #: pcipass's state file records it (``pcipass mdev create``)
    mdevctl: str | None  #: mdevctl defines it: its start mode (``auto``/``manual``); None when not defined
