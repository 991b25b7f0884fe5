"""Per-device checks (``check-iommu --device ADDR``): can this device be given to a VM?"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

from ..drivers import is_assignable
from ..holders import remedy
from ..hostuse import HostUse, UseKind
from ..model import PciDevice
from . import files
from .facts import Facts
from .model import Check, Verdict

P, W, F, S = Verdict.PASS, Verdict.WARN, Verdict.FAIL, Verdict.SKIP

_USE_REMEDY = {
    UseKind.NET_ADDRESS: "move the address to another interface",
    UseKind.NET_ROUTE: "route through another interface",
    UseKind.NET_UPPER: "take the interface out of its bond/bridge",
    UseKind.MOUNTED: "unmount its filesystems",
    UseKind.SWAP: "swapoff it",
    UseKind.HELD: "stop the device-mapper/md/LVM users",
    UseKind.CONSOLE: "boot the host's console from another GPU (or see device.boot_vga)",
    UseKind.KEYBOARD: "plug the keyboard into another controller, or use --force if the host needs no local one",
}
#: Process holders (DRM, NVIDIA nodes, mapped resource files): the remedy names what to stop (``holders.remedy``).
_PROCESS_KINDS = (UseKind.DRM_OPEN, UseKind.NVIDIA_OPEN, UseKind.MAPPED)


class DeviceChecks:
    """The per-device checks; the host-use scan is shared by every ``--device``."""

    def __init__(self, fx: Facts, devices: Sequence[str]) -> None:
        self.fx = fx
        self.devices = list(devices)

    @cached_property
    def host_use(self) -> HostUse:
        return HostUse.scan(self.fx.host, self.fx.inventory, holders_of=self.devices)

    def run(self, address: str) -> list[Check]:
        inv = self.fx.inventory
        dev = inv.devices.get(address)
        if dev is None:
            return [
                Check(
                    "device.present",
                    F,
                    f"no PCI device {address} on this host",
                    "list the devices with: pcipass list",
                    address,
                )
            ]
        name = f"{dev.display_name} [{dev.id_pair or '?'}]"
        out = [Check("device.present", P, f"{name}, driver {dev.driver or 'none'}", device=address)]
        out.append(self._endpoint(dev))
        out.append(self._group(dev))
        out.append(self._peers(dev))
        out.append(self._reset(dev))
        out.append(self._boot_vga(dev))
        out.append(self._in_use(dev))
        return out

    def _endpoint(self, dev: PciDevice) -> Check:
        if dev.is_bridge:
            return Check(
                "device.endpoint",
                F,
                f"a bridge/port (header type {dev.header_type}): only endpoints can be "
                'assigned to a VM (libvirt: "Non-endpoint PCI devices cannot be assigned")',
                "pass through the endpoint devices behind it instead",
                dev.address,
            )
        return Check("device.endpoint", P, "an endpoint", device=dev.address)

    def _group(self, dev: PciDevice) -> Check:
        if dev.iommu_group is None:
            return Check(
                "device.group",
                F,
                "no IOMMU group: vfio-pci cannot bind it",
                "turn the IOMMU on (see iommu.active)",
                dev.address,
            )
        return Check("device.group", P, f"IOMMU group {dev.iommu_group}", device=dev.address)

    def _peers(self, dev: PciDevice) -> Check:
        inv = self.fx.inventory
        if dev.iommu_group is None:
            return Check("device.group_peers", S, "no IOMMU group", device=dev.address)
        peers = inv.peers(dev.address)
        blocking = [p for p in peers if not p.is_bridge and not is_assignable(p.driver, inv.variant_modules)]
        group = dev.iommu_group
        if not peers:
            return Check("device.group_peers", P, f"alone in group {group}", device=dev.address)
        if not blocking:
            listed = ", ".join(f"{p.address} ({'bridge' if p.is_bridge else p.driver or 'no driver'})" for p in peers)
            return Check(
                "device.group_peers",
                P,
                f"group {group} also holds {listed}: none blocks assignment",
                device=dev.address,
            )
        listed = ", ".join(f"{p.address} ({p.driver})" for p in blocking)
        return Check(
            "device.group_peers",
            W,
            f"group {group} also holds endpoints on host drivers: {listed}; a VM "
            'can only get the group whole (QEMU: "group is not viable")',
            "move every endpoint of the group to vfio-pci with this device (pcipass enable the whole "
            "group), or use a device that has a group of its own",
            dev.address,
        )

    def _reset(self, dev: PciDevice) -> Check:
        if dev.reset_method:
            return Check("device.reset", P, f"reset methods: {', '.join(dev.reset_method)}", device=dev.address)
        # Since 5.15 both reset_method and reset are hidden on devices without a reset (pci-sysfs.c
        # reset_method_attr_is_visible); older kernels have only reset.
        if dev.reset_method is None and files.exists(self.fx.host.pci_device(dev.address) / "reset"):
            return Check("device.reset", P, "resettable (this kernel does not list the methods)", device=dev.address)
        return Check(
            "device.reset",
            W,
            "no reset method: the device keeps its state from one VM to the next, and "
            "some devices then fail when a VM starts again",
            "prefer a device with FLR, or reboot the host between VM runs",
            dev.address,
        )

    def _boot_vga(self, dev: PciDevice) -> Check:
        if dev.boot_vga:
            add = ["initcall_blacklist=sysfb_init"]
            return Check(
                "device.boot_vga",
                W,
                "the boot VGA device: the firmware framebuffer (efifb, simpledrm, "
                "vesafb) may keep its memory reserved, and vfio-pci then fails with \"BAR N: can't "
                'reserve"',
                "boot the host's console from another GPU, or keep the firmware framebuffer off it: "
                + self.fx.cmdline_remedy(add),
                dev.address,
            )
        if dev.boot_vga is None:
            return Check("device.boot_vga", P, "not a VGA device", device=dev.address)
        return Check("device.boot_vga", P, "not the boot VGA device", device=dev.address)

    def _in_use(self, dev: PciDevice) -> Check:
        if not files.exists(self.fx.host.proc()):
            return Check(
                "device.in_use",
                S,
                f"no {self.fx.shown(self.fx.host.proc())} {self.fx.here} (mounts, routes, swaps) to tell",
                device=dev.address,
            )
        reasons = self.host_use.reasons(dev.address)
        if not reasons:
            # A use found is a use (fail above); none found among facts partly missing is no answer.
            unknown = self.host_use.unknown(dev.address)
            if unknown:
                return Check(
                    "device.in_use",
                    S,
                    "cannot tell whether the host uses it: missing " + ", ".join(unknown) + f" {self.fx.here}",
                    device=dev.address,
                )
            return Check(
                "device.in_use",
                P,
                "not in use by the host (network, storage, console, processes holding "
                "its DRM/NVIDIA nodes or mapping its resources)",
                device=dev.address,
            )
        kinds = []
        for r in reasons:
            if r.kind not in _PROCESS_KINDS and _USE_REMEDY[r.kind] not in kinds:
                kinds.append(_USE_REMEDY[r.kind])
        held = [r.holder for r in reasons if r.holder is not None]
        if held:
            kinds.append(f"stop what holds it ({remedy(held)})")
        return Check(
            "device.in_use",
            F,
            "in use by the host: " + "; ".join(r.message for r in reasons),
            "; ".join(kinds) + " — or pick another device",
            dev.address,
        )
