"""What pcipass changed, kept across runs: the state file and the lock, both under ``host.state_dir``.

Before its first write, a run records each device's original driver and ``driver_override`` with the phase
``enabling``/``disabling``; the phase becomes ``enabled`` (or the record goes) when the group's transaction
ends. A record still ``enabling``/``disabling`` when a later run holds the lock was left by a run that died
(kill -9, power loss of the process): that later run reports it, and ``enable`` completes it while
``disable`` undoes it, from the recorded originals. ``state_dir`` is on /run (tmpfs), so records vanish at
reboot together with the bindings they describe.

The file is root-only (directory 0700, file 0600) and replaced atomically (write a temporary file in the
same directory, fsync, rename), so a reader sees the old or the new content, never a torn one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

from ..address import PciAddress
from ..drivers import is_driver_name
from ..errors import LockBusy, NotRegularFile, PcipassError, from_oserror
from ..host import Host

STATE_VERSION = 1
STATE_FILE = "state.json"
LOCK_FILE = "lock"


class Phase(str, Enum):
    ENABLING = "enabling"
    ENABLED = "enabled"
    DISABLING = "disabling"
    #: The device disappeared (hot-unplug, ``remove``) while pcipass had a record of it: kept aside, reported
    #: once, cleared by ``disable ADDR``.
    GONE = "gone"


class DeviceRecord(NamedTuple):
    address: str
    original_driver: str | None
    original_override: str | None
    target: str | None
    group: int | None
    phase: Phase
    pid: int
    since: str  #: UTC, ISO 8601, when the phase began
    #: False when pcipass never saw the device on its host driver (bound to vfio at boot, or by hand): the
    #: original_* fields are then unknown, and disable lets the kernel choose the driver.
    known: bool = True

    @property
    def in_flight(self) -> bool:
        return self.phase in (Phase.ENABLING, Phase.DISABLING)

    def to_dict(self) -> dict:
        return self._asdict() | {"phase": self.phase.value}


class StateError(PcipassError):
    code = "state"


class StateUnreadable(StateError):
    """The state file exists but this user may not read it (it is root's: 0700 directory, 0600 file)."""


#: A state file is a few hundred bytes per device; more than this is not one.
_MAX_STATE = 16 << 20


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _oserror(exc: OSError, action: str, path) -> PcipassError:
    return from_oserror(
        exc,
        action=action,
        path=str(path),
        remedy=None if exc.errno == errno.EXDEV else "run as root; pcipass keeps its state there",
    )


def _state_dir_fd(host: Host) -> int:
    """The state directory, made where missing and kept private (0700), opened beneath the root."""
    try:
        fd = host.open(host.state_dir, os.O_RDONLY | os.O_DIRECTORY, make_dirs=0o700)
    except OSError as exc:
        raise _oserror(exc, "make", host.state_dir) from exc
    try:
        os.fchmod(fd, 0o700)
    except OSError as exc:
        os.close(fd)
        raise _oserror(exc, "chmod", host.state_dir) from exc
    return fd


def _field(rec: dict, key: str, kind: type, addr: str, *, default: object = None, null: bool = True) -> Any:
    """``rec[key]`` when it is of ``kind`` exactly (a JSON true is no pid), or null where allowed."""
    value = rec.get(key, default) if default is not None else rec[key]
    if (value is None and null) or type(value) is kind:
        return value
    raise ValueError(f"{addr}: {key} is {value!r}")


def _driver(rec: dict, key: str, addr: str) -> str | None:
    value = _field(rec, key, str, addr)
    if value is not None and not is_driver_name(value):
        raise ValueError(f"{addr}: {key} {value!r} is not a driver name")
    return value


def _record(addr: str, rec: object) -> DeviceRecord:
    """One record of the file, every field checked: its names become paths and its values sysfs writes."""
    canonical = PciAddress.try_parse(addr)
    if canonical is None or str(canonical) != addr:
        raise ValueError(f"a record is keyed {addr!r}, not a PCI address DDDD:BB:DD.F")
    if not isinstance(rec, dict):
        raise ValueError(f"the record of {addr} is not an object")
    return DeviceRecord(
        address=addr,
        original_driver=_driver(rec, "original_driver", addr),
        original_override=_driver(rec, "original_override", addr),
        target=_driver(rec, "target", addr),
        group=_field(rec, "group", int, addr),
        phase=Phase(rec["phase"]),
        pid=_field(rec, "pid", int, addr, null=False),
        since=_field(rec, "since", str, addr, null=False),
        known=_field(rec, "known", bool, addr, default=True, null=False),
    )


def damaged(path: Path, why: str) -> StateError:
    return StateError(
        f"the state file {path} is not pcipass state ({why})",
        path=str(path),
        remedy="inspect it; it records what pcipass changed (the drivers devices were on before it moved them). "
        "Remove it only once every device is back on its host driver",
    )


def read_private(host: Host, path: Path) -> bytes | None:
    """The bytes of a state file (``path`` in ``host.state_dir``); None when there is none. Opened beneath the
    root and non-blocking (a FIFO there is damage, never a hang), at most _MAX_STATE bytes. StateUnreadable when
    this user may not read it."""
    try:
        fd = host.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise StateUnreadable(
                f"cannot read the state file {path}: {exc.strerror}",
                path=str(path),
                errno=exc.errno,
                remedy="run as root",
            ) from exc
        raise _oserror(exc, "read", path) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise damaged(path, "not a regular file")
        data = b""
        while len(data) <= _MAX_STATE and (chunk := os.read(fd, 1 << 20)):
            data += chunk
        if len(data) > _MAX_STATE:
            raise damaged(path, f"larger than {_MAX_STATE >> 20} MiB")
        return data
    except OSError as exc:
        raise StateError(f"cannot read the state file {path}: {exc.strerror}", path=str(path), errno=exc.errno) from exc
    finally:
        os.close(fd)


class StateStore:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.dir = host.state_dir
        self.path = self.dir / STATE_FILE

    def load(self) -> dict[str, DeviceRecord]:
        raw = read_private(self.host, self.path)
        if raw is None:
            return {}
        try:
            doc = json.loads(raw.decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
                raise ValueError(f"unknown version {doc.get('version') if isinstance(doc, dict) else doc!r}")
            devices = doc["devices"]
            if not isinstance(devices, dict):
                raise ValueError("'devices' is not an object")
            return {addr: _record(addr, rec) for addr, rec in devices.items()}
        except (ValueError, KeyError, TypeError) as exc:  # UnicodeDecodeError and JSONDecodeError included
            raise damaged(self.path, str(exc)) from exc

    def save(self, records: dict[str, DeviceRecord]) -> None:
        doc = {
            "version": STATE_VERSION,
            "devices": {a: {k: v for k, v in records[a].to_dict().items() if k != "address"} for a in sorted(records)},
        }
        save_private_json(self.host, self.path, doc)


def save_private_json(host: Host, path: Path, doc: dict) -> None:
    """Replace the root-only file ``path`` (in ``host.state_dir``) with ``doc`` atomically and durably, beneath
    the root: written to a temporary file named from the directory's fd, then renamed (rename(2) replaces a link
    named ``path`` itself, never its target)."""
    tmp = f".{path.name}.{os.getpid()}.tmp"
    dfd = _state_dir_fd(host)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            # No indent: only then does json use its C encoder (a few records are still readable on one line).
            os.write(fd, (json.dumps(doc, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        # The rename is durable only once the directory is synced.
        os.fsync(dfd)
    except OSError as exc:
        raise _oserror(exc, "write", path) from exc
    finally:
        os.close(dfd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Locks held by a run that lets runs nested in it share them: path -> (the holding thread, nesting depth).
_SHARED: dict[str, tuple[int, int]] = {}


class Lock:
    """The one exclusive lock of the mutating commands: ``flock`` on ``<state_dir>/lock``.

    flock is released by the kernel when its holder dies, so a killed run never leaves a stale lock. The
    holder writes its pid and command into the file for the message a waiting run prints.

    ``shared``: runs nested in this one, in the same thread, share the lock (``sriov --vfio`` binds the VFs it
    created through ``enable`` while it holds the lock): flock would make the nested run wait for its own
    caller, since two opens of the file are two locks even within one process. Another thread still waits,
    and so does any run when the holder did not ask for sharing."""

    def __init__(
        self,
        host: Host,
        *,
        wait: float,
        command: str,
        on_wait: Callable[[str], None] | None = None,
        shared: bool = False,
    ) -> None:
        self.host = host
        self.path = host.state_dir / LOCK_FILE
        self.shared = shared
        self.wait = wait
        self.command = command
        self.on_wait = on_wait
        self.waited: float = 0.0
        self.contended = False  #: another run held the lock when this one arrived
        self._fd: int | None = None

    def _holder(self, fd: int) -> str:
        try:
            text = os.pread(fd, 200, 0).decode(errors="replace").strip()
        except OSError:
            text = ""
        return text or "another process"

    def __enter__(self) -> Lock:
        key, me = os.fspath(self.path), threading.get_ident()
        sharing = _SHARED.get(key)
        if sharing is not None and sharing[0] == me:
            _SHARED[key] = (me, sharing[1] + 1)
            return self
        os.close(_state_dir_fd(self.host))
        try:
            # Beneath the root (a link named lock that leads out of it is refused), never a FIFO's blocking open.
            fd = self.host.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o600)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise NotRegularFile(str(self.path))
        except OSError as exc:
            raise _oserror(exc, "open", self.path) from exc
        start = time.monotonic()
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
            self.contended = True
            waited = time.monotonic() - start
            if waited >= self.wait:
                holder = self._holder(fd)
                os.close(fd)
                raise LockBusy(
                    f"another pcipass run holds {self.path} ({holder}); gave up after {self.wait:g} s",
                    path=str(self.path),
                    remedy="wait for it to finish (a stuck unbind ends at its --timeout) and retry",
                )
            if not announced and self.on_wait is not None:
                self.on_wait(f"waiting up to {self.wait:g} s for the lock held by {self._holder(fd)}")
                announced = True
            time.sleep(min(0.05, self.wait - waited))
        self.waited = time.monotonic() - start
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: pcipass {self.command}\n".encode(), 0)
        self._fd = fd
        if self.shared:
            _SHARED[key] = (me, 1)
        return self

    def __exit__(self, *exc) -> None:
        key = os.fspath(self.path)
        if self._fd is None:
            me, depth = _SHARED[key]
            _SHARED[key] = (me, depth - 1)
            return
        if self.shared:
            del _SHARED[key]
        os.close(self._fd)
        self._fd = None


def lock_is_free(host: Host) -> bool:
    """True when no mutating run holds the lock (read-only check for ``status``: writes nothing)."""
    try:
        fd = host.open(host.state_dir / LOCK_FILE, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def load_for_reading(host: Host, messages: list[str]) -> tuple[dict[str, DeviceRecord], bool]:
    """The records for a command that only reads (``status``, a dry run): when this user may not read the
    state file (root's, 0600 in a 0700 directory), none, with a note in ``messages``, and True: what pcipass
    recorded is then unknown, not absent."""
    try:
        return StateStore(host).load(), False
    except StateUnreadable as err:
        messages.append(
            f"{err.message}: what pcipass recorded (the drivers devices were on before it moved "
            "them) is unknown here; run as root to see it"
        )
        return {}, True


def gone_message(rec: DeviceRecord) -> str:
    orig = rec.original_driver or "no driver" if rec.known else "unknown"
    return (
        f"{rec.address}: gone (removed or hot-unplugged) since pcipass recorded it ({rec.phase.value}, "
        f"original driver {orig}); the record is kept aside ('pcipass status' shows it) until "
        f"'pcipass disable {rec.address}' clears it"
    )


def interrupted_message(rec: DeviceRecord) -> str:
    what = "enable" if rec.phase is Phase.ENABLING else "disable"
    orig = rec.original_driver or "no driver" if rec.known else "unknown"
    return (
        f"{rec.address}: a 'pcipass {what}' (pid {rec.pid}, started {rec.since}) died before finishing; "
        f"original driver {orig}. 'pcipass enable {rec.address}' completes the enable, "
        f"'pcipass disable {rec.address}' returns it to the host"
    )
