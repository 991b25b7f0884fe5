"""``apply``: converge the host to the desired-state file through the binding engine, and ``verify``.

Each entry is checked against the hardware first (``drift``): a device that does not match its fingerprint is
refused, never bound. The others go to ``engine.enable`` (one call per driver and ``group`` setting) or, for
``driver: host``, ``engine.disable``: the same plan, guards, lock, state and transaction as ``enable`` by hand,
so the in-use guards refuse at boot what they refuse by hand. ``check`` is the engine's dry run: nothing is
written, and the result says what would change.

The ``sriov`` section is converged first (``sriov_declared.apply``: a VF must exist before an entry binds it) and
the ``mdev`` section last (``mdev.declared.apply``: a parent registers its types only once its driver is bound).
Their entries are reported as ``EntryResult`` rows of their own ``section``, with the same outcomes and exit
code rules; ``verify`` reports their state the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..config import Desired
from ..config.devices import HOST, DeviceEntry
from ..errors import ExitCode, PcipassError, Refused, UsageError
from ..host import Host
from .drift import Drift, EntryCheck, Matcher


class Change(str, Enum):
    CHANGED = "changed"  #: bound as declared now (with --check: would be)
    UNCHANGED = "unchanged"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True)
class EntryResult:
    """One entry's outcome: what was declared, what happened, and why."""

    address: str
    driver: str  #: as declared (vfio-pci, auto, NAME, host)
    group: bool
    outcome: Change
    driver_before: str | None
    driver_after: str | None
    peers: tuple[str, ...]  #: group peers moved with it (with --check: that would be)
    drift: str  #: the fingerprint check (drift.Drift value; sriov and mdev: their check's state)
    reasons: tuple[str, ...]
    section: str = "devices"  #: devices; sriov (``address`` the PF, ``driver`` "N VFs"); mdev (``address`` the
    #: UUID, ``driver`` "TYPE on PARENT")


@dataclass(frozen=True)
class ApplyReport:
    """What ``apply`` did: ``changed`` is true when anything was (or, with ``check``, would be) written."""

    config: str
    check: bool
    changed: bool
    entries: tuple[EntryResult, ...]
    messages: tuple[str, ...]
    errors: tuple[PcipassError, ...]
    exit_code: ExitCode


_FROM_ENGINE = {
    "done": Change.CHANGED,
    "planned": Change.CHANGED,
    "unchanged": Change.UNCHANGED,
    "refused": Change.REFUSED,
    "failed": Change.FAILED,
}


def _refused(entry: DeviceEntry, check: EntryCheck) -> EntryResult:
    return EntryResult(
        entry.address,
        entry.driver,
        entry.group,
        Change.REFUSED,
        check.driver,
        check.driver,
        (),
        check.drift.value,
        check.reasons,
    )


def _exit_code(results: list[EntryResult], forgiven: set[str]) -> ExitCode:
    """0 converged, 3 partly, 5 refused, 1 failed; entries in ``forgiven`` (drifted, with --force) not counted."""
    counted = [r for r in results if r.address not in forgiven]
    bad = [r for r in counted if r.outcome in (Change.REFUSED, Change.FAILED)]
    if not bad:
        return ExitCode.OK
    if len(bad) < len(counted):
        return ExitCode.PARTIAL
    return ExitCode.FAILED if any(r.outcome is Change.FAILED for r in bad) else ExitCode.REFUSED


_FROM_SECTION = {
    "changed": Change.CHANGED,
    "created": Change.CHANGED,
    "planned": Change.CHANGED,
    "unchanged": Change.UNCHANGED,
    "left": Change.REFUSED,  # absent, another card, no SR-IOV, no parent, no type, no instance: not done
    "refused": Change.REFUSED,
    "failed": Change.FAILED,
}


def _section_result(section: str, key: str, declared: str, applied) -> EntryResult:
    """An ``SriovApplied`` or ``MdevApplied`` as apply's row."""
    from ..mdev.declared import MdevState

    # mdevctl's udev rule creates what it defines (mdev/declared.py): converged from apply's side, as in
    # ``pcipass mdev apply``'s exit code.
    change = Change.UNCHANGED if applied.state is MdevState.MDEVCTL else _FROM_SECTION[applied.outcome]
    reasons = (applied.detail,) if applied.detail else ()
    return EntryResult(key, declared, False, change, None, None, (), applied.state.value, reasons, section)


