"""``persist`` / ``unpersist``: entries of the desired-state file made from the devices present now."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import fingerprint as fp
from ..address import PciAddress
from ..config import Editor
from ..config.devices import HOST, DeviceEntry
from ..drivers import VFIO_PCI
from ..errors import DeviceNotFound, Refused
from ..host import Host
from ..inventory import Inventory
from ..model import Role
from ..pciids import PciIds

SECTION = "devices"


@dataclass(frozen=True)
class PersistResult:
    """What ``persist``/``unpersist`` did to one address's entry."""

    address: str
    action: str  #: added | updated | unchanged | removed | absent
    driver: str | None  #: the entry's driver (None: no entry now)
    group: bool | None
    fingerprint: fp.Fingerprint | None


@dataclass(frozen=True)
class PersistReport:
    """The file edited, whether it changed, and each address's result."""

    config: str
    changed: bool
    dry_run: bool
    entries: tuple[PersistResult, ...]


def _canonical(addresses: list[str]) -> list[str]:
    return list(dict.fromkeys(str(PciAddress.parse(a)) for a in addresses))


def _check_driver(host: Host, driver: str) -> None:
    if driver != HOST:
        from .. import engine

        engine.check_driver(host, driver)


class Persister:
    """Edits of the file at ``path``, kept in memory until ``save``: every address is checked first, so a refusal
    leaves the file as it was."""

    def __init__(self, host: Host, path: Path, shown: str) -> None:
        self.host = host
        self.editor = Editor(path, shown, host)
        self.shown = shown

    def add(self, addresses: list[str], *, driver: str = VFIO_PCI, group: bool = False) -> list[PersistResult]:
        """An entry per address with the fingerprint read now. Refused (nothing changed): a device that is not
        there, a bridge, a device driverctl also binds at boot."""
        _check_driver(self.host, driver)
        addrs = _canonical(addresses)
        inv = Inventory.scan(self.host, ids=PciIds(None), detail=False, only=addrs)
        entries = []
        for a in addrs:
            dev = inv.devices.get(a)
            if dev is None:
                raise DeviceNotFound(
                    f"no PCI device {a}: persist records the device present now",
                    address=a,
                    remedy="check the address with 'pcipass list'",
                )
            if dev.role is Role.BRIDGE and driver != HOST:
                raise Refused(f"{a} is a bridge or port, not an endpoint: it cannot be passed through", address=a)
            saved = self.host.driverctl_saved(a)
            if saved is not None:
                raise Refused(
                    f"driverctl already binds {a} at boot ({self.host.shown(saved[1])}: {saved[0]}): two "
                    "owners of one device would fight at every boot",
                    address=a,
                    remedy=f"'driverctl unset-override {a}' first (it rebinds the device at once), or keep "
                    "it with driverctl",
                )
            peers = tuple(sorted((p.address for p in inv.peers(a)), key=PciAddress.parse))
            entries.append(DeviceEntry(a, driver, group, fp.of(self.host, dev), peers))
        out = []
        for e in entries:
            action = self.editor.upsert(SECTION, e.to_node())
            out.append(PersistResult(e.address, action, e.driver, e.group, e.fingerprint))
        return out

    def remove(self, addresses: list[str]) -> list[PersistResult]:
        return [
            PersistResult(a, "removed" if self.editor.remove(SECTION, a) else "absent", None, None, None)
            for a in _canonical(addresses)
        ]

    def report(self, results: list[PersistResult], *, dry_run: bool = False) -> PersistReport:
        """Save (unless ``dry_run``) and say what changed."""
        changed = any(r.action in ("added", "updated", "removed") for r in results)
        if changed and not dry_run:
            self.editor.save()
        return PersistReport(self.shown, changed, dry_run, tuple(results))
