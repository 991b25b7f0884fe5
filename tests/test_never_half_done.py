"""Never half-done, whatever the option values and whatever fails: bad --timeout values are usage errors
before anything is read, any exception after the first write still rolls the group back, and the record of
a device that disappeared is reported once, kept aside and cleared by disable."""

from __future__ import annotations

import json
import math
import os
import stat

import pytest

from pcipass.engine.kernel import MAX_TIMEOUT
from pcipass.errors import ExitCode, UsageError
from tests.support import bind_hosts as bh
from tests.support.bind_hosts import _never_the_real_sys, env  # noqa: F401 - fixtures
from tests.support.cli import run, run_unprivileged
from tests.support.fakekernel import Killed


def outcomes(report) -> dict[str, str]:
    return {d.address: d.outcome.value for d in report.devices}


@pytest.mark.parametrize("value", ["inf", "nan", "1e10", "-1", "0", "-inf", str(MAX_TIMEOUT + 1)])
@pytest.mark.parametrize("command", ["enable", "disable"])
def test_bad_timeout_is_a_usage_error_before_anything_is_read(capsys, env, monkeypatch, value, command):
    import pcipass.engine.ops as ops
    import pcipass.engine.planner as planner

    def no_reading(*_a, **_k):
        raise AssertionError("the host was read")

    monkeypatch.setattr(planner, "scan_for", no_reading)
    monkeypatch.setattr(ops, "preflight", no_reading)
    before = env.digest(with_state=True)
    r = run(capsys, "--root", str(env.root), command, f"--timeout={value}", bh.E1000E)
    assert r.code == ExitCode.USAGE and "--timeout" in r.err, r.err
    assert env.digest(with_state=True) == before


@pytest.mark.parametrize("value", [math.inf, math.nan, 1e10, -1.0, 0.0])
def test_bad_timeout_in_the_library(env, value):
    for call in (env.enable, env.disable):
        with pytest.raises(UsageError):
            call(bh.E1000E, timeout=value)
    with pytest.raises(UsageError):
        env.enable(bh.E1000E, lock_wait=value)
    assert env.kernel.writes == []


def _blow_up_at(env, monkeypatch, index: int, exc: BaseException) -> None:
    write = env.kernel.write

    def write_or_raise(path, value, **kw):
        if len(env.kernel.writes) == index:
            env.kernel.writes.append(("(raised)", value))
            raise exc
        return write(path, value, **kw)

    monkeypatch.setattr(env.kernel, "write", write_or_raise)


@pytest.mark.parametrize("index", [1, 2])
def test_unexpected_exception_after_a_write_rolls_the_group_back(env, monkeypatch, index):
    """Not a PcipassError (an OverflowError, a bug): the group is still put back and the state restored."""
    env.kernel.preload("vfio_pci")
    before = env.digest()
    _blow_up_at(env, monkeypatch, index, OverflowError("timestamp out of range"))
    r = env.enable(bh.E1000E)
    assert r.exit_code is ExitCode.FAILED and "OverflowError" in r.errors[0].message
    assert r.devices[0].rolled_back is True
    assert env.digest() == before and env.state() == {}


@pytest.mark.parametrize("signal_exc", [KeyboardInterrupt(), SystemExit(143)])
def test_ctrl_c_or_sigterm_after_a_write_rolls_back_then_ends_the_run(env, monkeypatch, signal_exc):
    env.kernel.preload("vfio_pci")
    before = env.digest()
    _blow_up_at(env, monkeypatch, 2, signal_exc)
    with pytest.raises(type(signal_exc)):
        env.enable(bh.E1000E, bh.VIRTIO)  # two groups: the second is never begun
    assert env.digest() == before and env.state() == {}
    assert not [w for w in env.kernel.writes if bh.VIRTIO in w[0] or w[1] == bh.VIRTIO]


def _leave_a_gone_record(env) -> None:
    """A group in flight (the run died: kill -9) whose second device is then hot-unplugged."""
    env.kernel.preload("vfio_pci")
    env.kernel.kill_at = 4  # at MF1's unbind, its override written
    with pytest.raises(Killed):
        env.enable(bh.MF0, move_group=True)
    env.kernel.kill_at = None
    assert {a: r["phase"] for a, r in env.state().items()} == {bh.MF0: "enabling", bh.MF1: "enabling"}
    env.kernel._remove(bh.MF1)


def test_record_of_a_gone_device_is_reported_once_and_cleared_by_disable(capsys, env):
    _leave_a_gone_record(env)
    r = env.enable(bh.E1000E)
    assert [m for m in r.messages if bh.MF1 in m and "gone" in m], r.messages
    assert not [m for m in r.messages if bh.MF1 in m and "died" in m]
    assert env.state()[bh.MF1]["phase"] == "gone"
    r = env.enable(bh.E1000E)  # the next run: not said again
    assert not [m for m in r.messages if bh.MF1 in m]
    st = env.status()
    assert {d.address: d.phase for d in st.devices}[bh.MF1] == "gone"
    r = run(capsys, "--root", str(env.root), "disable", bh.MF1)
    assert r.code == ExitCode.OK, r.err
    assert bh.MF1 not in env.state() and env.state()[bh.MF0]["phase"] == "enabling"
    r = env.disable(bh.MF0)
    assert r.exit_code is ExitCode.OK and set(env.state()) == {bh.E1000E}


def test_gone_record_is_not_a_run_that_died_for_a_dry_run(env):
    _leave_a_gone_record(env)
    r = env.enable(bh.E1000E, dry_run=True)
    assert [m for m in r.messages if bh.MF1 in m and "gone" in m]
    assert bh.MF1 not in {rec.address for rec in r.interrupted}
    assert env.state()[bh.MF1]["phase"] == "enabling"  # a dry run writes nothing


# --- a non-root user reads: status and dry runs run without the root-only state ---------------------------------
def test_non_root_status_and_dry_run_without_the_state(env):
    assert env.enable(bh.E1000E).exit_code is ExitCode.OK  # as root: /run/pcipass (0700) and its state
    state = env.root / bh.STATE
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    # Another owner than this process's uid (0 when the tests run as root): then only the mode bits decide.
    os.chown(state, 65534, 65534)
    p = run_unprivileged("--root", str(env.root), "-f", "json", "status", bh.E1000E)
    assert p.returncode == 0, p.stderr
    assert "cannot read the state file" in p.stderr and "unknown" in p.stderr
    (dev,) = json.loads(p.stdout)["data"]
    assert dev["phase"] == "unknown" and dev["recorded_driver"] is None and dev["driver"] == "vfio-pci"
    p = run_unprivileged("--root", str(env.root), "enable", "--dry-run", bh.VIRTIO)
    assert p.returncode == 0, p.stderr
    assert "cannot read the state file" in p.stderr and "planned" in p.stdout
