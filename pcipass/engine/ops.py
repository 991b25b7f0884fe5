"""``enable``, ``disable`` and ``status``: guards, plan, lock, state, transactions, and the per-device report.

Order of a mutating run: preflight (snapshot? root? live host without IOMMU?) → lock → state file (report
runs that died half way) → the named devices and their IOMMU groups (``_scan_for``) and the host tables, read
once → guards and plan per IOMMU group → (dry run: stop here, nothing written) → module loads → originals of
every device to move saved → per group: re-check the devices, run the steps as one transaction → outcomes
saved → report each device's outcome.

Exit codes: 0 all done or unchanged; 3 some done, others refused or failed (only across independent groups:
a group is all or nothing); 1 failed; 5 refused; 4 not root.
"""

from __future__ import annotations

import os
import re
from contextlib import nullcontext
from enum import Enum
from typing import Any, NamedTuple

from ..address import PciAddress
from ..drivers import PCI_STUB, VFIO_PCI, is_vfio_driver, normalize
from ..errors import DeviceNotFound, ExitCode, ModuleError, PcipassError, Refused, SysfsError, UsageError
from ..host import Host
from ..inventory import Inventory
from ..iommu import active as iommu_active
from ..pciids import PciIds
from ..model import PciDevice
from .execute import Executor, GroupRun, StepRecord, driver_of
from .guards import (Refusal, RefusalKind, blocking_peers, describe, device_refusals, in_use_refusals,
                     preflight)
from .kernel import Kernel, SysfsKernel
from .plan import GroupPlan, Move, Plan, Step
from .planner import DriverResolver, StepBuilder, current_override, module_step
from .state import DeviceRecord, Lock, Phase, StateStore, interrupted_message, lock_is_free, now_utc, pid_alive
from .vfio import VfioOpeners, status_unless_held
from .wait import Waiter

DEFAULT_TIMEOUT = 10.0
DEFAULT_LOCK_WAIT = 30.0
AUTO = "auto"


class Outcome(str, Enum):
    DONE = "done"
    UNCHANGED = "unchanged"
    PLANNED = "planned"  #: --dry-run: would be done
    REFUSED = "refused"
    FAILED = "failed"


# The report classes are NamedTuples, not dataclasses: see plan.py (import cost under emulation).
class DeviceResult(NamedTuple):
    address: str
    group: int | None
    requested: bool  #: named by the user (False: a group peer moved by --group)
    outcome: Outcome
    driver_before: str | None
    driver_after: str | None
    target: str | None
    rolled_back: bool | None = None  #: after a failure: every change undone (None: nothing was written)
    reasons: tuple[str, ...] = ()
    error: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return self._asdict() | {"outcome": self.outcome.value, "reasons": list(self.reasons)}


class BindReport(NamedTuple):
    action: str
    dry_run: bool
    devices: tuple[DeviceResult, ...]
    steps: tuple[StepRecord, ...]
    rollback: tuple[StepRecord, ...]
    interrupted: tuple[DeviceRecord, ...]  #: in-flight records of runs that died (kill -9) found at start
    wait: str | None  #: how binds were awaited: uevent | poll
    messages: tuple[str, ...]
    errors: tuple[PcipassError, ...]
    exit_code: ExitCode

    def data(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "dry_run": self.dry_run,
            "devices": [d.to_dict() for d in self.devices],
            "steps": [r.to_dict() for r in self.steps],
            "rollback": [r.to_dict() for r in self.rollback],
            "interrupted": [r.to_dict() for r in self.interrupted],
            "wait": self.wait,
        }


def _canonical(addresses: list[str]) -> list[str]:
    return list(dict.fromkeys(str(PciAddress.parse(a)) for a in addresses))


def _exit_code(results: list[DeviceResult]) -> ExitCode:
    good = [r for r in results if r.outcome in (Outcome.DONE, Outcome.UNCHANGED, Outcome.PLANNED)]
    bad = [r for r in results if r.outcome in (Outcome.REFUSED, Outcome.FAILED)]
    if not bad:
        return ExitCode.OK
    if good:
        return ExitCode.PARTIAL
    if any(r.outcome is Outcome.FAILED for r in bad):
        return ExitCode.FAILED
    return ExitCode.REFUSED


class _Planned(NamedTuple):
    plan: Plan
    results: dict[str, DeviceResult]
    errors: list[PcipassError]
    messages: list[str]
    drop_records: list[str]  #: stale records found by planning (device already back on its driver)


