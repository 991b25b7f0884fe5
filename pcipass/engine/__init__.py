"""The vfio binding engine: plan, guards, transaction with rollback, state and lock.

Public entry points: ``enable``, ``disable`` (both return a ``BindReport``) and ``status``.
"""

from .ops import DEFAULT_LOCK_WAIT, DEFAULT_TIMEOUT, BindReport, DeviceResult, Outcome, disable, enable
from .readstatus import DeviceStatus, StatusReport, status

__all__ = [
    "DEFAULT_LOCK_WAIT",
    "DEFAULT_TIMEOUT",
    "BindReport",
    "DeviceResult",
    "DeviceStatus",
    "Outcome",
    "StatusReport",
    "disable",
    "enable",
    "status",
]
