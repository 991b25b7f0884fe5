"""Running plans against the fake kernel: round trips, idempotence, modules, and rollback at every failure point."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from pcipass.engine import Outcome
from pcipass.errors import ExitCode
from tests.support import bind_hosts as bh
from tests.support.bind_hosts import _never_the_real_sys, env  # noqa: F401 - fixtures


def outcomes(report) -> dict[str, str]:
    return {d.address: d.outcome.value for d in report.devices}


# --- round trips ------------------------------------------------------------------------------------------------
def test_enable_disable_round_trip(env):
    before = env.digest()
    r = env.enable(bh.E1000E)
    assert r.exit_code is ExitCode.OK and outcomes(r) == {bh.E1000E: "done"}
    assert env.driver(bh.E1000E) == "vfio-pci" and env.override(bh.E1000E) == "vfio-pci"
    assert (env.root / "dev/vfio/1").exists()
    assert env.kernel.loaded == ["vfio_pci"]
    rec = env.state()[bh.E1000E]
    assert (rec["original_driver"], rec["original_override"], rec["phase"]) == ("e1000e", None, "enabled")
    assert r.steps[-1].detail == "the kernel reports the group viable"
    assert r.wait == "immediate"  # the PCI core probes synchronously inside the drivers_probe write
    r = env.disable(bh.E1000E)
    assert r.exit_code is ExitCode.OK and outcomes(r) == {bh.E1000E: "done"}
    assert env.driver(bh.E1000E) == "e1000e" and env.override(bh.E1000E) is None
    assert env.state() == {}
    # Exactly as before, except what loading vfio-pci created (its driver and module, /dev/vfio/vfio).
    after = env.digest()
    assert {k for k in after.keys() - before.keys()} == {
        k for k in after if k.startswith(("sys/bus/pci/drivers/vfio-pci", "sys/module/vfio_pci", "dev/vfio/"))
    }
    assert not (env.root / "dev/vfio/1").exists()
    assert {k: v for k, v in after.items() if k in before} == before


def test_asynchronous_bind_is_awaited(env):
    env.kernel.probe_delay[bh.E1000E] = 0.1
    r = env.enable(bh.E1000E, timeout=2)
    assert r.exit_code is ExitCode.OK and r.wait == "poll"  # a fake root: no uevents to listen to
    assert [s.detail for s in r.steps if s.step.op.value == "wait"] == ["bound (poll)"]


def test_group_round_trip_binds_all_then_restores_all(env):
    r = env.enable(bh.MF0, move_group=True)
    assert outcomes(r) == {bh.MF0: "done", bh.MF1: "done"}
    assert env.driver(bh.MF0) == env.driver(bh.MF1) == "vfio-pci"
    assert set(env.state()) == {bh.MF0, bh.MF1}
    r = env.disable(bh.MF0, bh.MF1)
    assert outcomes(r) == {bh.MF0: "done", bh.MF1: "done"}
    assert (env.driver(bh.MF0), env.driver(bh.MF1)) == ("virtio-pci", "e1000")


def test_bridge_stays_on_its_driver(env):
    env.fake.bind(bh.PCI_BRIDGE, "shpchp")
    env.kernel.default[bh.PCI_BRIDGE] = "shpchp"
    r = env.enable(bh.BR_RTL, move_group=True)
    assert outcomes(r) == {bh.BR_RTL: "done", bh.BR_E1000: "done"}
    assert env.driver(bh.PCI_BRIDGE) == "shpchp"
    assert not [w for w in env.kernel.writes if bh.PCI_BRIDGE in w[0] or w[1] == bh.PCI_BRIDGE]


def test_enable_is_idempotent(env):
    env.enable(bh.E1000E)
    env.kernel.writes.clear()
    r = env.enable(bh.E1000E)
    assert outcomes(r) == {bh.E1000E: "unchanged"} and r.exit_code is ExitCode.OK
    assert env.kernel.writes == []


def test_device_bound_to_vfio_at_boot_is_unchanged(env):
    env.fake.bind(bh.UNBOUND, "vfio-pci")
    assert outcomes(env.enable(bh.UNBOUND)) == {bh.UNBOUND: "unchanged"}
    assert env.kernel.writes == [] and env.state() == {}


def test_disable_of_a_host_device_is_unchanged(env):
    r = env.disable(bh.E1000E)
    assert outcomes(r) == {bh.E1000E: "unchanged"} and r.exit_code is ExitCode.OK
    assert env.kernel.writes == []


def test_disable_unrecorded_device_gets_the_kernels_choice(env):
    env.fake.bind(bh.UNBOUND, "vfio-pci")
    env.kernel.default[bh.UNBOUND] = "e1000e"
    r = env.disable(bh.UNBOUND)
    assert outcomes(r) == {bh.UNBOUND: "done"} and env.driver(bh.UNBOUND) == "e1000e"


def test_disable_when_vfio_pci_ids_grabs_it_again_fails_cleanly(env):
    env.fake.bind(bh.UNBOUND, "vfio-pci")
    env.kernel.default[bh.UNBOUND] = "vfio-pci"  # what vfio-pci.ids= on the command line does
    r = env.disable(bh.UNBOUND)
    assert r.exit_code is ExitCode.FAILED and "vfio-pci.ids" in r.errors[0].remedy
    assert env.driver(bh.UNBOUND) == "vfio-pci" and r.devices[0].rolled_back is True


def test_disable_binds_the_recorded_driver_when_the_kernel_picks_another(env):
    env.enable(bh.E1000E)
    env.fake.add_driver("igb")
    env.kernel.default[bh.E1000E] = "igb"  # e.g. a newer driver claiming the id since
    r = env.disable(bh.E1000E)
    assert r.exit_code is ExitCode.OK and env.driver(bh.E1000E) == "e1000e"
    assert [s.status for s in r.steps if s.step.condition and "another driver" in s.step.condition] == ["done"]


def test_originally_unbound_device_is_left_unbound(env):
    env.kernel.default[bh.UNBOUND] = "e1000e"
    env.enable(bh.UNBOUND)
    assert env.driver(bh.UNBOUND) == "vfio-pci"
    r = env.disable(bh.UNBOUND)
    assert r.exit_code is ExitCode.OK and env.driver(bh.UNBOUND) is None


def test_original_override_is_restored(env):
    (env.fake.devices[bh.AUDIO].path / "driver_override").write_text("snd_hda_intel\n")
    env.enable(bh.AUDIO)
    env.disable(bh.AUDIO)
    assert env.override(bh.AUDIO) == "snd_hda_intel" and env.driver(bh.AUDIO) == "snd_hda_intel"


def test_driver_auto_binds_the_variant(env):
    r = env.enable(bh.VIRTIO, driver="auto", force=True)
    assert r.exit_code is ExitCode.OK and env.driver(bh.VIRTIO) == "virtio_vfio_pci"
    assert env.kernel.loaded == ["virtio_vfio_pci"]
    assert outcomes(env.enable(bh.VIRTIO, driver="auto")) == {bh.VIRTIO: "unchanged"}


def test_pci_stub_binding(env):
    r = env.enable(bh.E1000E, driver="pci-stub")
    assert r.exit_code is ExitCode.OK and env.driver(bh.E1000E) == "pci-stub"
    assert not (env.root / "dev/vfio/1").exists()


def test_module_already_registered_is_not_loaded(env):
    env.kernel.preload("vfio_pci")
    env.enable(bh.E1000E)
    assert env.kernel.loaded == []


def test_blacklisted_vfio_pci_is_a_clear_error(env):
    env.fake.write("etc/modprobe.d/no-vfio.conf", "# keep it off\nblacklist vfio_pci\n")
    r = env.enable(bh.E1000E)
    assert r.exit_code is ExitCode.FAILED and env.kernel.writes == [] and env.kernel.loaded == []
    err = r.errors[0]
    assert err.code == "module" and "blacklisted" in err.message and "/etc/modprobe.d/no-vfio.conf:2" in err.message
    assert "modprobe vfio_pci" in err.remedy


def test_missing_module_is_a_clear_error(env):
    env.fake.write(f"lib/modules/{bh.KVER}/modules.dep", "kernel/drivers/x/e1000e.ko:\n")
    r = env.enable(bh.E1000E)
    assert r.exit_code is ExitCode.FAILED and "does not exist for kernel" in r.errors[0].message
    assert env.kernel.writes == []


def test_without_module_index_the_load_is_planned(env):
    """No modules.dep to look vfio_pci up in (a recorded tree): plan the load and let modprobe judge."""
    import shutil

    shutil.rmtree(env.root / "lib/modules")
    r = env.enable(bh.E1000E, dry_run=True)
    assert r.exit_code is ExitCode.OK, r.errors
    assert (r.steps[0].step.op.value, r.steps[0].step.value, r.steps[0].status) == (
        "load-module",
        "vfio_pci",
        "planned",
    )


def test_module_load_failure_fails_the_groups_that_need_it_and_writes_nothing(env):
    env.kernel.module_fail.add("vfio_pci")
    r = env.enable(bh.E1000E, bh.AUDIO)
    assert outcomes(r) == {bh.E1000E: "failed", bh.AUDIO: "failed"} and r.exit_code is ExitCode.FAILED
    assert env.kernel.writes == [] and env.state() == {}
    assert r.devices[0].rolled_back is None  # nothing to roll back: nothing was written


def test_disable_reloads_the_original_driver_module(env):
    env.enable(bh.BR_RTL, move_group=True)
    import shutil

    shutil.rmtree(env.root / "sys/bus/pci/drivers/8139cp")  # rmmod 8139cp meanwhile
    r = env.disable(bh.BR_RTL, bh.BR_E1000)
    assert r.exit_code is ExitCode.OK and env.kernel.loaded[-1] == "8139cp"
    assert env.driver(bh.BR_RTL) == "8139cp"


def test_disable_refuses_while_a_vm_holds_the_group(env, monkeypatch):
    """A holder pcipass cannot see in /proc: the kernel's EBUSY on opening the group tells."""
    from pcipass.engine.vfio import VfioGroupStatus

    env.enable(bh.E1000E)
    monkeypatch.setattr(
        env.kernel, "vfio_status", lambda g: VfioGroupStatus(g, None, True, "open by another process (a running VM?)")
    )
    env.kernel.writes.clear()
    r = env.disable(bh.E1000E)
    assert r.exit_code is ExitCode.REFUSED and "open by another process" in r.devices[0].reasons[0]
    assert env.kernel.writes == []


