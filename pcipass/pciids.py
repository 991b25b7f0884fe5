"""Names from pci.ids, looked up lazily.

Why not the PyPI ``hwdata`` package or udev's hwdb: ``hwdata`` parses the whole 1.3 MB file up front
(longer than a whole small listing takes), and hwdb needs libudev plus ``hwdb.bin``, absent
from minimal hosts and containers. Here the file is read once as bytes and nothing is parsed up front.
pci.ids is sorted (vendors by id, each vendor's devices by id, the class section last: pciutils and hwdata
export it from their database that way), so a vendor's header line is found by a binary search over
positions in the file, and a device line by one inside its vendor block; each step reads the few lines
where it lands. That replaced an index of every top-level line (a regex pass over the file) and a search
through the vendor block per device (Intel's block is 370 kB), which were most of naming a small host's
devices (figures: bench/run.py, docs/performance.md). Only a class block (a few lines) and one device's
subsystem lines are parsed.

Any file gives the right names, sorted or not: an id the binary search does not find is looked for with a
plain search through the file (vendor, class) or the block (device) before it is called unknown, so an
unsorted or hand-edited file costs time, never names. Absent file -> every name is None (never invented).

Format (pciutils' pci.ids): ``vvvv  name``; ``\\tdddd  name``; ``\\t\\tssss ssss  name``; class section
``C cc  name``, ``\\tss  name``, ``\\t\\tpp  name``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from bisect import bisect_right
from pathlib import Path

from . import sysfs

# A top-level line (a block's header): not indented, not a comment, not empty. Its block ends where the next
# one starts. Group 1 is the header's id when it is a whole field followed by blanks and a name: "10de" of
# "10de  NVIDIA Corporation", "C 03" of "C 03  Display controller".
_TOP_LINE = re.compile(rb"\n(?:(C [^ \t\n]+|[^\t#\n \r\f\v][^ \t\n]*)(?=[ \t])|(?=[^\t#\n]))")
# Where a top-level line starts: the lines _TOP_LINE matches, found faster (the id is then read with
# _TOP_LINE.match); what a binary search step scans, up to 370 kB when it lands in Intel's block.
_LINE_START = re.compile(rb"\n[^\t#\n]")
# A device line of a vendor block (one tab, then not a second one); group 1 is its id field.
_DEVICE_LINE = re.compile(rb"\n\t(?!\t)([^ \t\n]*)")
# What follows an id that is a whole field: the two spaces before the name, or blanks to the end of the line.
_FIELD_END = re.compile(rb"(?:  |[ \t]*(?:\n|\Z))")


def _read(path: Path) -> bytearray:
    """The file's bytes after a newline (every line then starts after a ``\\n``, the first one too), in one
    buffer: ``b"\\n" + read()`` would allocate and copy the 1.3 MB a second time, at every cold start."""
    # O_NONBLOCK and the type check: a FIFO named pci.ids in a --root tree must not hang the listing; the size
    # cap: pci.ids is ~1.5 MB, a larger "pci.ids" there is damage, not something to hold in memory.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > sysfs.MAX_TABLE:
            raise OSError(errno.EINVAL, "not a regular file of a pci.ids size", str(path))
        buf = bytearray(st.st_size + 1)
        buf[0] = 0x0A
        n = 1
        with memoryview(buf) as view:
            while n < len(buf):
                got = f.readinto(view[n:])
                if not got:
                    break
                n += got
        del buf[n:]  # the file shrank meanwhile
        buf += f.read(sysfs.MAX_TABLE + 2 - len(buf))  # or grew
        if len(buf) > sysfs.MAX_TABLE + 1:
            raise OSError(errno.EFBIG, "grew past a pci.ids size", str(path))
    return buf


class PciIds:
    def __init__(self, data: bytes | bytearray | None) -> None:
        self._data = data  # the file after a newline
        self._vendor_cache: dict[str, tuple[str | None, int, int]] = {}  # vendor -> name, block extent
        self._device_cache: dict[tuple[str, str], tuple[str, dict[str, str]] | None] = {}
        self._class_cache: dict[str, tuple[str | None, dict[str, tuple[str, dict[str, str]]]]] = {}
        # What _header_after has scanned: from each scan's start (sorted), the header it found. A position
        # between a start and its header has that header next, so no stretch of the file is scanned twice
        # (a binary search lands in Intel's block again and again).
        self._scan_from: list[int] = []
        self._scan_hit: list[tuple[int, bytes | None]] = []

    @classmethod
    def load(cls, path: Path | None) -> PciIds:
        if path is None:
            return cls(None)
        try:
            data: bytes | bytearray = _read(path)
        except OSError:
            return cls(None)
        if path.suffix == ".gz" or data[1:3] == b"\x1f\x8b":
            raw = sysfs.gunzip(memoryview(data)[1:])
            if raw is None:
                return cls(None)
            data = b"\n" + raw
        return cls(data)

    @property
    def available(self) -> bool:
        return self._data is not None

    # --- finding lines ----------------------------------------------------------------------------------------
    def _header_after(self, pos: int) -> tuple[int, bytes | None]:
        """The first top-level line whose newline is at ``pos`` or after: that newline's position and the
        line's id (None: no id), or (end of data, None)."""
        data = self._data
        assert data is not None
        froms = self._scan_from
        i = bisect_right(froms, pos) - 1
        if i >= 0 and pos <= self._scan_hit[i][0]:
            return self._scan_hit[i]
        # Scan up to where a later scan started: from there on, its answer holds. (A line whose newline is
        # just before that start is ours to find: the bound lets the search see the character after it.)
        bound = froms[i + 1] if i + 1 < len(froms) else len(data)
        m = _LINE_START.search(data, pos, bound + 1)
        if m is not None:
            m = _TOP_LINE.match(data, m.start())  # without the bound, which may cut the line's id short
            hit = (m.start(), m.group(1)) if m else (len(data), None)
        elif i + 1 < len(froms):
            hit = self._scan_hit[i + 1]
        else:
            hit = (len(data), None)
        froms.insert(i + 1, pos)
        self._scan_hit.insert(i + 1, hit)
        return hit

    def _find_header(self, header: bytes) -> int:
        """Where the top-level line with id ``header`` starts (its newline), or -1."""
        data = self._data
        assert data is not None
        if header.startswith(b"C "):
            return self._search_header(header, from_end=True)  # the class section is last
        lo, hi = 0, len(data)
        while lo < hi:
            mid = (lo + hi) // 2
            nl, hid = self._header_after(mid)
            # Class headers ("C 03") come after every vendor; a line without an id can't be ordered.
            if nl >= hi or hid is None or hid.startswith(b"C ") or hid > header:
                hi = mid
            elif hid < header:
                lo = nl + 1
            else:
                return nl
        return self._search_header(header)

    def _search_header(self, header: bytes, *, from_end: bool = False) -> int:
        """A plain search through the file for the top-level line with id ``header``, from its end for a class
        (the class section is last); for a vendor, ``_find_header``'s fallback when the vendor is not where a
        sorted file has it (an unsorted file, or an absent id)."""
        data = self._data
        assert data is not None
        needle = b"\n" + header
        pos = data.rfind(needle) if from_end else data.find(needle)
        while pos != -1:
            m = _TOP_LINE.match(data, pos)
            if m and m.group(1) == header:
                return pos
            pos = data.rfind(needle, 0, pos) if from_end else data.find(needle, pos + 1)
        return -1

    def _extent(self, header: bytes) -> tuple[str | None, int, int]:
        """The top-level line whose id is ``header``: its name, and where its indented lines start (at the
        newline ending the header line) and end (at the newline before the next top-level line)."""
        data = self._data
        assert data is not None
        pos = self._find_header(header)
        if pos == -1:
            return None, 0, 0
        end = self._header_after(pos + 1)[0]
        eol = data.find(b"\n", pos + 1)
        eol = end if eol == -1 or eol > end else eol
        name = data[pos + 1 + len(header) : eol].strip().decode("utf-8", "replace")
        return name, eol, end

    def _block(self, header: bytes) -> tuple[str | None, list[bytes | bytearray]]:
        """A top-level line's name and its indented lines."""
        data = self._data
        assert data is not None
        name, start, end = self._extent(header)
        lines = [ln for ln in data[start + 1 : end].split(b"\n") if ln.startswith(b"\t")] if name else []
        return name, lines

    @staticmethod
    def _nest(lines: list[bytes | bytearray]) -> dict[str, tuple[str, dict[str, str]]]:
        out: dict[str, tuple[str, dict[str, str]]] = {}
        current: dict[str, str] | None = None
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if line.startswith("\t\t"):
                if current is not None:
                    key, _, name = line[2:].partition("  ")
                    current[key.strip().lower()] = name.strip()
            else:
                key, _, name = line[1:].partition("  ")
                current = {}
                out[key.strip().lower()] = (name.strip(), current)
        return out

    def _vendor(self, vendor_id: str) -> tuple[str | None, int, int]:
        vendor_id = vendor_id.lower()
        hit = self._vendor_cache.get(vendor_id)
        if hit is None:
            # A class header's id "C 03" can't collide with a vendor's (4 hex digits).
            hit = self._extent(vendor_id.encode())
            self._vendor_cache[vendor_id] = hit
        return hit

    def _device(self, vendor_id: str, device_id: str) -> tuple[str, dict[str, str]] | None:
        """(name, {"ssss ssss": subsystem name}) of one device line of a vendor block, or None."""
        key = (vendor_id.lower(), device_id.lower())
        if key in self._device_cache:
            return self._device_cache[key]
        name, start, end = self._vendor(key[0])
        hit = None
        if name is not None:
            data = self._data
            assert data is not None
            device = key[1].encode()
            pos = self._bisect_device(device, start, end)
            if pos == -1:
                pos = self._search_device(device, start, end)
            if pos != -1:
                eol = data.find(b"\n", pos + 1)
                eol = end if eol == -1 or eol > end else eol
                nxt = _DEVICE_LINE.search(data, eol, end)
                subs = [ln for ln in data[eol + 1 : nxt.start() if nxt else end].split(b"\n") if ln.startswith(b"\t\t")]
                # One device line and its subsystem lines, nested as for a whole block.
                line = data[pos + 1 : eol]
                hit = self._nest([line, *subs]).get(key[1])
        self._device_cache[key] = hit
        return hit

    def _bisect_device(self, device: bytes, start: int, end: int) -> int:
        """Where the line of ``device`` starts (its newline) in the vendor block ``start``-``end``, if the
        block's device lines are in order (they are in pci.ids); else -1."""
        data = self._data
        assert data is not None
        lo, hi = start, end
        while lo < hi:
            mid = (lo + hi) // 2
            # Searched to the block's end, not to ``hi``, which could cut a line's id short.
            m = _DEVICE_LINE.search(data, mid, end)
            if m is None or m.start() >= hi or m.group(1) > device:
                hi = mid
            elif m.group(1) < device:
                lo = m.end()
            else:
                return m.start() if _FIELD_END.match(data, m.end()) else -1
        return -1

    def _search_device(self, device: bytes, start: int, end: int) -> int:
        """Where the line of ``device`` starts in the vendor block ``start``-``end``, wherever it is: the
        id as a whole field ("10d3" is not "10d30"), the usual lower-case line first, then without case and
        with leading blanks. -1: not in the block."""
        data = self._data
        assert data is not None
        needle = b"\n\t" + device
        pos = data.find(needle, start, end)
        while pos != -1 and not _FIELD_END.match(data, pos + len(needle)):
            pos = data.find(needle, pos + 1, end)
        if pos == -1:
            m = re.compile(rb"\n\t *" + re.escape(device) + _FIELD_END.pattern, re.I).search(data, start, end)
            pos = m.start() if m else -1
        return pos

    def _class(self, class_hex: str) -> tuple[str | None, dict[str, tuple[str, dict[str, str]]]]:
        hit = self._class_cache.get(class_hex)
        if hit is None:
            name, lines = self._block(b"C " + class_hex.encode())
            hit = (name, self._nest(lines))
            self._class_cache[class_hex] = hit
        return hit

    # --- public lookups -----------------------------------------------------------------------------------
    def vendor_name(self, vendor_id: str | None) -> str | None:
        if self._data is None or not vendor_id:
            return None
        return self._vendor(vendor_id)[0]

    def device_name(self, vendor_id: str | None, device_id: str | None) -> str | None:
        if self._data is None or not vendor_id or not device_id:
            return None
        entry = self._device(vendor_id, device_id)
        return entry[0] if entry else None

    def subsystem_name(
        self, vendor_id: str | None, device_id: str | None, sub_vendor: str | None, sub_device: str | None
    ) -> str | None:
        if self._data is None or not (vendor_id and device_id and sub_vendor and sub_device):
            return None
        entry = self._device(vendor_id, device_id)
        if not entry:
            return None
        return entry[1].get(f"{sub_vendor.lower()} {sub_device.lower()}")

    def class_names(self, class_id: str | None) -> tuple[str | None, str | None, str | None]:
        """(class name, subclass name, prog-if name) for a 6-hex-digit class code."""
        if self._data is None or not class_id or len(class_id) != 6:
            return None, None, None
        base, sub, prog = class_id[0:2].lower(), class_id[2:4].lower(), class_id[4:6].lower()
        cname, subs = self._class(base)
        sub_entry = subs.get(sub)
        if not sub_entry:
            return cname, None, None
        return cname, sub_entry[0], sub_entry[1].get(prog)
