"""The benchmark's synthetic server (bench/gen_tree.py) as a test fixture: ``server`` is a 600-function tree,
written once per session, that the inventory's invariants (tests/test_inventory.py), the start-up's early
scan (tests/test_cli_startup.py) and the generator's own tests (tests/test_bench_tree.py) read."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from pcipass.host import Host
from pcipass.inventory import Inventory

BENCH = Path(__file__).resolve().parent.parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


gen_tree = _load("gen_tree")


def all_functions(m) -> list:
    out = []

    def walk(f):
        out.append(f)
        for c in f.children:
            walk(c)
        for v in f.vfs:
            walk(v)

    for _name, top in m.roots:
        for f in top:
            walk(f)
    return out


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> tuple[Path, object]:
    m = gen_tree.build(600)
    root = tmp_path_factory.mktemp("bench") / "host"
    gen_tree.write_tree(m, str(root))
    return root, m


def scan_all(root, **kw) -> dict:
    return Inventory.scan(Host(root), **kw).devices


def count_forks(monkeypatch) -> list[int]:
    """Make the scan fork even though this test process has other threads (the real-kernel tier boots its
    guests in threads while these tests run), and count the forks, so a test cannot pass without one."""
    forks: list[int] = []
    real_fork = os.fork

    def fork():
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    import pcipass.inventory.parallel as parallel

    monkeypatch.setattr(parallel.threading, "active_count", lambda: 1)
    monkeypatch.setattr(parallel.os, "fork", fork)
    return forks
