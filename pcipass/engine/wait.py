"""Waiting for the kernel to bind or release a device.

A write to ``drivers_probe`` returns success even when no driver took the device, and drivers that prefer
asynchronous probing finish after the write returns; so the engine waits for the device's ``driver`` link to
show the expected driver. On the running system it listens to kernel uevents (``bind``/``unbind``) through
pyudev's netlink monitor, which needs no udevd (``source="kernel"``: the kernel's own multicast group); the
monitor is opened before the first write so no event is missed, and the link is re-read after every event
and at least every 0.2 s (a netlink buffer overrun drops events). Elsewhere (fake trees, or when pyudev or its
libudev is unavailable) it polls.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..host import Host


class PollWaiter:
    source = "poll"

    def until(self, check: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            if check():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)

    def close(self) -> None:
        pass


class UeventWaiter:
    source = "uevent"

    def __init__(self) -> None:
        import pyudev

        self._monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
        self._monitor.start()

    def until(self, check: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if check():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._monitor.poll(timeout=min(remaining, 0.2))

    def close(self) -> None:
        self._monitor = None


Waiter = PollWaiter | UeventWaiter


def open_waiter(host: Host) -> tuple[Waiter, str | None]:
    """A waiter for ``host`` and, when the uevent monitor could not be used on the live system, why."""
    if not host.is_live:
        return PollWaiter(), None
    try:
        return UeventWaiter(), None
    except Exception as exc:  # noqa: BLE001 - ImportError, libudev missing (ImportError/OSError), EPERM...
        return PollWaiter(), f"kernel uevents unavailable ({type(exc).__name__}: {exc}); polling instead"