def _scan_for(host: Host, addresses: list[str]) -> Inventory:
    """What the guards and the plan need about ``addresses``, without reading the whole host: the devices,
    every member of their IOMMU groups (group viability, ``--group``, interrupted peers), and the VFs of an
    SR-IOV PF among them (unbinding a PF destroys its VFs: the in-use guard checks their drivers): that is
    ``Inventory.scan(only=...)``.

    Names from pci.ids are not needed to bind (refusals name devices by address, ids and driver), and
    looking up a large vendor block (Intel's) costs milliseconds per device; neither are the link and reset
    details (``detail=False``)."""
    return Inventory.scan(host, ids=PciIds(None), detail=False, only=addresses)


class _Context:
    def __init__(self, host: Host, kernel: Kernel, records: dict[str, DeviceRecord], addresses: list[str]) -> None:
        self.host = host
        self.kernel = kernel
        self.records = records
        self.inv = _scan_for(host, addresses)
        self.resolver = DriverResolver(host)
        self.steps = StepBuilder(host)
        self.module_steps: dict[str, Step] = {}

    def need(self, name: str) -> tuple[str, str | None]:
        """(driver name, module to load or None); registers the module step."""
        target = self.resolver.resolve(name)
        if target.module is not None and target.module not in self.module_steps:
            self.module_steps[target.module] = module_step(target.module, target.driver)
        return target.driver, target.module

    def target_name(self, dev: PciDevice, driver: str) -> str:
        if driver == AUTO:
            from .. import kmod

            return kmod.vfio_variant_for(self.host, dev.modalias) or VFIO_PCI
        return driver


def _result(dev: PciDevice, outcome: Outcome, *, requested: bool = True, target: str | None = None,
            reasons: tuple[str, ...] = (), error: PcipassError | None = None) -> DeviceResult:
    return DeviceResult(dev.address, dev.iommu_group, requested, outcome, dev.driver, dev.driver, target,
                        None, reasons, error.to_dict() if error else None)


def _refuse(results: dict[str, DeviceResult], errors: list[PcipassError], devs: list[PciDevice],
            refusals: list[Refusal]) -> None:
    reasons = tuple(r.message for r in refusals)
    for dev in devs:
        results[dev.address] = _result(dev, Outcome.REFUSED, reasons=reasons)
    overridable = all(r.overridable for r in refusals)
    remedy = None
    if overridable:
        remedy = "stop using it on the host first, or pass --force if you are sure"
    elif any(r.kind is RefusalKind.GROUP_NOT_VIABLE for r in refusals):
        remedy = "name every endpoint of the group, or pass --group to move them all"
    errors.append(Refused("; ".join(reasons), address=devs[0].address if len(devs) == 1 else None, remedy=remedy))


def _satisfied(dev: PciDevice, target: str, requested_driver: str) -> bool:
    if dev.driver is None:
        return False
    if requested_driver == AUTO and is_vfio_driver(dev.driver):
        return True
    return normalize(dev.driver) == normalize(target)


def _originals(ctx: _Context, dev: PciDevice) -> tuple[str | None, str | None]:
    rec = ctx.records.get(dev.address)
    if rec is not None and rec.known:
        return rec.original_driver, rec.original_override
    return dev.driver, dev.driver_override


def _lookup(inv: Inventory, address: str, results: dict[str, DeviceResult],
            errors: list[PcipassError]) -> PciDevice | None:
    """The device at ``address``, or None after recording it as failed (no such device)."""
    try:
        return inv.device(address)
    except DeviceNotFound as err:
        results[address] = DeviceResult(address, None, True, Outcome.FAILED, None, None, None, None,
                                        (err.message,), err.to_dict())
        errors.append(err)
        return None


