"""Whether an IOMMU translates DMA on a host: the one answer ``check-iommu`` and the binding engine share."""

from __future__ import annotations

from .host import Host
from .sysfs import list_dir, read_str

#: The name vfio gives the groups it makes for devices bound in no-IOMMU mode
#: (drivers/vfio/group.c: ``iommu_group_set_name(group, "vfio-noiommu")``). They isolate nothing.
NOIOMMU_GROUP_NAME = "vfio-noiommu"


def is_noiommu_group(host: Host, group: str) -> bool:
    return (read_str(host.iommu_groups_dir / group / "name") or "").strip() == NOIOMMU_GROUP_NAME


def active(host: Host) -> bool:
    """An IOMMU unit is registered (``/sys/class/iommu``), or, for trees recorded without that directory, an
    IOMMU group exists that is not one of vfio's no-IOMMU groups (the kernel makes groups only for devices
    behind an IOMMU; drivers/iommu/iommu.c)."""
    if list_dir(host.iommu_class_dir):
        return True
    return any(not is_noiommu_group(host, g) for g in list_dir(host.iommu_groups_dir))
