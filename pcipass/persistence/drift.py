"""Is the device an entry was made for still there? Fingerprints (pcipass/fingerprint.py) against the host.

``apply`` refuses an entry that does not match (it never binds a different card) and ``verify`` says what
changed: the device is missing, a different card is at the address, the same card is at another address (found
by its fingerprint), the IOMMU group's membership changed, or driverctl also manages the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .. import fingerprint as fp
from ..config.devices import DeviceEntry
from ..host import Host
from ..inventory import Inventory
from ..pciids import PciIds


class Drift(str, Enum):
    MATCH = "match"
    MISSING = "missing"  #: no device at the address
    DIFFERENT = "different-card"  #: a device that does not match the fingerprint is at the address
    GROUP = "group-changed"  #: the IOMMU group's other functions are not those recorded
    OWNER = "two-owners"  #: driverctl also binds the device at boot
    DIFFERS = "differs"  #: an sriov entry's PF has another VF count, autoprobe or VF drivers (or no SR-IOV)


@dataclass(frozen=True)
class EntryCheck:
    """What an entry's address holds now, against what the entry recorded."""

    address: str
    drift: Drift
    reasons: tuple[str, ...]  #: what changed, said for a person (empty on a match)
    found: fp.Fingerprint | None  #: the device at the address now (None: no device)
    moved_to: tuple[str, ...]  #: addresses where a device matching the recorded fingerprint is now
    driver: str | None  #: the driver of the device at the address now

    def blocks(self, entry: DeviceEntry) -> bool:
        """True when ``apply`` must not act on the entry: a different or missing card, a second owner, or a
        group that changed while the entry moves the whole group."""
        if self.drift is Drift.GROUP:
            return entry.group
        return self.drift is not Drift.MATCH


class Matcher:
    """Checks entries against one read of the host: the entries' devices and their groups, and the whole host
    only when a device has to be looked for elsewhere."""

    def __init__(self, host: Host, entries: tuple[DeviceEntry, ...]) -> None:
        self.host = host
        self.inv = Inventory.scan(host, ids=PciIds(None), detail=False, only=[e.address for e in entries])
        self._everything: Inventory | None = None
        self._claimed = {e.address for e in entries}

    def _all(self) -> Inventory:
        if self._everything is None:
            self._everything = Inventory.scan(self.host, ids=PciIds(None), detail=False)
        return self._everything

    def _elsewhere(self, entry: DeviceEntry) -> tuple[tuple[str, ...], str]:
        """Devices at other addresses that match the recorded fingerprint, best first, and how sure that is."""
        rec = entry.fingerprint
        exact, alike = [], []
        for dev in self._all().devices.values():
            if dev.address == entry.address:
                continue
            now = fp.of(self.host, dev)
            if not fp.same_card(rec, now):
                continue
            if rec.path and now.path == rec.path:
                exact.append(dev.address)
            else:
                alike.append(dev.address)
        if exact:
            return tuple(exact), (
                f"the same card (ids and position {rec.path}) is now at {', '.join(exact)}: the bus numbers moved"
            )
        free = [a for a in alike if a not in self._claimed]
        if free:
            return tuple(free), f"a card with the recorded ids is at {', '.join(free)} (another position)"
        if alike:
            return (), f"the cards with the recorded ids ({', '.join(alike)}) have entries of their own"
        return (), "no device with the recorded ids is on the host"

    def check(self, entry: DeviceEntry) -> EntryCheck:
        a = entry.address
        dev = self.inv.devices.get(a)
        if dev is None:
            moved, where = self._elsewhere(entry)
            return EntryCheck(a, Drift.MISSING, (f"no device at {a}; {where}",), None, moved, None)
        now = fp.of(self.host, dev)
        diffs = fp.differences(entry.fingerprint, now)
        if diffs:
            what = (
                "a different card"
                if not fp.same_card(entry.fingerprint, now)
                else "a card with the same ids in another position"
            )
            moved, where = self._elsewhere(entry)
            return EntryCheck(
                a, Drift.DIFFERENT, (f"{what} is at {a}: {fp.describe(diffs)}; {where}",), now, moved, dev.driver
            )
        saved = self.host.driverctl_saved(a)
        if saved is not None:
            return EntryCheck(
                a,
                Drift.OWNER,
                (
                    f"driverctl also binds {a} at boot ({self.host.shown(saved[1])}: {saved[0]}): two owners of "
                    f"one device; 'driverctl unset-override {a}' leaves it to pcipass, 'pcipass unpersist {a}' to "
                    "driverctl",
                ),
                now,
                (),
                dev.driver,
            )
        if entry.group_peers is not None:
            peers = {p.address for p in self.inv.peers(a)}
            recorded = set(entry.group_peers)
            if peers != recorded:
                parts = []
                if peers - recorded:
                    parts.append(f"now also {', '.join(sorted(peers - recorded))}")
                if recorded - peers:
                    parts.append(f"no longer {', '.join(sorted(recorded - peers))}")
                return EntryCheck(
                    a,
                    Drift.GROUP,
                    (f"the IOMMU group of {a} changed since it was persisted: {'; '.join(parts)}",),
                    now,
                    (),
                    dev.driver,
                )
        return EntryCheck(a, Drift.MATCH, (), now, (), dev.driver)
