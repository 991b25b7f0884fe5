"""Reading and validating the desired-state file (see the package docstring)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UsageError
from ..host import Host
from .sections import SECTIONS

_SCHEMA_DIR = Path(__file__).parent / "schema"
#: A desired-state file is a few kilobytes; a larger one is refused rather than read without bound.
MAX_BYTES = 1 << 20
VERSION = 1


def config_path(host: Host, given: str | None) -> tuple[Path, str]:
    """The file to use and its name for messages: ``--config`` as given, else ``/etc/pcipass/pcipass.yaml``
    under the root."""
    if given is not None:
        if not given:
            raise UsageError(
                "--config is empty (an unset variable?): give a file, or leave --config out for "
                f"{host.shown(host.pcipass_config)}"
            )
        return Path(given), given
    return host.pcipass_config, host.shown(host.pcipass_config)


@cache
def schema() -> dict[str, Any]:
    """The whole file's JSON Schema: the top level with every section's schema under ``properties``."""
    top = json.loads((_SCHEMA_DIR / "pcipass.schema.json").read_text(encoding="utf-8"))
    for name in SECTIONS:
        top["properties"][name] = json.loads((_SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    return top


@dataclass(frozen=True)
class Desired:
    """The file's content: its version and each section's entries, in file order."""

    path: str  #: as shown in messages
    version: int
    sections: dict[str, tuple]

    def section(self, name: str) -> tuple:
        return self.sections.get(name, ())

    @property
    def devices(self) -> tuple:
        return self.section("devices")


def read_text(path: Path, shown: str) -> str | None:
    """The file's text; None when it does not exist. Only a regular file of at most MAX_BYTES is read (a FIFO
    or a device at that path is refused without blocking)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=shown) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError("not a regular file", path=shown)
        data = os.read(fd, MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=shown) from exc
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise ConfigError(f"larger than {MAX_BYTES} bytes: not a desired-state file", path=shown)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", path=shown, line=line) from exc


def yaml_rt():
    """ruamel.yaml in round-trip mode, laid out as pcipass writes the file (lists indented under their key)."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True  # a value quoted in the file stays quoted when an edit writes it back
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never fold a long value (a comment or a path) onto a second line
    return yaml


def parse(text: str, shown: str) -> tuple[Any, Desired]:
    """The round-trip document (ruamel's CommentedMap, for ``Editor``) and the validated ``Desired``."""
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        doc = yaml_rt().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            f"not valid YAML: {exc.problem or exc.context}", path=shown, line=mark.line + 1 if mark else None
        ) from exc
    except YAMLError as exc:
        raise ConfigError(f"not valid YAML: {str(exc).splitlines()[0]}", path=shown) from exc
    if doc is None:
        raise ConfigError(f"empty: a desired-state file starts with 'version: {VERSION}'", path=shown, line=1)
    _validate(doc, shown)
    sections: dict[str, tuple] = {}
    for name, sec in SECTIONS.items():
        items = doc.get(name) or []
        _unique(items, name, sec.key, shown)
        sections[name] = tuple(sec.parse(item, _line(items, i)) for i, item in enumerate(items))
    return doc, Desired(shown, doc["version"], sections)


def remember(path: Path, text: str, doc: Any, desired: Desired, host: Host | None = None) -> None:
    """Keep the validated content beside the file (``checked``), for the next ``load``."""
    from . import checked

    lines = {name: [getattr(e, "line", None) for e in desired.section(name)] for name in SECTIONS}
    checked.write(path, checked.key(text), doc, lines, host)


