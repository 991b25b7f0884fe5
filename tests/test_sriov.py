"""``pcipass sriov``: the PF's view, and setting its VF count against the fake kernel (every branch and error)."""

from __future__ import annotations

import errno
import json
import os
import threading

import pytest

from pcipass.engine import Outcome, set_numvfs, sriov
from pcipass.engine.state import Lock
from pcipass.errors import DeviceNotFound, ExitCode, LockBusy, Unsupported, UsageError
from pcipass.host import Host
from tests.support import bind_hosts as bh
from tests.support.bind_hosts import Env, _never_the_real_sys  # noqa: F401 - fixture
from tests.support.fakekernel import FakeKernel

NIC_PF = "0000:00:0a.0"  #: an ixgbe-like PF: VFs at offset 128, stride 2 (00:1a.0, 00:1a.2, ...), ixgbevf
NVME_PF = "0000:00:0b.0"  #: QEMU's nvme: VFs at PF+1, PF+2; no VF driver takes them (nvme fails its probe)
NVME_VFS = ("0000:00:0b.1", "0000:00:0b.2")


@pytest.fixture
def env(tmp_path) -> Env:
    fake = bh.build(tmp_path / "root")
    fake.add_device(NIC_PF, vendor="8086", device="10fb", driver="ixgbe", group=9)
    fake.make_sriov_pf(NIC_PF, 4, offset=128, stride=2, vf_device="10ed")
    fake.add_device(NVME_PF, vendor="1b36", device="0010", class_="010802", driver="nvme", group=10)
    fake.make_sriov_pf(NVME_PF, 2, vf_device="0010")
    kernel = FakeKernel(fake)
    kernel.vf_driver[NIC_PF] = "ixgbevf"
    kernel.preload("vfio_pci")
    return Env(fake, kernel, Host(fake.root))


def numvfs(env: Env, pf: str, n: int, **kw):
    kw.setdefault("timeout", 0.3)
    kw.setdefault("lock_wait", 1.0)
    return set_numvfs(env.host, pf, n, kernel=env.kernel, **kw)


def writes(env: Env) -> list[tuple[str, str]]:
    return [(path.rsplit("/", 1)[1] if "/devices/" in path else path, value) for path, value in env.kernel.writes]


def hold(env: Env, pid: int, comm: str, node: str) -> None:
    env.fake.write(f"proc/{pid}/comm", comm + "\n")
    (env.root / f"proc/{pid}/fd").mkdir(parents=True, exist_ok=True)
    os.symlink(env.root / "dev" / node, env.root / f"proc/{pid}/fd/9")


# --- the view -------------------------------------------------------------------------------------------------
def test_show_a_pf_without_vfs(env):
    pf = sriov.show(env.host, "00:0a.0")
    assert (pf.address, pf.driver, pf.sriov_totalvfs, pf.sriov_numvfs, pf.sriov_drivers_autoprobe) == (
        NIC_PF,
        "ixgbe",
        4,
        0,
        True,
    )
    assert (pf.sriov_offset, pf.sriov_stride, pf.sriov_vf_device, pf.vfs, pf.pf_guard) == (128, 2, "10ed", (), None)
    assert pf.vf_addresses(3) == ("0000:00:1a.0", "0000:00:1a.2", "0000:00:1a.4")


def test_show_vfs_with_drivers_groups_users_and_the_pf_guard(env):
    assert numvfs(env, NIC_PF, 2).exit_code is ExitCode.OK
    vf0, vf1 = "0000:00:1a.0", "0000:00:1a.2"
    env.fake.add_net(vf0, "eth9")
    env.fake.write("proc/net/fib_trie", bh.fib_trie_local("10.1.2.3"))
    env.fake.write("proc/net/route", bh.ROUTE_HEADER + bh.route_line("eth9", "10.1.2.0", "0.0.0.0", "255.255.255.0"))
    pf = sriov.show(env.host, NIC_PF)
    assert [(v.virtfn, v.address, v.driver) for v in pf.vfs] == [(0, vf0, "ixgbevf"), (1, vf1, "ixgbevf")]
    assert all(v.iommu_group is not None for v in pf.vfs) and pf.vfs[0].iommu_group != pf.vfs[1].iommu_group
    assert pf.vfs[0].host_use and "eth9" in pf.vfs[0].host_use[0] and pf.vfs[1].host_use == ()
    assert pf.pf_guard is not None and "2 are on host drivers" in pf.pf_guard
    # The guard shown is the engine's: enable refuses to unbind the PF.
    r = env.enable(NIC_PF)
    assert r.exit_code is ExitCode.REFUSED and pf.pf_guard in r.devices[0].reasons


