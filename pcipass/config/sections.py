"""The sections of the desired-state file: the one place that lists them (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from . import devices, mdev, sriov


class Section(NamedTuple):
    """One top-level key of the file: a list of mappings, each identified by its ``key`` field."""

    name: str  #: the top-level key; its schema is ``schema/<name>.schema.json``
    key: str  #: the field that identifies an entry (unique within the section)
    parse: Callable[[dict, int | None], Any]  #: (validated item, its line if known) -> a frozen entry


SECTIONS: dict[str, Section] = {
    s.name: s
    for s in (
        Section("devices", key="address", parse=devices.from_node),
        Section("sriov", key="address", parse=sriov.from_node),
        Section("mdev", key="uuid", parse=mdev.from_node),
    )
}
