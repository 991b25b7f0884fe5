"""The one renderer: a Result becomes a rich table, JSON or YAML on stdout; talk goes to stderr.

Rules: data on stdout, messages on stderr; no colour or ANSI when stdout is not a TTY or NO_COLOR is set;
device strings are always wrapped in ``rich.text.Text`` (never interpolated into markup), so a device name
like ``[bold]`` or ``[/]`` prints literally. rich and yaml are imported here, only when rendering needs them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..result import Result


class Format(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


@dataclass
class Table:
    """A table block: column headers and rows of plain strings (None prints as ``-``)."""

    columns: Sequence[str]
    rows: list[Sequence[Any]]
    title: str | None = None
    #: Indices of rows after which a section line is drawn (used by ``list --tree``).
    sections: set[int] = field(default_factory=set)


@dataclass
class KeyValues:
    pairs: list[tuple[str, Any]]
    title: str | None = None


Block = Table | KeyValues | str
View = Callable[[Any], list[Block]]


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value) if value else "-"
    return str(value)


def _stdout_is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _console(stream=None):
    from rich.console import Console

    tty = stream is None and _stdout_is_tty()
    width = None
    if not tty:
        try:
            width = int(os.environ.get("COLUMNS", "")) or None
        except ValueError:
            width = None
        width = width or 200
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


def render_table(blocks: list[Block]) -> None:
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    import io

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
            console.print(Text(block), soft_wrap=True)
        elif isinstance(block, KeyValues):
            t = RichTable(box=None, show_header=False, title=Text(block.title) if block.title else None,
                          title_justify="left", pad_edge=False)
            t.add_column(no_wrap=True, style="bold")
            t.add_column(overflow="fold")
            for key, value in block.pairs:
                t.add_row(Text(key), Text(cell(value)))
            console.print(t)
        else:
            t = RichTable(box=box.SIMPLE_HEAD, title=Text(block.title) if block.title else None,
                          title_justify="left", pad_edge=False, show_edge=False)
            for col in block.columns:
                t.add_column(Text(col), overflow="fold")
            for i, row in enumerate(block.rows):
                t.add_row(*(Text(cell(v)) for v in row), end_section=i in block.sections)
            console.print(t)
    if buf is not None:
        sys.stdout.write("".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines()))
        sys.stdout.flush()


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def dump_yaml(data: Any) -> str:
    import yaml

    # libyaml's emitter when PyYAML was built with it: ~10x faster on a few hundred devices, same output.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def write_stdout(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """A one-line message for humans on stderr (never rich markup)."""
    sys.stderr.write(f"pcipass: {message}\n")
    sys.stderr.flush()


def render(result: Result, fmt: Format, view: View) -> None:
    for msg in result.messages:
        warn(msg)
    for err in result.errors:
        warn(f"error: {err.message}" + (f" ({err.remedy})" if err.remedy else ""))
    if fmt is Format.json:
        write_stdout(dump_json(result.envelope()))
    elif fmt is Format.yaml:
        write_stdout(dump_yaml(result.envelope()))
    elif result.data is not None:
        render_table(view(result.data))