def test_show_names_the_process_holding_a_vf(env):
    numvfs(env, NVME_PF, 2, vfio=True)
    group = env.kernel.group(NVME_VFS[1])
    hold(env, 4242, "qemu-system-x86", f"vfio/{group}")
    pf = sriov.show(env.host, NVME_PF)
    assert [v.vfio_users for v in pf.vfs] == [(), ("qemu-system-x86 (pid 4242)",)]
    assert pf.pf_guard is None  # VFs on vfio-pci: the PF guard concerns host drivers only


@pytest.mark.parametrize(
    "address, error, words",
    [
        (bh.E1000E, Unsupported, "has no SR-IOV capability"),
        ("0000:00:1f.0", DeviceNotFound, "0000:00:1f.0"),
    ],
)
def test_show_errors(env, address, error, words):
    with pytest.raises(error) as exc:
        sriov.show(env.host, address)
    assert words in exc.value.message
    if error is Unsupported:
        assert "firmware" in exc.value.remedy


def test_show_a_vf_names_its_pf(env):
    numvfs(env, NVME_PF, 1)
    with pytest.raises(UsageError) as exc:
        sriov.show(env.host, NVME_VFS[0])
    assert exc.value.remedy == f"pcipass sriov {NVME_PF}"


def test_zero_totalvfs_is_unsupported(env):
    (env.fake.devices[NVME_PF].path / "sriov_totalvfs").write_text("0\n")
    with pytest.raises(Unsupported, match="offers 0 VFs"):
        numvfs(env, NVME_PF, 1)


# --- setting the count ----------------------------------------------------------------------------------------
def test_create_without_autoprobe_and_bind_to_vfio(env):
    r = numvfs(env, NVME_PF, 2, autoprobe=False, vfio=True)
    assert r.exit_code is ExitCode.OK and r.outcome is Outcome.DONE, r.errors
    assert (r.numvfs_before, r.numvfs_after, r.autoprobe_before, r.autoprobe_after) == (0, 2, True, False)
    assert r.vfs == NVME_VFS
    assert [(s.step.op.value, s.step.value, s.status) for s in r.steps] == [
        ("write", "0", "done"),
        ("write", "2", "done"),
        ("verify-vfs", "2", "done"),
    ]
    assert r.steps[0].step.path == f"/sys/bus/pci/devices/{NVME_PF}/sriov_drivers_autoprobe"
    assert [(d.address, d.outcome) for d in r.binding.devices] == [(vf, Outcome.DONE) for vf in NVME_VFS]
    for vf in NVME_VFS:
        assert env.driver(vf) == "vfio-pci"
        assert (env.root / "dev/vfio" / str(env.kernel.group(vf))).exists()
        assert env.state()[vf]["phase"] == "enabled" and env.state()[vf]["original_driver"] is None
    # Converges: the same again writes nothing.
    env.kernel.writes.clear()
    r = numvfs(env, NVME_PF, 2, autoprobe=False, vfio=True)
    assert r.exit_code is ExitCode.OK and r.outcome is Outcome.UNCHANGED and env.kernel.writes == []
    assert [d.outcome for d in r.binding.devices] == [Outcome.UNCHANGED] * 2


def test_autoprobe_on_lets_the_vf_driver_bind_and_vfio_takes_them_over(env):
    r = numvfs(env, NIC_PF, 2, vfio=True)
    assert r.exit_code is ExitCode.OK, r.errors
    vfs = ("0000:00:1a.0", "0000:00:1a.2")
    assert r.vfs == vfs and all(env.driver(vf) == "vfio-pci" for vf in vfs)
    assert env.state()[vfs[0]]["original_driver"] == "ixgbevf"
    # Without --vfio the VFs stay on the host driver.
    numvfs(env, NIC_PF, 0)
    assert numvfs(env, NIC_PF, 1).vfs == vfs[:1] and env.driver(vfs[0]) == "ixgbevf"


def test_a_change_between_counts_goes_through_zero_and_drops_vanished_records(env):
    numvfs(env, NVME_PF, 2, autoprobe=False, vfio=True)
    env.kernel.writes.clear()
    r = numvfs(env, NVME_PF, 1, vfio=True)
    assert r.exit_code is ExitCode.OK, r.errors
    assert writes(env)[:2] == [("sriov_numvfs", "0"), ("sriov_numvfs", "1")]
    assert [s.step.note for s in r.steps][:2] == ["remove the 2 VFs (a count changes only through 0)", "create 1 VFs"]
    assert r.vfs == NVME_VFS[:1] and env.driver(NVME_VFS[0]) == "vfio-pci"
    assert set(env.state()) == {NVME_VFS[0]}  # the one that vanished has no record; the new one is bound
    r = numvfs(env, NVME_PF, 0)
    assert r.exit_code is ExitCode.OK and r.vfs == () and env.state() == {}
    assert not (env.fake.devices[NVME_PF].path / "virtfn0").exists()
    assert not any((env.root / "dev/vfio").glob("[0-9]*"))


