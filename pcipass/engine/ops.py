"""``enable`` and ``disable``: guards, plan (planner.py), lock, state, transactions, and the report (results.py).

Order of a mutating run: preflight (snapshot? root? live host without IOMMU?) → lock → state file (report
runs that died half way) → the named devices and their IOMMU groups (``planner.scan_for``) and the host tables, read
once → guards and plan per IOMMU group → (dry run: stop here, nothing written) → module loads → originals of
every device to move saved → per group: re-check the devices, run the steps as one transaction → outcomes
saved → report each device's outcome.

Exit codes: 0 all done or unchanged; 3 some done, others refused or failed (only across independent groups:
a group is all or nothing); 1 failed; 5 refused; 4 not root.
"""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

from ..address import PciAddress
from ..drivers import PCI_STUB, VFIO_PCI, is_vfio_driver, normalize
from ..errors import DeviceNotFound, ExitCode, PcipassError, Refused, SysfsError, UsageError
from ..host import Host
from .execute import Executor, GroupRun, StepRecord, driver_of
from .guards import not_live_message, preflight
from .kernel import Kernel, check_timeouts, mutating
from .plan import GroupPlan, Plan
from .planner import AUTO, Context, current_override, plan_disable, plan_enable
from .results import DeviceResult, Outcome, Planned, canonical, exit_code, result_for
from .state import (
    DeviceRecord,
    Phase,
    StateStore,
    gone_message,
    interrupted_message,
    load_for_reading,
    lock_is_free,
    now_utc,
    pid_alive,
)
from .wait import Waiter

DEFAULT_TIMEOUT = 10.0
DEFAULT_LOCK_WAIT = 30.0


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


def _changed_since_planning(host: Host, gp: GroupPlan) -> PcipassError | None:
    for m in gp.moves:
        if not host.pci_device(m.address).exists():
            return DeviceNotFound(
                f"{m.address} is gone since planning (removed or hot-unplugged); nothing "
                f"was written to group {gp.group}",
                address=m.address,
                remedy="rescan the bus and check the address",
            )
        drv, ovr = driver_of(host, m.address), current_override(host, m.address)
        if (drv, ovr) != (m.driver_before, m.override_before):
            return SysfsError(
                f"{m.address} changed since planning (driver {drv}, override {ovr}); nothing was "
                f"written to group {gp.group}",
                address=m.address,
                remedy="someone else is rebinding devices; retry",
            )
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
    addrs = canonical(addresses)
    preflight(host, action=action, dry_run=dry_run)
    messages: list[str] = []
    if not dry_run and not host.reaches_kernel and kernel is None:
        messages.append(not_live_message(host))
    with mutating(
        host,
        f"{action} {' '.join(addrs)}",
        dry_run=dry_run,
        kernel=kernel,
        lock_wait=lock_wait,
        on_lock_wait=on_lock_wait,
    ) as (kernel, lock):
        if lock is not None and lock.contended:
            messages.append(f"waited {lock.waited:.1f} s for another pcipass run to finish")
        return _locked_run(host, action, addrs, planner, messages, dry_run=dry_run, timeout=timeout, kernel=kernel)


def _locked_run(
    host: Host,
    action: str,
    addrs: list[str],
    planner,
    messages: list[str],
    *,
    dry_run: bool,
    timeout: float,
    kernel: Kernel,
) -> BindReport:
    """The run, in the lock (unless ``dry_run``): the state read, the plan, each group's transaction."""
    store = StateStore(host)
    records = load_for_reading(host, messages)[0] if dry_run else store.load()
    free = dry_run and lock_is_free(host)
    # Records of devices that disappeared: said once, then kept aside as phase gone (not a run that died).
    gone = [r for a, r in sorted(records.items()) if r.phase is not Phase.GONE and not host.pci_device(a).exists()]
    messages += [gone_message(r) for r in gone]
    if gone and not dry_run:
        records.update({r.address: r._replace(phase=Phase.GONE) for r in gone})
        store.save(records)
    interrupted = tuple(
        r
        for a, r in sorted(records.items())
        if r.in_flight and r not in gone and (not dry_run or free or not pid_alive(r.pid))
    )
    messages += [interrupted_message(r) for r in interrupted]
    ctx = Context(host, kernel, records, addrs)
    planned: Planned = planner(ctx, addrs)
    messages += planned.messages
    results = dict(planned.results)
    errors = list(planned.errors)
    plan = planned.plan
    if dry_run:
        for gp in plan.groups:
            for m in gp.moves:
                dev = ctx.inv.devices[m.address]
                results[m.address] = result_for(dev, Outcome.PLANNED, requested=m.requested, target=m.target)
        ordered = _order(addrs, results)
        return BindReport(
            action,
            True,
            ordered,
            tuple(StepRecord(s, "planned") for s in plan.steps),
            (),
            interrupted,
            None,
            tuple(messages),
            tuple(errors),
            exit_code(list(ordered)),
        )
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
            for i, gp in enumerate(plan.groups):
                run.group(gp, module_errors)
                if run.interrupted is not None:
                    for rest in plan.groups[i + 1 :]:  # not begun: nothing to record
                        run.put_back(rest)
                    break
            # The groups' outcomes, saved once after the last write. A run that dies before this leaves
            # every group in flight on disk, and the next run treats them as interrupted: enable
            # completes them (done steps are skipped), disable puts them back from the originals.
            store.save(records)
        finally:
            waiter.close()
        if run.interrupted is not None:
            raise run.interrupted  # Ctrl-C / SIGTERM: its group was put back and the state saved
    if waiter.note:
        messages.append(waiter.note)
    ordered = _order(addrs, results)
    return BindReport(
        action,
        False,
        ordered,
        tuple(run.steps),
        tuple(run.rollback),
        interrupted,
        waiter.source,
        tuple(messages),
        tuple(errors),
        exit_code(list(ordered)),
    )