def _holds(env, pid: int, comm: str, node: str) -> None:
    """Process ``pid`` has ``node`` (under the root's dev/) open: an absolute fd link, as the kernel shows it."""
    env.fake.write(f"proc/{pid}/comm", comm + "\n")
    (env.root / f"proc/{pid}/fd").mkdir(parents=True, exist_ok=True)
    os.symlink(env.root / "dev" / node, env.root / f"proc/{pid}/fd/{17 + pid % 7}")


def test_holders_of_a_group_are_named_and_the_group_is_not_opened(env, monkeypatch):
    env.enable(bh.E1000E)
    group = env.status(bh.E1000E).devices[0].group
    _holds(env, 4242, "qemu-system-x86", f"vfio/{group}")
    _holds(env, 99, "bash", "vfio/999")  # another group's node: not a holder of this one
    monkeypatch.setattr(env.kernel, "vfio_status", lambda g: pytest.fail("opened a group a process holds"))
    (st,) = env.status(bh.E1000E).devices
    assert (st.vfio_viable, st.vfio_detail) == (None, "open by qemu-system-x86 (pid 4242)")
    env.kernel.writes.clear()
    r = env.disable(bh.E1000E)
    assert r.exit_code is ExitCode.REFUSED and env.kernel.writes == []
    assert r.devices[0].reasons == (
        f"IOMMU group {group} is open by qemu-system-x86 (pid 4242): unbinding would block until it lets go",
    )


