"""Names from pci.ids, looked up lazily.

Why not the PyPI ``hwdata`` package or udev's hwdb: ``hwdata`` parses the whole 1.3 MB file up front
(~0.3 s in CPython, which would make a small listing slow), and hwdb needs libudev plus ``hwdb.bin``, absent
from minimal hosts and containers. Here the file is read once as bytes and each vendor block / class block is
located with ``bytes.find`` on its header line, then only that block is parsed. Absent file → every name is
None (never invented).

Format (pciutils' pci.ids): ``vvvv  name``; ``\\tdddd  name``; ``\\t\\tssss ssss  name``; class section
``C cc  name``, ``\\tss  name``, ``\\t\\tpp  name``.
"""

from __future__ import annotations

import gzip
from pathlib import Path


class PciIds:
    def __init__(self, data: bytes | None) -> None:
        self._data = data
        self._vendor_cache: dict[str, tuple[str | None, dict[str, tuple[str, dict[str, str]]]]] = {}
        self._class_cache: dict[str, tuple[str | None, dict[str, tuple[str, dict[str, str]]]]] = {}
        self._class_start: int | None = None

    @classmethod
    def load(cls, path: Path | None) -> PciIds:
        if path is None:
            return cls(None)
        try:
            raw = path.read_bytes()
            if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile):
            return cls(None)
        return cls(b"\n" + raw)

    @property
    def available(self) -> bool:
        return self._data is not None

    # --- parsing one block ----------------------------------------------------------------------------------
    def _block(self, header: bytes, start: int = 0) -> tuple[str | None, list[bytes]]:
        """Find a top-level line starting with ``header`` and return its name and its indented lines."""
        data = self._data
        assert data is not None
        pos = data.find(b"\n" + header, start)
        while pos != -1:
            # The header must be followed by whitespace (id "10de" must not match "10de0").
            end_of_id = pos + 1 + len(header)
            if end_of_id < len(data) and data[end_of_id : end_of_id + 1] in (b" ", b"\t"):
                break
            pos = data.find(b"\n" + header, pos + 1)
        if pos == -1:
            return None, []
        eol = data.find(b"\n", pos + 1)
        eol = len(data) if eol == -1 else eol
        name = data[pos + 1 + len(header) : eol].strip().decode("utf-8", "replace")
        lines: list[bytes] = []
        cur = eol
        while cur < len(data):
            nxt = data.find(b"\n", cur + 1)
            nxt = len(data) if nxt == -1 else nxt
            line = data[cur + 1 : nxt]
            if line.startswith(b"\t"):
                lines.append(line)
            elif line and not line.startswith(b"#"):
                break
            cur = nxt
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

    def _vendor(self, vendor_id: str) -> tuple[str | None, dict[str, tuple[str, dict[str, str]]]]:
        vendor_id = vendor_id.lower()
        hit = self._vendor_cache.get(vendor_id)
        if hit is None:
            name, lines = self._block(vendor_id.encode(), 0)
            # Vendor ids live before the class section; a class line "C 03" can't collide (4 hex digits).
            hit = (name, self._nest(lines))
            self._vendor_cache[vendor_id] = hit
        return hit

    def _class(self, class_hex: str) -> tuple[str | None, dict[str, tuple[str, dict[str, str]]]]:
        hit = self._class_cache.get(class_hex)
        if hit is None:
            name, lines = self._block(b"C " + class_hex.encode(), 0)
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
        entry = self._vendor(vendor_id)[1].get(device_id.lower())
        return entry[0] if entry else None

    def subsystem_name(
        self, vendor_id: str | None, device_id: str | None, sub_vendor: str | None, sub_device: str | None
    ) -> str | None:
        if self._data is None or not (vendor_id and device_id and sub_vendor and sub_device):
            return None
        entry = self._vendor(vendor_id)[1].get(device_id.lower())
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