def test_raising_a_count_also_goes_through_zero(env):
    numvfs(env, NIC_PF, 1)
    env.kernel.writes.clear()
    assert numvfs(env, NIC_PF, 3).exit_code is ExitCode.OK
    assert writes(env) == [("sriov_numvfs", "0"), ("sriov_numvfs", "3")]


def test_a_vf_whose_group_is_open_is_never_removed(env):
    numvfs(env, NVME_PF, 2, autoprobe=False, vfio=True)
    group = env.kernel.group(NVME_VFS[1])
    hold(env, 4242, "qemu-system-x86", f"vfio/{group}")
    env.kernel.writes.clear()
    for force in (False, True):
        r = numvfs(env, NVME_PF, 1, force=force)
        assert r.exit_code is ExitCode.REFUSED and r.outcome is Outcome.REFUSED
        (err,) = r.errors
        assert err.message == (
            f"VF {NVME_VFS[1]} (virtfn1): IOMMU group {group} is open by qemu-system-x86 "
            "(pid 4242); removing the VF would block until it lets go"
        )
        assert "--force does not override" in err.remedy
        assert (r.numvfs_before, r.numvfs_after) == (2, 2)
    assert env.kernel.writes == []


def test_a_group_the_kernel_says_is_busy_is_held_too(env, monkeypatch):
    """A holder this user cannot see in /proc: the kernel's answer (EBUSY on open) says so."""
    from pcipass.engine.vfio import VfioGroupStatus

    numvfs(env, NVME_PF, 1, autoprobe=False, vfio=True)
    monkeypatch.setattr(env.kernel, "vfio_status", lambda g: VfioGroupStatus(g, None, True, "open by another process"))
    r = numvfs(env, NVME_PF, 0, force=True)
    assert r.exit_code is ExitCode.REFUSED and "open by another process" in r.errors[0].message


def test_host_use_of_a_vf_is_refused_unless_forced(env):
    numvfs(env, NIC_PF, 2)
    env.fake.add_net("0000:00:1a.2", "eth9")
    env.fake.write("proc/net/fib_trie", bh.fib_trie_local("10.1.2.3"))
    env.fake.write("proc/net/route", bh.ROUTE_HEADER + bh.route_line("eth9", "10.1.2.0", "0.0.0.0", "255.255.255.0"))
    env.kernel.writes.clear()
    r = numvfs(env, NIC_PF, 0)
    assert r.exit_code is ExitCode.REFUSED and env.kernel.writes == []
    assert r.errors[0].message.startswith("VF 0000:00:1a.2 (virtfn1) is in use by the host: eth9")
    assert "--force" in r.errors[0].remedy
    r = numvfs(env, NIC_PF, 0, force=True)
    assert r.exit_code is ExitCode.OK and r.numvfs_after == 0
    assert any(m.startswith("--force: going ahead although VF 0000:00:1a.2") for m in r.messages)


def test_a_vf_that_stays_is_not_guarded_when_nothing_changes(env):
    numvfs(env, NVME_PF, 1, autoprobe=False, vfio=True)
    hold(env, 7, "qemu-system-x86", f"vfio/{env.kernel.group(NVME_VFS[0])}")
    r = numvfs(env, NVME_PF, 1)
    assert r.exit_code is ExitCode.OK and r.outcome is Outcome.UNCHANGED


def test_dry_run_writes_nothing_and_predicts_the_vfs(env):
    before = env.digest(with_state=True)
    r = numvfs(env, NIC_PF, 2, autoprobe=False, vfio=True, dry_run=True)
    assert env.digest(with_state=True) == before and env.kernel.writes == []
    assert r.exit_code is ExitCode.OK and r.dry_run and r.outcome is Outcome.PLANNED
    assert r.vfs == ("0000:00:1a.0", "0000:00:1a.2")
    assert [(s.step.value, s.status) for s in r.steps] == [("0", "planned"), ("2", "planned"), ("2", "planned")]
    assert [d.address for d in r.binding.devices] == list(r.vfs)
    assert [s.step.path for s in r.binding.steps][:2] == [
        "/sys/bus/pci/devices/0000:00:1a.0/driver_override",
        "/sys/bus/pci/drivers_probe",
    ]
    assert "planned again" in r.binding.messages[0] and "--no-autoprobe" not in r.binding.messages[0]


