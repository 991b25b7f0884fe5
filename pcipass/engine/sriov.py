"""``sriov --numvfs``: set an SR-IOV PF's VF count, planned, guarded, locked and rolled back like ``enable``;
with ``vfio``, the VFs then go to vfio-pci through ``enable`` itself.

The kernel's rules (drivers/pci/iov.c sriov_numvfs_store, 6.1):
- more than ``sriov_totalvfs``: ERANGE; the count it has already: nothing happens;
- no PF driver, or one without ``sriov_configure``: ENOENT (vfio-pci has it only with ``enable_sriov=1``);
- a non-zero count while VFs exist: EBUSY ("N VFs already enabled. Disable before enabling M VFs"), so N -> M
  is written as 0 then M, and every existing VF disappears on the way, raising the count or lowering it;
- the driver's ``sriov_configure`` may fail with its own errno (EINVAL, ENOSYS, EOPNOTSUPP: SR-IOV off in
  its firmware; ENOMEM: no MMIO space reserved for the VF BARs) or enable fewer VFs than asked (success);
- 0 removes every VF, each through its driver's remove(): vfio-pci's waits until the process holding the
  VF's group lets go, so that write would block: a VF held open is refused beforehand, ``--force`` or not.

Order of a run: preflight → lock → the PF, its VFs and their users, read once → guards and plan → (dry run:
stop here) → the PF's steps as one transaction (rolled back on failure) → state records of VFs that are
gone dropped → with ``vfio``, ``enable`` of every VF (in the same lock; each VF's group its own transaction).
"""

from __future__ import annotations

import errno
import json
import os
from typing import Any, NamedTuple

from ..address import PciAddress
from ..drivers import VFIO_PCI, is_vfio_driver
from ..errors import ExitCode, PcipassError, Refused, Unsupported, UsageError
from ..host import Host
from ..hostuse import HostUse
from ..inventory import Inventory
from ..sriov import PhysicalFunction, VirtualFunction, scan, vf_device_id, virtfns
from ..sysfs import read_int, read_str
from .execute import Executor, StepRecord
from .guards import Refusal, RefusalKind, not_live_message, preflight, sriov_pf_refusal
from .kernel import Kernel, check_timeouts, mutating
from .ops import DEFAULT_LOCK_WAIT, DEFAULT_TIMEOUT, BindReport, DeviceResult, Outcome, enable
from .plan import Op, Step
from .planner import StepBuilder
from .state import StateStore, damaged, now_utc, pid_alive, read_private, save_private_json
from .vfio import VfioOpeners, status_unless_held
from .wait import Waiter


def physical_function(host: Host, inv: Inventory, address: str) -> PhysicalFunction:
    """The PF at ``address`` (canonical) with its VFs. Raises DeviceNotFound, UsageError (a VF: VFs are counted
    on their PF), Unsupported (no SR-IOV capability)."""
    dev = inv.device(address)
    if dev.physfn:
        raise UsageError(
            f"{address} is a virtual function of {dev.physfn}: VFs are created and removed on their PF",
            address=address,
            remedy=f"pcipass sriov {dev.physfn}",
        )
    if dev.sriov is None or not dev.sriov.totalvfs:
        why = "has no SR-IOV capability" if dev.sriov is None else "offers 0 VFs (sriov_totalvfs is 0)"
        raise Unsupported(
            f"{address} {why}: it cannot have virtual functions",
            address=address,
            remedy="check that the device supports SR-IOV and that SR-IOV is enabled in the system firmware "
            "setup and in the device's own firmware (e.g. mlxconfig SRIOV_EN, NUM_OF_VFS), and that the "
            "kernel has CONFIG_PCI_IOV",
        )
    d = host.pci_device(address)
    autoprobe = read_int(d / "sriov_drivers_autoprobe")
    use = HostUse.scan(host, inv)
    openers = VfioOpeners(host)
    vfs = []
    for index, vf in virtfns(host, address):
        vdev = inv.devices.get(vf)
        group = vdev.iommu_group if vdev else None
        vfs.append(
            VirtualFunction(
                index,
                vf,
                vdev.driver if vdev else None,
                vdev.driver_override if vdev else None,
                group,
                openers.of_group(inv, group) if group is not None else (),
                tuple(r.message for r in use.reasons(vf)),
            )
        )
    guard = sriov_pf_refusal(dev, inv)
    return PhysicalFunction(
        address,
        dev.vendor_id,
        dev.device_id,
        dev.driver,
        dev.sriov.totalvfs,
        dev.sriov.numvfs,
        None if autoprobe is None else bool(autoprobe),
        read_int(d / "sriov_offset"),
        read_int(d / "sriov_stride"),
        vf_device_id(read_str(d / "sriov_vf_device")),
        tuple(vfs),
        guard.message if guard else None,
    )


