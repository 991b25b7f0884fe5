"""Reads of a --root tree are bounded: a table far larger than any real one (a 1 GiB mountinfo) counts as
damaged and is not read whole, and a FIFO where a table or configuration file should be never blocks."""

from __future__ import annotations

import os
import resource
import signal
from pathlib import Path

import pytest

from tests.support import bind_hosts as bh
from tests.support.bind_hosts import _never_the_real_sys, env  # noqa: F401 - fixtures
from tests.support.cli import run

# The tables and files the inventory, the preflight and the binding guards read from a root.
TABLES = (
    "proc/self/mountinfo",
    "proc/net/route",
    "proc/net/ipv6_route",
    "proc/net/fib_trie",
    "proc/swaps",
    "proc/cmdline",
    "proc/cpuinfo",
    "proc/modules",
    f"lib/modules/{bh.KVER}/modules.dep",
    f"lib/modules/{bh.KVER}/modules.alias",
    "etc/default/grub",
    f"etc/driverctl.d/pci-{bh.E1000E}",
)
COMMANDS = (
    ("list", "-f", "json"),
    ("groups",),
    ("show", bh.E1000E),
    ("status",),
    ("check-iommu", "-f", "json"),
    ("enable", "--dry-run", bh.E1000E),
    ("emit", "libvirt", bh.E1000E),
)


class _Hung(Exception):
    pass


def _hung(signum, frame):
    raise _Hung("a command blocked on a read")


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _replace(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(path):
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as fh:
            fh.truncate(1 << 30)  # sparse: costs no disk, but reading it whole would cost a GiB


@pytest.mark.parametrize("kind", ["huge", "fifo"])
def test_tables_far_too_large_or_fifos_are_not_read(capsys, env, kind):
    for rel in TABLES:
        _replace(env.root / rel, kind)
    before = _max_rss_mib()
    for cmd in COMMANDS:
        previous = signal.signal(signal.SIGALRM, _hung)
        signal.alarm(300)
        try:
            r = run(capsys, "--root", str(env.root), *cmd)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        assert "internal error" not in r.err and "Traceback" not in r.err, (cmd, r.err)
    # Nothing was read whole: the process grew by far less than one table.
    assert _max_rss_mib() - before < 256


def _gzip_bomb() -> bytes:
    """~64 KiB of gzip that inflates to 64 MiB: past every cap, small on disk."""
    import gzip

    return gzip.compress(b"\0" * (64 << 20), compresslevel=9)


def test_gunzip_is_bounded_while_it_inflates():
    import gzip

    from pcipass import sysfs

    assert sysfs.gunzip(gzip.compress(b"a\n") + gzip.compress(b"b\n")) == b"a\nb\n"  # every member
    assert sysfs.gunzip(gzip.compress(b"x" * 100), limit=100) == b"x" * 100
    assert sysfs.gunzip(gzip.compress(b"x" * 101), limit=100) is None
    assert sysfs.gunzip(gzip.compress(b"x" * 1000)[:-12]) is None  # truncated
    assert sysfs.gunzip(b"not gzip") is None
    bomb = _gzip_bomb()
    before = _max_rss_mib()
    assert sysfs.gunzip(bomb, limit=1 << 20) is None
    assert _max_rss_mib() - before < 32  # refused while inflating, not after


def test_pci_ids_bombs_fifos_and_huge_files_give_no_names(tmp_path):
    from pcipass.pciids import PciIds

    bomb = tmp_path / "pci.ids.gz"
    bomb.write_bytes(_gzip_bomb())
    assert not PciIds.load(bomb).available
    fifo = tmp_path / "fifo" / "pci.ids"
    _replace(fifo, "fifo")
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.alarm(60)
    try:
        assert not PciIds.load(fifo).available
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    huge = tmp_path / "huge" / "pci.ids"
    _replace(huge, "huge")
    assert not PciIds.load(huge).available
