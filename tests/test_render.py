"""The plain table layout (no rich) must print exactly what rich prints, or step aside for rich."""

from __future__ import annotations

import io
import random
import string
import sys

import pytest

from pcipass.cli import render
from pcipass.cli.render import KeyValues, Table


def _capture(fn, blocks) -> str:
    buf, old = io.StringIO(), sys.stdout
    sys.stdout = buf
    try:
        fn(blocks)
    finally:
        sys.stdout = old
    return buf.getvalue()


def _random_blocks(rnd: random.Random) -> list:
    # Spaces at either end, empty cells, None/bool/int/list cells, titles wider than the table, tables wider
    # than the page: the cases where a hand layout could drift from rich's.
    text = string.ascii_letters + string.digits + "    -_./:>;()[]"
    word = lambda lo, hi: "".join(rnd.choice(text) for _ in range(rnd.randint(lo, hi)))  # noqa: E731
    ncol = rnd.randint(1, 7)
    cols = [word(1, 12) for _ in range(ncol)]
    rows = [
        [rnd.choice([None, True, False, 3, ["a", "b"], (), word(0, 45)]) for _ in range(ncol)]
        for _ in range(rnd.randint(0, 5))
    ]
    blocks: list = [Table(cols, rows, title=rnd.choice([None, "", "Steps", " Plan ", word(1, 90)]))]
    if rnd.random() < 0.3:
        blocks.append(rnd.choice(["Plan: nothing to do.", word(0, 60), "tab\there", "non-ASCII \u00e9"]))
    if rnd.random() < 0.2:
        blocks.insert(0, Table(cols[:1], [["x"], ["y"]], sections={0}))
    return blocks


def test_plain_layout_matches_rich(monkeypatch):
    """A fixed sample (seeded) of random blocks: 300 comparisons take a second, and the seed's sample takes
    both paths often, which the last line holds."""
    monkeypatch.delenv("COLUMNS", raising=False)
    rnd = random.Random(5)
    plain = 0
    for _ in range(300):
        blocks = _random_blocks(rnd)
        if render._plain_lines(blocks, 200) is not None:
            plain += 1
        assert _capture(render.render_table, blocks) == _capture(render._rich_table, blocks), blocks
    # Both paths were taken many times (the comparison above is not vacuous).
    assert 50 < plain < 280


@pytest.mark.parametrize(
    "blocks",
    [
        [Table(("A", "B"), [["x" * 150, "y" * 60]])],  # wider than the page: rich folds
        [Table(("A",), [["x"]], title="a title wider than the table")],  # rich wraps the title
        [Table(("A",), [["caf\u00e9"]])],
        [KeyValues([("key", "value")])],
    ],
)
def test_not_simple_goes_to_rich(blocks):
    assert render._plain_lines(blocks, 200) is None
    assert _capture(render.render_table, blocks) == _capture(render._rich_table, blocks)


def test_an_empty_table_is_laid_out_here():
    """No rows (``list --vfio`` on a host without vfio devices, a filter matching nothing) is still the simple
    case: the header and the rule, as rich prints them, without importing rich."""
    for blocks in ([Table(("ADDRESS", "GROUP"), [])], [Table(("ADDRESS",), [], title="Plan"), "nothing to do"]):
        assert render._plain_lines(blocks, 200) is not None
        assert _capture(render.render_table, blocks) == _capture(render._rich_table, blocks)


def test_columns_env_sets_the_page(monkeypatch):
    blocks = [Table(("A", "B"), [["x" * 50, "y" * 50]])]
    monkeypatch.setenv("COLUMNS", "80")
    assert render._plain_lines(blocks, render._piped_width()) is None
    assert _capture(render.render_table, blocks) == _capture(render._rich_table, blocks)
    monkeypatch.setenv("COLUMNS", "120")
    assert _capture(render.render_table, blocks) == _capture(render._rich_table, blocks)
