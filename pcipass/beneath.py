"""Opening a path beneath a root without leaving it, as openat2(2)'s ``RESOLVE_BENEATH`` does.

A ``--root`` tree (a test tree, an unpacked snapshot, a copy someone else made) may be hostile: its
``run/pcipass/lock`` a link to ``/etc/shadow``, its ``sys/bus/pci/drivers_probe`` a link to a file of this
machine. Every write under such a root is opened here: the path is walked one component at a time from the
root's directory fd, each with ``O_NOFOLLOW``, and a symbolic link met on the way is followed by hand only while
it stays beneath the root (sysfs is made of relative links: ``bus/pci/devices/<addr>`` → ``../../../devices/...``,
and a copy of it keeps them). An absolute link, or ``..`` above the root, is ``EXDEV``, the errno openat2 gives;
errors.from_oserror makes it a refusal naming the path. Python's ``os`` has no openat2, hence the walk.

The running system's root is not walked: there the kernel's own links are followed as they are (see
``Host.beneath``).
"""

from __future__ import annotations

import contextlib
import errno
import os

_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: As the kernel's MAXSYMLINKS (include/linux/namei.h): more links than this in one resolution is ELOOP.
_MAX_LINKS = 40


def _outside(root: str, path: str) -> OSError:
    return OSError(errno.EXDEV, f"it resolves outside the root {root} (through a link or '..')", path)


def _readlink(name: str, dir_fd: int) -> str | None:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # not a link
            return None
        raise


def open_beneath(root: str, path: str, flags: int, mode: int = 0o600, *, make_dirs: int | None = None) -> int:
    """``os.open(path, flags, mode)`` for ``path`` beneath ``root`` (absolute, or relative to ``root``), never
    resolving outside ``root``. With ``make_dirs`` (a mode), missing directories on the way are made. ``flags``
    may hold ``O_NOFOLLOW`` (then a link as the last component is refused with ELOOP, as open(2) does)."""
    rel = os.path.relpath(path, root) if os.path.isabs(path) else path
    if rel == ".." or rel.startswith("../"):
        raise _outside(root, path)
    pending = [p for p in reversed(rel.split("/")) if p not in ("", ".")]
    fds = [os.open(root, _PATH_DIR)]  # the directories walked so far; fds[0] is the root
    links = 0
    try:
        while pending:
            name = pending.pop()
            if name == "..":
                if len(fds) == 1:
                    raise _outside(root, path)
                os.close(fds.pop())
                continue
            if not pending:  # the last component
                if make_dirs is not None and flags & os.O_DIRECTORY:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, make_dirs, dir_fd=fds[-1])
                try:
                    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fds[-1])
                except OSError as exc:
                    # A link as the last component: ELOOP, or ENOTDIR with O_DIRECTORY.
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or flags & os.O_NOFOLLOW:
                        raise
                    target = _readlink(name, fds[-1])
                    if target is None:
                        raise
            else:
                if make_dirs is not None:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, make_dirs, dir_fd=fds[-1])
                try:
                    fds.append(os.open(name, _PATH_DIR, dir_fd=fds[-1]))
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    target = _readlink(name, fds[-1])
                    if target is None:
                        raise
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            if target.startswith("/"):
                raise _outside(root, path)
            pending += [p for p in reversed(target.split("/")) if p not in ("", ".")]
        # Nothing but directories (the root itself, or "a/.."): open the one reached.
        return os.open(".", flags | os.O_CLOEXEC, mode, dir_fd=fds[-1])
    finally:
        for fd in fds:
            os.close(fd)
