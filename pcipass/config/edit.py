"""Changing the desired-state file in place: comments, key order and untouched entries stay as they were."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ..errors import from_oserror
from ..host import Host
from .load import VERSION, parse, read_text, remember, yaml_rt
from .sections import SECTIONS

_NEW_FILE = f"""\
# pcipass desired state: what 'pcipass apply' converges this host to, at every boot
# (pcipass-apply.service, 'pcipass boot install'). Reference: docs/persistence.md.
# 'pcipass persist' / 'unpersist' edit it and keep comments and key order.
version: {VERSION}
"""


class Editor:
    """The file at ``path`` opened for changes (a missing file starts from a new one). The file must be valid to
    be edited: a ConfigError here means nothing will be written."""

    def __init__(self, path: Path, shown: str, host: Host | None = None) -> None:
        self.path, self.shown, self.host = path, shown, host
        text = read_text(path, shown)
        self.exists = text is not None
        self.original = text if text is not None else ""
        self.doc, _ = parse(text if text is not None else _NEW_FILE, shown)

    def _items(self, section: str, create: bool = False) -> list:
        from ruamel.yaml.comments import CommentedSeq

        items = self.doc.get(section)
        if create and (items is None or (not items and items.fa.flow_style())):
            # A new list, or an empty one written as [] (items appended to it would stay in flow style).
            items = self.doc[section] = CommentedSeq()
        return items if items is not None else []

    def find(self, section: str, value: str) -> dict | None:
        key = SECTIONS[section].key
        return next((item for item in self._items(section) if item.get(key) == value), None)

    def upsert(self, section: str, node: dict[str, Any]) -> str:
        """Add ``node`` to ``section``, or make the entry with its key equal to it; returns added, updated or
        unchanged. An existing entry keeps its comments and its keys' order; keys ``node`` lacks are removed."""
        item = self.find(section, node[SECTIONS[section].key])
        if item is None:
            self._items(section, create=True).append(_fresh(node))
            return "added"
        return "updated" if _assign(item, node) else "unchanged"

    def remove(self, section: str, value: str) -> bool:
        items = self._items(section)
        item = self.find(section, value)
        if item is None:
            return False
        items.remove(item)
        return True

    def text(self) -> str:
        out = io.StringIO()
        yaml_rt().dump(self.doc, out)
        return out.getvalue()

    def save(self) -> bool:
        """Write the file if it changed (True), atomically, after checking the new text as ``load`` would."""
        text = self.text()
        if self.exists and text == self.original:
            return False
        doc, desired = parse(text, self.shown)  # never write a file the next load would refuse
        write_atomically(self.path, self.shown, text, host=self.host)
        remember(self.path, text, doc, desired, self.host)
        self.exists, self.original = True, text
        return True


def _fresh(node: Any) -> Any:
    """Plain data as ruamel's round-trip types, laid out in block style."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, dict):
        out = CommentedMap()
        for k, v in node.items():
            out[k] = _fresh(v)
        return out
    if isinstance(node, (list, tuple)):
        return CommentedSeq(_fresh(v) for v in node)
    return node


def _assign(item: Any, node: dict[str, Any]) -> bool:
    """Make the mapping ``item`` equal to ``node`` in place (nested mappings too); True if anything changed."""
    changed = False
    for k in [k for k in item if k not in node]:
        del item[k]
        changed = True
    for k, v in node.items():
        if isinstance(v, dict) and isinstance(item.get(k), dict):
            changed |= _assign(item[k], v)
        elif k not in item or item[k] != v or isinstance(item[k], bool) != isinstance(v, bool):
            item[k] = _fresh(v)
            changed = True
    return changed


def open_dir(host: Host | None, directory: Path) -> int:
    """A descriptor of ``directory``, made if missing: beneath the root when it is under ``host``'s (a --root
    tree may hold links that lead out of it: ``Host.open``), as given otherwise (``--config FILE``)."""
    flags = os.O_RDONLY | os.O_DIRECTORY
    if host is not None:
        root = os.path.abspath(host.root_dir)
        if os.path.commonpath([root, os.path.abspath(directory)]) == root:
            return host.open(directory, flags, make_dirs=0o755)
    os.makedirs(directory, 0o755, exist_ok=True)
    return os.open(directory, flags | os.O_CLOEXEC)


def write_atomically(path: Path, shown: str, text: str, *, mode: int | None = None, host: Host | None = None) -> None:
    """A temporary file beside ``path``, synced, renamed over it: a crash leaves the old file or the new one,
    never half of one. ``mode``, else the old file's permissions (0644 for a new one). Every operation is
    relative to the directory's descriptor (``open_dir``), so nothing is written outside a --root."""
    try:
        dfd = open_dir(host, path.parent)
        try:
            if mode is None:
                try:
                    mode = os.stat(path.name, dir_fd=dfd, follow_symlinks=False).st_mode & 0o7777
                except FileNotFoundError:
                    mode = 0o644
            tmp = f".{path.name}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fchmod(fh.fileno(), mode)
                    os.fsync(fh.fileno())
                os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                os.unlink(tmp, dir_fd=dfd)
                raise
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        raise from_oserror(exc, action="write", path=shown, remedy="run as root, or give a writable --config") from exc