def _section_error(desired: Desired, line: int | None, r: EntryResult) -> PcipassError:
    msg = f"{desired.path}:{line}: {r.section} {r.address}: {'; '.join(r.reasons)}"
    return Refused(msg) if r.outcome is Change.REFUSED else PcipassError(msg)


def apply(host: Host, desired: Desired, *, check: bool = False, force: bool = False, **engine_kw) -> ApplyReport:
    """Converge ``host`` to ``desired``: its ``sriov`` section, then ``devices``, then ``mdev``. ``force``: device
    entries refused because their device drifted still are not bound, but do not fail the run. ``engine_kw`` go
    to ``engine.enable``/``disable``, ``engine.set_numvfs`` and ``mdev.ops.create`` (timeout, kernel, lock_wait,
    on_lock_wait)."""
    from .. import sriov_declared
    from ..mdev import declared

    errors: list[PcipassError] = []
    sriov, mdev = desired.section("sriov"), desired.section("mdev")
    done = sriov_declared.apply(host, sriov, check_only=check, **engine_kw) if sriov else ()
    before = [(e.line, _section_result("sriov", a.address, f"{e.numvfs} VFs", a)) for e, a in zip(sriov, done)]
    ordered, messages, forgiven = _devices(host, desired, check, force, errors, engine_kw)
    made = declared.apply(host, mdev, check_only=check, **engine_kw) if mdev else ()
    after = [(e.line, _section_result("mdev", a.uuid, f"{a.type} on {a.parent}", a)) for e, a in zip(mdev, made)]
    for line, r in before + after:
        if r.outcome in (Change.REFUSED, Change.FAILED):
            errors.append(_section_error(desired, line, r))
    everything = [r for _, r in before] + ordered + [r for _, r in after]
    changed = any(r.outcome is Change.CHANGED for r in everything)
    return ApplyReport(
        desired.path,
        check,
        changed,
        tuple(everything),
        tuple(messages),
        tuple(errors),
        _exit_code(everything, forgiven),
    )


def _devices(
    host: Host, desired: Desired, check: bool, force: bool, errors: list[PcipassError], engine_kw: dict
) -> tuple[list[EntryResult], list[str], set[str]]:
    """The ``devices`` section: its results in file order, the engine's messages, and the entries ``force``
    forgives (``errors`` gets the refusals and the engine's errors)."""
    from .. import engine

    entries: tuple[DeviceEntry, ...] = desired.devices
    results: dict[str, EntryResult] = {}
    messages: list[str] = []
    forgiven: set[str] = set()
    buckets: dict[tuple[str, bool], list[DeviceEntry]] = {}
    matcher = Matcher(host, entries) if entries else None
    for e in entries:
        assert matcher is not None
        c = matcher.check(e)
        if c.blocks(e):
            results[e.address] = _refused(e, c)
            errors.append(Refused(f"{desired.path}:{e.line}: {'; '.join(c.reasons)}", address=e.address))
            if force and c.drift is not Drift.OWNER:
                forgiven.add(e.address)
            continue
        if c.drift is Drift.GROUP:
            messages.append(c.reasons[0])
        buckets.setdefault((e.driver, e.group), []).append(e)

    in_flight = _in_flight(host) if buckets else set()
    for (driver, group), todo in buckets.items():
        addrs = [e.address for e in todo]
        if driver != HOST and matcher is not None and all(_bound(matcher, e, in_flight) for e in todo):
            # Converged (what apply finds at nearly every boot): said without the engine's lock, state write and
            # host-use scan, which it would take only to answer "unchanged" (bench/persistence.py).
            for e in todo:
                drv = matcher.inv.devices[e.address].driver
                results[e.address] = EntryResult(
                    e.address, e.driver, e.group, Change.UNCHANGED, drv, drv, (), Drift.MATCH.value, ()
                )
            continue
        try:
            if driver == HOST:
                report = engine.disable(host, addrs, dry_run=check, **engine_kw)
            else:
                report = engine.enable(host, addrs, driver=driver, move_group=group, dry_run=check, **engine_kw)
        except UsageError as err:  # a driver the engine does not accept: the entries' own problem
            for e in todo:
                msg = f"{desired.path}:{e.line}: driver: {err.message}"
                results[e.address] = EntryResult(
                    e.address, e.driver, e.group, Change.FAILED, None, None, (), Drift.MATCH.value, (msg,)
                )
                errors.append(UsageError(msg, address=e.address))
            continue
        messages += report.messages
        errors += report.errors
        by_address = {d.address: d for d in report.devices}
        for e in todo:
            d = by_address[e.address]
            peers = tuple(
                p.address for p in report.devices if not p.requested and p.group is not None and p.group == d.group
            )
            results[e.address] = EntryResult(
                e.address,
                e.driver,
                e.group,
                _FROM_ENGINE[d.outcome.value],
                d.driver_before,
                d.driver_after,
                peers,
                Drift.MATCH.value,
                d.reasons,
            )
    return [results[e.address] for e in entries], messages, forgiven