def _plan_enable(ctx: _Context, addrs: list[str], *, driver: str, move_group: bool, force: bool) -> _Planned:
    from ..hostuse import HostUse

    inv = ctx.inv
    use = HostUse.scan(ctx.host, inv)
    iommu = iommu_active(ctx.host)
    results: dict[str, DeviceResult] = {}
    errors: list[PcipassError] = []
    messages: list[str] = []
    by_group: dict[int, list[PciDevice]] = {}
    for a in addrs:
        dev = _lookup(inv, a, results, errors)
        if dev is None:
            continue
        refusals = device_refusals(dev, iommu=iommu)
        if refusals:
            _refuse(results, errors, [dev], refusals)
            continue
        assert dev.iommu_group is not None
        by_group.setdefault(dev.iommu_group, []).append(dev)

    # Devices an interrupted enable (kill -9) left half-done: enabling any device of their group completes
    # them too, through the ordinary steps (those already done are skipped or harmless).
    inflight = {a for a, r in ctx.records.items() if r.phase is Phase.ENABLING and a in inv.devices}
    groups: list[GroupPlan] = []
    for g in sorted(by_group):
        req = by_group[g]
        names = {d.address: ctx.target_name(d, driver) for d in req}
        todo = [d for d in req if d.address in inflight or not _satisfied(d, names[d.address], driver)]
        req_set = {d.address for d in req}
        resume = [inv.devices[m.address] for m in inv.groups[g].endpoints
                  if m.address in inflight and m.address not in req_set]
        for d in resume:
            names[d.address] = ctx.records[d.address].target or ctx.target_name(d, driver)
        blockers = blocking_peers(inv, g, req_set | {d.address for d in resume})
        if not todo and not resume and not (move_group and blockers):
            note = ()
            if blockers:
                note = (f"group {g} is not viable yet: {', '.join(describe(p) for p in blockers)}",)
            for d in req:
                results[d.address] = _result(d, Outcome.UNCHANGED, target=d.driver, reasons=note)
            continue
        if blockers and not move_group:
            them = "it" if len(blockers) == 1 else "them"
            msg = (f"IOMMU group {g} would not be viable: {', '.join(describe(p) for p in blockers)} would stay "
                   f"on the host; enable {them} too, or pass --group")
            _refuse(results, errors, req, [Refusal(req[0].address, RefusalKind.GROUP_NOT_VIABLE, msg)])
            continue
        peers = blockers if move_group else []
        for p in peers:
            names[p.address] = ctx.target_name(p, driver)
        moving = todo + resume + peers
        in_use = [r for d in moving for r in in_use_refusals(use, d, inv)]
        if in_use and not force:
            _refuse(results, errors, req, in_use)
            continue
        messages += [f"--force: going ahead although {r.message}" for r in in_use]
        try:
            targets = {d.address: ctx.need(names[d.address]) for d in moving}
        except ModuleError as err:
            for d in req:
                results[d.address] = _result(d, Outcome.FAILED, reasons=(err.message,), error=err)
            errors.append(err)
            continue
        moves = []
        for d in moving:
            orig, orig_ovr = _originals(ctx, d)
            moves.append(Move(d.address, g, d.address in req_set, d.driver, d.driver_override, orig, orig_ovr,
                              targets[d.address][0]))
        steps = [s for m in moves for s in ctx.steps.enable(m)]
        if all(is_vfio_driver(m.target) for m in moves):
            steps.append(ctx.steps.verify_group(g))
        modules = tuple(sorted({t[1] for t in targets.values() if t[1]}))
        groups.append(GroupPlan(g, tuple(moves), tuple(steps), modules))
        moved = {d.address for d in moving}
        for d in req:
            if d.address not in moved:
                results[d.address] = _result(d, Outcome.UNCHANGED, target=d.driver)
    plan = Plan("enable", tuple(ctx.module_steps[m] for m in sorted(ctx.module_steps)), tuple(groups))
    return _Planned(plan, results, errors, messages, [])


