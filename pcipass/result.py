"""Result objects: what every command returns to the renderer, and the machine envelope.

The library never prints or exits. A command builds a ``Result``; ``cli.render`` turns it into a table,
JSON or YAML; ``cli.app.main`` turns its exit code (or an exception) into the process exit status.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePath
from typing import Any

from .errors import ExitCode, PcipassError

#: Version of the JSON/YAML envelope (the ``pcipass`` key). Bumped only on incompatible changes.
ENVELOPE_VERSION = 1


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    # dataclasses.fields() rebuilds its tuple on every call; thousands of devices make that visible.
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def jsonable(obj: Any) -> Any:
    """Plain data (dict/list/str/int/float/bool/None) from dataclasses, enums, tuples and paths.

    Key order is the dataclass field order, so output is stable. Plain data comes back equal, so converting
    twice is harmless (but costs a walk: the renderer converts once, commands hand it their objects).
    """
    if obj is None or type(obj) in (str, int, float, bool):
        return obj
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {name: jsonable(getattr(obj, name)) for name in _field_names(type(obj))}
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


@dataclass
class Result:
    command: str
    data: Any = None
    errors: list[PcipassError] = field(default_factory=list)
    #: Set explicitly by commands whose success is not "no errors" (a failed preflight check, a refusal).
    exit_code: ExitCode | None = None
    #: Human notes for stderr (warnings); never part of the data.
    messages: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.errors:
            return "ok"
        if self.data:
            return "partial"
        return "error"

    @property
    def code(self) -> ExitCode:
        if self.exit_code is not None:
            return self.exit_code
        if not self.errors:
            return ExitCode.OK
        if self.data:
            return ExitCode.PARTIAL
        return self.errors[0].exit_code

    def envelope(self) -> dict[str, Any]:
        return {
            "pcipass": ENVELOPE_VERSION,
            "command": self.command,
            "status": self.status,
            "data": jsonable(self.data),
            "errors": [e.to_dict() for e in self.errors],
        }
