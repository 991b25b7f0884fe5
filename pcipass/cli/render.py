"""The one renderer: a Result becomes a rich table, JSON or YAML on stdout; talk goes to stderr.

Rules: data on stdout, messages on stderr; no colour or ANSI when stdout is not a TTY or NO_COLOR is set;
device strings are always wrapped in ``rich.text.Text`` (never interpolated into markup), so a device name
like ``[bold]`` or ``[/]`` prints literally. rich, yaml, orjson and json are imported here, only when rendering
needs them.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..result import Records, Result, jsonable


class Format(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


@dataclass
class Table:
    """A table block: column headers and rows of plain strings (None prints as ``-``)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    title: str | None = None
    #: Indices of rows after which a section line is drawn (used by ``list --tree``).
    sections: set[int] = field(default_factory=set)


@dataclass
class KeyValues:
    """A block of ``key: value`` lines (``show``, summaries), with an optional title."""

    pairs: list[tuple[str, Any]]
    title: str | None = None


@dataclass
class Document:
    """A configuration document (libvirt XML, Kubernetes YAML) that is the whole table-format output: printed
    exactly as it is, for ``virsh`` or ``kubectl``."""

    text: str


Block = Table | KeyValues | str
#: What a command's data looks like in the table format: blocks, or a document printed as it is.
View = Callable[[Any], list[Block] | Document]


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    code = ord(ch)
    return _ESCAPES.get(ch) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    )


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on written as a Python escape (``\\x1b``, ``\\n``,
    ``\\u202e``): C0 and C1 controls, DEL, format characters (bidirectional overrides), line and paragraph
    separators, lone surrogates. The one escaping of host strings (a ``driver_override``, a ``pci.ids`` name, a
    file name) on their way to a terminal: every table cell and every stderr message goes through it; JSON and
    YAML keep the true string."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or unicodedata.category(ch) == "Zs" else _escape(ch) for ch in text)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value) if value else "-"
    return printable(str(value))


