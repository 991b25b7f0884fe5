"""mdevctl's persistent definitions, read so pcipass can say "mdevctl manages this" instead of fighting it.

mdevctl(8) keeps one JSON file per defined mdev, ``/etc/mdevctl.d/<parent>/<uuid>``
(``{"mdev_type": TYPE, "start": "auto"|"manual", "attrs": [...]}``; ``scripts.d`` in the same directory holds
its call-outs), and its udev rule starts the ``auto`` ones when their parent registers
(60-mdevctl.rules: ``mdevctl start-parent-mdevs``).
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

from ..host import Host
from ..sysfs import list_dir, read_bytes
from .model import is_uuid

_SCRIPTS_DIR = "scripts.d"


class Definition(NamedTuple):
    uuid: str
    parent: str
    mdev_type: str | None
    start: str | None  #: auto | manual (None: unreadable)
    path: str  #: as shown on the host


def definitions(host: Host) -> dict[str, Definition]:
    """Every mdevctl definition by UUID (lower case); unreadable or foreign files are left out."""
    base = host.mdevctl_dir
    out: dict[str, Definition] = {}
    for parent in list_dir(base):
        if parent == _SCRIPTS_DIR or not os.path.isdir(base / parent):
            continue
        for name in list_dir(base / parent):
            if not is_uuid(name):
                continue
            path = base / parent / name
            doc = None
            raw = read_bytes(path)
            if raw is not None:
                try:
                    doc = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    doc = None
            doc = doc if isinstance(doc, dict) else {}
            mtype, start = doc.get("mdev_type"), doc.get("start")
            out[name.lower()] = Definition(
                name.lower(),
                parent,
                mtype if isinstance(mtype, str) else None,
                start if isinstance(start, str) else None,
                host.shown(path),
            )
    return out
