"""When the host driver takes a device before the boot unit can run, and how an initramfs stage avoids that.

``pcipass-apply.service`` runs after systemd-modules-load, before sysinit.target: early, but after the
initramfs. A driver built into the kernel, or loaded from the initramfs (storage controllers the root
filesystem needs, a GPU's DRM driver for early KMS), has bound the device by then; the unit still converges
(unbind + bind, as ``enable`` does), but the host driver has touched the device. Binding vfio-pci from the
initramfs keeps it away: vfio-pci's ``ids=`` plus a ``softdep`` so vfio-pci loads before the host driver, copied
into the initramfs by the host's tool (initramfs-tools, dracut or mkinitcpio). ids= takes every device with
those ids, hence a remedy, not something pcipass writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import kmod
from ..host import Host
from ..model import PciDevice

#: Classes whose drivers initramfs generators include by default: mass storage (01) and display (03).
_EARLY_CLASSES = ("01", "03")
MODPROBE_CONF = "pcipass-vfio.conf"


@dataclass(frozen=True)
class EarlyDriver:
    """A persisted device whose host driver binds before the unit, and what would keep it off."""

    address: str
    driver: str
    module: str | None
    builtin: bool
    remedy: str | None


def tool(host: Host) -> str | None:
    """initramfs-tools, dracut or mkinitcpio: the generator installed on the host."""
    for program, name in (("update-initramfs", "initramfs-tools"), ("dracut", "dracut"), ("mkinitcpio", "mkinitcpio")):
        if host.find_program(program) is not None:
            return name
    return None


def _remedy(host: Host, ids: str, module: str) -> str | None:
    conf = host.shown(host.modprobe_conf_dir / MODPROBE_CONF)
    lines = f"'options vfio-pci ids={ids}' and 'softdep {module} pre: vfio-pci' in {conf}"
    kind = tool(host)
    if kind == "initramfs-tools":
        return f"{lines}; a line 'vfio-pci' in {host.shown(host.initramfs_tools_modules)}; update-initramfs -u -k all"
    if kind == "dracut":
        return (
            f"{lines}; 'force_drivers+=\" vfio-pci \"' in "
            f"{host.shown(host.dracut_conf_dir / MODPROBE_CONF)}; dracut -f --regenerate-all"
        )
    if kind == "mkinitcpio":
        return (
            f"{lines}; vfio_pci vfio vfio_iommu_type1 in MODULES=() and {conf} in FILES=() of "
            f"{host.shown(host.mkinitcpio_conf)}; mkinitcpio -P"
        )
    return None


def early_driver(host: Host, dev: PciDevice, host_driver: str | None) -> EarlyDriver | None:
    """``dev``'s host driver (``host_driver``: the one it had before vfio-pci) when it binds before the unit:
    built in, or of a class the initramfs carries drivers for."""
    if not host_driver:
        return None
    module = kmod.driver_module(host, host_driver) or host_driver.replace("-", "_")
    builtin = kmod.is_builtin(host, module)
    if not builtin and not (dev.class_id or "").startswith(_EARLY_CLASSES):
        return None
    remedy = None
    if not builtin and dev.vendor_id and dev.device_id:
        remedy = _remedy(host, f"{dev.vendor_id}:{dev.device_id}", module)
    return EarlyDriver(dev.address, host_driver, module, builtin, remedy)
