"""The vfio binding engine: plan, guards, transaction with rollback, state and lock.

Public entry points: ``enable``, ``disable`` (both return a ``BindReport``), ``status``, and ``set_numvfs``
(``sriov --numvfs``, a ``SriovReport``).
"""

from .ops import DEFAULT_LOCK_WAIT, DEFAULT_TIMEOUT, BindReport, DeviceResult, Outcome, disable, enable

__all__ = [
    "DEFAULT_LOCK_WAIT",
    "DEFAULT_TIMEOUT",
    "BindReport",
    "DeviceResult",
    "DeviceStatus",
    "Outcome",
    "SriovReport",
    "StatusReport",
    "check_driver",
    "disable",
    "enable",
    "set_numvfs",
    "status",
]

_STATUS = ("DeviceStatus", "StatusReport", "status")


def __getattr__(name: str):
    # ``status`` and its report classes load on first use: enable and disable (a process each from the CLI)
    # do not need them, and every class costs import time under emulation.
    if name in _STATUS:
        from . import readstatus

        return getattr(readstatus, name)
    if name in ("SriovReport", "set_numvfs"):
        from . import sriov

        return getattr(sriov, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_driver(host, driver: str) -> None:
    """Raise UsageError unless ``driver`` is what ``enable --driver`` accepts (vfio-pci, auto, a vfio variant
    driver, pci-stub): for callers that record a driver to bind later (the desired-state file)."""
    from .ops import _check_driver

    _check_driver(host, driver)