def test_an_iommufd_user_of_a_member_cdev_holds_the_group(env, monkeypatch):
    """QEMU with iommufd opens the device's /dev/vfio/devices/vfioN, not the group node."""
    env.enable(bh.E1000E)
    env.fake.write(f"sys/bus/pci/devices/{bh.E1000E}/vfio-dev/vfio3/dev", "237:3\n")
    _holds(env, 7, "qemu-system-x86", "vfio/devices/vfio3")
    _holds(env, 12, "qemu-system-x86", "vfio/devices/vfio3")
    monkeypatch.setattr(env.kernel, "vfio_status", lambda g: pytest.fail("opened a group a process holds"))
    (st,) = env.status(bh.E1000E).devices
    assert st.vfio_detail == "open by qemu-system-x86 (pid 7), qemu-system-x86 (pid 12)"


# --- failures and rollback ------------------------------------------------------------------------------------
SCENARIOS = {
    "enable-one": (lambda e: None, lambda e: e.enable(bh.E1000E)),
    "enable-group": (lambda e: None, lambda e: e.enable(bh.MF0, move_group=True)),
    "enable-bridge-group": (lambda e: None, lambda e: e.enable(bh.BR_E1000, move_group=True)),
    "disable-one": (lambda e: e.enable(bh.E1000E), lambda e: e.disable(bh.E1000E)),
    "disable-group": (lambda e: e.enable(bh.MF0, move_group=True), lambda e: e.disable(bh.MF0, bh.MF1)),
    "disable-kernel-picks-another": (lambda e: _enable_then_igb_claims(e), lambda e: e.disable(bh.E1000E)),
}


