"""The recorded HPE host (226 devices) damaged on purpose, as snapshots and odd hosts are: the attributes
pcipass reads missing, empty, garbage, directories, dangling links or link loops, one kind everywhere and then
a seeded mix per device. No command may crash (an internal error) or lose a device: read tolerantly."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from pathlib import Path

import pytest

from tests.support.cli import run

# fifo: a read that would block forever; huge: an attribute of 1 GiB (sparse), far beyond a page.
KINDS = ("delete", "empty", "garbage", "dir", "dangling", "loop", "fifo", "huge")
GARBAGE = b"\xff\xfe\x00 garbage ../../x [bold]\n"
COMMANDS = (
    ("list", "-f", "json"),
    ("list", "--tree"),
    ("groups", "-f", "json"),
    ("show", "08:00.0"),
    ("show", "00:01.0"),
    ("check-iommu", "-f", "json"),
    ("emit", "libvirt", "--group", "08:00.0"),
    ("emit", "kubevirt", "01:00.1"),
    ("enable", "--dry-run", "--group", "01:00.1"),
    ("status", "-f", "json"),
)


def _device_dirs(root: Path) -> list[Path]:
    bus = root / "sys/bus/pci/devices"
    return [Path(os.path.realpath(bus / name)) for name in sorted(os.listdir(bus))]


def _attributes(path: Path) -> list[str]:
    """What pcipass may read in a device directory: everything but the child devices below a bridge."""
    return [n for n in sorted(os.listdir(path)) if n.count(":") != 2]


def _damage(path: Path, kind: str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(GARBAGE)
    elif kind == "dir":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to("../../nowhere/at/all")
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        with open(path, "wb") as fh:
            fh.truncate(1 << 30)


class _Hung(Exception):
    pass


def _hung(signum, frame):
    raise _Hung("a command blocked (a read that never returns)")


def _assert_tolerated(capsys, root: Path, devices: int) -> None:
    for cmd in COMMANDS:
        # A FIFO where a file should be once hung every command: bounded here, so a regression fails, not hangs.
        previous = signal.signal(signal.SIGALRM, _hung)
        signal.alarm(300)
        try:
            r = run(capsys, "--root", str(root), *cmd)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        assert "internal error" not in r.err and "Traceback" not in r.err, (cmd, r.err)
        if cmd == ("list", "-f", "json"):
            assert r.code == 0 and len(json.loads(r.out)["data"]) == devices, (cmd, r.err)


@pytest.fixture
def copy(hpe_a2, tmp_path) -> Path:
    root = tmp_path / "host"
    shutil.copytree(hpe_a2, root, symlinks=True)
    return root


@pytest.mark.parametrize("kind", KINDS)
def test_every_attribute_damaged_the_same_way(capsys, copy, kind):
    dirs = _device_dirs(copy)
    for d in dirs:
        for name in _attributes(d):
            _damage(d / name, kind)
    _assert_tolerated(capsys, copy, len(dirs))


@pytest.mark.parametrize("seed", range(3))
def test_a_seeded_mix_of_damage(capsys, copy, seed):
    rng = random.Random(seed)
    dirs = _device_dirs(copy)
    for d in dirs:
        for name in _attributes(d):
            if rng.random() < 0.3:
                _damage(d / name, rng.choice(KINDS))
    _assert_tolerated(capsys, copy, len(dirs))