def show(host: Host, address: str) -> PhysicalFunction:
    """``pcipass sriov ADDR``: the PF at ``address`` (any accepted spelling)."""
    canonical = str(PciAddress.parse(address))
    return physical_function(host, scan(host, canonical), canonical)


class SriovReport(NamedTuple):
    action: str
    dry_run: bool
    address: str  #: the PF
    outcome: Outcome  #: of the PF's change (the VFs' binding has its own report)
    numvfs_before: int | None
    autoprobe_before: bool | None
    numvfs_after: int | None
    autoprobe_after: bool | None
    vfs: tuple[str, ...]  #: the VFs after the run (dry run: the addresses they will have)
    steps: tuple[StepRecord, ...]
    rollback: tuple[StepRecord, ...]
    binding: BindReport | None  #: ``vfio``: enable's report for the VFs (dry run: its plan, as far as known)
    messages: tuple[str, ...]
    errors: tuple[PcipassError, ...]
    exit_code: ExitCode

    def data(self) -> dict[str, Any]:
        """The report as data (messages and errors go to the result's own fields)."""
        fields = {k: v for k, v in self._asdict().items() if k not in ("messages", "errors", "exit_code")}
        return fields | {
            "outcome": self.outcome.value,
            "vfs": list(self.vfs),
            "steps": [r.to_dict() for r in self.steps],
            "rollback": [r.to_dict() for r in self.rollback],
            "binding": self.binding.data() if self.binding else None,
        }


class _Plan(NamedTuple):
    pf: PhysicalFunction
    steps: tuple[Step, ...]
    gone: tuple[str, ...]  #: VFs the change removes
    messages: tuple[str, ...]
    refused: Refused | None = None


def _holds(pf: PhysicalFunction, inv, host: Host, kernel: Kernel, force: bool) -> tuple[list[Refusal], list[str]]:
    """Refusals for VFs the change would remove while something holds them; and the --force notes."""
    openers = VfioOpeners(host)
    refusals: list[Refusal] = []
    for vf in pf.vfs:
        if vf.iommu_group is not None and is_vfio_driver(vf.driver, inv.variant_modules):
            st = status_unless_held(openers, inv, vf.iommu_group, kernel.vfio_status)
            if st.busy:
                refusals.append(
                    Refusal(
                        vf.address,
                        RefusalKind.GROUP_OPEN,
                        f"VF {vf.address} (virtfn{vf.virtfn}): IOMMU group {vf.iommu_group} is "
                        f"{st.detail}; removing the VF would block until it lets go",
                    )
                )
        refusals += [
            Refusal(vf.address, RefusalKind.IN_USE, f"VF {vf.address} (virtfn{vf.virtfn}) is in use by the host: {why}")
            for why in vf.host_use
        ]
    if force and all(r.overridable for r in refusals):
        return [], [f"--force: going ahead although {r.message}" for r in refusals]
    return refusals, []


