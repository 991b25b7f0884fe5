"""Exit codes and typed errors.

One enum of exit codes (public: provisioning scripts depend on it) and one place, ``from_oserror``, that turns
an ``OSError`` from sysfs/procfs into a typed error carrying the device address, the path and the errno, with
a remedy where the errno has a well-known meaning for PCI binding.
"""

from __future__ import annotations

import errno as _errno
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; documented in docs/contract.md and the man page."""

    OK = 0  #: everything done
    FAILED = 1  #: failed (also: a check failed, no such device)
    USAGE = 2  #: bad command line or input (a bad address or option, a missing --root, an unsafe or oversized archive)
    PARTIAL = 3  #: some items done, others refused or failed
    PERMISSION = 4  #: needs root / permission denied
    REFUSED = 5  #: refused by a safety check (also: a write under --root that would leave it)


class PcipassError(Exception):
    """Base of every error pcipass reports to the user."""

    exit_code: ExitCode = ExitCode.FAILED
    code: str = "failed"  #: stable machine-readable code, used in the JSON envelope's ``errors``

    def __init__(
        self,
        message: str,
        *,
        address: str | None = None,
        path: str | None = None,
        errno: int | None = None,
        remedy: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.address = address
        self.path = path
        self.errno = errno
        self.remedy = remedy

    def to_dict(self) -> dict:
        out: dict = {"code": self.code, "message": self.message}
        if self.address is not None:
            out["address"] = self.address
        if self.path is not None:
            out["path"] = self.path
        if self.errno is not None:
            out["errno"] = _errno.errorcode.get(self.errno, str(self.errno))
        if self.remedy is not None:
            out["remedy"] = self.remedy
        return out


class UsageError(PcipassError):
    exit_code = ExitCode.USAGE
    code = "usage"


class ConfigError(UsageError):
    """The desired-state file is not valid: its message starts with ``file:line: key:``, and nothing is applied."""

    code = "config"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
        remedy: str | None = None,
    ) -> None:
        where = ":".join(str(x) for x in (path, line) if x is not None)
        super().__init__(
            f"{where}: {key}: {message}" if key else f"{where}: {message}" if where else message,
            path=path,
            remedy=remedy,
        )
        self.line = line
        self.key = key

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.line is not None:
            out["line"] = self.line
        if self.key is not None:
            out["key"] = self.key
        return out


class DeviceNotFound(PcipassError):
    exit_code = ExitCode.FAILED
    code = "not-found"


class PermissionDenied(PcipassError):
    exit_code = ExitCode.PERMISSION
    code = "permission"


class Refused(PcipassError):
    exit_code = ExitCode.REFUSED
    code = "refused"


class Unsupported(PcipassError):
    """The device or its driver lacks what the command needs (an SR-IOV PF whose driver cannot create VFs)."""

    code = "unsupported"


class SysfsError(PcipassError):
    """A read or write of a kernel attribute failed in a way we cannot tolerate."""

    code = "sysfs"


class ModuleError(PcipassError):
    """A kernel module is missing, blacklisted, or failed to load."""

    code = "module"


class LockBusy(PcipassError):
    """Another pcipass run holds the lock for mutating commands."""

    code = "lock-busy"


class HypervisorError(PcipassError):
    """The hypervisor (libvirt) refused or failed, or its client library is missing."""

    code = "hypervisor"


# What a failed write to a PCI sysfs attribute means in practice. The kernel returns these from
# drivers/pci/pci-driver.c (bind/unbind/drivers_probe/new_id) and drivers/pci/pci-sysfs.c (driver_override).
_REMEDIES = {
    _errno.EBUSY: "the device or its driver is busy: stop whatever uses it (a VM, a mounted filesystem, "
    "a display server) and try again",
    _errno.EINVAL: "the kernel rejected the value: the driver did not accept the device (for vfio-pci: no "
    "IOMMU group, IOMMU off, or the device is not an endpoint)",
    _errno.ENODEV: "the device or driver vanished (hot-unplugged or removed); rescan and check the address",
    _errno.EACCES: "permission denied: run as root",
    _errno.EPERM: "operation not permitted: run as root (and check lockdown/SELinux)",
    _errno.EEXIST: "already present: the ID or binding exists (a leftover new_id?); check driver_override "
    "and the driver's bound devices",
    _errno.ENOENT: "the attribute does not exist: the kernel is too old or the device is gone",
    _errno.ETIMEDOUT: "the kernel did not finish in time: the driver is stuck releasing the device",
}


class NotRegularFile(OSError):
    """Not a regular file where pcipass writes (or reads) one: a FIFO, a device node or a socket in a tree that
    is not the running system's (a damaged or hostile ``--root``)."""

    def __init__(self, path: str) -> None:
        super().__init__(_errno.EINVAL, "not a regular file (a FIFO, a device node or a socket)", path)


#: Why a write under --root is refused: beneath.open_beneath's EXDEV (openat2's RESOLVE_BENEATH answer) or a
#: NotRegularFile.
_OUTSIDE_REMEDY = (
    "pcipass writes only beneath a --root that is not the running system, to regular files: the "
    "tree holds a link leading out of it (or a FIFO/device); remove it, or check where the tree "
    "came from"
)


def remedy_for(err: int | None) -> str | None:
    return _REMEDIES.get(err) if err is not None else None


def from_oserror(
    exc: OSError, *, action: str, path: str, address: str | None = None, remedy: str | None = None
) -> PcipassError:
    """Map an OSError raised while touching ``path`` to a typed pcipass error; the remedy is the sysfs one for
    its errno unless ``remedy`` is given (a file that is not a kernel attribute)."""
    err = exc.errno
    name = _errno.errorcode.get(err, str(err)) if err is not None else "?"
    what = f"{action} {path}: {exc.strerror or exc} ({name})"
    if address:
        what = f"{address}: {what}"
    cls: type[PcipassError] = SysfsError
    if err == _errno.EXDEV or isinstance(exc, NotRegularFile):
        cls, remedy = Refused, remedy or _OUTSIDE_REMEDY
    elif err in (_errno.EACCES, _errno.EPERM):
        cls = PermissionDenied
    elif err == _errno.ENODEV and address:
        cls = DeviceNotFound
    return cls(what, address=address, path=path, errno=err, remedy=remedy or remedy_for(err))
