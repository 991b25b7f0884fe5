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
from .config.devices import HOST, DeviceEntry
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
    #: Why the boot unit will not apply the entry (PCIPASS only): the card at the address is not the one the
    #: entry was made for, its group changed, driverctl also owns it (``verify``'s reasons). None: it applies.
    refused: str | None = None


class BootConfig:
    """The boot-time binding configuration of a host, read once."""

    def __init__(self, host: Host) -> None:
        self.host = host
        option = kmod.module_options(host, "vfio_pci").get("ids")
        self._ids = vfioids.parse(option.value) if option else []
        self._ids_where = option.source if option else ""
        self._seen: dict[str, BootBinding | None] = {}
        self._pcipass: dict[str, tuple[DeviceEntry, str]] | None = None
        self._refused: dict[str, str | None] = {}  #: entry address -> why the unit refuses it (None: it applies)

    def _persisted(self) -> dict[str, tuple[DeviceEntry, str]]:
        """address -> (the entry that binds it, ``file:line``) of the desired-state file that pcipass-apply.service
        applies at boot; empty when the unit is not enabled or the file is missing or invalid (``verify`` says
        why)."""
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
                        self._pcipass.setdefault(a, (e, where))
        return self._pcipass

    def _refusal(self, entry: DeviceEntry) -> str | None:
        """What ``apply --boot`` would refuse the entry for, by the check it makes itself (``persistence.drift``):
        the unit never binds a card other than the one the entry was made for, so saying it binds the device
        at boot would be the very trap the fingerprint exists for."""
        if entry.address not in self._refused:
            from .persistence.drift import Matcher

            check = Matcher(self.host, (entry,)).check(entry)
            self._refused[entry.address] = "; ".join(check.reasons) if check.blocks(entry) else None
        return self._refused[entry.address]

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
        if declared is not None and declared[0].driver != HOST:
            entry, where = declared
            driver = entry.driver
            if driver == "auto":
                driver = kmod.vfio_variant_for(self.host, dev.modalias) or "vfio-pci"
            return BootBinding(driver, PCIPASS, where, self._refusal(entry))
        if vfioids.claimed(self._ids, dev):
            return BootBinding("vfio-pci", VFIO_IDS, self._ids_where)
        return None
