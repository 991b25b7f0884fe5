"""State file, lock, crash recovery (kill -9) and ``status``."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pcipass.engine.state import Lock, StateError, StateStore
from pcipass.errors import ExitCode, LockBusy
from tests.support import bind_hosts as bh
from tests.support.bind_hosts import _never_the_real_sys, env  # noqa: F401 - fixtures
from tests.support.fakekernel import Killed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- state file ---------------------------------------------------------------------------------------------------
def test_state_is_root_only_and_written_atomically(env):
    env.enable(bh.E1000E)
    d = env.root / bh.STATE
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "state.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((d / "lock").stat().st_mode) == 0o600
    assert sorted(p.name for p in d.iterdir()) == ["lock", "state.json"]  # no temporary file left
    doc = json.loads((d / "state.json").read_text())
    assert doc["version"] == 1 and set(doc["devices"]) == {bh.E1000E}


def test_original_driver_is_recorded_before_the_first_write(env):
    seen = []
    write = env.kernel.write

    def spy(path, value, **kw):
        seen.append(env.state().get(bh.E1000E))
        write(path, value, **kw)

    env.kernel.write = spy
    env.enable(bh.E1000E)
    assert seen[0]["original_driver"] == "e1000e" and seen[0]["phase"] == "enabling"


def test_corrupt_state_file_is_a_clear_error_and_nothing_is_written(env):
    (env.root / bh.STATE).mkdir(parents=True)
    (env.root / bh.STATE / "state.json").write_text("{not json")
    r = None
    with pytest.raises(StateError) as exc:
        r = env.enable(bh.E1000E)
    assert r is None and "state.json" in exc.value.message and exc.value.remedy
    assert env.kernel.writes == []


def test_state_round_trips(env):
    env.enable(bh.MF0, move_group=True)
    store = StateStore(env.host)
    records = store.load()
    store.save(records)
    assert store.load() == records


# --- lock ----------------------------------------------------------------------------------------------------------
def test_second_run_waits_then_fails_clearly(env):
    waits = []
    with Lock(env.host, wait=0, command="enable 0000:00:05.0"):
        t0 = time.monotonic()
        with pytest.raises(LockBusy) as exc:
            env.enable(bh.E1000E, lock_wait=0.4, on_lock_wait=waits.append)
        assert time.monotonic() - t0 >= 0.4
    assert exc.value.exit_code is ExitCode.FAILED
    assert f"pid {os.getpid()}: pcipass enable 0000:00:05.0" in exc.value.message
    assert waits and "waiting up to 0.4 s" in waits[0]
    assert env.kernel.writes == []


def test_second_run_proceeds_when_the_first_finishes(env):
    lock = Lock(env.host, wait=0, command="enable").__enter__()
    threading.Timer(0.3, lock.__exit__, (None, None, None)).start()
    r = env.enable(bh.E1000E, lock_wait=5)
    assert r.exit_code is ExitCode.OK
    assert any("waited" in m for m in r.messages)


def test_concurrent_runs_are_serialized(env):
    """Two threads enabling different devices: never two transactions at once."""
    active, overlap = [0], []
    write = env.kernel.write

    def slow(path, value, **kw):
        active[0] += 1
        overlap.append(active[0])
        time.sleep(0.02)
        write(path, value, **kw)
        active[0] -= 1

    env.kernel.write = slow
    env.kernel.preload("vfio_pci")
    results = {}
    threads = [
        threading.Thread(target=lambda a=a: results.__setitem__(a, env.enable(a, lock_wait=10)))
        for a in (bh.E1000E, bh.AUDIO)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {a: r.exit_code for a, r in results.items()} == {bh.E1000E: ExitCode.OK, bh.AUDIO: ExitCode.OK}
    assert max(overlap) == 1
    assert set(env.state()) == {bh.E1000E, bh.AUDIO}


def test_lock_of_a_killed_holder_is_free(env, tmp_path):
    """flock dies with its holder: kill -9 never leaves a stale lock."""
    (env.root / bh.STATE).mkdir(parents=True, mode=0o700)
    lock = env.root / bh.STATE / "lock"
    code = textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(LockBusy):
            env.enable(bh.E1000E, lock_wait=0.2)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert env.enable(bh.E1000E, lock_wait=0.2).exit_code is ExitCode.OK


# --- crash recovery ------------------------------------------------------------------------------------------------
KILL_POINTS = [("enable-one", i) for i in range(3)] + [("enable-group", i) for i in range(6)]


def _kill(env, name, index):
    env.kernel.preload("vfio_pci")
    before = env.digest()
    env.kernel.kill_at = index
    with pytest.raises(Killed):
        if name == "enable-one":
            env.enable(bh.E1000E)
        else:
            env.enable(bh.MF0, move_group=True)
    env.kernel.kill_at = None
    return before


@pytest.mark.parametrize("name,index", KILL_POINTS, ids=[f"{n}-write{i}" for n, i in KILL_POINTS])
def test_killed_enable_is_reported_then_undone_by_disable(env, name, index):
    before = _kill(env, name, index)
    devices = [bh.E1000E] if name == "enable-one" else [bh.MF0, bh.MF1]
    st = env.status()
    assert {d.address for d in st.devices if d.interrupted} == set(devices)
    assert all(d.recorded_driver for d in st.devices if d.interrupted)
    assert any("died before finishing" in m and "pcipass disable" in m for m in st.messages)
    r = env.disable(*devices)
    assert r.exit_code is ExitCode.OK
    assert {x.address for x in r.interrupted} == set(devices)
    assert env.digest() == before and env.state() == {}


@pytest.mark.parametrize("name,index", KILL_POINTS, ids=[f"{n}-write{i}" for n, i in KILL_POINTS])
def test_killed_enable_is_completed_by_enable(env, name, index):
    before = _kill(env, name, index)
    r = env.enable(bh.E1000E) if name == "enable-one" else env.enable(bh.MF0, move_group=True)
    assert r.exit_code is ExitCode.OK and r.interrupted
    devices = [bh.E1000E] if name == "enable-one" else [bh.MF0, bh.MF1]
    assert all(env.driver(a) == "vfio-pci" for a in devices)
    originals = {bh.E1000E: "e1000e", bh.MF0: "virtio-pci", bh.MF1: "e1000"}
    assert {a: env.state()[a]["original_driver"] for a in devices} == {a: originals[a] for a in devices}
    assert env.disable(*devices).exit_code is ExitCode.OK
    assert env.digest() == before


def test_killed_disable_is_completed_by_disable(env):
    env.kernel.preload("vfio_pci")
    before = env.digest()
    env.enable(bh.E1000E)
    env.kernel.kill_at = len(env.kernel.writes) + 1  # after the unbind from vfio-pci, before the override
    with pytest.raises(Killed):
        env.disable(bh.E1000E)
    env.kernel.kill_at = None
    assert env.driver(bh.E1000E) is None
    st = env.status(bh.E1000E)
    assert st.devices[0].interrupted and st.devices[0].phase == "disabling"
    assert env.disable(bh.E1000E).exit_code is ExitCode.OK
    assert env.digest() == before


def test_real_kill_9_during_enable_then_recovery(env, tmp_path):
    """A real process killed with SIGKILL in the middle of a group, then recovered by the next run."""
    env.kernel.preload("vfio_pci")
    before = env.digest()
    marker = tmp_path / "stopped"
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {REPO!r})
        from pathlib import Path
        from pcipass import engine
        from pcipass.host import Host
        from tests.support.fakehost import FakeHost
        from tests.support.fakekernel import FakeKernel
        fake = FakeHost(Path({str(env.root)!r}))
        fake.devices = {{a: type("D", (), {{"path": Path({str(env.root)!r}) / "sys/bus/pci/devices" / a}})()
                        for a in {sorted(env.fake.devices)!r}}}
        kernel = FakeKernel(fake)
        kernel.default.update({env.kernel.default!r})
        write = kernel.write
        def write_then_stop(path, value, **kw):
            write(path, value, **kw)
            if len(kernel.writes) == 4:  # MF0 bound to vfio-pci, MF1's override written
                Path({str(marker)!r}).write_text("x")
                time.sleep(60)
        kernel.write = write_then_stop
        engine.enable(Host({str(env.root)!r}), [{bh.MF0!r}], move_group=True, kernel=kernel)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert p.poll() is None and time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert env.driver(bh.MF0) == "vfio-pci" and env.override(bh.MF1) == "vfio-pci"
    st = env.status()
    assert {d.address for d in st.devices if d.interrupted} == {bh.MF0, bh.MF1}
    r = env.disable(bh.MF0, bh.MF1, lock_wait=0.5)  # the dead child's lock is gone
    assert r.exit_code is ExitCode.OK
    assert env.digest() == before and env.state() == {}


# --- status ----------------------------------------------------------------------------------------------------------
def test_status_of_an_enabled_device(env):
    env.enable(bh.E1000E)
    (d,) = env.status().devices
    assert (d.address, d.driver, d.driver_override, d.recorded_driver, d.phase, d.interrupted) == (
        bh.E1000E,
        "vfio-pci",
        "vfio-pci",
        "e1000e",
        "enabled",
        False,
    )
    assert (d.group_verdict, d.vfio_viable) == ("ready", True)


def test_status_of_a_device_bound_outside_pcipass(env):
    env.fake.bind(bh.MF1, "vfio-pci")
    env.kernel._bind(bh.MF1, "vfio-pci")
    (d,) = env.status().devices
    assert (d.address, d.recorded_known, d.phase, d.group_verdict, d.vfio_viable) == (
        bh.MF1,
        None,
        None,
        "bindable",
        False,
    )


def test_status_of_named_devices_and_unknown_address(env):
    st = env.status(bh.AUDIO, "0000:00:1f.7")
    assert [d.address for d in st.devices] == [bh.AUDIO]
    assert st.devices[0].vfio_viable is None and st.errors[0].code == "not-found"


def test_status_writes_nothing(env):
    env.enable(bh.E1000E)
    before = env.digest(with_state=True)
    env.status()
    assert env.digest(with_state=True) == before
