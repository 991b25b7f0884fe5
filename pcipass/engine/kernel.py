"""The one seam between the engine and the kernel: every mutation goes through a ``Kernel``.

``SysfsKernel`` is the real thing (``sysfs.write_attr``, ``modprobe``, the VFIO ioctl). Tests substitute a
fake kernel that applies the kernel's semantics to a fake tree and injects failures at any step.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

from ..errors import ModuleError, SysfsError
from ..host import Host
from ..sysfs import write_attr
from .vfio import VfioGroupStatus, group_status


class Kernel(Protocol):
    def write(self, path: Path, value: str, *, address: str | None, timeout: float | None) -> None:
        """Write ``value`` to the attribute at ``path``; raise a PcipassError (with errno) on failure."""

    def load_module(self, name: str, *, timeout: float) -> None:
        """Load a module; raise a PcipassError on failure."""

    def vfio_status(self, group: int) -> VfioGroupStatus:
        """The kernel's viability answer for a VFIO group."""


class SysfsKernel:
    def __init__(self, host: Host) -> None:
        self.host = host

    def write(self, path: Path, value: str, *, address: str | None, timeout: float | None) -> None:
        write_attr(path, value, address=address, timeout=timeout)

    def load_module(self, name: str, *, timeout: float) -> None:
        modprobe = self.host.executable("modprobe")
        if modprobe is None:
            why = "no modprobe on this system" if self.host.is_live else f"modules cannot be loaded under {self.host.root}"
            raise ModuleError(f"cannot load module {name}: {why}", remedy=f"load it first: modprobe {name}")
        try:
            proc = subprocess.run([modprobe, name], capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise SysfsError(f"modprobe {name} did not finish in {timeout:g} s",
                             remedy="check dmesg for a module stuck in its init") from exc
        if proc.returncode != 0:
            msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit status {proc.returncode}"
            raise ModuleError(f"modprobe {name} failed: {msg}",
                              remedy="see dmesg; a module forbidden by modprobe.d ('blacklist'/'install ... "
                                     "/bin/false') must be allowed there first")

    def vfio_status(self, group: int) -> VfioGroupStatus:
        return group_status(self.host, group)
