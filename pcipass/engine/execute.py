"""Running a group's steps as a transaction: all of them, or none (undo in reverse order on failure).

Every write goes through the ``Kernel`` seam with a timeout: a ``bind``/``unbind``/``drivers_probe`` runs the
driver's probe/remove in the writer's context and can block while the device's users hang on (see
``kernel._Writer``). A device whose write was abandoned this way is *stuck*: the kernel still holds its
device lock and will finish that write later, so no further write (not even an undo) is sent for it; the
state file keeps its record and the error says how to finish by hand.
"""

from __future__ import annotations

import errno
import os
from typing import Any, NamedTuple

from ..drivers import is_vfio_driver
from ..errors import PcipassError, SysfsError, from_oserror
from ..host import Host
from ..sysfs import link_name, list_dir, read_int
from .kernel import Kernel
from .plan import Op, Step, When
from .planner import current_override, override_value
from .wait import Waiter


class StepRecord(NamedTuple):
    step: Step
    status: str  #: planned | done | skipped | failed | not-run | undone
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.step.to_dict(), "status": self.status, "detail": self.detail}


class GroupRun:
    """The outcome of one group's transaction (a plain class: see plan.py on why not a dataclass)."""

    def __init__(self) -> None:
        self.records: list[StepRecord] = []
        self.rollback: list[StepRecord] = []
        self.error: PcipassError | None = None
        self.rollback_errors: list[PcipassError] = []
        self.stuck: set[str] = set()
        #: Ctrl-C or SIGTERM arrived during the group: re-raised once the group is put back and recorded.
        self.interrupted: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def restored(self) -> bool:
        """After a failure: every undo step ran (nothing left half-done)."""
        return not self.rollback_errors and not self.stuck


def driver_of(host: Host, address: str) -> str | None:
    return link_name(os.path.join(host.pci_devices_dir, address, "driver"))


