"""Result objects: what every command returns to the renderer, and the machine envelope.

The library never prints or exits. A command builds a ``Result``; ``cli.render`` turns it into a table,
JSON or YAML; ``cli.app.main`` turns its exit code (or an exception) into the process exit status.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePath
from typing import Any

from .errors import ExitCode, PcipassError

#: Version of the JSON/YAML envelope (the ``pcipass`` key). Bumped only on incompatible changes.
ENVELOPE_VERSION = 1


_PLAIN = frozenset({str, int, float, bool, type(None)})


class Records(list):
    """Items that ``convert`` turns into plain data (one dict each), as late as possible: the JSON writer
    converts each right before writing it (``Result.envelope(lazy=True)``, ``cli.render.write_json``), so a
    16k-device listing never holds every device twice; ``jsonable`` converts them all, for YAML and tables."""

    def __init__(self, items: Iterable[Any], convert: Callable[[Any], Any]) -> None:
        super().__init__(items)
        self.convert = convert


_GETTERS: dict[type, tuple[tuple[str, ...], Any]] = {}


def _getter(cls: type) -> tuple[tuple[str, ...], Any]:
    # dataclasses.fields() rebuilds its tuple on every call, and one getattr per field is slow next to one
    # attrgetter call; thousands of devices make both visible (bench/run.py).
    hit = _GETTERS.get(cls)
    if hit is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        get = operator.attrgetter(*names) if len(names) > 1 else (lambda o, _n=names: (getattr(o, _n[0]),))
        hit = _GETTERS[cls] = (names, get)
    return hit


def jsonable(obj: Any) -> Any:
    """Plain data (dict/list/str/int/float/bool/None) from dataclasses, enums, tuples and paths.

    Key order is the dataclass field order, so output is stable. Plain data comes back equal, so converting
    twice is harmless (but costs a walk: the renderer converts once, commands hand it their objects).
    """
    kind = type(obj)
    if kind in _PLAIN:
        return obj
    if kind is Records:
        return [obj.convert(item) for item in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k if type(k) is str else str(k): v if type(v) in _PLAIN else jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [v if type(v) in _PLAIN else jsonable(v) for v in obj] if obj else []
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names, get = _getter(kind)
        return {n: v if type(v) in _PLAIN else jsonable(v) for n, v in zip(names, get(obj))}
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


@dataclass
class Result:
    """What a command produced: the data it reports, errors, its exit code, and notes for stderr."""

    command: str
    data: Any = None
    errors: list[PcipassError] = field(default_factory=list)
    #: Set explicitly by commands whose success is not "no errors" (a failed preflight check, a refusal).
    exit_code: ExitCode | None = None
    #: Human notes for stderr (warnings); never part of the data.
    messages: list[str] = field(default_factory=list)
    #: Keys set at the envelope's top level beside ``status`` (``apply``'s ``changed``, which an Ansible task's
    #: ``changed_when`` reads); each is in ``data`` too.
    top: dict[str, Any] = field(default_factory=dict)

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

    def envelope(self, *, lazy: bool = False) -> dict[str, Any]:
        """The machine envelope, as plain data; with ``lazy``, ``Records`` data is left to be converted as it
        is written (only the JSON writer knows to)."""
        data = self.data if lazy and type(self.data) is Records else jsonable(self.data)
        return {
            "pcipass": ENVELOPE_VERSION,
            "command": self.command,
            "status": self.status,
            **self.top,
            "data": data,
            "errors": [e.to_dict() for e in self.errors],
        }
