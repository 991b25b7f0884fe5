"""A --root tree that is not the running system may be hostile: no write leaves it, whatever links it holds,
and no name read from it (or from the state file) becomes a path that leaves it."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from pcipass import engine
from pcipass.beneath import open_beneath
from pcipass.errors import ExitCode, Refused
from tests.support import bind_hosts as bh
from tests.support.bind_hosts import _never_the_real_sys, env  # noqa: F401 - fixtures
from tests.support.cli import run


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory beside the root, with a file a link in the root points to."""
    out = tmp_path / "outside"
    out.mkdir(mode=0o755)
    out.chmod(0o755)
    (out / "victim").write_text("keep\n")
    return out


def _untouched(outside: Path) -> None:
    assert (outside / "victim").read_text() == "keep\n"
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert stat.S_IMODE(outside.stat().st_mode) == 0o755


# --- the walk itself ------------------------------------------------------------------------------------------
def test_open_beneath_follows_links_that_stay_inside(tmp_path):
    root = tmp_path / "root"
    (root / "sys/devices/pci0000:00/0000:00:02.0").mkdir(parents=True)
    (root / "sys/devices/pci0000:00/0000:00:02.0/driver_override").write_text("")
    (root / "sys/bus/pci/devices").mkdir(parents=True)
    os.symlink("../../../devices/pci0000:00/0000:00:02.0", root / "sys/bus/pci/devices/0000:00:02.0")
    fd = open_beneath(str(root), str(root / "sys/bus/pci/devices/0000:00:02.0/driver_override"), os.O_WRONLY)
    os.write(fd, b"vfio-pci")
    os.close(fd)
    assert (root / "sys/devices/pci0000:00/0000:00:02.0/driver_override").read_text() == "vfio-pci"


@pytest.mark.parametrize(
    "link, target, path",
    [
        ("a", "/etc", "a/passwd"),  # absolute
        ("a", "../outside", "a/victim"),  # relative, out
        ("d1/d2/s", "../..", "t/outside/victim"),  # each link stays in; together they climb out (t below)
        ("a", "../outside/victim", "a"),  # the last component
    ],
)
def test_open_beneath_refuses_links_leaving_the_root(tmp_path, outside, link, target, path):
    root = tmp_path / "root"
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, root / link)
    os.symlink("d1/d2/s/..", root / "t")
    with pytest.raises(OSError) as exc:
        open_beneath(str(root), str(root / path), os.O_WRONLY)
    assert exc.value.errno == errno.EXDEV
    _untouched(outside)


def test_open_beneath_refuses_dotdot_above_the_root(tmp_path, outside):
    (tmp_path / "root/sys").mkdir(parents=True)
    with pytest.raises(OSError) as exc:
        open_beneath(str(tmp_path / "root"), "sys/../../outside/victim", os.O_WRONLY)
    assert exc.value.errno == errno.EXDEV


# --- the engine's writes --------------------------------------------------------------------------------------
def _enable_cli(capsys, env, *extra):
    return run(capsys, "--root", str(env.root), "enable", "--timeout", "0.3", *extra, bh.E1000E)


def test_lock_link_out_is_refused(capsys, env, outside):
    state = env.root / "run/pcipass"
    state.mkdir(parents=True)
    os.symlink(outside / "victim", state / "lock")
    r = _enable_cli(capsys, env)
    assert r.code == ExitCode.REFUSED, r.err
    assert str(state / "lock") in r.err
    _untouched(outside)


def test_state_dir_link_out_is_refused(capsys, env, outside):
    (env.root / "run").mkdir(exist_ok=True)
    os.symlink(outside, env.root / "run/pcipass")
    r = _enable_cli(capsys, env)
    assert r.code == ExitCode.REFUSED and "outside the root" in r.err, r.err
    assert str(env.root / "run/pcipass") in r.err
    _untouched(outside)


def test_state_file_link_out_is_not_followed(env, outside):
    """state.json a link out: the atomic rename replaces the link itself, the target is never written."""
    state = env.root / "run/pcipass"
    state.mkdir(parents=True)
    os.symlink(outside / "victim", state / "state.json")
    with pytest.raises(Refused):  # reading it already leaves the root
        env.enable(bh.E1000E)
    _untouched(outside)