def _enable_then_igb_claims(e) -> None:
    e.enable(bh.E1000E)
    e.fake.add_driver("igb")
    e.kernel.default[bh.E1000E] = "igb"


def _forward_writes(name: str, tmp_path) -> int:
    """How many writes the scenario makes when nothing fails (on a throw-away copy of the host)."""
    from pcipass.host import Host
    from tests.support.fakekernel import FakeKernel

    fake = bh.build(tmp_path / "count")
    probe = bh.Env(fake, FakeKernel(fake), Host(fake.root))
    setup, act = SCENARIOS[name]
    setup(probe)
    n0 = len(probe.kernel.writes)
    assert act(probe).exit_code is ExitCode.OK
    return len(probe.kernel.writes) - n0


FAULT_POINTS = [
    (name, i)
    for name, n in {
        "enable-one": 3,
        "enable-group": 6,
        "enable-bridge-group": 6,
        "disable-one": 3,
        "disable-group": 6,
        "disable-kernel-picks-another": 5,
    }.items()
    for i in range(n)
]


def test_fault_point_table_matches_the_scenarios(tmp_path):
    for name in SCENARIOS:
        assert _forward_writes(name, tmp_path / name) == max(i for n, i in FAULT_POINTS if n == name) + 1


FAULTS = [(errno.EBUSY, False), (errno.EINVAL, False), (errno.ENODEV, False), (errno.EBUSY, True)]


@pytest.mark.parametrize(
    "err,after", FAULTS, ids=[f"{errno.errorcode[e]}-{'after' if a else 'before'}-the-kernel-acts" for e, a in FAULTS]
)
@pytest.mark.parametrize("name,index", FAULT_POINTS, ids=[f"{n}-write{i}" for n, i in FAULT_POINTS])
def test_failure_at_every_write_rolls_back(env, name, index, err, after):
    """``after``: the kernel acted, then the write reported an error (a probe that bound, then failed)."""
    setup, act = SCENARIOS[name]
    env.kernel.preload("vfio_pci")  # module loads are not undone; keep them out of this
    setup(env)
    before, state_before = env.digest(), env.state()
    base = len(env.kernel.writes)
    (env.kernel.fail_after if after else env.kernel.fail)[base + index] = err
    r = act(env)
    assert r.exit_code is ExitCode.FAILED
    assert env.digest() == before, "the host is not as it was before the run"
    assert env.state() == state_before
    failed = [d for d in r.devices if d.outcome is Outcome.FAILED]
    assert failed and all(d.rolled_back is True for d in failed)
    assert r.errors[0].errno == err and r.errors[0].remedy
    assert [s.status for s in r.steps].count("failed") == 1