class Executor:
    def __init__(self, host: Host, kernel: Kernel, waiter: Waiter, timeout: float) -> None:
        self.host = host
        self.kernel = kernel
        self.waiter = waiter
        self.timeout = timeout
        self._stuck: set[str] = set()

    # --- one step --------------------------------------------------------------------------------------
    def _condition_holds(self, step: Step) -> bool:
        if step.when is When.ALWAYS or step.address is None:
            return True
        drv = driver_of(self.host, step.address)
        if step.when is When.BOUND_TO:
            return drv == step.when_driver
        if step.when is When.UNBOUND:
            return drv is None
        return drv is not None and drv != step.when_driver

    def _write(self, step: Step) -> str | None:
        assert step.path is not None and step.value is not None
        path = self.host.actual(step.path)
        if path.endswith("/driver_override") and step.address is not None:
            if current_override(self.host, step.address) == override_value(step.value):
                return "already set"
        try:
            self.kernel.write(path, step.value, address=step.address, timeout=self.timeout)
        except OSError as exc:  # a Kernel may surface the raw OSError
            raise from_oserror(exc, action="write", path=step.path, address=step.address) from exc
        return None

    def _wait(self, step: Step) -> str:
        address, want = step.address, step.value
        assert address is not None and want is not None
        if self.waiter.until(lambda: driver_of(self.host, address) == want, self.timeout):
            return f"bound ({self.waiter.last})"
        now = driver_of(self.host, address)
        raise SysfsError(
            f"{address} is not bound to {want} after {self.timeout:g} s (driver now: {now or 'none'})",
            address=address,
            errno=errno.ETIMEDOUT,
            remedy=f"{want} did not take the device: see dmesg (for vfio drivers: the IOMMU group, the IOMMU "
            "itself, or a BAR reserved by a framebuffer)",
        )

    def _verify_group(self, step: Step) -> str:
        group = step.group
        assert group is not None and step.path is not None
        node = self.host.actual(step.path)
        if not self.waiter.until(lambda: os.path.exists(node), self.timeout):
            raise SysfsError(
                f"group {group}: {step.path} did not appear after {self.timeout:g} s",
                path=step.path,
                errno=errno.ENOENT,
                remedy="is devtmpfs mounted on /dev? see dmesg for vfio errors",
            )
        status = self.kernel.vfio_status(group)
        if status.viable is True:
            return "the kernel reports the group viable"
        if status.viable is False:
            raise SysfsError(
                f"the kernel reports IOMMU group {group} not viable: a device of the group is still on a host driver",
                path=step.path,
                remedy="every endpoint of the group must be on a vfio driver, pci-stub or no driver (--group)",
            )
        if self.host.is_live:
            raise SysfsError(
                f"group {group}: the kernel's viability answer is unavailable: {status.detail}", path=step.path
            )
        return f"kernel not asked: {status.detail}"

    def _verify_released(self, step: Step) -> str:
        address = step.address
        assert address is not None
        drv = driver_of(self.host, address)
        if is_vfio_driver(drv):
            raise SysfsError(
                f"{address} went back to {drv} after drivers_probe: something other than driver_override "
                "sends it there",
                address=address,
                remedy="remove vfio-pci.ids= from the kernel command line / 'options vfio-pci ids=' from "
                "modprobe.d (and any new_id), then retry",
            )
        return f"now on {drv or 'no driver'}"

    def _vfs_present(self, pf: str) -> tuple[int | None, list[str]]:
        """(``sriov_numvfs`` as read, the PF's ``virtfnN`` links that lead to a device)."""
        d = self.host.pci_device(pf)
        links = [link_name(d / e) for e in list_dir(d) if e.startswith("virtfn")]
        return read_int(d / "sriov_numvfs"), [v for v in links if v and self.host.pci_device(v).exists()]

    def _verify_vfs(self, step: Step) -> str:
        pf, want = step.address, int(step.value or 0)
        assert pf is not None

        # sriov_numvfs_store() adds (or removes) the VFs before the write returns (drivers/pci/iov.c
        # sriov_enable -> pci_iov_add_virtfn); the wait only covers a kernel that lets them appear later.
        def complete() -> bool:
            count, vfs = self._vfs_present(pf)
            return count == want and len(vfs) == want

        if self.waiter.until(complete, self.timeout):
            vfs = self._vfs_present(pf)[1]
            return f"{want} VFs: {', '.join(vfs)}" if vfs else "no VFs left"
        count, vfs = self._vfs_present(pf)
        raise SysfsError(
            f"{pf}: asked for {want} VFs, the kernel shows {count if count is not None else 'no count'} "
            f"(sriov_numvfs) and {len(vfs)} VF devices",
            address=pf,
            path=step.path,
            remedy="the PF driver enabled fewer VFs than asked (its own or its firmware's limit): see dmesg",
        )

    def run_step(self, step: Step) -> tuple[str, str | None]:
        """Execute one step: (status, detail). Raises PcipassError on failure."""
        if step.address is not None and step.address in self._stuck:
            raise SysfsError(
                f"{step.address}: not touched again while the kernel is still busy with it",
                address=step.address,
                errno=errno.ETIMEDOUT,
            )
        if not self._condition_holds(step):
            return "skipped", step.condition
        if step.op is Op.WRITE:
            detail = self._write(step)
            return ("skipped", detail) if detail else ("done", None)
        if step.op is Op.WAIT:
            return "done", self._wait(step)
        if step.op is Op.VERIFY_GROUP:
            return "done", self._verify_group(step)
        if step.op is Op.VERIFY_RELEASED:
            return "done", self._verify_released(step)
        if step.op is Op.VERIFY_VFS:
            return "done", self._verify_vfs(step)
        assert step.op is Op.LOAD_MODULE and step.value is not None
        self.kernel.load_module(step.value, timeout=self.timeout)
        return "done", None

    # --- a transaction ---------------------------------------------------------------------------------
    def run(self, steps: tuple[Step, ...] | list[Step]) -> GroupRun:
        run = GroupRun()
        self._stuck = run.stuck
        done: list[Step] = []
        for i, step in enumerate(steps):
            try:
                status, detail = self.run_step(step)
            except PcipassError as err:
                if err.errno == errno.ETIMEDOUT and step.op is Op.WRITE and step.address is not None:
                    run.stuck.add(step.address)
                self._fail(run, steps, i, done, err)
                return run
            except Exception as exc:  # noqa: BLE001 - whatever failed after a write, the group is put back
                self._fail(
                    run,
                    steps,
                    i,
                    done,
                    PcipassError(
                        f"{step.note}: unexpected {type(exc).__name__}: {exc}", address=step.address, path=step.path
                    ),
                )
                return run
            except (KeyboardInterrupt, SystemExit) as exc:
                # Ctrl-C, or SIGTERM (the CLI makes it SystemExit): the group is put back, then the run ends.
                run.interrupted = exc
                what = "SIGTERM" if isinstance(exc, SystemExit) else "Ctrl-C"
                self._fail(
                    run, steps, i, done, PcipassError(f"interrupted by {what} at: {step.note}", address=step.address)
                )
                return run
            run.records.append(StepRecord(step, status, detail))
            if status == "done":
                done.append(step)
        return run

    def _fail(
        self, run: GroupRun, steps: tuple[Step, ...] | list[Step], i: int, done: list[Step], err: PcipassError
    ) -> None:
        run.error = err
        run.records.append(StepRecord(steps[i], "failed", err.message))
        run.records += [StepRecord(s, "not-run") for s in steps[i + 1 :]]
        # The failed step is undone too: a write can fail after the kernel acted (a probe that bound and then
        # errored); its undo steps are conditional on the driver, so they are safe either way.
        self._rollback(done + [steps[i]], run)

    def _rollback(self, done: list[Step], run: GroupRun) -> None:
        undone: set[int] = set()
        for step in reversed(done):
            for undo in step.undo:
                try:
                    status, detail = self.run_step(undo)
                except Exception as exc:  # noqa: BLE001 - one undo failing must not stop the others
                    err = (
                        exc
                        if isinstance(exc, PcipassError)
                        else PcipassError(f"{undo.note}: unexpected {type(exc).__name__}: {exc}", address=undo.address)
                    )
                    run.rollback_errors.append(err)
                    run.rollback.append(StepRecord(undo, "failed", err.message))
                    if err.errno == errno.ETIMEDOUT and undo.address is not None:
                        run.stuck.add(undo.address)
                    continue
                run.rollback.append(StepRecord(undo, status, detail))
            undone.add(id(step))
        run.records = [
            StepRecord(r.step, "undone", r.detail) if r.status == "done" and id(r.step) in undone and r.step.undo else r
            for r in run.records
        ]