@pytest.mark.parametrize("attr", ["sys/bus/pci/drivers_probe", "sys/devices/pci0000:00/0000:00:02.0/driver_override"])
def test_attribute_link_out_is_refused_and_rolled_back(env, outside, attr):
    env.fake.add_driver("vfio-pci", module="vfio_pci")
    path = env.root / attr
    path.unlink()
    os.symlink(outside / "victim", path)
    r = engine.enable(env.host, [bh.E1000E], timeout=0.3, lock_wait=1)  # the real writer (SysfsKernel)
    assert r.exit_code is ExitCode.REFUSED, r.errors
    err = r.errors[0]
    # The path as written (a device's attributes through its bus link) and the root it leaves.
    assert isinstance(err, Refused) and err.errno == errno.EXDEV
    assert err.path.startswith(str(env.root)) and err.path.endswith(attr.rsplit("/", 1)[1])
    assert r.devices[0].rolled_back is True
    _untouched(outside)


def test_fifo_attribute_is_refused_without_blocking(env):
    env.fake.add_driver("vfio-pci", module="vfio_pci")
    probe = env.root / "sys/bus/pci/drivers_probe"
    probe.unlink()
    os.mkfifo(probe)
    r = engine.enable(env.host, [bh.E1000E], timeout=5, lock_wait=1)
    assert r.exit_code is ExitCode.REFUSED and "not a regular file" in r.errors[0].message


def test_recorded_driver_that_is_a_path_is_refused(capsys, env, outside):
    assert env.enable(bh.E1000E).exit_code is ExitCode.OK
    path = env.root / bh.STATE / "state.json"
    doc = json.loads(path.read_text())
    doc["devices"][bh.E1000E]["original_driver"] = "../../../../../outside"
    path.write_text(json.dumps(doc))
    before = env.digest()
    r = run(capsys, "--root", str(env.root), "disable", bh.E1000E)
    assert r.code == ExitCode.FAILED and str(path) in r.err and "not a driver name" in r.err, r.err
    assert env.digest() == before
    _untouched(outside)


def test_driver_link_named_dotdot_is_no_driver_name(env):
    """A tree whose device's driver link ends in '..': enable would record it and plan its bind as undo."""
    link = env.root / "sys/devices/pci0000:00/0000:00:02.0/driver"
    link.unlink()
    os.symlink("../../../bus/pci/drivers/..", link)
    before = env.digest()
    with pytest.raises(Refused) as exc:
        env.enable(bh.E1000E)
    assert "not a driver name" in exc.value.message
    assert env.kernel.writes == [] and env.digest() == before and env.state() == {}


# --- the state file: every name and value checked, damage is a clear error naming the file ----------------------
_GOOD = {
    "original_driver": "e1000e",
    "original_override": None,
    "target": "vfio-pci",
    "group": 1,
    "phase": "enabled",
    "pid": 1,
    "since": "2026-01-01T00:00:00Z",
    "known": True,
}
CORRUPT = {
    "invalid utf-8": b'{"version": 1, "devices": {"0000:00:02.0": {"original_driver": "\xff"}}}',
    "not json": b"{",
    "a list": b"[]",
    "devices a list": json.dumps({"version": 1, "devices": []}).encode(),
    "key a path": json.dumps({"version": 1, "devices": {"../../x": _GOOD}}).encode(),
    "key not canonical": json.dumps({"version": 1, "devices": {"00:02.0": _GOOD}}).encode(),
    "pid a string": json.dumps({"version": 1, "devices": {bh.E1000E: {**_GOOD, "pid": "1"}}}).encode(),
    "pid true": json.dumps({"version": 1, "devices": {bh.E1000E: {**_GOOD, "pid": True}}}).encode(),
    "group a list": json.dumps({"version": 1, "devices": {bh.E1000E: {**_GOOD, "group": [1]}}}).encode(),
    "driver a number": json.dumps({"version": 1, "devices": {bh.E1000E: {**_GOOD, "original_driver": 5}}}).encode(),
    "target a path": json.dumps({"version": 1, "devices": {bh.E1000E: {**_GOOD, "target": "a/b"}}}).encode(),
    "record missing a key": json.dumps({"version": 1, "devices": {bh.E1000E: {"phase": "enabled"}}}).encode(),
}


@pytest.mark.parametrize("case", list(CORRUPT))
@pytest.mark.parametrize("command", [("status",), ("disable", bh.E1000E)])
def test_corrupt_state_file_is_a_clear_error(capsys, env, case, command):
    path = env.root / bh.STATE / "state.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(CORRUPT[case])
    before = env.digest()
    r = run(capsys, "--root", str(env.root), *command)
    assert r.code == ExitCode.FAILED, r.err
    assert f"the state file {path} is not pcipass state" in r.err and "internal error" not in r.err, r.err
    assert env.digest() == before


def test_state_file_fifo_is_damage_not_a_hang(capsys, env):
    path = env.root / bh.STATE / "state.json"
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    r = run(capsys, "--root", str(env.root), "status")
    assert r.code == ExitCode.FAILED and "not a regular file" in r.err, r.err
