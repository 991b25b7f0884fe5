"""Waiting for the kernel to bind or release a device.

A write to ``drivers_probe`` returns success even when no driver took the device, and drivers that prefer
asynchronous probing finish after the write returns; so the engine waits for the device's ``driver`` link to
show the expected driver. Usually the bind is done when the write returns (the PCI core probes
synchronously inside ``drivers_probe``/``bind``) and nothing more is needed. Otherwise, on the running
system, it listens to kernel uevents (``bind``/``unbind``) through pyudev's netlink monitor, which needs no
udevd (``source="kernel"``: the kernel's own multicast group), re-reading the link after every event and at
least every 0.2 s (a netlink buffer overrun drops events). Elsewhere (fake trees, or when pyudev or libudev
is unavailable) it polls.

The monitor is opened on the first wait that the link does not already satisfy, and the link is re-read
right after it is open: a bind that completed before the monitor existed is seen by that read, one that
completes later sends an event the open monitor receives. So no event can be missed, and the common case
never loads pyudev (seconds under emulation).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..host import Host


class Waiter:
    def __init__(self, host: Host) -> None:
        self._live = host.is_live
        self._monitor = None
        self._tried = False
        #: How the last wait ended: immediate (already true), uevent, or poll.
        self.last: str | None = None
        self.used: set[str] = set()
        #: Why the uevent monitor could not be used on the live system, when it could not.
        self.note: str | None = None

    @property
    def source(self) -> str | None:
        """The slowest mechanism any wait of this run needed (None: no wait at all)."""
        for name in ("uevent", "poll", "immediate"):
            if name in self.used:
                return name
        return None

    def _open_monitor(self):
        if not self._tried:
            self._tried = True
            if self._live:
                try:
                    import pyudev

                    monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
                    monitor.start()
                    self._monitor = monitor
                except Exception as exc:  # noqa: BLE001 - ImportError, libudev missing (OSError), EPERM...
                    self.note = f"kernel uevents unavailable ({type(exc).__name__}: {exc}); polling instead"
        return self._monitor

    def _done(self, how: str) -> bool:
        self.last = how
        self.used.add(how)
        return True

    def until(self, check: Callable[[], bool], timeout: float) -> bool:
        if check():
            return self._done("immediate")
        deadline = time.monotonic() + timeout
        monitor = self._open_monitor()
        how = "uevent" if monitor is not None else "poll"
        delay = 0.002
        while True:
            if check():
                return self._done(how)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.last = how
                return False
            if monitor is not None:
                monitor.poll(timeout=min(remaining, 0.2))
            else:
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.05)

    def close(self) -> None:
        self._monitor = None
