"""What binds a device at the next boot, by the configuration pcipass can read.

pcipass binds through ``driver_override``, which lives in sysfs and ends with the boot: after a reboot the
device goes back to its host driver unless something binds it again. Two things do that by configuration,
and both are read here: driverctl's per-address override (``/etc/driverctl.d/pci-<address>`` holding the
driver's name, applied by driverctl's udev rule when the device appears) and vfio-pci's ``ids=``
(``vfio-pci.ids=`` on the kernel command line or ``options vfio-pci ids=`` in modprobe.d: every device with
those ids, see ``vfioids``). A libvirt hostdev with ``managed='yes'`` needs neither: libvirt binds it when the
VM starts.
"""

from __future__ import annotations

from typing import NamedTuple

from . import kmod, vfioids
from .host import Host
from .model import PciDevice

#: BootBinding.by
DRIVERCTL = "driverctl"
PCIPASS = "pcipass"
VFIO_IDS = "vfio-pci ids="


class BootBinding(NamedTuple):
    driver: str  #: the driver configured for the device at boot ("none": driverctl keeps it unbound)
    by: str  #: DRIVERCTL, PCIPASS or VFIO_IDS
    where: str  #: the override file, the desired-state file's ``file:line``, the ids= setting's ``file:line`` /
    #: ``kernel command line``


class BootConfig:
    """The boot-time binding configuration of a host, read once."""

    def __init__(self, host: Host) -> None:
        self.host = host
        option = kmod.module_options(host, "vfio_pci").get("ids")
        self._ids = vfioids.parse(option.value) if option else []
        self._ids_where = option.source if option else ""
        self._seen: dict[str, BootBinding | None] = {}
        self._pcipass: dict[str, tuple[str, str]] | None = None

    def _persisted(self) -> dict[str, tuple[str, str]]:
        """address -> (declared driver, ``file:line``) of the desired-state file that pcipass-apply.service applies
        at boot; empty when the unit is not enabled or the file is missing or invalid (``verify`` says why)."""
        if self._pcipass is None:
            self._pcipass = {}
            from .config import load
            from .errors import PcipassError
            from .persistence import boot

            config = boot.enabled_config(self.host)
            if config is not None:
                try:
                    entries = load(config, self.host.shown(config), missing_ok=True).devices
                except PcipassError:
                    entries = ()
                for e in entries:
                    where = f"{self.host.shown(config)}:{e.line}"
                    peers = (e.group_peers or ()) if e.group else ()
                    for a in (e.address, *peers):
                        self._pcipass.setdefault(a, (e.driver, where))
        return self._pcipass

    def of(self, dev: PciDevice) -> BootBinding | None:
        """driverctl's override first (it applies to the device whatever vfio-pci claims at load), then pcipass's
        boot unit (it runs before vfio-pci is loaded by anything but itself), then ids=."""
        if dev.address not in self._seen:
            self._seen[dev.address] = self._read(dev)
        return self._seen[dev.address]

    def _read(self, dev: PciDevice) -> BootBinding | None:
        saved = self.host.driverctl_saved(dev.address)
        if saved:
            return BootBinding(saved[0], DRIVERCTL, self.host.shown(saved[1]))
        declared = self._persisted().get(dev.address)
        if declared is not None and declared[0] != "host":
            driver = declared[0]
            if driver == "auto":
                driver = kmod.vfio_variant_for(self.host, dev.modalias) or "vfio-pci"
            return BootBinding(driver, PCIPASS, declared[1])
        if vfioids.claimed(self._ids, dev):
            return BootBinding("vfio-pci", VFIO_IDS, self._ids_where)
        return None