def _plan_disable(ctx: _Context, addrs: list[str]) -> _Planned:
    inv = ctx.inv
    results: dict[str, DeviceResult] = {}
    errors: list[PcipassError] = []
    drop: list[str] = []
    by_group: dict[int | None, list[PciDevice]] = {}
    for a in addrs:
        dev = _lookup(inv, a, results, errors)
        if dev is not None:
            by_group.setdefault(dev.iommu_group, []).append(dev)

    groups: list[GroupPlan] = []
    openers = VfioOpeners(ctx.host)
    for g in sorted(by_group, key=lambda k: (k is None, k or 0)):
        devs = by_group[g]
        moves: list[tuple[Move, list[Step]]] = []
        modules: set[str] = set()
        failed: PcipassError | None = None
        for d in devs:
            rec = ctx.records.get(d.address)
            known = rec is not None and rec.known
            orig = rec.original_driver if known else None
            orig_ovr = rec.original_override if known else (None if is_vfio_driver(d.driver_override)
                                                             else d.driver_override)
            move = Move(d.address, g, True, d.driver, d.driver_override, orig, orig_ovr, orig if known else None)
            if rec is None and not is_vfio_driver(d.driver) and d.driver_override == orig_ovr:
                results[d.address] = _result(d, Outcome.UNCHANGED, target=d.driver)
                continue
            steps = ctx.steps.disable(move, recorded=known)
            if not steps:
                note = ()
                if known and d.driver != orig:
                    note = (f"on {d.driver or 'no driver'}, not the recorded {orig or 'no driver'}: left as is",)
                results[d.address] = _result(d, Outcome.UNCHANGED, target=d.driver, reasons=note)
                drop.append(d.address)
                continue
            if known and orig is not None and (is_vfio_driver(d.driver) or d.driver is None):
                try:
                    module = ctx.need(orig)[1]
                except ModuleError as err:
                    failed = err
                    break
                if module:
                    modules.add(module)
            moves.append((move, steps))
        if failed is not None:
            for d in devs:
                results[d.address] = _result(d, Outcome.FAILED, reasons=(failed.message,), error=failed)
            errors.append(failed)
            continue
        if not moves:
            continue
        if g is not None and any(is_vfio_driver(m.driver_before) for m, _ in moves):
            st = status_unless_held(openers, inv, g, ctx.kernel.vfio_status)
            if st.busy:
                msg = f"IOMMU group {g} is {st.detail}: unbinding would block until it lets go"
                _refuse(results, errors, [inv.devices[m.address] for m, _ in moves],
                        [Refusal(moves[0][0].address, RefusalKind.GROUP_OPEN, msg)])
                continue
        groups.append(GroupPlan(g, tuple(m for m, _ in moves), tuple(s for _, steps in moves for s in steps),
                                tuple(sorted(modules))))
    plan = Plan("disable", tuple(ctx.module_steps[m] for m in sorted(ctx.module_steps)), tuple(groups))
    # The host driver comes back now; a saved driverctl override takes the device again at the next boot.
    notes = []
    for a in addrs:
        saved = ctx.host.driverctl_saved(a) if a in inv.devices else None
        if saved and is_vfio_driver(saved[0], inv.variant_modules):
            notes.append(f"{a}: driverctl binds it to {saved[0]} again at the next boot ({ctx.host.shown(saved[1])});"
                         f" 'driverctl unset-override {a}' removes that")
    return _Planned(plan, results, errors, notes, drop)


def _changed_since_planning(host: Host, gp: GroupPlan) -> PcipassError | None:
    for m in gp.moves:
        if not host.pci_device(m.address).exists():
            return DeviceNotFound(f"{m.address} is gone since planning (removed or hot-unplugged); nothing "
                                  f"was written to group {gp.group}", address=m.address,
                                  remedy="rescan the bus and check the address")
        drv, ovr = driver_of(host, m.address), current_override(host, m.address)
        if (drv, ovr) != (m.driver_before, m.override_before):
            return SysfsError(f"{m.address} changed since planning (driver {drv}, override {ovr}); nothing was "
                              f"written to group {gp.group}", address=m.address,
                              remedy="someone else is rebinding devices; retry")
    return None


def _mutate(
    host: Host,
    action: str,
    addresses: list[str],
    planner,
    *,
    dry_run: bool,
    timeout: float,
    kernel: Kernel | None,
    lock_wait: float,
    on_lock_wait,
) -> BindReport:
    addrs = _canonical(addresses)
    preflight(host, action=action, dry_run=dry_run)
    messages: list[str] = []
    if not dry_run and not host.reaches_kernel and kernel is None:
        messages.append(f"{host.root} is not the running system: the writes go to files there and no kernel "
                        "acts on them")
    own = SysfsKernel(host) if kernel is None else None
    try:
        return _locked_run(host, action, addrs, planner, messages, dry_run=dry_run, timeout=timeout,
                           kernel=kernel or own, lock_wait=lock_wait, on_lock_wait=on_lock_wait)
    finally:
        if own is not None:
            own.close()  # its writer thread