def _from_checked(path: Path, text: str, shown: str) -> Desired | None:
    from . import checked

    kept = checked.read(path, checked.key(text))
    if kept is None:
        return None
    try:
        sections = {
            name: tuple(sec.parse(item, line) for line, item in kept.get(name, [])) for name, sec in SECTIONS.items()
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # not what pcipass writes there: validate the file instead
    return Desired(shown, VERSION, sections)


def load(path: Path, shown: str, *, missing_ok: bool = False, keep: bool = False, host: Host | None = None) -> Desired:
    """The validated file at ``path``. A missing file is an empty desired state with ``missing_ok``, else an
    error. A file validated before is taken from what was kept of it (``checked``); ``keep``: keep what this
    validation found (the caller may write)."""
    text = read_text(path, shown)
    if text is None:
        if missing_ok:
            return Desired(shown, VERSION, {name: () for name in SECTIONS})
        raise ConfigError(
            "no such file", path=shown, remedy="'pcipass persist ADDR...' creates it, or give --config FILE"
        )
    desired = _from_checked(path, text, shown)
    if desired is None:
        doc, desired = parse(text, shown)
        if keep:
            remember(path, text, doc, desired, host)
    return desired


# --- locating problems -----------------------------------------------------------------------------------------
def _line(node: Any, key: Any) -> int | None:
    """1-based line of ``node[key]`` (a mapping's key, a list's item) from ruamel's position data."""
    lc = getattr(node, "lc", None)
    try:
        if lc is None:
            return None
        return (lc.item(key) if isinstance(key, int) and isinstance(node, list) else lc.key(key))[0] + 1
    except (KeyError, IndexError, TypeError):
        return None


def _locate(doc: Any, path: list) -> tuple[int | None, str | None]:
    """(line, ``devices[0].fingerprint.vendor``) of the node at ``path``; the line of the deepest node found."""
    line = getattr(getattr(doc, "lc", None), "line", 0) + 1
    key = ""
    node = doc
    for part in path:
        here = _line(node, part)
        if here is not None:
            line = here
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    return line, key or None


def _problem(err) -> tuple[list, str]:
    """(path, message) of one jsonschema error, said for a person editing the file."""
    path = list(err.absolute_path)
    inst, sub = err.instance, err.schema
    if err.validator == "additionalProperties" and isinstance(inst, dict):
        allowed = list(sub.get("properties", {}))
        extra = [k for k in inst if k not in allowed]
        if extra:
            return path + [extra[0]], f"unknown key (allowed here: {', '.join(allowed)})"
    if err.validator == "required":
        return path, err.message.replace("is a required property", "is missing")
    msg = err.message
    if err.validator == "pattern":
        # The regular expression says little to a person; the key's description says what is expected.
        msg = f"{inst!r} is not valid here: {sub.get('description', 'see the schema')}"
    elif err.validator == "type" and sub.get("type") == "string" and isinstance(inst, (int, float)):
        msg += " (quote it: ids such as 8086 are read as numbers)"
    return path, msg


def _validate(doc: Any, shown: str) -> None:
    from jsonschema import Draft202012Validator

    problems = []
    for err in Draft202012Validator(schema()).iter_errors(doc):
        path, msg = _problem(err)
        line, key = _locate(doc, path)
        problems.append((line or 0, key or "", msg))
    if problems:
        _raise(problems, shown)


def _unique(items: list, section: str, field: str, shown: str) -> None:
    seen: dict[Any, int | None] = {}
    problems = []
    for i, item in enumerate(items):
        value = item[field]
        line = _line(item, field)
        if value in seen:
            problems.append(
                (
                    line or 0,
                    f"{section}[{i}].{field}",
                    f"{value} is declared twice (first at line {seen[value]}): one entry per {field}",
                )
            )
        else:
            seen[value] = line
    if problems:
        _raise(problems, shown)


def _raise(problems: list[tuple[int, str, str]], shown: str) -> None:
    """One ConfigError for the first problem by line, the others appended to its message."""
    problems.sort(key=lambda p: p[0])
    (line, key, msg), rest = problems[0], problems[1:]
    if rest:
        msg += "; also " + "; ".join(f"line {ln}: {k + ': ' if k else ''}{m}" for ln, k, m in rest)
    raise ConfigError(msg, path=shown, line=line or None, key=key or None)