def test_dry_run_of_existing_vfs_is_enables_own(env):
    numvfs(env, NVME_PF, 2, autoprobe=False)
    r = numvfs(env, NVME_PF, 2, vfio=True, dry_run=True)
    assert r.outcome is Outcome.UNCHANGED and r.steps == ()
    assert [(d.address, d.outcome, d.group) for d in r.binding.devices] == [
        (vf, Outcome.PLANNED, env.kernel.group(vf)) for vf in NVME_VFS
    ]
    assert r.binding.steps[-1].step.op.value == "verify-group"


@pytest.mark.parametrize("n, words", [(5, "at most 4 VFs"), (-1, "cannot be negative")])
def test_bad_counts_are_usage_errors(env, n, words):
    with pytest.raises(UsageError, match=words):
        numvfs(env, NIC_PF, n)
    assert env.kernel.writes == []


@pytest.mark.parametrize(
    "kw, words", [({"timeout": float("inf")}, "--timeout inf"), ({"lock_wait": float("nan")}, "lock wait nan")]
)
def test_bad_timeouts_are_usage_errors(env, kw, words):
    """As for enable, disable and mdev (engine.kernel.check_timeouts): before anything is read or written."""
    with pytest.raises(UsageError, match=words):
        set_numvfs(env.host, NIC_PF, 2, kernel=env.kernel, **kw)
    assert env.kernel.writes == []


def test_a_pf_without_driver_is_unsupported(env):
    env.fake.unbind(NVME_PF)
    with pytest.raises(Unsupported) as exc:
        numvfs(env, NVME_PF, 1)
    assert "has no driver" in exc.value.message and "bind the PF's own driver" in exc.value.remedy


@pytest.mark.parametrize(
    "err, remedy",
    [
        (errno.ENOSYS, "firmware settings"),
        (errno.EINVAL, "system firmware setup"),
        (errno.ENOENT, "enable_sriov=1"),
        (errno.ENOMEM, "pci=realloc"),
    ],
)
def test_a_driver_that_refuses_is_a_clear_error_and_is_rolled_back(env, err, remedy):
    env.kernel.sriov_errno[NVME_PF] = err
    before = env.digest()
    r = numvfs(env, NVME_PF, 2, autoprobe=False)
    assert r.exit_code is ExitCode.FAILED and r.outcome is Outcome.FAILED
    (e,) = r.errors
    assert isinstance(e, Unsupported) and remedy in e.remedy and "refused to change the VF count" in e.message
    assert [(s.step.value, s.status) for s in r.steps] == [("0", "undone"), ("2", "failed"), ("2", "not-run")]
    assert [s.step.value for s in r.rollback] == ["0", "1"]  # the failed write's undo (harmless), autoprobe
    assert env.digest() == before and env.state() == {}


def test_fewer_vfs_than_asked_fail_the_verification_and_are_removed(env):
    env.kernel.sriov_partial[NVME_PF] = 1
    r = numvfs(env, NVME_PF, 2)
    assert r.exit_code is ExitCode.FAILED
    assert "asked for 2 VFs, the kernel shows 1" in r.errors[0].message
    assert [s.step.value for s in r.rollback] == ["0"] and r.numvfs_after == 0 and r.vfs == ()


def test_a_failure_after_zeroing_recreates_the_old_count(env):
    numvfs(env, NIC_PF, 2)
    env.kernel.writes.clear()
    env.kernel.fail[1] = errno.ENOMEM  # the second write: the new count
    r = numvfs(env, NIC_PF, 3)
    assert r.exit_code is ExitCode.FAILED and "pci=realloc" in r.errors[0].remedy
    # The failed write is undone too (0: nothing to undo here), then the zeroing.
    assert writes(env) == [("sriov_numvfs", "0"), ("sriov_numvfs", "3"), ("sriov_numvfs", "0"), ("sriov_numvfs", "2")]
    assert r.numvfs_after == 2 and len(r.vfs) == 2


def test_the_vfs_stay_when_their_binding_fails(env):
    """The count is one transaction, each VF's binding another (as enable's groups): exit 3."""
    env.kernel.probe_noop.add(NVME_VFS[1])
    r = numvfs(env, NVME_PF, 2, autoprobe=False, vfio=True)
    assert r.exit_code is ExitCode.PARTIAL and r.outcome is Outcome.DONE
    assert [d.outcome for d in r.binding.devices] == [Outcome.DONE, Outcome.FAILED]
    assert r.vfs == NVME_VFS and env.driver(NVME_VFS[1]) is None


def test_binding_needs_an_iommu_but_creating_vfs_does_not(env, monkeypatch):
    import pcipass.engine.guards as guards

    monkeypatch.setattr(type(env.host), "reaches_kernel", property(lambda self: True))
    monkeypatch.setattr(guards, "iommu_active", lambda host: False)
    assert numvfs(env, NVME_PF, 1).exit_code is ExitCode.OK
    with pytest.raises(Exception, match="no IOMMU is active"):
        numvfs(env, NVME_PF, 1, vfio=True)