SCENARIO_DEVICES = {
    "enable-one": (bh.E1000E,),
    "enable-group": (bh.MF0, bh.MF1),
    "enable-bridge-group": (bh.BR_E1000, bh.BR_RTL),
    "disable-one": (bh.E1000E,),
    "disable-group": (bh.MF0, bh.MF1),
    "disable-kernel-picks-another": (bh.E1000E,),
}


def _write_address(write: tuple[str, str]) -> str:
    rel, value = write
    return value if value.startswith("0000:") else rel.split("/")[4]


@pytest.mark.parametrize("name,index", FAULT_POINTS, ids=[f"{n}-write{i}" for n, i in FAULT_POINTS])
def test_write_abandoned_at_every_point(env, name, index):
    """A write that blocks past --timeout: that device gets no further write (the kernel still holds its
    lock), every other device of the group is rolled back, the record stays, and a later disable recovers."""
    setup, act = SCENARIOS[name]
    env.kernel.preload("vfio_pci")
    before0 = env.digest()
    setup(env)
    before, base = env.digest(), len(env.kernel.writes)
    env.kernel.hang.add(base + index)
    r = act(env)
    assert r.exit_code is ExitCode.FAILED and r.errors[0].errno == errno.ETIMEDOUT
    stuck = _write_address(env.kernel.writes[base + index])
    assert not [w for w in env.kernel.writes[base + index + 1 :] if _write_address(w) == stuck]
    mine = (stuck, f"dev/vfio/{env.kernel.group(stuck)}")  # the stuck device and its group's node
    assert {k: v for k, v in env.digest().items() if not any(m in k for m in mine)} == {
        k: v for k, v in before.items() if not any(m in k for m in mine)
    }
    assert env.state()[stuck]["phase"] in ("enabling", "disabling")
    assert [d.rolled_back for d in r.devices if d.address == stuck] == [False]
    env.kernel.hang.clear()
    assert env.disable(*SCENARIO_DEVICES[name]).exit_code is ExitCode.OK
    assert env.state() == {}
    if name.startswith("enable"):
        assert env.digest() == before0


@pytest.mark.parametrize("err", [errno.EACCES, errno.EEXIST, errno.ENOENT])
def test_errno_becomes_a_remedy(env, err):
    env.kernel.fail[0] = err
    r = env.enable(bh.E1000E)
    assert r.errors[0].errno == err and r.errors[0].remedy
    assert r.devices[0].rolled_back is True


@pytest.mark.parametrize("name", ["enable-one", "enable-group"])
def test_bind_that_never_happens_times_out_and_rolls_back(env, name):
    setup, act = SCENARIOS[name]
    env.kernel.preload("vfio_pci")
    before = env.digest()
    env.kernel.probe_noop.add(bh.MF1 if name == "enable-group" else bh.E1000E)
    r = act(env)
    assert r.exit_code is ExitCode.FAILED and "not bound to vfio-pci after 0.3 s" in r.errors[0].message
    assert env.digest() == before and env.state() == {}


def test_kernel_says_not_viable_rolls_back_the_group(env):
    env.kernel.preload("vfio_pci")
    before = env.digest()
    env.kernel.vfio_answer[4] = False
    r = env.enable(bh.MF0, move_group=True)
    assert r.exit_code is ExitCode.FAILED and "not viable" in r.errors[0].message
    assert env.digest() == before and env.state() == {}
    assert {d.rolled_back for d in r.devices} == {True}


def test_device_removed_mid_group_leaves_nothing_half_done(env):
    env.kernel.preload("vfio_pci")
    before = env.digest()
    env.kernel.remove_at[3] = bh.MF1  # hot-unplugged just before its driver_override write
    r = env.enable(bh.MF0, move_group=True)
    assert r.exit_code is ExitCode.FAILED and r.errors[0].errno == errno.ENOENT
    assert env.driver(bh.MF0) == "virtio-pci" and env.override(bh.MF0) is None
    assert {k: v for k, v in env.digest().items() if bh.MF1 not in k} == {
        k: v for k, v in before.items() if bh.MF1 not in k
    }


