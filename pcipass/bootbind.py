"""What binds a device at the next boot, by the configuration pcipass can read.

pcipass binds through ``driver_override``, which lives in sysfs and ends with the boot: after a reboot the
device goes back to its host driver unless something binds it again. Two things do that by configuration,
and both are read here: driverctl's per-address override (``/etc/driverctl.d/pci-<address>`` holding the
driver's name, applied by driverctl's udev rule when the device appears) and vfio-pci's ``ids=``
(``vfio-pci.ids=`` on the kernel command line or ``options vfio-pci ids=`` in modprobe.d: every device with
those ids, see ``vfioids``). A libvirt hostdev with ``managed='yes'`` needs neither: libvirt binds it when the
VM starts. pcipass's own boot unit is the third: the desired-state file's ``devices`` entries, and the VFs of an
``sriov`` entry with ``vfio: true`` (the unit creates them and binds them to vfio-pci).
"""

from __future__ import annotations

from typing import NamedTuple

from . import kmod, vfioids
from .config.devices import HOST, DeviceEntry
from .config.sriov import SriovEntry
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
        self._vfio_pfs: dict[str, tuple[SriovEntry, str]] = {}  #: PF -> its sriov entry with vfio: true, file:line

    def _persisted(self) -> dict[str, tuple[DeviceEntry, str]]:
        """address -> (the entry that binds it, ``file:line``) of the desired-state file that pcipass-apply.service
        applies at boot; empty when the unit is not enabled or the file is missing or invalid (``verify`` says
        why). Also fills ``_vfio_pfs`` from the ``sriov`` entries with ``vfio: true``."""
        if self._pcipass is None:
            self._pcipass = {}
            from .config import load
            from .errors import PcipassError
            from .persistence import boot

            config = boot.enabled_config(self.host)
            if config is not None:
                shown = self.host.shown(config)
                try:
                    desired = load(config, shown, missing_ok=True)
                    entries, sriov = desired.devices, desired.section("sriov")
                except PcipassError:
                    entries, sriov = (), ()
                for e in entries:
                    where = f"{shown}:{e.line}"
                    peers = (e.group_peers or ()) if e.group else ()
                    for a in (e.address, *peers):
                        self._pcipass.setdefault(a, (e, where))
                for s in sriov:
                    if s.vfio and s.numvfs > 0:
                        self._vfio_pfs[s.address] = (s, f"{shown}:{s.line}")
        return self._pcipass

    def _declared_vf(self, dev: PciDevice) -> BootBinding | None:
        """The boot unit's binding of ``dev`` as a VF that an ``sriov`` entry with ``vfio: true`` creates again: one
        of the PF's first ``numvfs`` VFs (``virtfn0`` ...). Refused, as the unit leaves the entry, when the PF is
        not the card the entry was made for or has no SR-IOV (``sriov_declared.check_one``)."""
        self._persisted()
        if dev.physfn is None or dev.physfn not in self._vfio_pfs:
            return None
        from . import sriov_declared
        from .sysfs import link_name

        entry, where = self._vfio_pfs[dev.physfn]
        pf = self.host.pci_device(dev.physfn)
        if not any(link_name(pf / f"virtfn{i}") == dev.address for i in range(entry.numvfs)):
            return None
        if dev.physfn not in self._refused:
            check = sriov_declared.check_one(self.host, entry)
            left = check.state not in (sriov_declared.SriovState.PRESENT, sriov_declared.SriovState.DIFFERENT)
            self._refused[dev.physfn] = check.detail if left else None
        return BootBinding("vfio-pci", PCIPASS, where, self._refused[dev.physfn])

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
        vf = self._declared_vf(dev)
        if vf is not None:
            return vf
        if vfioids.claimed(self._ids, dev):
            return BootBinding("vfio-pci", VFIO_IDS, self._ids_where)
        return None