# --- the lock -------------------------------------------------------------------------------------------------
def test_a_shared_lock_nests_in_one_thread_and_not_across_threads(env):
    with Lock(env.host, wait=0.2, command="outer", shared=True):
        with Lock(env.host, wait=0.2, command="inner"):
            with Lock(env.host, wait=0.2, command="inner inner"):
                pass
        failed: list[BaseException] = []

        def other() -> None:
            try:
                with Lock(env.host, wait=0.2, command="other thread"):
                    pass
            except LockBusy as exc:
                failed.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(failed) == 1
    with Lock(env.host, wait=0.2, command="after"):  # released for good, and not shared any more
        with pytest.raises(LockBusy):
            with Lock(env.host, wait=0.1, command="nested in an unshared lock"):
                pass


def test_a_run_waits_for_another_process_lock(env):
    import subprocess
    import sys

    code = (
        f"import sys, time; from pcipass.host import Host; from pcipass.engine.state import Lock\n"
        f"with Lock(Host({str(env.root)!r}), wait=1, command='x'):\n    print('in', flush=True); time.sleep(3)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "in"
        with pytest.raises(LockBusy):
            numvfs(env, NVME_PF, 1, lock_wait=0.2)
    finally:
        p.kill()
        p.wait()


# --- the command line -----------------------------------------------------------------------------------------
@pytest.fixture
def cli(env, monkeypatch, capsys):
    import pcipass.engine.kernel as kernel
    from tests.support.cli import run

    monkeypatch.setattr(kernel, "SysfsKernel", lambda host: env.kernel)  # what a mutating run writes through
    return lambda *args: run(capsys, "--root", str(env.root), *args)


def test_cli_show_and_change(cli, env):
    r = cli("sriov", "00:0b.0", "--numvfs", "2", "--no-autoprobe", "--vfio")
    assert r.code == 0, r.err
    lines = [" ".join(line.split()) for line in r.out.splitlines()]
    assert "vfs 0 -> 2" in lines and "drivers autoprobe 1 -> 0" in lines
    assert [line.split()[0:3:2] for line in r.out.splitlines() if line.startswith(NVME_VFS)] == [
        [vf, "done"] for vf in NVME_VFS
    ]
    r = cli("sriov", "0000:00:0b.0")
    assert r.code == 0, r.err
    rows = [line.split() for line in r.out.splitlines() if line.startswith("virtfn")]
    assert [row[:3] for row in rows] == [["virtfn0", NVME_VFS[0], "vfio-pci"], ["virtfn1", NVME_VFS[1], "vfio-pci"]]
    lines = [" ".join(line.split()) for line in r.out.splitlines()]
    assert "vfs 2 of 2" in lines and "drivers autoprobe 0 (new VFs get no host driver)" in lines
    doc = __import__("json").loads(cli("sriov", "00:0b.0", "--format", "json").out)
    assert doc["data"]["sriov_numvfs"] == 2 and [v["driver"] for v in doc["data"]["vfs"]] == ["vfio-pci"] * 2


def test_cli_dry_run_refusal_and_errors(cli, env):
    r = cli("sriov", "00:0a.0", "--numvfs", "2", "--vfio", "--dry-run")
    assert r.code == 0 and env.kernel.writes == [], r.err
    assert "Plan (dry run: nothing was written)" in r.out and "Binding plan (dry run)" in r.out
    assert "sriov_numvfs" in r.out and "0000:00:1a.2" in r.out
    cli("sriov", "00:0b.0", "--numvfs", "1", "--no-autoprobe", "--vfio")
    hold(env, 31, "qemu-system-x86", f"vfio/{env.kernel.group(NVME_VFS[0])}")
    r = cli("sriov", "00:0b.0", "--numvfs", "0", "--force")
    assert r.code == 5 and f"VF {NVME_VFS[0]} (virtfn0)" in r.err and "qemu-system-x86 (pid 31)" in r.err
    r = cli("sriov", "00:02.0")
    assert r.code == 1 and "has no SR-IOV capability" in r.err and "firmware" in r.err
    r = cli("sriov", "00:0b.0", "--vfio")
    assert r.code == 2 and "go with --numvfs" in r.err


# --- the desired-state file's sriov section --------------------------------------------------------------------
SRIOV_FILE = """\
version: 1
sriov:
  - address: '0000:00:0b.0'
    numvfs: 2
    autoprobe: false
    vfio: true
    fingerprint: {vendor: '1b36', device: '0010', class: '010802'}
"""


def test_the_sriov_section_loads_and_round_trips(tmp_path):
    from pcipass.config import load
    from pcipass.config.sriov import SriovEntry
    from pcipass.fingerprint import Fingerprint

    p = tmp_path / "pcipass.yaml"
    p.write_text(SRIOV_FILE)
    (e,) = load(p, "f").section("sriov")
    assert e == SriovEntry("0000:00:0b.0", 2, False, True, Fingerprint("1b36", "0010", class_id="010802"), 3)
    assert e.to_node() == {
        "address": "0000:00:0b.0",
        "numvfs": 2,
        "autoprobe": False,
        "vfio": True,
        "fingerprint": {"vendor": "1b36", "device": "0010", "class": "010802"},
    }
    p.write_text(
        "version: 1\nsriov:\n  - address: '0000:00:0b.0'\n    numvfs: 0\n"
        "    fingerprint: {vendor: '1b36', device: '0010'}\n"
    )
    (e,) = load(p, "f").section("sriov")
    assert (e.autoprobe, e.vfio) == (None, False) and "autoprobe" not in e.to_node()


@pytest.mark.parametrize(
    "change, key, words",
    [
        (("numvfs: 2", "numvfs: -1"), "sriov[0].numvfs", "minimum"),
        (("numvfs: 2", "numvfs: two"), "sriov[0].numvfs", "not of type 'integer'"),
        (("vfio: true", "vfio: true\n    colour: red"), "sriov[0].colour", "unknown key"),
        (("vendor: '1b36'", "vendour: '1b36'"), "sriov[0].fingerprint", "'vendor' is missing"),
    ],
)
def test_the_sriov_section_is_validated(tmp_path, change, key, words):
    from pcipass.config import load
    from pcipass.errors import ConfigError

    p = tmp_path / "pcipass.yaml"
    p.write_text(SRIOV_FILE.replace(*change))
    with pytest.raises(ConfigError) as info:
        load(p, "f")
    assert info.value.key == key and words in info.value.message, info.value.message


def test_list_tree_shows_vfs_under_their_pf(cli, env):
    numvfs(env, NVME_PF, 2)
    r = cli("list", "--tree")
    assert r.code == 0, r.err
    rows = [line.split()[:2] for line in r.out.splitlines() if "0000:00:0b" in line]
    groups = [str(env.kernel.group(vf)) for vf in NVME_VFS]
    assert rows == [[NVME_PF, "10"], ["\u2514", NVME_VFS[0]], ["\u2514", NVME_VFS[1]]]
    assert [line.split()[2] for line in r.out.splitlines() if line.startswith("\u2514")] == groups


# --- the section on a host (what apply does with it) ------------------------------------------------------------
def test_declared_check_apply_and_entry_for(env):
    from pcipass import sriov_declared as decl

    entry = decl.entry_for(env.host, NVME_PF)
    assert (entry.numvfs, entry.autoprobe, entry.vfio) == (0, True, False)
    assert decl.check(env.host, (entry,))[0].state is decl.SriovState.PRESENT
    wanted = entry.__class__(NVME_PF, 2, False, True, entry.fingerprint, 4)
    (c,) = decl.check(env.host, (wanted,))
    assert (c.state, c.detail, c.line) == (
        decl.SriovState.DIFFERENT,
        "0 VFs, 2 declared; sriov_drivers_autoprobe True, False declared",
        4,
    )
    (a,) = decl.apply(env.host, (wanted,), check_only=True, kernel=env.kernel, timeout=0.3)
    assert a.outcome == "planned" and env.kernel.writes == []
    (a,) = decl.apply(env.host, (wanted,), kernel=env.kernel, timeout=0.3, lock_wait=1.0)
    assert a.outcome == "changed" and [env.driver(vf) for vf in NVME_VFS] == ["vfio-pci"] * 2
    (a,) = decl.apply(env.host, (wanted,), kernel=env.kernel, timeout=0.3, lock_wait=1.0)
    assert a.outcome == "unchanged"
    env.fake.unbind(NVME_VFS[1])
    (c,) = decl.check(env.host, (wanted,))
    assert c.state is decl.SriovState.DIFFERENT and c.detail == f"not on vfio: {NVME_VFS[1]}"


def test_declared_entries_left_alone(env):
    from pcipass import sriov_declared as decl
    from pcipass.config.sriov import SriovEntry
    from pcipass.fingerprint import Fingerprint

    other = SriovEntry(NVME_PF, 2, None, False, Fingerprint("8086", "10fb"), None)
    gone = SriovEntry("0000:00:1c.0", 2, None, False, Fingerprint("8086", "10fb"), None)
    nic = decl.entry_for(env.host, NIC_PF)
    plain = SriovEntry(bh.E1000E, 1, None, False, Fingerprint("8086", "10d3"), None)
    assert nic.numvfs == 0
    got = decl.apply(env.host, (other, gone, plain), kernel=env.kernel)
    assert [(a.state.value, a.outcome) for a in got] == [
        ("other-card", "left"),
        ("absent", "left"),
        ("unsupported", "left"),
    ]
    assert "another card at" in got[0].detail and env.kernel.writes == []
    held = SriovEntry(NVME_PF, 1, None, False, decl.entry_for(env.host, NVME_PF).fingerprint, None)
    numvfs(env, NVME_PF, 2, autoprobe=False, vfio=True)
    hold(env, 5, "qemu-system-x86", f"vfio/{env.kernel.group(NVME_VFS[0])}")
    (a,) = decl.apply(env.host, (held,), kernel=env.kernel, timeout=0.3, lock_wait=1.0)
    assert a.outcome == "refused" and "qemu-system-x86 (pid 5)" in a.detail
    too_many = SriovEntry(NVME_PF, 9, None, False, held.fingerprint, None)
    (a,) = decl.apply(env.host, (too_many,), kernel=env.kernel)
    assert a.outcome == "failed" and "at most 2 VFs" in a.detail


def test_a_run_that_died_half_way_is_reported_and_completed(env):
    from tests.support.fakekernel import Killed

    numvfs(env, NVME_PF, 2)
    env.kernel.writes.clear()
    env.kernel.kill_at = 1  # the process dies after removing the VFs, before creating the new one
    with pytest.raises(Killed):
        numvfs(env, NVME_PF, 1)
    env.kernel.kill_at = None
    assert env.kernel.vfs(NVME_PF) == []
    record = json.loads((env.root / "run/pcipass/sriov.json").read_text())["pfs"][NVME_PF]
    assert (record["numvfs_before"], record["numvfs"], record["pid"]) == (2, 1, os.getpid())
    dry = numvfs(env, NVME_PF, 1, dry_run=True)  # its pid is alive (this process): a run in progress, not said
    assert not any("died before finishing" in m for m in dry.messages)
    r = numvfs(env, NVME_PF, 1)
    assert r.exit_code is ExitCode.OK and r.vfs == NVME_VFS[:1]
    (said,) = [m for m in r.messages if "died before finishing" in m]
    assert said.startswith(f"{NVME_PF}: a 'pcipass sriov' run (pid {os.getpid()}, started ")
    assert said.endswith("the PF had 2 VFs then (sriov_drivers_autoprobe True), it was to have 1")
    assert json.loads((env.root / "run/pcipass/sriov.json").read_text())["pfs"] == {}
    assert not any("died before finishing" in m for m in numvfs(env, NVME_PF, 1).messages)


def test_a_damaged_sriov_state_file_is_an_error(env):
    from pcipass.engine.state import StateError

    env.fake.write("run/pcipass/sriov.json", "{not json")
    with pytest.raises(StateError, match="sriov.json is not pcipass state"):
        numvfs(env, NVME_PF, 1)


# --- pcipass apply / verify run the section (before the devices' bindings) ---------------------------------------
def _numvfs(env: Env) -> str:
    with open(os.path.join(env.host.pci_device(NVME_PF), "sriov_numvfs")) as f:
        return f.read().strip()


def test_apply_and_verify_run_the_sriov_section(env, tmp_path):
    from pcipass.config import load
    from pcipass.persistence.apply import Change, apply, verify
    from pcipass.persistence.drift import Drift

    path = tmp_path / "pcipass.yaml"
    path.write_text(
        "version: 1\nsriov:\n"
        f"  - address: '{NVME_PF}'\n    numvfs: 2\n    vfio: true\n"
        "    fingerprint: {vendor: '1b36', device: '0010', class: '010802'}\n"
    )
    desired = load(path, "pcipass.yaml")
    (v,) = verify(env.host, desired)
    assert (v.section, v.address, v.drift, v.declared) == ("sriov", NVME_PF, Drift.DIFFERS, "2 VFs")
    assert v.reasons == ("0 VFs, 2 declared",)
    kw = {"kernel": env.kernel, "timeout": 0.3, "lock_wait": 1.0}
    r = apply(env.host, desired, check=True, **kw)
    assert r.changed and [(e.section, e.outcome) for e in r.entries] == [("sriov", Change.CHANGED)]
    assert env.kernel.writes == [] and _numvfs(env) == "0"
    r = apply(env.host, desired, **kw)
    assert r.changed and r.exit_code == 0 and r.entries[0].outcome is Change.CHANGED
    assert _numvfs(env) == "2"
    assert [env.driver(vf) for vf in NVME_VFS] == ["vfio-pci"] * 2
    r = apply(env.host, desired, **kw)
    assert not r.changed and r.exit_code == 0 and r.entries[0].outcome is Change.UNCHANGED
    assert [v.drift for v in verify(env.host, desired)] == [Drift.MATCH]


def test_apply_sets_the_vfs_before_binding_them(env, tmp_path):
    from pcipass.config import load
    from pcipass.persistence.apply import Change, apply

    path = tmp_path / "pcipass.yaml"
    path.write_text(
        "version: 1\nsriov:\n"
        f"  - address: '{NVME_PF}'\n    numvfs: 2\n"
        "    fingerprint: {vendor: '1b36', device: '0010', class: '010802'}\n"
        f"devices:\n  - address: '{NVME_VFS[0]}'\n    driver: vfio-pci\n"
        "    fingerprint: {vendor: '1b36', device: '0010'}\n"
    )
    r = apply(env.host, load(path, "pcipass.yaml"), kernel=env.kernel, timeout=0.3, lock_wait=1.0)
    assert [(e.section, e.address, e.outcome) for e in r.entries] == [
        ("sriov", NVME_PF, Change.CHANGED),
        ("devices", NVME_VFS[0], Change.CHANGED),
    ]
    assert r.exit_code == 0 and env.driver(NVME_VFS[0]) == "vfio-pci"


def test_status_says_the_boot_unit_binds_the_declared_vfs(cli, env, monkeypatch):
    """A VF that an sriov entry with ``vfio: true`` creates at boot is bound there by pcipass's unit: status says
    so (not "on vfio-pci until the next boot only"), for the VFs that the declared count creates."""
    import pcipass.persistence.boot as boot

    monkeypatch.setattr(boot, "executable", lambda: ["/usr/bin/pcipass"])
    assert cli("sriov", "00:0b.0", "--numvfs", "2", "--no-autoprobe", "--vfio").code == 0
    conf = env.root / "etc/pcipass/pcipass.yaml"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        "version: 1\nsriov:\n"
        f"  - address: '{NVME_PF}'\n    numvfs: 1\n    autoprobe: false\n    vfio: true\n"
        "    fingerprint: {vendor: '1b36', device: '0010', class: '010802'}\n"
    )

    def at_boot() -> tuple[dict[str, tuple], str]:
        r = cli("-f", "json", "status", *NVME_VFS)
        assert r.code == 0, r.err
        data = json.loads(r.out)["data"]
        return {d["address"]: (d["boot_driver"], d["boot_by"], d["boot_where"]) for d in data}, r.err

    got, err = at_boot()  # the unit is not enabled: nothing binds them at boot
    assert got == {vf: (None, None, None) for vf in NVME_VFS} and f"{NVME_VFS[0]}: on vfio-pci until the next" in err
    assert cli("boot", "install").code == 0
    got, err = at_boot()
    # virtfn0 is the one VF the entry creates again; virtfn1 exists now only
    assert got == {NVME_VFS[0]: ("vfio-pci", "pcipass", "/etc/pcipass/pcipass.yaml:3"), NVME_VFS[1]: (None,) * 3}
    assert f"{NVME_VFS[0]}: on vfio-pci until" not in err and f"{NVME_VFS[1]}: on vfio-pci until" in err
    conf.write_text(conf.read_text().replace("    vfio: true\n", ""))  # created at boot, bound by nothing
    assert at_boot()[0] == {vf: (None, None, None) for vf in NVME_VFS}