def _order(addrs: list[str], results: dict[str, DeviceResult]) -> tuple[DeviceResult, ...]:
    """Requested devices in the order given, then the peers moved with them by address."""
    first = [results[a] for a in addrs if a in results]
    rest = sorted((r for a, r in results.items() if a not in addrs), key=lambda r: PciAddress.parse(r.address))
    return tuple(first + rest)


class _Run:
    """Executes a plan's groups one by one, keeping the state file and the per-device results."""

    def __init__(
        self,
        host: Host,
        ex: Executor,
        store: StateStore,
        records: dict[str, DeviceRecord],
        action: str,
        results: dict[str, DeviceResult],
        errors: list[PcipassError],
    ) -> None:
        self.host, self.ex, self.store, self.records = host, ex, store, records
        self.action, self.results, self.errors = action, results, errors
        self.steps: list[StepRecord] = []
        self.rollback: list[StepRecord] = []
        self.previous: dict[str, DeviceRecord | None] = {}
        #: Ctrl-C or SIGTERM during a group (GroupRun.interrupted): the run ends after that group.
        self.interrupted: BaseException | None = None

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
                self.records[m.address] = DeviceRecord(
                    address=m.address,
                    original_driver=m.original_driver,
                    original_override=m.original_override,
                    target=target,
                    group=m.group,
                    phase=phase,
                    pid=os.getpid(),
                    since=now_utc(),
                    known=known,
                )
        self.store.save(self.records)

    def put_back(self, gp: GroupPlan) -> None:
        for m in gp.moves:
            previous = self.previous[m.address]
            if previous is None:
                self.records.pop(m.address, None)
            else:
                self.records[m.address] = previous

    def _finish(self, gp: GroupPlan, outcome: Outcome, rolled_back: bool | None, err: PcipassError | None) -> None:
        for m in gp.moves:
            self.results[m.address] = DeviceResult(
                address=m.address,
                group=m.group,
                requested=m.requested,
                outcome=outcome,
                driver_before=m.driver_before,
                driver_after=driver_of(self.host, m.address),
                target=m.target,
                rolled_back=rolled_back,
                reasons=(err.message,) if err else (),
                error=err.to_dict() if err else None,
            )
        if err is not None:
            self.errors.append(err)

    def group(self, gp: GroupPlan, module_errors: dict[str, PcipassError]) -> None:
        blocked = next((module_errors[mod] for mod in gp.modules if mod in module_errors), None)
        err = blocked or _changed_since_planning(self.host, gp)
        if err is not None:
            self.steps += [StepRecord(s, "not-run") for s in gp.steps]
            self.put_back(gp)
            self._finish(gp, Outcome.FAILED, None, err)
            return
        run: GroupRun = self.ex.run(gp.steps)
        self.steps += run.records
        self.rollback += run.rollback
        self.interrupted = run.interrupted
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
            self.put_back(gp)
            # A write the root's tree refused (a link leading out of it): refused, as a guard's refusal is.
            self._finish(gp, Outcome.REFUSED if isinstance(err, Refused) else Outcome.FAILED, True, err)
            return
        # Not everything could be undone: keep the in-flight records (status and the next run show them).
        left = " ".join(m.address for m in gp.moves)
        detail = "; ".join(e.message for e in run.rollback_errors) or "the kernel is still busy with a write"
        final = type(err)(
            f"{err.message}; rollback incomplete ({detail})",
            address=err.address,
            path=err.path,
            errno=err.errno,
            remedy=f"once the device is idle, run 'pcipass disable {left}' to return it to the host "
            f"('pcipass status' shows what pcipass recorded)",
        )
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
        raise UsageError(
            f"--driver {driver}: not vfio-pci, a vfio variant driver (built on vfio_pci_core) or "
            "pci-stub; enable binds devices for passthrough, and disable gives them back to their "
            "host driver"
        )


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
    check_timeouts(timeout, lock_wait)
    _check_driver(host, driver)
    return _mutate(
        host,
        "enable",
        addresses,
        lambda ctx, addrs: plan_enable(ctx, addrs, driver=driver, move_group=move_group, force=force),
        dry_run=dry_run,
        timeout=timeout,
        kernel=kernel,
        lock_wait=lock_wait,
        on_lock_wait=on_lock_wait,
    )


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
    check_timeouts(timeout, lock_wait)
    return _mutate(
        host,
        "disable",
        addresses,
        plan_disable,
        dry_run=dry_run,
        timeout=timeout,
        kernel=kernel,
        lock_wait=lock_wait,
        on_lock_wait=on_lock_wait,
    )