def _lines(text: str) -> str:
    """A text block's lines, each made printable (the line breaks are the view's own)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _stdout_is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _piped_width() -> int:
    """The page width when stdout is not a TTY: $COLUMNS, else 200."""
    try:
        return int(os.environ.get("COLUMNS", "")) or 200
    except ValueError:
        return 200


def _console(stream=None):
    from rich.console import Console

    tty = stream is None and _stdout_is_tty()
    width = None if tty else _piped_width()
    return Console(
        file=stream or sys.stdout,
        width=width,
        no_color=bool(os.environ.get("NO_COLOR")) or not tty,
        force_terminal=tty or None,
        color_system="auto" if tty and not os.environ.get("NO_COLOR") else None,
        markup=False,
        highlight=False,
        emoji=False,
        soft_wrap=False,
    )


def _plain(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _plain_lines(blocks: list[Block], width: int) -> list[str] | None:
    """The lines rich prints for ``blocks`` on a pipe, when they are simple enough to lay out here; else None.

    Why: importing rich and laying a table out with it costs more CPU than a small ``list`` itself, natively
    as under emulation (bench/run.py, bench/binding_overhead.py), and most output is a few short
    rows. Simple means what rich would print unchanged: printable ASCII only (no wide characters, tabs or
    newlines), no section lines, no key/value block, every table within ``width`` (rich would fold cells)
    and its title no wider than the table (rich would wrap it). Then rich's SIMPLE_HEAD layout without
    edges is: each column as wide as its widest cell, three spaces between columns, the header, a rule of
    U+2500 across the table, the rows, trailing blanks dropped. tests/test_render.py compares the two on
    random blocks; the golden table outputs (tests/golden/*.txt) are printed this way.
    """
    out: list[str] = []
    for i, block in enumerate(blocks):
        if i:
            out.append("")
        if isinstance(block, str):
            block = _lines(block)
            if not _plain(block):
                return None
            out.append(block.rstrip())
            continue
        if not isinstance(block, Table) or block.sections:
            return None
        header = [printable(c) for c in block.columns]
        rows = [[cell(v) for v in row] for row in block.rows]
        if any(len(r) != len(header) for r in rows):
            return None
        if not all(_plain(c) for c in header) or not all(_plain(c) for r in rows for c in r):
            return None
        widths = [max(map(len, col)) for col in zip(header, *rows)]
        total = sum(widths) + 3 * (len(widths) - 1)
        title = printable(block.title) if block.title else None
        if total > width or (title and (len(title) > total or not _plain(title))):
            return None
        if title:
            out.append(title.rstrip())
        out.append("   ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip())
        out.append("\u2500" * total)
        out += ["   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return out


def render_table(blocks: list[Block]) -> None:
    if not _stdout_is_tty():
        lines = _plain_lines(blocks, _piped_width())
        if lines is not None:
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()
            return
    _rich_table(blocks)


def _rich_table(blocks: list[Block]) -> None:
    import io

    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    tty = _stdout_is_tty()
    # Not a TTY: render into a buffer and drop rich's right padding so piped output has no trailing blanks.
    buf = None if tty else io.StringIO()
    console = _console(buf)
    first = True
    for block in blocks:
        if not first:
            console.print()
        first = False
        if isinstance(block, str):
            console.print(Text(_lines(block)), soft_wrap=True)
        elif isinstance(block, KeyValues):
            t = RichTable(
                box=None,
                show_header=False,
                title=Text(printable(block.title)) if block.title else None,
                title_justify="left",
                pad_edge=False,
            )
            t.add_column(no_wrap=True, style="bold")
            t.add_column(overflow="fold")
            for key, value in block.pairs:
                t.add_row(Text(printable(key)), Text(cell(value)))
            console.print(t)
        else:
            t = RichTable(
                box=box.SIMPLE_HEAD,
                title=Text(printable(block.title)) if block.title else None,
                title_justify="left",
                pad_edge=False,
                show_edge=False,
            )
            for col in block.columns:
                t.add_column(Text(printable(col)), overflow="fold")
            for i, row in enumerate(block.rows):
                t.add_row(*(Text(cell(v)) for v in row), end_section=i in block.sections)
            console.print(t)
    if buf is not None:
        sys.stdout.write("".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines()))
        sys.stdout.flush()


# How many pieces of text write_json gathers before writing them: 256 device records, ~220 KB. Small enough
# that each flush reuses the last one's buffers: 4,096 pieces (~1.7 MB) cost page faults a smaller batch
# does not (bench/run.py).
_FLUSH_PIECES = 512


def _json_layout(
    value: Any,
    nl: str,
    out: list[str],
    encode: Callable[[Any], str],
    flush: Callable[[list[str]], None] | None = None,
) -> None:
    """Append ``value`` as JSON: objects and arrays indented by two spaces, except that an array of objects
    (devices, groups, checks, errors: records) has one record per line, written compactly by ``encode``.
    ``flush``, when given, is handed ``out`` every few hundred records (and empties it): the text is written
    as it is made. ``Records`` are converted one by one as they are written.

    Why this layout: a list of 16k devices indented key by key is 600k lines, and json.dumps with ``indent``
    falls back to its pure-Python encoder, which made the dump a third of ``list --format json`` on a large
    host (bench/run.py). One record per line is what ``lsblk --json`` does, stays readable and greppable,
    and each record is one call of a C encoder (``_encoder``).
    """
    if isinstance(value, str):
        out.append(encode(value))
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        inner = nl + "  "
        sep = "[" + inner
        if isinstance(value, Records) or all(type(item) is dict for item in value):
            convert = value.convert if isinstance(value, Records) else None
            for item in value:
                out.append(sep)
                out.append(encode(convert(item) if convert else item))
                sep = "," + inner
                if flush is not None and len(out) >= _FLUSH_PIECES:
                    flush(out)
        else:
            for item in value:
                out.append(sep)
                _json_layout(item, inner, out, encode, flush)
                sep = "," + inner
        out.append(nl + "]")
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = nl + "  "
        sep = "{" + inner
        for key, item in value.items():
            # Other keys get json's own coercion (int, float, bool, None) or its TypeError: {"1":null} -> "1".
            text = encode(key) if isinstance(key, str) else encode({key: None})[1:-6]
            out.append(f"{sep}{text}: ")
            _json_layout(item, inner, out, encode, flush)
            sep = "," + inner
        out.append(nl + "}")
    else:
        out.append(encode(value))  # scalars: json's own spelling (and its TypeError for anything else)


def _encoder() -> Callable[[Any], str]:
    """A value as compact JSON (``,`` and ``:``, UTF-8 text as is): by orjson, and by json's C encoder, same
    spelling, for what orjson refuses with a TypeError: a key that is not a string, an integer beyond 64 bits
    from a damaged snapshot, a lone surrogate, or an object json's own TypeError should then name.

    Why orjson: encoding the device records with json's C encoder was most of what ``list --format json``
    spends after its scan on a large host, and orjson takes a fraction of it (bench/run.py). json is imported
    only when it is needed."""
    from orjson import dumps

    fallback: list[Callable[[Any], str]] = []

    def encode(value: Any) -> str:
        try:
            return dumps(value).decode()
        except TypeError:
            if not fallback:
                import json.encoder as je

                # Made once: json.dumps would rebuild its encoder on every call.
                py = je.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
                make = getattr(je, "c_make_encoder", None)  # the C encoder, when the build has it
                c = make and make({}, py.default, je.encode_basestring, None, ":", ",", False, False, True)
                fallback.append((lambda v: "".join(c(v, 0))) if c else py.encode)
            return fallback[0](value)

    return encode


def _json_text(data: Any, flush: Callable[[list[str]], None] | None = None) -> list[str]:
    out: list[str] = []
    try:
        _json_layout(data, "\n", out, _encoder(), flush)
    except RecursionError:
        raise ValueError("Circular reference detected") from None  # what json.dumps says
    out.append("\n")
    return out


def dump_json(data: Any, *, records: bool = True) -> str:
    """The JSON text of ``data`` plus a newline: pcipass's envelope with one record per line
    (``_json_layout``), or with ``records=False`` indented throughout, as Kubernetes manifests are."""
    if not records:
        import json

        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return "".join(_json_text(data))


def write_json(data: Any) -> None:
    """``dump_json(data)`` written to stdout as it is made, in pieces: a 16k-device listing is ~15 MB of text
    that need not be held (and copied to bytes) whole."""
    write = sys.stdout.write

    def flush(out: list[str]) -> None:
        write("".join(out))
        out.clear()

    out = _json_text(data, flush)
    write("".join(out))
    sys.stdout.flush()


def dump_yaml(data: Any) -> str:
    import yaml

    # libyaml's emitter when PyYAML was built with it: much faster on a few hundred devices, same output.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def write_stdout(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """A one-line message for humans on stderr (never rich markup; host strings in it made ``printable``)."""
    sys.stderr.write(f"pcipass: {printable(message)}\n")
    sys.stderr.flush()


def render(result: Result, fmt: Format, view: View) -> None:
    for msg in result.messages:
        warn(msg)
    for err in result.errors:
        warn(f"error: {err.message}" + (f" ({err.remedy})" if err.remedy else ""))
    if fmt is Format.json:
        write_json(result.envelope(lazy=True))
    elif fmt is Format.yaml:
        write_stdout(dump_yaml(result.envelope()))
    elif result.data is not None:
        # Views read plain data, the same the envelope carries; commands hand over their objects, so this is
        # the one conversion (a list of thousands of devices made it visible when done twice).
        shown = view(jsonable(result.data))
        if isinstance(shown, Document):
            write_stdout(shown.text)
        else:
            render_table(shown)