def test_status_says_a_vf_whose_pf_entry_the_unit_leaves_is_refused(cli, env, monkeypatch):
    """Another card at the declared PF's address: the unit leaves the sriov entry at boot (no VFs), so its VFs are
    not said to be bound by pcipass then."""
    import pcipass.persistence.boot as boot

    monkeypatch.setattr(boot, "executable", lambda: ["/usr/bin/pcipass"])
    assert cli("sriov", "00:0b.0", "--numvfs", "2", "--no-autoprobe", "--vfio").code == 0
    conf = env.root / "etc/pcipass/pcipass.yaml"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        "version: 1\nsriov:\n"
        f"  - address: '{NVME_PF}'\n    numvfs: 2\n    vfio: true\n"
        "    fingerprint: {vendor: '8086', device: '0010', class: '010802'}\n"
    )
    assert cli("boot", "install").code == 0
    r = cli("-f", "json", "status", NVME_VFS[0])
    (d,) = json.loads(r.out)["data"]
    assert (d["boot_driver"], d["boot_by"], d["boot_where"]) == (None, "pcipass", "/etc/pcipass/pcipass.yaml:3")
    assert d["boot_refused"].startswith(f"another card at {NVME_PF}: vendor 8086 recorded, 1b36 found")
    assert f"{NVME_VFS[0]}: on vfio-pci until the next boot only: pcipass's boot unit refuses its entry" in r.err