def test_device_removed_between_planning_and_writing_writes_nothing(env, monkeypatch):
    load = env.kernel.load_module

    def load_then_unplug(name, *, timeout):
        load(name, timeout=timeout)
        env.kernel._remove(bh.MF1)  # between the plan and the group's first write

    monkeypatch.setattr(env.kernel, "load_module", load_then_unplug)
    r = env.enable(bh.MF0, bh.E1000E, move_group=True)
    assert outcomes(r) == {bh.MF0: "failed", bh.E1000E: "done", bh.MF1: "failed"}
    assert r.exit_code is ExitCode.PARTIAL
    assert "gone since planning" in r.errors[0].message
    assert not [w for w in env.kernel.writes if bh.MF0 in w[0] or w[1] == bh.MF0]


def test_independent_groups_fail_independently(env):
    env.kernel.fail[3] = errno.EBUSY  # the first write of the second group
    r = env.enable(bh.E1000E, bh.AUDIO)
    assert outcomes(r) == {bh.E1000E: "done", bh.AUDIO: "failed"} and r.exit_code is ExitCode.PARTIAL
    assert env.driver(bh.AUDIO) == "snd_hda_intel" and env.driver(bh.E1000E) == "vfio-pci"


def test_failed_rollback_keeps_the_record_and_says_how_to_finish(env):
    env.kernel.fail[4] = errno.EBUSY  # MF1's unbind: the group fails...
    env.kernel.fail[6] = errno.EIO  # ...and the first undo write fails too
    r = env.enable(bh.MF0, move_group=True)
    assert r.exit_code is ExitCode.FAILED and {d.rolled_back for d in r.devices} == {False}
    assert "rollback incomplete" in r.errors[0].message and "pcipass disable" in r.errors[0].remedy
    assert {rec["phase"] for rec in env.state().values()} == {"enabling"}
    st = env.status()
    assert {d.address for d in st.devices if d.interrupted} == {bh.MF0, bh.MF1}
    r = env.disable(bh.MF0, bh.MF1)
    assert r.exit_code is ExitCode.OK and env.state() == {}
    assert (env.driver(bh.MF0), env.driver(bh.MF1)) == ("virtio-pci", "e1000")
    assert env.override(bh.MF0) is env.override(bh.MF1) is None


def test_abandoned_write_marks_the_device_stuck_and_sends_it_nothing_more(env):
    env.kernel.hang.add(4)  # MF1's unbind blocks in the kernel past --timeout
    r = env.enable(bh.MF0, move_group=True)
    assert r.exit_code is ExitCode.FAILED and r.errors[0].errno == errno.ETIMEDOUT
    assert env.driver(bh.MF0) == "virtio-pci"  # the other device is rolled back
    assert not [w for w in env.kernel.writes[5:] if bh.MF1 in w[0] or w[1] == bh.MF1]
    assert env.state()[bh.MF1]["phase"] == "enabling"


def test_real_writer_abandons_a_blocked_write(env, monkeypatch):
    """The SysfsKernel path: an unbind that blocks in the kernel (a driver stuck in remove(), here a write held
    until the test releases it; a FIFO in a --root tree is refused, never opened) is abandoned after
    --timeout, the device is marked stuck, the group is rolled back."""
    import pcipass.engine.kernel as kernel_mod
    from pcipass import engine

    env.fake.add_driver("vfio-pci", module="vfio_pci")
    release = threading.Event()
    real = kernel_mod.write_attr

    def stuck_in_remove(path, value, **kw):
        if str(path).endswith("/unbind"):
            release.wait(30)
        return real(path, value, **kw)

    monkeypatch.setattr(kernel_mod, "write_attr", stuck_in_remove)
    try:
        r = engine.enable(env.host, [bh.E1000E], timeout=0.2, lock_wait=1)  # the default kernel: SysfsKernel
    finally:
        release.set()  # the writer thread's write returns, as the kernel's would once remove() ends
    assert r.exit_code is ExitCode.FAILED and r.errors[0].errno == errno.ETIMEDOUT
    assert "still blocked after 0.2 s" in r.errors[0].message
    assert any("is not the running system" in m for m in r.messages)
    assert r.devices[0].rolled_back is False and env.state()[bh.E1000E]["phase"] == "enabling"