def _locked_run(host: Host, action: str, addrs: list[str], planner, messages: list[str], *, dry_run: bool,
                timeout: float, kernel: Kernel, lock_wait: float, on_lock_wait) -> BindReport:
    lock = nullcontext() if dry_run else Lock(host, wait=lock_wait, command=f"{action} {' '.join(addrs)}",
                                                on_wait=on_lock_wait)
    with lock:
        if isinstance(lock, Lock) and lock.contended:
            messages.append(f"waited {lock.waited:.1f} s for another pcipass run to finish")
        store = StateStore(host)
        records = store.load()
        free = dry_run and lock_is_free(host)
        interrupted = tuple(r for a, r in sorted(records.items())
                            if r.in_flight and (not dry_run or free or not pid_alive(r.pid)))
        messages += [interrupted_message(r) for r in interrupted]
        ctx = _Context(host, kernel, records, addrs)
        planned: _Planned = planner(ctx, addrs)
        messages += planned.messages
        results = dict(planned.results)
        errors = list(planned.errors)
        plan = planned.plan
        if dry_run:
            for gp in plan.groups:
                for m in gp.moves:
                    dev = ctx.inv.devices[m.address]
                    results[m.address] = _result(dev, Outcome.PLANNED, requested=m.requested, target=m.target)
            ordered = _order(addrs, results)
            return BindReport(action, True, ordered, tuple(StepRecord(s, "planned") for s in plan.steps), (),
                              interrupted, None, tuple(messages), tuple(errors), _exit_code(list(ordered)))
        for a in planned.drop_records:
            records.pop(a, None)
        if planned.drop_records and not plan.groups:
            store.save(records)  # else with the in-flight records, before the first write
        waiter = Waiter(host)
        run = _Run(host, Executor(host, kernel, waiter, timeout), store, records, action, results, errors)
        if plan.groups:
            try:
                module_errors: dict[str, PcipassError] = {}
                for step in plan.modules:
                    try:
                        status, detail = run.ex.run_step(step)
                        run.steps.append(StepRecord(step, status, detail))
                    except PcipassError as err:
                        module_errors[step.value or ""] = err
                        run.steps.append(StepRecord(step, "failed", err.message))
                run.record_in_flight(plan)
                for gp in plan.groups:
                    run.group(gp, module_errors)
                # The groups' outcomes, saved once after the last write. A run that dies before this leaves
                # every group in flight on disk, and the next run treats them as interrupted: enable
                # completes them (done steps are skipped), disable puts them back from the originals.
                store.save(records)
            finally:
                waiter.close()
        if waiter.note:
            messages.append(waiter.note)
        ordered = _order(addrs, results)
        return BindReport(action, False, ordered, tuple(run.steps), tuple(run.rollback), interrupted,
                          waiter.source, tuple(messages), tuple(errors), _exit_code(list(ordered)))


def _order(addrs: list[str], results: dict[str, DeviceResult]) -> tuple[DeviceResult, ...]:
    """Requested devices in the order given, then the peers moved with them by address."""
    first = [results[a] for a in addrs if a in results]
    rest = sorted((r for a, r in results.items() if a not in addrs), key=lambda r: PciAddress.parse(r.address))
    return tuple(first + rest)


