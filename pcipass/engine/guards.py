"""The guards: why pcipass refuses to move a device. Pure functions over the inventory and host tables.

Refusal kinds and whether ``--force`` overrides them:
- not an endpoint, no IOMMU, no IOMMU group: never (the kernel would refuse anyway, or the result cannot be
  assigned: "Non-endpoint PCI devices cannot be assigned", libvirt);
- group not viable (other endpoints on host drivers): not by ``--force``; ``--group`` moves them too;
- in use by the host (``hostuse``: network, storage, console, and processes holding the device's DRM or NVIDIA
  nodes or mapping its resource files), and an SR-IOV PF whose VFs exist (unbinding the PF driver destroys
  them): ``--force``.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple

from ..drivers import is_assignable, is_vfio_driver
from ..errors import PermissionDenied, Refused, UsageError
from ..host import Host
from ..inventory import Inventory
from ..iommu import active as iommu_active
from ..model import PciDevice, Role

if TYPE_CHECKING:
    from ..hostuse import HostUse


class RefusalKind(str, Enum):
    NOT_ENDPOINT = "not-endpoint"
    NO_IOMMU = "no-iommu"
    NO_GROUP = "no-group"
    GROUP_NOT_VIABLE = "group-not-viable"
    IN_USE = "in-use"
    GROUP_OPEN = "group-open"


class Refusal(NamedTuple):
    address: str  #: the device the reason is about (a requested device or a group peer)
    kind: RefusalKind
    message: str
    remedy: str | None = None  #: what to stop, when the reason is a process (its systemd unit, or its pid)

    @property
    def overridable(self) -> bool:
        return self.kind is RefusalKind.IN_USE


def effective_uid() -> int:
    return os.geteuid()


def not_live_message(host: Host) -> str:
    """What a mutating run says when its root is not the running system (a fake tree, an unpacked snapshot)."""
    return f"{host.root_dir} is not the running system: the writes go to files there and no kernel acts on them"


def preflight(host: Host, *, action: str, dry_run: bool, iommu: bool = True) -> None:
    """Checks that stop a mutating command before it reads or writes anything else (``iommu``: the command
    needs an active IOMMU on a running kernel; mediated devices do not)."""
    if host.archive is not None:
        raise UsageError(
            f"cannot {action} devices of a snapshot ({host.archive}): it is not a running kernel",
            remedy=f"to preview what {action} would do there: tar -xf {host.archive} -C DIR, then "
            f"pcipass --root DIR {action} --dry-run",
        )
    if not dry_run and effective_uid() != 0:
        raise PermissionDenied(
            f"pcipass {action} writes to sysfs and needs root",
            remedy=f"run it as root (sudo pcipass {action} ...), or preview with --dry-run",
        )
    if iommu and host.reaches_kernel and not iommu_active(host):
        # A running kernel without an IOMMU (the live root, or a root whose sys is a real sysfs: a container's
        # /host): vfio-pci cannot bind anything there, and this is exactly the machine where an unbind takes
        # down the root disk or the network for nothing.
        raise Refused(
            f"no IOMMU is active on this host: refusing to {action} devices",
            remedy="enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on (or amd_iommu=on); "
            "see 'pcipass check-iommu'",
        )


def describe(dev: PciDevice) -> str:
    ids = dev.id_pair or "unknown ids"
    name = f"{dev.display_name}, " if (dev.vendor_name or dev.device_name) else ""
    return f"{dev.address} ({name}{ids}, driver {dev.driver or 'none'})"


def device_refusals(dev: PciDevice, *, iommu: bool) -> list[Refusal]:
    """Reasons no flag can override."""
    if dev.role is Role.BRIDGE:
        return [
            Refusal(
                dev.address,
                RefusalKind.NOT_ENDPOINT,
                f"{dev.address} is a bridge or port, not an endpoint: it cannot be assigned to a VM "
                "(bridges of a group stay on their driver)",
            )
        ]
    if not iommu:
        return [
            Refusal(
                dev.address,
                RefusalKind.NO_IOMMU,
                f"{dev.address}: no IOMMU is active, so vfio-pci cannot take the device",
            )
        ]
    if dev.iommu_group is None:
        return [
            Refusal(dev.address, RefusalKind.NO_GROUP, f"{dev.address} has no IOMMU group (it is not behind the IOMMU)")
        ]
    return []


def blocking_peers(inv: Inventory, group: int, moving: set[str]) -> list[PciDevice]:
    """Endpoints of ``group`` that would stay on a host driver, making the group not viable."""
    grp = inv.groups.get(group)
    if grp is None:
        return []
    out = []
    for m in grp.endpoints:
        if m.address in moving:
            continue
        if not is_assignable(m.driver, inv.variant_modules):
            out.append(inv.devices[m.address])
    return out


def in_use_refusals(use: HostUse, dev: PciDevice, inv: Inventory) -> list[Refusal]:
    from ..holders import remedy

    out = [
        Refusal(
            dev.address,
            RefusalKind.IN_USE,
            f"{dev.address} is in use by the host: {r.message}",
            remedy([r.holder]) if r.holder else None,
        )
        for r in use.reasons(dev.address)
    ]
    pf = sriov_pf_refusal(dev, inv)
    return out + [pf] if pf else out


def sriov_pf_refusal(dev: PciDevice, inv: Inventory) -> Refusal | None:
    """The PF guard: unbinding an SR-IOV PF's driver destroys its VFs, so it is in use while VFs are on host
    drivers (``pcipass sriov`` shows this verdict)."""
    if dev.sriov is None or not dev.sriov.numvfs:
        return None
    bound = [
        vf
        for vf in dev.sriov.vfs
        if vf in inv.devices
        and inv.devices[vf].driver
        and not is_vfio_driver(inv.devices[vf].driver, inv.variant_modules)
    ]
    if not bound:
        return None
    return Refusal(
        dev.address,
        RefusalKind.IN_USE,
        f"{dev.address} is an SR-IOV PF with {dev.sriov.numvfs} VFs; unbinding its driver destroys them, and "
        f"{len(bound)} are on host drivers ({', '.join(bound[:4])}{', ...' if len(bound) > 4 else ''})",
    )
