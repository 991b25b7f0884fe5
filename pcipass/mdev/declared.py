"""The ``mdev`` section of the desired-state file, on a host: what each entry finds, and creating what is missing.

``check`` says, per entry, what the host has; ``apply`` creates the missing instances through ``ops.create``
(planned, locked, recorded like ``pcipass mdev create``). Run after the devices are bound: a parent registers
its types only once its driver is bound (an NVIDIA GPU on the vGPU manager's driver), so an entry whose parent
is absent waits (``parent-absent``), it is not an error of the file. Where mdevctl defines the UUID, it is left to
mdevctl (``mdevctl``): its udev rule creates it when the parent registers, and two managers would fight.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum

from ..config.mdev import MdevEntry
from ..errors import ExitCode, PcipassError
from ..host import Host
from . import mdevctl, ops, read


class MdevState(str, Enum):
    PRESENT = "present"  #: exists with that parent and type
    MISSING = "missing"  #: can be created now
    PARENT_ABSENT = "parent-absent"  #: the parent is not registered (its driver is not bound or loaded)
    OTHER_CARD = "other-card"  #: a PCI parent whose fingerprint differs: another card at that address
    NO_TYPE = "no-type"  #: the parent offers no such type
    NO_INSTANCE = "no-instance"  #: the type has no instance left
    CONFLICT = "conflict"  #: the UUID is an instance of another type or parent
    MDEVCTL = "mdevctl"  #: mdevctl defines the UUID: left to it


@dataclass(frozen=True)
class MdevCheck:
    """What one ``mdev`` entry finds on the host."""

    uuid: str
    parent: str
    type: str
    state: MdevState
    detail: str | None
    line: int | None


@dataclass(frozen=True)
class MdevApplied:
    """What ``apply`` did for one entry: created, unchanged, planned (check mode), or left with the reason."""

    uuid: str
    parent: str
    type: str
    state: MdevState  #: before
    outcome: str  #: created | unchanged | planned | left | failed
    detail: str | None
    error: dict | None = None


def _fingerprint_differs(host: Host, entry: MdevEntry) -> str | None:
    if entry.fingerprint is None or not os.path.isdir(host.pci_device(entry.parent)):
        return None
    from .. import fingerprint
    from ..inventory import Inventory
    from ..pciids import PciIds

    inv = Inventory.scan(host, ids=PciIds(None), detail=False, only=[entry.parent])
    dev = inv.devices.get(entry.parent)
    if dev is None:
        return None
    diffs = fingerprint.differences(entry.fingerprint, fingerprint.of(host, dev))
    return fingerprint.describe(diffs) if diffs else None


def check_one(host: Host, entry: MdevEntry, defined: dict | None = None) -> MdevCheck:
    def result(state: MdevState, detail: str | None = None) -> MdevCheck:
        return MdevCheck(entry.uuid, entry.parent, entry.type, state, detail, entry.line)

    if os.path.lexists(host.mdev_device(entry.uuid)):
        dev = read.device(host, entry.uuid)
        if (dev.parent, dev.mdev_type) == (entry.parent, entry.type):
            return result(MdevState.PRESENT)
        return result(MdevState.CONFLICT, f"it exists as {dev.mdev_type} on {dev.parent}")
    definition = (mdevctl.definitions(host) if defined is None else defined).get(entry.uuid)
    if definition is not None:
        return result(
            MdevState.MDEVCTL, f"mdevctl defines it ({definition.path}, start={definition.start}): left to mdevctl"
        )
    if entry.parent not in read.parent_names(host):
        return result(MdevState.PARENT_ABSENT, f"{entry.parent} registers no mdev types now (is its driver bound?)")
    differs = _fingerprint_differs(host, entry)
    if differs:
        return result(MdevState.OTHER_CARD, f"another card at {entry.parent}: {differs}")
    mtype = read.core_type(host, entry.parent, entry.type)
    if mtype is None:
        return result(MdevState.NO_TYPE, f"{entry.parent} offers no type {entry.type}")
    if mtype.available_instances == 0:
        return result(MdevState.NO_INSTANCE, f"no instance of {entry.type} left on {entry.parent}")
    return result(MdevState.MISSING)


def check(host: Host, entries: tuple[MdevEntry, ...]) -> tuple[MdevCheck, ...]:
    defined = mdevctl.definitions(host)
    return tuple(check_one(host, e, defined) for e in entries)


def apply(
    host: Host, entries: tuple[MdevEntry, ...], *, check_only: bool = False, **create_kw
) -> tuple[MdevApplied, ...]:
    """Create every missing instance (``check_only``: say which would be created, write nothing)."""
    out = []
    for c in check(host, entries):
        if c.state is MdevState.PRESENT:
            out.append(MdevApplied(c.uuid, c.parent, c.type, c.state, "unchanged", None))
        elif c.state is not MdevState.MISSING:
            out.append(MdevApplied(c.uuid, c.parent, c.type, c.state, "left", c.detail))
        elif check_only:
            out.append(MdevApplied(c.uuid, c.parent, c.type, c.state, "planned", f"create {c.type} on {c.parent}"))
        else:
            try:
                ops.create(host, c.parent, c.type, uuid=c.uuid, **create_kw)
            except PcipassError as err:
                out.append(MdevApplied(c.uuid, c.parent, c.type, c.state, "failed", err.message, err.to_dict()))
                continue
            out.append(MdevApplied(c.uuid, c.parent, c.type, c.state, "created", None))
    return tuple(out)


def exit_code(results: tuple[MdevApplied, ...], *, check_only: bool) -> ExitCode:
    """0 when every entry is there (or left to mdevctl); with ``check_only`` anything else is 1 (the host is not
    as declared). Applying: entries left (no parent, no instance, another card...) are refusals (5), failed
    creates failures (1), and either next to entries that are fine a partial result (3)."""
    good = [r for r in results if r.outcome in ("created", "unchanged") or r.state is MdevState.MDEVCTL]
    bad = [r for r in results if r not in good]
    if not bad:
        return ExitCode.OK
    if check_only:
        return ExitCode.FAILED
    if good:
        return ExitCode.PARTIAL
    return ExitCode.FAILED if any(r.outcome == "failed" for r in bad) else ExitCode.REFUSED


def entry_for(host: Host, uuid: str, line: int | None = None) -> MdevEntry:
    """The entry that declares the existing instance ``uuid`` (its parent's fingerprint when it is PCI)."""
    from .. import fingerprint
    from ..errors import DeviceNotFound
    from ..inventory import Inventory
    from ..pciids import PciIds
    from .model import canonical_uuid

    u = canonical_uuid(uuid)
    if not os.path.lexists(host.mdev_device(u)):
        raise DeviceNotFound(f"no mediated device {u}", remedy="'pcipass mdev list' shows them")
    dev = read.device(host, u)
    if not (dev.parent and dev.mdev_type):
        raise DeviceNotFound(f"{u}: its parent or type is unreadable")
    fp = None
    if os.path.isdir(host.pci_device(dev.parent)):
        inv = Inventory.scan(host, ids=PciIds(None), detail=False, only=[dev.parent])
        if dev.parent in inv.devices:
            fp = fingerprint.of(host, inv.devices[dev.parent])
    return MdevEntry(u, dev.parent, dev.mdev_type, fp, line)
