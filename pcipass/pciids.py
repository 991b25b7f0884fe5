"""Names from pci.ids, looked up lazily.

Why not the PyPI ``hwdata`` package or udev's hwdb: ``hwdata`` parses the whole 1.3 MB file up front
(~0.3 s in CPython, which would make a small listing slow), and hwdb needs libudev plus ``hwdb.bin``, absent
from minimal hosts and containers. Here the file is read once as bytes, and on the first lookup one regex
pass indexes its ~2,300 top-level lines (vendor and class headers: where each block starts and ends, nothing
decoded). A class block (a few lines) is then parsed when asked for, while in a vendor block only the device
line asked for is found, with a search, and only its subsystem lines are parsed: Intel's block alone has
~10,000 lines, whose parsing cost 20-40 ms on the first Intel device of a listing. The index pass (~2-3 ms)
replaces a ``bytes.find`` through the file per vendor and subsystem vendor (~0.5 ms each, plus a regex for
the block's end) and one for the class section (~2 ms): the names of bench/run.py's 64-function server
(a dozen vendor ids) went from ~10 to ~6.5 ms. Absent file → every name is None (never invented).

Format (pciutils' pci.ids): ``vvvv  name``; ``\\tdddd  name``; ``\\t\\tssss ssss  name``; class section
``C cc  name``, ``\\tss  name``, ``\\t\\tpp  name``.
"""

from __future__ import annotations

import re
from pathlib import Path

# A top-level line (a block's header): not indented, not a comment, not empty. Its block ends where the next
# one starts. Group 1 is the header's id when it is a whole field followed by blanks and a name: "10de" of
# "10de  NVIDIA Corporation", "C 03" of "C 03  Display controller".
_TOP_LINE = re.compile(rb"\n(?:(C [^ \t\n]+|[^\t#\n \r\f\v][^ \t\n]*)(?=[ \t])|(?=[^\t#\n]))")
# The next device line of a vendor block (one tab, then not a second one).
_DEVICE_LINE = re.compile(rb"\n\t(?!\t)")
# What follows an id that is a whole field: the two spaces before the name, or blanks to the end of the line.
_FIELD_END = re.compile(rb"(?:  |[ \t]*(?:\n|\Z))")


class PciIds:
    def __init__(self, data: bytes | None) -> None:
        self._data = data
        self._vendor_cache: dict[str, tuple[str | None, int, int]] = {}  # vendor -> name, block extent
        self._device_cache: dict[tuple[str, str], tuple[str, dict[str, str]] | None] = {}
        self._class_cache: dict[str, tuple[str | None, dict[str, tuple[str, dict[str, str]]]]] = {}
        self._headers: dict[bytes, tuple[int, int]] | None = None  # header id -> its line's start, block end

    @classmethod
    def load(cls, path: Path | None) -> PciIds:
        if path is None:
            return cls(None)
        try:
            raw = path.read_bytes()
        except OSError:
            return cls(None)
        if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
            import gzip  # here: most hosts have a plain pci.ids, and every listing would pay for the import

            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, gzip.BadGzipFile):
                return cls(None)
        return cls(b"\n" + raw)

    @property
    def available(self) -> bool:
        return self._data is not None

    # --- parsing one block ----------------------------------------------------------------------------------
    def _extent(self, header: bytes) -> tuple[str | None, int, int]:
        """The first top-level line whose id is ``header``: its name, and where its indented lines start (at
        the newline ending the header line) and end (at the newline before the next top-level line)."""
        data = self._data
        assert data is not None
        if self._headers is None:
            headers: dict[bytes, tuple[int, int]] = {}
            prev: bytes | None = None  # the id of the top-level line before (None: no id, or none yet)
            pos = 0
            for m in _TOP_LINE.finditer(data):
                if prev is not None:
                    headers.setdefault(prev, (pos, m.start()))
                prev, pos = m.group(1), m.start()
            if prev is not None:
                headers.setdefault(prev, (pos, len(data)))
            self._headers = headers
        hit = self._headers.get(header)
        if hit is None:
            return None, 0, 0
        pos, end = hit
        eol = data.find(b"\n", pos + 1)
        eol = end if eol == -1 or eol > end else eol
        name = data[pos + 1 + len(header) : eol].strip().decode("utf-8", "replace")
        return name, eol, end

    def _block(self, header: bytes) -> tuple[str | None, list[bytes]]:
        """A top-level line's name and its indented lines."""
        name, start, end = self._extent(header)
        lines = [ln for ln in self._data[start + 1 : end].split(b"\n") if ln.startswith(b"\t")] if name else []
        return name, lines

    @staticmethod
    def _nest(lines: list[bytes]) -> dict[str, tuple[str, dict[str, str]]]:
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
            # "\tdddd  name", the id as a whole field ("10d3" is not "10d30"): a plain search for the usual
            # lower-case line, then a search without case (and with leading blanks) for anything else.
            needle = b"\n\t" + key[1].encode()
            pos = data.find(needle, start, end)
            while pos != -1 and not _FIELD_END.match(data, pos + len(needle)):
                pos = data.find(needle, pos + 1, end)
            if pos == -1:
                m = re.compile(rb"\n\t *" + re.escape(key[1].encode()) + _FIELD_END.pattern, re.I).search(
                    data, start, end)
                pos = m.start() if m else -1
            if pos != -1:
                eol = data.find(b"\n", pos + 1)
                eol = end if eol == -1 or eol > end else eol
                nxt = _DEVICE_LINE.search(data, eol, end)
                subs = [ln for ln in data[eol + 1 : nxt.start() if nxt else end].split(b"\n")
                        if ln.startswith(b"\t\t")]
                # One device line and its subsystem lines, nested as for a whole block.
                line = data[pos + 1 : eol]
                hit = self._nest([line, *subs]).get(key[1])
        self._device_cache[key] = hit
        return hit

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
