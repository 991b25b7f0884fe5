"""Reading for the preflight: like ``pcipass.sysfs``'s readers, but telling *missing* from *unreadable*.

The preflight must say which checks it skipped and why; a file that exists but cannot be read (a non-root
user and ``/dev/kmsg`` under ``kernel.dmesg_restrict=1``, a 0700 ``/boot/efi``) raises :class:`Unreadable`,
which the check runner turns into a ``skip`` naming the file. A missing file is just ``None`` / ``[]``.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

#: Text files the preflight reads whole are small (cmdline, cpuinfo, configs); this bounds a hostile root.
MAX_TEXT = 8 << 20


class Unreadable(Exception):
    """A file or directory exists but cannot be read."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (run as root)"
    return exc.strerror or type(exc).__name__


_MISSING = (FileNotFoundError, NotADirectoryError)

# The two calls every read goes through. Tests run as root, which reads even 0000 files, so they replace
# these to see what a non-root user gets (and also run the CLI as an unprivileged user for real).
_open = open
_listdir = os.listdir


def _nonblocking(path: str, flags: int) -> int:
    # A FIFO in a --root tree, where a file should be, must not block the open (see _check_regular).
    return os.open(path, flags | os.O_NONBLOCK)


def read_bytes(path: str | os.PathLike[str], limit: int = MAX_TEXT, *, tail: bool = False) -> bytes | None:
    """The file's content (its last ``limit`` bytes with ``tail``); None when it does not exist. Unreadable when
    it is longer than ``limit`` (damage: nothing the preflight reads whole is that large) or not a regular file
    (a FIFO or a device in a --root tree: never read, so never a hang)."""
    try:
        with _open(path, "rb", opener=_nonblocking) as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise Unreadable(path, "not a regular file (damaged?)")
            if tail:
                if st.st_size > limit:
                    fh.seek(st.st_size - limit)
                return fh.read(limit)
            data = fh.read(limit + 1)
    except _MISSING:
        return None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise Unreadable(path, _reason(exc)) from exc
    if len(data) > limit:
        raise Unreadable(path, f"larger than {limit} bytes (damaged?)")
    return data


def read_text(path: str | os.PathLike[str], limit: int = MAX_TEXT) -> str | None:
    data = read_bytes(path, limit)
    return None if data is None else data.decode("utf-8", "replace")


def list_names(path: str | os.PathLike[str]) -> list[str] | None:
    """Sorted entries of a directory; None when it does not exist."""
    try:
        return sorted(_listdir(path))
    except _MISSING:
        return None
    except OSError as exc:
        raise Unreadable(path, _reason(exc)) from exc


def exists(path: Path) -> bool:
    """True for any existing entry, device nodes and dangling links included."""
    return os.path.lexists(path)
