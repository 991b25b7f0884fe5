"""The one seam between the engine and the kernel: every mutation goes through a ``Kernel``.

``SysfsKernel`` is the real thing (``sysfs.write_attr``, ``modprobe``, the VFIO ioctl). A mutating run gets it,
with the lock, from ``mutating``: the one place a run makes it, and where tests substitute a fake kernel that
applies the kernel's semantics to a fake tree and injects failures at any step.
"""

from __future__ import annotations

import errno
import math
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from queue import SimpleQueue
from typing import Protocol

from ..errors import ModuleError, SysfsError, UsageError
from ..host import Host
from ..sysfs import write_attr
from .state import Lock
from .vfio import VfioGroupStatus, group_status

#: The longest wait pcipass accepts for one kernel write or bind (an hour: a driver that takes longer is stuck).
MAX_TIMEOUT = 3600.0


def check_timeout(seconds: float, option: str = "--timeout") -> None:
    """A usage error (exit 2) unless ``seconds`` is a finite number of seconds in (0, MAX_TIMEOUT]. Called before
    anything is read: ``inf`` once overflowed the lock's and the waits' clocks after ``driver_override`` was
    written, and ``nan`` makes every wait end at once."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT:
        raise UsageError(f"{option} {seconds!r}: give a number of seconds above 0 and at most {MAX_TIMEOUT:g}")


def check_timeouts(timeout: float, lock_wait: float) -> None:
    """``check_timeout`` of a mutating run's ``--timeout`` and lock wait."""
    check_timeout(timeout)
    check_timeout(lock_wait, "lock wait")


class Kernel(Protocol):
    def write(self, path: str | os.PathLike[str], value: str, *, address: str | None, timeout: float | None) -> None:
        """Write ``value`` to the attribute at ``path``; raise a PcipassError (with errno) on failure."""

    def load_module(self, name: str, *, timeout: float) -> None:
        """Load a module; raise a PcipassError on failure."""

    def vfio_status(self, group: int) -> VfioGroupStatus:
        """The kernel's viability answer for a VFIO group."""

    def close(self) -> None:
        """Release what the object holds (the writer thread); called by the engine on a kernel it created."""


class _Writer:
    """Writes with a timeout, on one thread reused for every write of a run.

    Any PCI attribute write can block in the kernel: ``bind``/``unbind``/``drivers_probe`` run the driver's
    probe/remove in the writer's context, and even ``driver_override`` takes the device lock
    (drivers/base/driver.c driver_set_override), which a remove() stuck on the device's users holds. The
    blocked write(2) cannot be interrupted, so it runs on a daemon thread that the caller stops waiting for
    after ``timeout``. Starting a thread per write cost a few milliseconds each under emulation; this thread
    takes the writes one after another instead, and only a write that was abandoned (its thread stays
    blocked in the kernel until the write returns, or the process ends) makes the next write start a new one."""

    def __init__(self) -> None:
        self._jobs: SimpleQueue | None = None

    @staticmethod
    def _serve(jobs: SimpleQueue) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            path, value, address, beneath, box, done = job
            try:
                write_attr(path, value, address=address, beneath=beneath)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                box.append(exc)
            done.release()

    def write(self, path, value: str, *, address: str | None, beneath: str | None, timeout: float) -> None:
        if self._jobs is None:
            self._jobs = SimpleQueue()
            threading.Thread(target=self._serve, args=(self._jobs,), name="pcipass-writer", daemon=True).start()
        box: list[BaseException] = []
        done = threading.Lock()  # released by the writer thread when the write returned
        done.acquire()
        self._jobs.put((path, value, address, beneath, box, done))
        if not done.acquire(timeout=timeout):
            # That thread is stuck in the kernel: the next write gets a new one, and it ends once the kernel
            # lets its write return.
            self._jobs.put(None)
            self._jobs = None
            raise SysfsError(
                f"{address + ': ' if address else ''}write {path} still blocked after {timeout:g} s; abandoned",
                address=address,
                path=str(path),
                errno=errno.ETIMEDOUT,
                remedy="the driver is waiting for the device's users to let go: stop them, then retry",
            )
        if box:
            raise box[0]

    def close(self) -> None:
        """End the thread (a library caller runs many commands in one process)."""
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None


class SysfsKernel:
    def __init__(self, host: Host) -> None:
        self.host = host
        self._writer = _Writer()

    def write(self, path: str | os.PathLike[str], value: str, *, address: str | None, timeout: float | None) -> None:
        if timeout is None:
            write_attr(path, value, address=address, beneath=self.host.beneath)
        else:
            self._writer.write(path, value, address=address, beneath=self.host.beneath, timeout=timeout)

    def close(self) -> None:
        self._writer.close()

    def load_module(self, name: str, *, timeout: float) -> None:
        modprobe = self.host.executable("modprobe")
        if modprobe is None:
            why = (
                "no modprobe on this system"
                if self.host.is_live
                else f"modules cannot be loaded under {self.host.root_dir}"
            )
            raise ModuleError(f"cannot load module {name}: {why}", remedy=f"load it first: modprobe {name}")
        try:
            proc = subprocess.run(
                [modprobe, name], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as exc:
            raise SysfsError(
                f"modprobe {name} did not finish in {timeout:g} s", remedy="check dmesg for a module stuck in its init"
            ) from exc
        if proc.returncode != 0:
            msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit status {proc.returncode}"
            raise ModuleError(
                f"modprobe {name} failed: {msg}",
                remedy="see dmesg; a module forbidden by modprobe.d ('blacklist'/'install ... "
                "/bin/false') must be allowed there first",
            )

    def vfio_status(self, group: int) -> VfioGroupStatus:
        return group_status(self.host, group)


@contextmanager
def mutating(
    host: Host,
    command: str,
    *,
    dry_run: bool,
    kernel: Kernel | None,
    lock_wait: float,
    on_lock_wait: Callable[[str], None] | None = None,
    shared: bool = False,
) -> Iterator[tuple[Kernel, Lock | None]]:
    """The frame of every run that may write to the kernel (``enable``/``disable``, ``sriov --numvfs``, ``mdev
    create``/``remove``): the kernel to write through (``kernel``, else a SysfsKernel of the run's own, closed
    at the end: its writer thread) and, unless ``dry_run``, the one lock of mutating runs, held until the end
    (``command`` names the run to whoever waits for it; ``shared``: see ``Lock``)."""
    own = None
    if kernel is None:
        kernel = own = SysfsKernel(host)
    try:
        if dry_run:
            yield kernel, None
        else:
            with Lock(host, wait=lock_wait, command=command, on_wait=on_lock_wait, shared=shared) as lock:
                yield kernel, lock
    finally:
        if own is not None:
            own.close()
