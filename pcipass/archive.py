"""A snapshot archive given as ``--root``: unpacked member by member into a private directory, checked by us.

A support bundle comes from another machine and is untrusted input. tarfile's extraction filters (PEP 706,
``filter="data"``) would do most of the checking, but they arrived in Python 3.11.4 and Debian 12's own
``python3`` is 3.11.2, whose ``extractall`` has no ``filter=`` argument. So one code path on every Python:
each member is checked and written here, and tarfile only parses the archive.

- A member's name is relative, without ``..``; every directory on its way is opened with ``O_NOFOLLOW`` from
  the directory above (``dir_fd``), so no write follows a link, whatever links earlier members made.
- Files are created with ``O_EXCL`` (a member never replaces another), mode without set-id bits, group/other
  write, and always owner read/write (what the data filter does).
- Symbolic links are kept (sysfs is made of them), but once every member is in place each must resolve
  beneath the directory: an absolute link, or one whose chain of links climbs out, refuses the archive.
- Hard links, device nodes and FIFOs refuse the archive (a snapshot stores devices as empty files).
- The unpacked size (the members' contents) is capped: a member that would take the total past the cap
  refuses the archive before any of it is written. A real snapshot unpacks to a few MiB.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from pathlib import Path

from .errors import UsageError

#: The variable that sets the cap on an archive's unpacked size, in MiB.
MAX_UNPACKED_ENV = "PCIPASS_MAX_UNPACKED_MIB"
#: The default cap, in MiB: a real snapshot is a few MiB, the bundled example 0.6 MiB.
DEFAULT_MAX_UNPACKED_MIB = 256

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class ArchiveRefused(UsageError):
    """The archive is not one pcipass unpacks (unsafe member, too large): exit 2, as a bad ``--root``."""


def max_unpacked() -> int:
    """The cap on the unpacked size in bytes: ``$PCIPASS_MAX_UNPACKED_MIB`` (a positive whole number of MiB),
    else the default."""
    text = os.environ.get(MAX_UNPACKED_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_UNPACKED_MIB << 20
    if not text.isdigit() or int(text) == 0:
        raise UsageError(f"${MAX_UNPACKED_ENV}={text!r}: give a positive whole number of MiB")
    return int(text) << 20


def _parts(name: str) -> list[str]:
    """The path components of a member's name; refuses an absolute name or one with ``..``."""
    if name.startswith("/"):
        raise ArchiveRefused(f"member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveRefused(f"member {name!r} has '..' in its path")
    return parts


def _mode(member: tarfile.TarInfo) -> int:
    return (member.mode & 0o755) | 0o600


class _Tree:
    """The destination directory, with its subdirectories opened (without following links) as members need them."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self._fds: dict[tuple[str, ...], int] = {(): os.open(dest, _DIR)}

    def dir_fd(self, parts: list[str], name: str) -> int:
        """The fd of the directory ``parts``, made (0755) where missing; refuses a path through a link."""
        key = tuple(parts)
        if key in self._fds:
            return self._fds[key]
        if len(self._fds) > 64:  # members come sorted by directory: a few open ones serve them
            self._close(keep=())
        fd = self._fds[()]
        for i, part in enumerate(parts):
            sub = self._fds.get(key[: i + 1])
            if sub is None:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                try:
                    sub = os.open(part, _DIR, dir_fd=fd)
                except OSError as exc:  # ELOOP: a link; ENOTDIR: a file
                    raise ArchiveRefused(
                        f"member {name!r} goes through {'/'.join(key[: i + 1])!r}, which is "
                        "not a directory of the archive"
                    ) from exc
                self._fds[key[: i + 1]] = sub
            fd = sub
        return fd

    def _close(self, keep: tuple[str, ...] | None = None) -> None:
        for key in [k for k in self._fds if k != keep]:
            os.close(self._fds.pop(key))

    def close(self) -> None:
        self._close()


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, dir_fd: int, name: str) -> None:
    src = tar.extractfile(member)
    assert src is not None  # a regular member always has a file object
    try:
        fd = os.open(name, _NEW_FILE, _mode(member), dir_fd=dir_fd)
    except FileExistsError as exc:
        raise ArchiveRefused(f"member {member.name!r} appears twice") from exc
    try:
        while chunk := src.read(_CHUNK):
            os.write(fd, chunk)
    finally:
        os.close(fd)


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top + os.sep)


def unpack(archive: Path, dest: Path, *, limit: int) -> None:
    """Unpack ``archive`` into the existing empty directory ``dest``; raises ArchiveRefused for an unsafe or
    oversized archive (``dest`` may then hold part of it: the caller removes it) and tarfile/OS errors for an
    unreadable one."""
    tree = _Tree(dest)
    links: list[tuple[str, list[str]]] = []
    total = 0
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                parts = _parts(member.name)
                if not parts:
                    continue  # the archive's top directory itself
                if member.isdir():
                    tree.dir_fd(parts, member.name)
                    continue
                if member.isreg():
                    total += member.size
                    if total > limit:
                        raise ArchiveRefused(
                            f"it unpacks to more than {limit >> 20} MiB (member {member.name!r}: "
                            f"{member.size} bytes); a snapshot is a few MiB. Raise the cap with "
                            f"{MAX_UNPACKED_ENV}=<MiB> if this archive is trusted"
                        )
                    _write_file(tar, member, tree.dir_fd(parts[:-1], member.name), parts[-1])
                elif member.issym():
                    if member.linkname.startswith("/"):
                        raise ArchiveRefused(f"link {member.name!r} points to the absolute path {member.linkname!r}")
                    try:
                        os.symlink(member.linkname, parts[-1], dir_fd=tree.dir_fd(parts[:-1], member.name))
                    except FileExistsError as exc:
                        raise ArchiveRefused(f"member {member.name!r} appears twice") from exc
                    links.append((member.name, parts))
                else:
                    kind = "a hard link" if member.islnk() else "a device node or FIFO"
                    raise ArchiveRefused(f"member {member.name!r} is {kind}")
    finally:
        tree.close()
    # Checked once every member is in place: a link's target may be made by a later member, and a chain of
    # links (a/b -> ../.., c -> a/b/..) can leave the tree although each link alone stays inside.
    top = os.path.realpath(dest)
    for name, parts in links:
        if not _inside(os.path.realpath(os.path.join(top, *parts)), top):
            raise ArchiveRefused(f"link {name!r} points outside the archive")


def unpack_root(archive: Path) -> Path:
    """Unpack a snapshot archive into a private temporary directory, removed at exit (also on SIGTERM: the
    CLI makes it an exception) and at once when the archive is refused."""
    import atexit
    import tempfile

    limit = max_unpacked()
    dest = Path(tempfile.mkdtemp(prefix="pcipass-root-"))
    atexit.register(shutil.rmtree, dest, True)
    try:
        unpack(archive, dest, limit=limit)
    except ArchiveRefused as exc:
        shutil.rmtree(dest, True)
        raise ArchiveRefused(f"--root {str(archive)!r}: not a snapshot archive pcipass unpacks: {exc.message}") from exc
    except (tarfile.TarError, OSError, EOFError, UnicodeError) as exc:
        shutil.rmtree(dest, True)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"--root {str(archive)!r}: not a readable snapshot archive ({reason})") from exc
    return dest
