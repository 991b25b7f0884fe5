"""Small, tolerant readers for kernel attribute files, and the one strict writer.

Reading is tolerant (psutil style): a missing file, a dangling link, EACCES or an attribute the driver
refuses to produce (EINVAL/EIO/ENODEV on read are all seen in practice, e.g. ``reset_method`` on devices
without one, ``vpd`` on broken cards) gives ``None`` for that field. Callers decide the fallback explicitly.

Writing is strict: see ``write_attr``, which maps every OSError to a typed error carrying address, path
and errno through ``errors.from_oserror``.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from collections.abc import Iterable

from .beneath import open_beneath
from .errors import NotRegularFile, from_oserror

#: An attribute is at most a page (sysfs show() fills one PAGE_SIZE buffer; 64 KiB pages on arm64/ppc64le): a
#: longer file where an attribute should be is damage, not read.
MAX_ATTR = 65536
#: A table (procfs mount and route tables, module indexes, configuration files) is a few MiB on the largest
#: hosts; a longer one is damage, not read (a 1 GiB mountinfo in a --root tree took 8.5 s and 2 GB).
MAX_TABLE = 16 << 20
# O_NONBLOCK: a FIFO in a --root tree, where a file should be, opens at once and reads as empty (no writer) or
# EAGAIN, never blocks; sysfs and procfs files ignore the flag.
_RDONLY = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


def read_bytes(path: str | os.PathLike[str], limit: int = MAX_ATTR, *, head: bool = False) -> bytes | None:
    """Raw content of an attribute (one read(2): sysfs answers whole), or None when it cannot be read or is
    longer than ``limit`` (damage); with ``head``, its first ``limit`` bytes."""
    try:
        fd = os.open(path, _RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, limit if head else limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if head or len(data) <= limit else None


def gunzip(data: bytes | bytearray | memoryview, limit: int = MAX_TABLE) -> bytes | None:
    """The decompressed content of gzip ``data`` (every member, as ``gzip.decompress``), or None when it is
    not gzip or would grow past ``limit``: a few KiB of a hostile ``--root`` can inflate to GiBs (a gzip bomb),
    so the output is bounded while it is made, never after."""
    out: list[bytes] = []
    size = 0
    rest = bytes(data)
    try:
        while rest:
            # 16 + MAX_WBITS: a gzip header and trailer around the deflate stream (zlib's documented switch).
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk = d.decompress(rest, limit + 1 - size)
            size += len(chunk)
            out.append(chunk)
            if size > limit or d.unconsumed_tail:
                return None
            if not d.eof:
                return None  # truncated
            rest = d.unused_data.lstrip(b"\0")  # members may be followed by zero padding, as gzip allows
    except zlib.error:
        return None
    return b"".join(out) if out else None


def read_str(path: str | os.PathLike[str]) -> str | None:
    """The attribute as text without its trailing newline; None when unreadable."""
    data = read_bytes(path)
    if data is None:
        return None
    return data.decode("utf-8", "replace").rstrip("\n")


def read_many(
    prefix: str, names: Iterable[str], out: dict[str, bytes], limit: int = MAX_ATTR, *, head: bool = False
) -> None:
    """Raw content of each readable file ``prefix + name`` into ``out``; unreadable ones, and ones longer than
    ``limit`` (damage; unless ``head``: then their first ``limit`` bytes), stay absent.

    The inventory reads several files of every device; one call per device instead of read_str's two calls
    (and a decode) per file adds up at 16k devices (bench/run.py). Callers decode what they use."""
    size = limit if head else limit + 1
    for name in names:
        try:
            fd = os.open(prefix + name, _RDONLY)
        except OSError:
            continue
        try:
            data = os.read(fd, size)
            if head or len(data) <= limit:
                out[name] = data
        except OSError:
            pass
        finally:
            os.close(fd)


def read_int(path: str | os.PathLike[str], base: int = 10) -> int | None:
    text = read_str(path)
    if text is None:
        return None
    try:
        return int(text.strip(), base)
    except ValueError:
        return None


def read_lines(path: str | os.PathLike[str], limit: int = MAX_TABLE) -> list[str]:
    """All lines of a (possibly large) text file, [] when unreadable or longer than ``limit`` (damage). For
    procfs tables and configs (read in chunks: a procfs table answers a page or so per read(2))."""
    try:
        fd = os.open(path, _RDONLY)
    except OSError:
        return []
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return []
    finally:
        os.close(fd)
    if size > limit:
        return []
    return b"".join(chunks).decode("utf-8", "replace").splitlines()


def link_name(path: str | os.PathLike[str]) -> str | None:
    """Last component of a symlink's target, even when the target is missing (dangling link)."""
    try:
        target = os.readlink(path)
    except OSError:
        return None
    return os.path.basename(target.rstrip("/")) or None


def link_target(path: str | os.PathLike[str]) -> str | None:
    """The symlink's target made absolute *textually* (no filesystem access, so dangling links work)."""
    try:
        target = os.readlink(path)
    except OSError:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(os.fspath(path)), target))


def list_dir(path: str | os.PathLike[str]) -> list[str]:
    """Sorted entry names of a directory, [] when missing or unreadable."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def write_attr(
    path: str | os.PathLike[str], value: str, *, address: str | None = None, beneath: str | None = None
) -> None:
    """Write ``value`` to a kernel attribute in one write(2), strictly: every OSError becomes a typed error
    (``errors.from_oserror``). A write that may block in a driver is bounded by the binding engine
    (``engine.kernel``), which runs it on a writer thread. ``beneath``: the root of a tree that is not the
    running system's (``Host.beneath``): the path is resolved without leaving it, and only a regular file
    takes the write (a FIFO's open would block)."""
    data = value.encode()
    try:
        # O_WRONLY without O_CREAT/O_TRUNC: a sysfs attribute must already exist; never create files.
        if beneath is None:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        else:
            fd = _open_regular_beneath(beneath, os.fspath(path))
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(0, f"short write ({written} of {len(data)} bytes)")
        finally:
            os.close(fd)
    except OSError as exc:
        raise from_oserror(exc, action="write", path=str(path), address=address) from exc


def _open_regular_beneath(root: str, path: str) -> int:
    try:
        fd = open_beneath(root, path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO (or socket) without a reader
            raise NotRegularFile(path) from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(path)
    return fd


#: Bounds on the live kernel log: records read from /dev/kmsg, and their bytes.
KMSG_MAX_RECORDS = 200_000
KMSG_MAX_BYTES = 16 << 20


def read_kmsg(path: str) -> list[str]:
    """Messages of ``/dev/kmsg`` (one record per read(2), non-blocking, bounded); Documentation/ABI/testing/dev-kmsg."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    out: list[str] = []
    total = 0
    try:
        for _ in range(KMSG_MAX_RECORDS):
            try:
                rec = os.read(fd, 8192)
            except BlockingIOError:
                break  # EAGAIN: no more records
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # the record was overwritten while we read; the next read resumes
                    continue
                raise
            if not rec:
                break
            total += len(rec)
            # "prio,seq,usec,flags;message\n" followed by " KEY=value" continuation lines.
            head = rec.split(b"\n", 1)[0]
            out.append(head.split(b";", 1)[-1].decode("utf-8", "replace"))
            if total > KMSG_MAX_BYTES:
                break
    finally:
        os.close(fd)
    return out