def _plan(host: Host, kernel: Kernel, address: str, numvfs: int, autoprobe: bool | None, force: bool) -> _Plan:
    inv = scan(host, address)
    pf = physical_function(host, inv, address)
    total = pf.sriov_totalvfs or 0
    if numvfs > total:
        raise UsageError(f"{address} can have at most {total} VFs (sriov_totalvfs), not {numvfs}", address=address)
    current = pf.sriov_numvfs or 0
    builder = StepBuilder(host)
    steps: list[Step] = []
    if autoprobe is not None and pf.sriov_drivers_autoprobe is not autoprobe:
        path = builder.attribute(address, "sriov_drivers_autoprobe")
        old = "1" if pf.sriov_drivers_autoprobe is not False else "0"
        steps.append(
            Step(
                Op.WRITE,
                address,
                path,
                "1" if autoprobe else "0",
                "new VFs get "
                + (
                    "the host drivers that match them"
                    if autoprobe
                    else "no host driver (only the one their driver_override names)"
                ),
                undo=(Step(Op.WRITE, address, path, old, "restore sriov_drivers_autoprobe"),),
            )
        )
    gone: tuple[str, ...] = ()
    messages: list[str] = []
    if numvfs != current:
        if pf.driver is None:
            raise Unsupported(
                f"{address} has no driver: the kernel creates and removes VFs through the PF's driver",
                address=address,
                remedy="bind the PF's own driver first (pcipass disable, or modprobe it)",
            )
        gone = tuple(vf.address for vf in pf.vfs) if current else ()
        refusals, messages = _holds(pf, inv, host, kernel, force)
        if refusals:
            remedy = (
                "stop the VM or process holding it (--force does not override this)"
                if any(not r.overridable for r in refusals)
                else "stop using it on the host first, or pass --force if you are sure"
            )
            refused = Refused("; ".join(r.message for r in refusals), address=address, remedy=remedy)
            return _Plan(pf, (), gone, (), refused)
        path = builder.attribute(address, "sriov_numvfs")
        if current:
            steps.append(
                Step(
                    Op.WRITE,
                    address,
                    path,
                    "0",
                    f"remove the {current} VFs" + (" (a count changes only through 0)" if numvfs else ""),
                    undo=(Step(Op.WRITE, address, path, str(current), f"recreate the {current} VFs"),),
                )
            )
        if numvfs:
            steps.append(
                Step(
                    Op.WRITE,
                    address,
                    path,
                    str(numvfs),
                    f"create {numvfs} VFs",
                    undo=(Step(Op.WRITE, address, path, "0", f"remove the {numvfs} new VFs"),),
                )
            )
        steps.append(Step(Op.VERIFY_VFS, address, path, str(numvfs), f"the PF has {numvfs} VFs, each a device"))
    return _Plan(pf, tuple(steps), gone, tuple(messages))


# What a refused sriov_numvfs write means (see the module docstring), and what to do about it.
_REFUSALS = {
    errno.ENOENT: "the PF's driver does not create VFs (no sriov_configure; for vfio-pci: load it with "
    "enable_sriov=1): bind the device's own driver",
    errno.EINVAL: "enable SR-IOV in the system firmware setup and in the device's firmware, and check the "
    "driver's module parameters (some drivers take the VF count only as max_vfs=)",
    errno.ENOSYS: "the driver or its firmware has SR-IOV off: enable it in the device's firmware settings",
    errno.EOPNOTSUPP: "the driver or its firmware has SR-IOV off: enable it in the device's firmware settings",
    errno.ENOMEM: "no MMIO space was reserved for the VF BARs: enable SR-IOV in the system firmware setup, "
    "or boot with pci=realloc",
}


def _explain(err: PcipassError, pf: PhysicalFunction, steps: tuple[Step, ...]) -> PcipassError:
    numvfs_path = next((s.path for s in steps if s.path and s.path.endswith("/sriov_numvfs")), None)
    if err.path != numvfs_path or err.errno not in _REFUSALS:
        return err
    return Unsupported(
        f"{pf.address}: the PF driver ({pf.driver}) refused to change the VF count: {err.message}",
        address=pf.address,
        path=err.path,
        errno=err.errno,
        remedy=_REFUSALS[err.errno],
    )