def _in_flight(host: Host) -> set[str]:
    """Devices an interrupted run left half-done: the engine completes those, so they are never "converged"."""
    from ..engine.state import StateStore

    return {a for a, r in StateStore(host).load().items() if r.in_flight}


def _bound(matcher: Matcher, entry: DeviceEntry, in_flight: set[str]) -> bool:
    """The entry's device is on the driver it declares (``auto``: any vfio driver), it is a driver enable accepts
    (vfio or pci-stub: any other name goes to the engine, which refuses it), and with ``group`` every endpoint of
    its group is on such a driver: exactly when ``engine.enable`` would report it unchanged and write nothing."""
    from ..drivers import is_assignable, is_vfio_driver, normalize
    from ..group import GroupVerdict

    inv = matcher.inv
    dev = inv.devices[entry.address]
    if entry.address in in_flight or dev.driver is None or not is_assignable(dev.driver, inv.variant_modules):
        return False
    if entry.driver == "auto":
        ok = is_vfio_driver(dev.driver, inv.variant_modules)
    else:
        ok = normalize(dev.driver) == normalize(entry.driver)
    if ok and entry.group:
        peers = {p.address for p in inv.peers(entry.address)}
        ok = not (peers & in_flight) and inv.group_verdict(entry.address) is GroupVerdict.READY
    return ok


@dataclass(frozen=True)
class VerifyResult:
    """One entry against the hardware."""

    address: str
    drift: Drift
    driver: str | None  #: the driver of the device at the address now
    declared: str  #: the entry's driver
    moved_to: tuple[str, ...]  #: where a device matching the fingerprint is now
    reasons: tuple[str, ...]
    section: str = "devices"  #: as in ``EntryResult``


def _verdict(state) -> Drift:
    """An sriov or mdev check's state as a drift verdict: absent, another card, else (an mdev instance that is
    not there, a VF count that differs) what the section itself says is not as declared."""
    from ..mdev.declared import MdevState
    from ..sriov_declared import SriovState

    if state in (SriovState.PRESENT, MdevState.PRESENT, MdevState.MDEVCTL):
        return Drift.MATCH
    if state in (SriovState.OTHER_CARD, MdevState.OTHER_CARD):
        return Drift.DIFFERENT
    if isinstance(state, SriovState) and state is not SriovState.ABSENT:
        return Drift.DIFFERS
    return Drift.MISSING


def verify(host: Host, desired: Desired) -> tuple[VerifyResult, ...]:
    """Every entry's fingerprint (and group, and owner) against the host, and each sriov and mdev entry's state;
    read-only. In apply's order: sriov, devices, mdev."""
    from .. import sriov_declared
    from ..mdev import declared

    out = []
    for s in sriov_declared.check(host, desired.section("sriov")):
        reasons = (s.detail,) if s.detail else ()
        out.append(VerifyResult(s.address, _verdict(s.state), None, f"{s.numvfs} VFs", (), reasons, "sriov"))
    if desired.devices:
        matcher = Matcher(host, desired.devices)
        for e in desired.devices:
            c = matcher.check(e)
            out.append(VerifyResult(e.address, c.drift, c.driver, e.driver, c.moved_to, c.reasons))
    for m in declared.check(host, desired.section("mdev")) if desired.section("mdev") else ():
        reasons = (m.detail,) if m.detail else ()
        out.append(VerifyResult(m.uuid, _verdict(m.state), None, f"{m.type} on {m.parent}", (), reasons, "mdev"))
    return tuple(out)
