"""A snapshot archive as --root: unpacked with pcipass's own checks on every Python (Debian 12's 3.11.2 has no
tarfile ``filter=``), refused when unsafe or too large, and never left behind in $TMPDIR."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from pcipass.archive import DEFAULT_MAX_UNPACKED_MIB, MAX_UNPACKED_ENV
from tests.support.cli import run

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "hpe-gen9-a2.tar.xz"


@pytest.fixture
def tmpdir_env(monkeypatch, tmp_path) -> Path:
    """$TMPDIR for the run: where an unpacked archive goes, to see that nothing stays."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches the directory it chose
    return tmp


@pytest.fixture
def python_3_11_2(monkeypatch):
    """tarfile as on Python < 3.11.4 (Debian 12's 3.11.2): no extraction filters, no ``filter=`` argument."""
    for name in ("data_filter", "tar_filter", "fully_trusted_filter"):
        monkeypatch.delattr(tarfile, name, raising=False)
    for method in ("extractall", "extract"):
        original = getattr(tarfile.TarFile, method)

        def without_filter(self, *args, _original=original, _method=method, **kwargs):
            if "filter" in kwargs:
                raise TypeError(f"TarFile.{_method}() got an unexpected keyword argument 'filter'")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(tarfile.TarFile, method, without_filter)


def _archive(path: Path, members: list[tuple[str, str, object]]) -> Path:
    """A tar.gz of (name, kind, content): kind file (bytes), dir, sym (target), hard (target), fifo, chr."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, content in members:
            info = tarfile.TarInfo(name)
            data = None
            if kind == "file":
                assert isinstance(content, bytes)
                info.size = len(content)
                data = io.BytesIO(content)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind in ("sym", "hard"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                assert isinstance(content, str)
                info.linkname = content
            else:
                info.type = tarfile.FIFOTYPE if kind == "fifo" else tarfile.CHRTYPE
            tar.addfile(info, data)
    return path


def test_example_archive_reads_without_tarfile_filters(capsys, python_3_11_2, hpe_a2):
    r = run(capsys, "--root", str(EXAMPLE), "-f", "json", "list")
    assert r.code == 0, r.err
    assert r.out == run(capsys, "--root", str(hpe_a2), "-f", "json", "list").out


def test_snapshot_round_trip_without_tarfile_filters(capsys, python_3_11_2, fake, tmp_path):
    fake.add_device("0000:00:19.0", driver="e1000e", group=5)
    fake.write("proc/cmdline", "intel_iommu=on\n")
    out = tmp_path / "bundle.tar.xz"
    assert run(capsys, "--root", str(fake.root), "snapshot", "-o", str(out)).code == 0
    original = run(capsys, "--root", str(fake.root), "-f", "json", "list").out
    assert run(capsys, "--root", str(out), "-f", "json", "list").out == original


SENTINEL = "pcipass-escape-sentinel"

UNSAFE = {
    "absolute name": ([("/tmp/" + SENTINEL, "file", b"x")], "absolute path"),
    "dotdot name": ([("sys/../../" + SENTINEL, "file", b"x")], "'..'"),
    "absolute link": ([("sys", "dir", None), ("sys/l", "sym", "/etc")], "absolute path"),
    "link out": ([("sys", "dir", None), ("sys/l", "sym", "../../..")], "points outside"),
    # Each link alone stays inside; resolved together, t climbs out of the tree.
    "chain out": ([("d1/d2/s", "sym", "../.."), ("t", "sym", "d1/d2/s/..")], "points outside"),
    "write through a link": ([("sys", "dir", None), ("l", "sym", "sys"), ("l/x", "file", b"x")], "goes through"),
    "write through a link out": ([("l", "sym", "/tmp"), ("l/" + SENTINEL, "file", b"x")], "absolute path"),
    "hard link": ([("a", "file", b"x"), ("b", "hard", "a")], "hard link"),
    "fifo": ([("sys/bus/pci/devices/x", "fifo", None)], "FIFO"),
    "device": ([("dev/sda", "chr", None)], "device node"),
    "duplicate": ([("a", "file", b"x"), ("a", "file", b"y")], "appears twice"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_unsafe_archive_is_refused_whole(capsys, python_3_11_2, tmp_path, tmpdir_env, case):
    members, why = UNSAFE[case]
    archive = _archive(tmp_path / "evil.tar.gz", members)
    r = run(capsys, "--root", str(archive), "list")
    assert r.code == 2, r.err
    assert "not a snapshot archive pcipass unpacks" in r.err and why in r.err, r.err
    assert not (Path("/tmp") / SENTINEL).exists() and not (tmp_path.parent / SENTINEL).exists()
    assert list(tmpdir_env.iterdir()) == []  # the partial tree is removed at once


def test_unpacked_size_cap_refuses_before_writing_past_it(capsys, monkeypatch, tmp_path, tmpdir_env):
    monkeypatch.setenv(MAX_UNPACKED_ENV, "1")
    chunk = os.urandom(600 << 10)
    archive = _archive(tmp_path / "big.tar.gz", [("sys/a", "file", chunk), ("sys/b", "file", chunk)])
    r = run(capsys, "--root", str(archive), "list")
    assert r.code == 2 and "more than 1 MiB" in r.err and MAX_UNPACKED_ENV in r.err, r.err
    assert list(tmpdir_env.iterdir()) == []
    monkeypatch.setenv(MAX_UNPACKED_ENV, "2")
    assert run(capsys, "--root", str(archive), "list").code == 0


def test_default_cap_refuses_a_huge_member_from_its_header(capsys, tmp_path, tmpdir_env):
    """A member announcing more than the default cap is refused from its header, before any byte of it is
    written (the archive here does not even hold the data: nothing could have been read past the header)."""
    assert DEFAULT_MAX_UNPACKED_MIB <= 256
    info = tarfile.TarInfo("sys/huge")
    info.size = (DEFAULT_MAX_UNPACKED_MIB << 20) + 1
    archive = tmp_path / "bomb.tar"
    archive.write_bytes(info.tobuf(format=tarfile.PAX_FORMAT))
    r = run(capsys, "--root", str(archive), "list")
    assert r.code == 2 and f"more than {DEFAULT_MAX_UNPACKED_MIB} MiB" in r.err, r.err
    assert list(tmpdir_env.iterdir()) == []


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "lots"])
def test_bad_cap_value_is_a_usage_error(capsys, monkeypatch, value):
    monkeypatch.setenv(MAX_UNPACKED_ENV, value)
    r = run(capsys, "--root", str(EXAMPLE), "list")
    assert r.code == 2 and MAX_UNPACKED_ENV in r.err, r.err


# The pcipass process, paused inside the unpacking once part of the tree is written (a slow disk, a large
# archive): it tells the test so by creating the file READY, then waits for the signal.
_PAUSED = """
import os, sys, time, tarfile
ready = sys.argv.pop(1)
original = tarfile.TarFile.extractfile
def slow(self, member):
    if member.name.endswith("/vendor"):
        open(ready, "w").close()
        time.sleep(60)
    return original(self, member)
tarfile.TarFile.extractfile = slow
from pcipass.cli import main
main()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_unpacking_removes_the_tree(tmp_path, tmpdir_env, sig):
    ready = tmp_path / "ready"
    env = dict(os.environ, TMPDIR=str(tmpdir_env))
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED, str(ready), "--root", str(EXAMPLE), "list"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the run never reached the unpacking"
            time.sleep(0.05)
        assert len(list(tmpdir_env.iterdir())) == 1  # the partial tree
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig if sig == signal.SIGTERM else proc.returncode == 130
    assert list(tmpdir_env.iterdir()) == []