class _Run:
    """Executes a plan's groups one by one, keeping the state file and the per-device results."""

    def __init__(self, host: Host, ex: Executor, store: StateStore, records: dict[str, DeviceRecord],
                 action: str, results: dict[str, DeviceResult], errors: list[PcipassError]) -> None:
        self.host, self.ex, self.store, self.records = host, ex, store, records
        self.action, self.results, self.errors = action, results, errors
        self.steps: list[StepRecord] = []
        self.rollback: list[StepRecord] = []
        self.previous: dict[str, DeviceRecord | None] = {}

    def record_in_flight(self, plan: Plan) -> None:
        """Before the first write of the run: every device to move, with its original driver and override, in
        phase enabling/disabling (one atomic save; the groups' outcomes are saved together after the last
        write). The record each device had before this run is kept, to be put back if its group is rolled
        back."""
        phase = Phase.ENABLING if self.action == "enable" else Phase.DISABLING
        for gp in plan.groups:
            for m in gp.moves:
                old = self.records.get(m.address)
                self.previous[m.address] = old
                known = self.action == "enable" or (old is not None and old.known)
                target = m.target if self.action == "enable" else (old.target if old else None)
                self.records[m.address] = DeviceRecord(m.address, m.original_driver, m.original_override, target,
                                                       m.group, phase, os.getpid(), now_utc(), known)
        self.store.save(self.records)

    def _put_back(self, gp: GroupPlan) -> None:
        for m in gp.moves:
            if self.previous[m.address] is None:
                self.records.pop(m.address, None)
            else:
                self.records[m.address] = self.previous[m.address]

    def _finish(self, gp: GroupPlan, outcome: Outcome, rolled_back: bool | None, err: PcipassError | None) -> None:
        for m in gp.moves:
            self.results[m.address] = DeviceResult(
                m.address, m.group, m.requested, outcome, m.driver_before, driver_of(self.host, m.address),
                m.target, rolled_back, (err.message,) if err else (), err.to_dict() if err else None)
        if err is not None:
            self.errors.append(err)

    def group(self, gp: GroupPlan, module_errors: dict[str, PcipassError]) -> None:
        blocked = next((module_errors[mod] for mod in gp.modules if mod in module_errors), None)
        err = blocked or _changed_since_planning(self.host, gp)
        if err is not None:
            self.steps += [StepRecord(s, "not-run") for s in gp.steps]
            self._put_back(gp)
            self._finish(gp, Outcome.FAILED, None, err)
            return
        run: GroupRun = self.ex.run(gp.steps)
        self.steps += run.records
        self.rollback += run.rollback
        if run.ok:
            for m in gp.moves:
                if self.action == "enable":
                    self.records[m.address] = self.records[m.address]._replace(phase=Phase.ENABLED, since=now_utc())
                else:
                    self.records.pop(m.address, None)
            self._finish(gp, Outcome.DONE, None, None)
            return
        assert run.error is not None
        err = run.error
        if run.restored:
            self._put_back(gp)
            self._finish(gp, Outcome.FAILED, True, err)
            return
        # Not everything could be undone: keep the in-flight records (status and the next run show them).
        left = " ".join(m.address for m in gp.moves)
        detail = "; ".join(e.message for e in run.rollback_errors) or "the kernel is still busy with a write"
        final = type(err)(f"{err.message}; rollback incomplete ({detail})", address=err.address, path=err.path,
                          errno=err.errno,
                          remedy=f"once the device is idle, run 'pcipass disable {left}' to return it to the host "
                          f"('pcipass status' shows what pcipass recorded)")
        self._finish(gp, Outcome.FAILED, False, final)


# A driver's name as the kernel shows it in /sys/bus/pci/drivers (and a module's): never a path.
_DRIVER_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _check_driver(host: Host, driver: str) -> None:
    """``--driver`` names a driver a device can be passed through from: vfio-pci, a vfio variant driver, or
    pci-stub (which holds a device away from host drivers). Anything else is a usage error (exit 2), before any
    read of the devices: enable is not a way to move a device to another host driver (disable gives it back)."""
    if driver == AUTO:
        return
    if not _DRIVER_NAME.fullmatch(driver) or driver in (".", ".."):
        raise UsageError(f"invalid driver name {driver!r} (a name from /sys/bus/pci/drivers, e.g. vfio-pci)")
    if is_vfio_driver(driver) or normalize(driver) == normalize(PCI_STUB):
        return
    from .. import kmod

    if not kmod.is_vfio_variant(host, kmod.driver_module(host, driver) or driver):
        raise UsageError(f"--driver {driver}: not vfio-pci, a vfio variant driver (built on vfio_pci_core) or "
                         "pci-stub; enable binds devices for passthrough, and disable gives them back to their "
                         "host driver")


# --- public API ------------------------------------------------------------------------------------------------
def enable(
    host: Host,
    addresses: list[str],
    *,
    driver: str = VFIO_PCI,
    move_group: bool = False,
    force: bool = False,
    dry_run: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    kernel: Kernel | None = None,
    lock_wait: float = DEFAULT_LOCK_WAIT,
    on_lock_wait=None,
) -> BindReport:
    """Bind ``addresses`` to ``driver`` (``vfio-pci``, ``auto`` for a vfio variant, a variant's name, or
    ``pci-stub``)."""
    _check_driver(host, driver)
    return _mutate(host, "enable", addresses,
                   lambda ctx, addrs: _plan_enable(ctx, addrs, driver=driver, move_group=move_group, force=force),
                   dry_run=dry_run, timeout=timeout, kernel=kernel, lock_wait=lock_wait, on_lock_wait=on_lock_wait)


def disable(
    host: Host,
    addresses: list[str],
    *,
    dry_run: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    kernel: Kernel | None = None,
    lock_wait: float = DEFAULT_LOCK_WAIT,
    on_lock_wait=None,
) -> BindReport:
    """Return ``addresses`` to their host driver (the one recorded by enable, else the kernel's choice)."""
    return _mutate(host, "disable", addresses, _plan_disable, dry_run=dry_run, timeout=timeout, kernel=kernel,
                   lock_wait=lock_wait, on_lock_wait=on_lock_wait)
