"""The ``sriov`` section of the desired-state file, on a host: what each entry finds, and setting the counts.

``check`` says, per entry, what the host has; ``apply`` sets each PF that differs through ``engine.set_numvfs``
(planned, guarded, locked like ``pcipass sriov --numvfs``; ``check_only`` is its dry run). Run it before the
``devices`` section's bindings: a VF must exist before it is bound. A PF whose fingerprint differs (another card
at that address) is left alone, never given VFs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum

from . import fingerprint
from .address import PciAddress
from .config.sriov import SriovEntry
from .drivers import is_vfio_driver
from .engine.sriov import physical_function, set_numvfs
from .errors import ExitCode, PcipassError
from .host import Host
from .sriov import scan


class SriovState(str, Enum):
    PRESENT = "present"  #: the count, autoprobe and (with ``vfio``) every VF on vfio, as declared
    DIFFERENT = "different"  #: apply changes it
    ABSENT = "absent"  #: no device at the address
    OTHER_CARD = "other-card"  #: its fingerprint differs: another card at that address
    UNSUPPORTED = "unsupported"  #: no SR-IOV, or the address is a VF


@dataclass(frozen=True)
class SriovCheck:
    """What one ``sriov`` entry finds on the host."""

    address: str
    numvfs: int  #: declared
    state: SriovState
    detail: str | None
    line: int | None


@dataclass(frozen=True)
class SriovApplied:
    """What ``apply`` did for one entry: changed, unchanged, planned (check mode), left (with the reason),
    refused or failed (with the error)."""

    address: str
    state: SriovState  #: before
    outcome: str
    detail: str | None
    error: dict | None = None


def _differences(entry: SriovEntry, pf) -> list[str]:
    out = []
    if pf.sriov_numvfs != entry.numvfs:
        out.append(f"{pf.sriov_numvfs} VFs, {entry.numvfs} declared")
    if entry.autoprobe is not None and pf.sriov_drivers_autoprobe is not entry.autoprobe:
        out.append(f"sriov_drivers_autoprobe {pf.sriov_drivers_autoprobe}, {entry.autoprobe} declared")
    if entry.vfio and pf.sriov_numvfs == entry.numvfs:
        off = [vf.address for vf in pf.vfs if not is_vfio_driver(vf.driver)]
        if off:
            out.append(f"not on vfio: {', '.join(off)}")
    return out


def check_one(host: Host, entry: SriovEntry) -> SriovCheck:
    def result(state: SriovState, detail: str | None = None) -> SriovCheck:
        return SriovCheck(entry.address, entry.numvfs, state, detail, entry.line)

    if not os.path.isdir(host.pci_device(entry.address)):
        return result(SriovState.ABSENT, f"no device at {entry.address}")
    inv = scan(host, entry.address)
    diffs = fingerprint.differences(entry.fingerprint, fingerprint.of(host, inv.device(entry.address)))
    if diffs:
        return result(SriovState.OTHER_CARD, f"another card at {entry.address}: {fingerprint.describe(diffs)}")
    try:
        pf = physical_function(host, inv, entry.address)
    except PcipassError as err:
        return result(SriovState.UNSUPPORTED, err.message)
    differs = _differences(entry, pf)
    return result(SriovState.DIFFERENT, "; ".join(differs)) if differs else result(SriovState.PRESENT)


def check(host: Host, entries: tuple[SriovEntry, ...]) -> tuple[SriovCheck, ...]:
    return tuple(check_one(host, e) for e in entries)


def apply(
    host: Host, entries: tuple[SriovEntry, ...], *, check_only: bool = False, **set_kw
) -> tuple[SriovApplied, ...]:
    """Set every PF that differs (``check_only``: say what would be written, write nothing)."""
    out = []
    for entry, c in zip(entries, check(host, entries)):
        if c.state is SriovState.PRESENT:
            out.append(SriovApplied(c.address, c.state, "unchanged", None))
            continue
        if c.state is not SriovState.DIFFERENT:
            out.append(SriovApplied(c.address, c.state, "left", c.detail))
            continue
        try:
            r = set_numvfs(
                host,
                entry.address,
                entry.numvfs,
                autoprobe=entry.autoprobe,
                vfio=entry.vfio,
                dry_run=check_only,
                **set_kw,
            )
        except PcipassError as err:
            out.append(SriovApplied(c.address, c.state, "failed", err.message, err.to_dict()))
            continue
        if r.exit_code is ExitCode.OK:
            out.append(SriovApplied(c.address, c.state, "planned" if check_only else "changed", c.detail))
        else:
            first = r.errors[0]
            outcome = "refused" if r.exit_code is ExitCode.REFUSED else "failed"
            out.append(SriovApplied(c.address, c.state, outcome, first.message, first.to_dict()))
    return tuple(out)


def entry_for(host: Host, address: str, *, vfio: bool = False, line: int | None = None) -> SriovEntry:
    """The entry that declares the PF at ``address`` as it is now: its VF count, autoprobe and fingerprint."""
    canonical = str(PciAddress.parse(address))
    inv = scan(host, canonical)
    pf = physical_function(host, inv, canonical)
    return SriovEntry(
        canonical,
        pf.sriov_numvfs or 0,
        pf.sriov_drivers_autoprobe,
        vfio,
        fingerprint.of(host, inv.device(canonical)),
        line,
    )