class _InFlight:
    """``<state_dir>/sriov.json``: the PFs whose count a run is changing, each written before the run's first write
    and dropped after its last (or its complete rollback). A record the next run finds was left by a run that died
    (kill -9) half way, maybe after removing the VFs and before creating the new ones: that run says so, with
    the count the PF had, and sets the count again."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.path = host.state_dir / "sriov.json"

    def load(self) -> dict[str, dict[str, Any]]:
        raw = read_private(self.host, self.path)
        if raw is None:
            return {}
        try:
            return {a: dict(r) for a, r in json.loads(raw.decode("utf-8"))["pfs"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # UnicodeDecodeError, JSONDecodeError too
            raise damaged(self.path, str(exc)) from exc

    def set(self, address: str, record: dict[str, Any] | None) -> None:
        records = self.load()
        if record is None:
            records.pop(address, None)
        else:
            records[address] = record
        save_private_json(self.host, self.path, {"version": 1, "pfs": records})


def _interrupted(record: dict[str, Any], address: str) -> str:
    return (
        f"{address}: a 'pcipass sriov' run (pid {record.get('pid')}, started {record.get('since')}) died before "
        f"finishing; the PF had {record.get('numvfs_before')} VFs then (sriov_drivers_autoprobe "
        f"{record.get('autoprobe_before')}), it was to have {record.get('numvfs')}"
    )


def _drop_records(host: Host, gone: tuple[str, ...]) -> None:
    """VFs that no longer exist keep no state record (enable recorded those it bound)."""
    store = StateStore(host)
    records = store.load()
    if any(a in records for a in gone):
        store.save({a: r for a, r in records.items() if a not in gone})


def set_numvfs(
    host: Host,
    address: str,
    numvfs: int,
    *,
    autoprobe: bool | None = None,
    vfio: bool = False,
    force: bool = False,
    dry_run: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    kernel: Kernel | None = None,
    lock_wait: float = DEFAULT_LOCK_WAIT,
    on_lock_wait=None,
) -> SriovReport:
    """Give the PF at ``address`` ``numvfs`` VFs (through 0 from another non-zero count); ``autoprobe``: set
    ``sriov_drivers_autoprobe`` first (None: leave it); ``vfio``: bind every VF to vfio-pci afterwards;
    ``force``: remove VFs the host uses (never one whose VFIO group is open)."""
    check_timeouts(timeout, lock_wait)
    if numvfs < 0:
        raise UsageError(f"a VF count cannot be negative ({numvfs})")
    address = str(PciAddress.parse(address))
    preflight(host, action="sriov", dry_run=dry_run, iommu=vfio)
    with mutating(
        host,
        f"sriov {address} --numvfs {numvfs}",
        dry_run=dry_run,
        kernel=kernel,
        lock_wait=lock_wait,
        on_lock_wait=on_lock_wait,
        shared=True,
    ) as (kernel, _):
        return _run(
            host,
            kernel,
            address,
            numvfs,
            autoprobe=autoprobe,
            vfio=vfio,
            force=force,
            dry_run=dry_run,
            timeout=timeout,
            lock_wait=lock_wait,
        )


def _run(
    host: Host,
    kernel: Kernel,
    address: str,
    numvfs: int,
    *,
    autoprobe: bool | None,
    vfio: bool,
    force: bool,
    dry_run: bool,
    timeout: float,
    lock_wait: float,
) -> SriovReport:
    messages: list[str] = []
    if not dry_run and not host.reaches_kernel:
        messages.append(not_live_message(host))
    inflight = _InFlight(host)
    left = inflight.load().get(address)
    if left is not None and not (dry_run and pid_alive(int(left.get("pid", 0)))):
        messages.append(_interrupted(left, address))
    plan = _plan(host, kernel, address, numvfs, autoprobe, force)
    pf = plan.pf
    messages += plan.messages
    before = (pf.sriov_numvfs, pf.sriov_drivers_autoprobe)
    if plan.refused is not None:
        return SriovReport(
            "sriov",
            dry_run,
            address,
            Outcome.REFUSED,
            *before,
            *before,
            tuple(vf.address for vf in pf.vfs),
            (),
            (),
            None,
            tuple(messages),
            (plan.refused,),
            ExitCode.REFUSED,
        )
    after_autoprobe = pf.sriov_drivers_autoprobe if autoprobe is None else autoprobe
    if dry_run:
        vfs = pf.vf_addresses(numvfs) if numvfs != pf.sriov_numvfs else tuple(vf.address for vf in pf.vfs)
        binding = None
        if vfio and vfs:
            binding = _preview_binding(host, vfs, numvfs != pf.sriov_numvfs, after_autoprobe, timeout, kernel)
            messages += binding.messages
        outcome = Outcome.PLANNED if plan.steps else Outcome.UNCHANGED
        return SriovReport(
            "sriov",
            True,
            address,
            outcome,
            *before,
            numvfs,
            after_autoprobe,
            vfs,
            tuple(StepRecord(s, "planned") for s in plan.steps),
            (),
            binding,
            tuple(messages),
            tuple(binding.errors) if binding else (),
            binding.exit_code if binding else ExitCode.OK,
        )
    if plan.steps:
        inflight.set(
            address,
            {
                "numvfs_before": pf.sriov_numvfs,
                "autoprobe_before": pf.sriov_drivers_autoprobe,
                "numvfs": numvfs,
                "pid": os.getpid(),
                "since": now_utc(),
            },
        )
    waiter = Waiter(host)
    try:
        run = Executor(host, kernel, waiter, timeout).run(plan.steps)
    finally:
        waiter.close()
    if (plan.steps and run.restored) or (left is not None and not plan.steps):
        inflight.set(address, None)  # kept when a rollback is incomplete: the next run says so again
    now = physical_function(host, scan(host, address), address)
    after = (now.sriov_numvfs, now.sriov_drivers_autoprobe)
    vfs = tuple(vf.address for vf in now.vfs)
    if not run.ok:
        assert run.error is not None
        err = _explain(run.error, pf, plan.steps)
        if not run.restored:
            err = type(err)(
                f"{err.message}; rollback incomplete ("
                f"{'; '.join(e.message for e in run.rollback_errors) or 'a write is still pending'})",
                address=err.address,
                path=err.path,
                errno=err.errno,
                remedy=f"check 'pcipass sriov {address}' and set the count again",
            )
        return SriovReport(
            "sriov",
            False,
            address,
            Outcome.FAILED,
            *before,
            *after,
            vfs,
            tuple(run.records),
            tuple(run.rollback),
            None,
            tuple(messages),
            (err,),
            ExitCode.FAILED,
        )
    if plan.gone:
        _drop_records(host, plan.gone)
    outcome = Outcome.DONE if any(r.status == "done" for r in run.records) else Outcome.UNCHANGED
    binding = None
    code = ExitCode.OK
    errors: list[PcipassError] = []
    if vfio and vfs:
        binding = enable(
            host, list(vfs), driver=VFIO_PCI, dry_run=False, timeout=timeout, kernel=kernel, lock_wait=lock_wait
        )
        messages += binding.messages
        errors += binding.errors
        if binding.exit_code is not ExitCode.OK:
            # The VF count stands (the VFs exist, on no driver or their host one); the binding is reported.
            code = binding.exit_code if outcome is Outcome.UNCHANGED else ExitCode.PARTIAL
    return SriovReport(
        "sriov",
        False,
        address,
        outcome,
        *before,
        *after,
        vfs,
        tuple(run.records),
        (),
        binding,
        tuple(messages),
        tuple(errors),
        code,
    )


def _preview_binding(
    host: Host, vfs: tuple[str, ...], new: bool, autoprobe: bool | None, timeout: float, kernel: Kernel
) -> BindReport:
    """The binding half of a dry run. VFs that exist already: enable's own dry run. VFs still to be created
    cannot be planned against the host (no device, no IOMMU group yet): the steps enable would take for a VF
    that comes up on no driver (what --no-autoprobe gives), to be verified and planned again once they exist."""
    if not new:
        return enable(host, list(vfs), driver=VFIO_PCI, dry_run=True, timeout=timeout, kernel=kernel)
    from .plan import Move

    builder = StepBuilder(host)
    steps = [s for vf in vfs for s in builder.enable(Move(vf, None, True, None, None, None, None, VFIO_PCI))]
    note = "the VFs do not exist yet: their binding is planned again, with their IOMMU groups, once they do" + (
        ""
        if autoprobe is False
        else "; a host driver that probes them first is unbound then (--no-autoprobe avoids that)"
    )
    devices = tuple(DeviceResult(vf, None, True, Outcome.PLANNED, None, None, VFIO_PCI) for vf in vfs)
    return BindReport(
        "enable", True, devices, tuple(StepRecord(s, "planned") for s in steps), (), (), None, (note,), (), ExitCode.OK
    )
