"""Plans (golden files), dry runs (nothing written), and every guard with its exit code."""

from __future__ import annotations

import json

import pytest

from pcipass import engine
from pcipass.engine import Outcome
from pcipass.errors import ExitCode, PermissionDenied, Refused, UsageError
from pcipass.host import Host
from tests.support import bind_hosts as bh
from tests.support.bind_hosts import _never_the_real_sys, env  # noqa: F401 - fixtures
from tests.support.golden import check_golden


def outcomes(report) -> dict[str, str]:
    return {d.address: d.outcome.value for d in report.devices}


def golden_plan(name: str, report) -> None:
    assert report.dry_run
    check_golden(f"bind-plan.{name}.json", json.dumps(report.data(), indent=2) + "\n")


# --- plans ----------------------------------------------------------------------------------------------------
def test_plan_enable_one_endpoint(env):
    golden_plan("enable-e1000e", env.enable(bh.E1000E, dry_run=True))


def test_plan_enable_group_moves_every_endpoint(env):
    r = env.enable(bh.MF0, move_group=True, dry_run=True)
    assert outcomes(r) == {bh.MF0: "planned", bh.MF1: "planned"}
    assert [d.requested for d in r.devices] == [True, False]
    golden_plan("enable-group-multifunction", r)


def test_plan_bridge_group_leaves_the_bridge(env):
    r = env.enable(bh.BR_E1000, move_group=True, dry_run=True)
    assert outcomes(r) == {bh.BR_E1000: "planned", bh.BR_RTL: "planned"}
    assert not [s for s in r.steps if s.step.address == bh.PCI_BRIDGE]
    golden_plan("enable-group-behind-bridge", r)


def test_plan_driver_auto_picks_the_variant(env):
    r = env.enable(bh.VIRTIO, driver="auto", dry_run=True)
    assert r.devices[0].target == "virtio_vfio_pci"
    golden_plan("enable-auto-variant", r)


def test_plan_driver_auto_falls_back_to_vfio_pci(env):
    assert env.enable(bh.E1000E, driver="auto", dry_run=True).devices[0].target == "vfio-pci"


def test_plan_pci_stub_has_no_vfio_verification(env):
    r = env.enable(bh.E1000E, driver="pci-stub", dry_run=True)
    assert [s.step.op.value for s in r.steps] == ["load-module", "write", "write", "write", "wait"]
    assert r.steps[1].step.value == "pci-stub"


@pytest.mark.parametrize("driver", ["../../x", "vfio/pci", "..", "", "e1000e", "nvidia"])
def test_driver_must_be_a_passthrough_driver_named_as_the_kernel_names_it(env, driver):
    """A path is never a driver name; a host driver is not a passthrough target (disable gives devices back)."""
    before = env.digest(with_state=True)
    with pytest.raises(UsageError) as exc:
        env.enable(bh.E1000E, driver=driver, dry_run=False)
    assert exc.value.exit_code is ExitCode.USAGE and repr(driver)[1:-1] in exc.value.message
    assert env.kernel.writes == [] and env.digest(with_state=True) == before


def test_a_variant_driver_is_known_by_vfio_pci_core(env):
    """A variant whose name does not say so: its module depends on vfio_pci_core (modules.dep), or holds it."""
    dep = env.root / f"lib/modules/{bh.KVER}/modules.dep"
    dep.write_text(
        dep.read_text() + "kernel/drivers/vfio/pci/acme/acme-passthru.ko.xz: "
        "kernel/drivers/vfio/pci/vfio-pci-core.ko.xz kernel/drivers/vfio/vfio.ko.xz\n"
    )
    r = env.enable(bh.E1000E, driver="acme-passthru", dry_run=True)
    assert r.exit_code is ExitCode.OK and r.steps[0].step.value == "acme_passthru"
    env.fake.write("sys/module/vfio_pci_core/holders/acme2/refcnt", "1\n")
    env.fake.add_driver("acme2")
    assert env.enable(bh.E1000E, driver="acme2", dry_run=True).exit_code is ExitCode.OK


def test_plan_disable_after_enable(env):
    assert env.enable(bh.E1000E, bh.AUDIO).exit_code is ExitCode.OK
    golden_plan("disable-two-groups", env.disable(bh.E1000E, bh.AUDIO, dry_run=True))


def test_plan_disable_unrecorded_device_lets_the_kernel_choose(env):
    env.fake.bind(bh.UNBOUND, "vfio-pci")  # bound at boot by vfio-pci.ids: pcipass never saw its host driver
    golden_plan("disable-unrecorded", env.disable(bh.UNBOUND, dry_run=True))


def test_plan_never_uses_new_id(env):
    r = env.enable(bh.MF0, bh.E1000E, bh.BR_E1000, move_group=True, dry_run=True)
    assert not [s for s in r.steps if s.step.path and s.step.path.endswith(("new_id", "remove_id"))]


# --- dry run ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        dict(addresses=(bh.E1000E,)),
        dict(addresses=(bh.MF0,), move_group=True),
        dict(addresses=(bh.MF0,)),  # refused
        dict(addresses=(bh.NVME, bh.BR_RTL), move_group=True, driver="auto"),
    ],
)
def test_dry_run_enable_writes_nothing(env, args):
    before = env.digest(with_state=True)
    addresses = args.pop("addresses")
    env.enable(*addresses, dry_run=True, **args)
    assert env.kernel.writes == [] and env.kernel.loaded == []
    assert env.digest(with_state=True) == before  # not even the state directory or the lock file


def test_dry_run_disable_writes_nothing(env):
    env.enable(bh.E1000E, bh.MF0, move_group=True)
    env.kernel.writes.clear()
    before = env.digest(with_state=True)
    r = env.disable(bh.E1000E, bh.MF0, bh.MF1, dry_run=True)
    assert {d.outcome for d in r.devices} == {Outcome.PLANNED}
    assert env.kernel.writes == []
    assert env.digest(with_state=True) == before


def test_dry_run_needs_no_root(env, monkeypatch):
    import pcipass.engine.guards as g

    monkeypatch.setattr(g, "effective_uid", lambda: 1000)
    assert env.enable(bh.E1000E, dry_run=True).exit_code is ExitCode.OK


# --- guards -----------------------------------------------------------------------------------------------------
def test_not_root_is_exit_4_before_anything(env, monkeypatch):
    import pcipass.engine.guards as g

    monkeypatch.setattr(g, "effective_uid", lambda: 1000)
    before = env.digest(with_state=True)
    with pytest.raises(PermissionDenied) as exc:
        env.enable(bh.E1000E)
    assert exc.value.exit_code is ExitCode.PERMISSION
    with pytest.raises(PermissionDenied):
        env.disable(bh.E1000E)
    assert env.kernel.writes == [] and env.digest(with_state=True) == before


def _without_iommu(env) -> None:
    """As on a kernel without an IOMMU (this machine): no unit, no group (the devices' links to them dangle)."""
    import shutil

    for link in (env.root / "sys/class/iommu").iterdir():
        link.unlink()
    for group in (env.root / "sys/kernel/iommu_groups").iterdir():
        shutil.rmtree(group)


def test_live_root_without_iommu_refuses_before_any_write(env):
    _without_iommu(env)
    env.host.is_live = True  # what Host("/") computes on the running system
    before = env.digest(with_state=True)
    for call in (
        lambda: env.enable(bh.E1000E),
        lambda: env.disable(bh.E1000E),
        lambda: env.enable(bh.E1000E, dry_run=True),
    ):
        with pytest.raises(Refused) as exc:
            call()
        assert exc.value.exit_code is ExitCode.REFUSED
        assert "no IOMMU" in exc.value.message
    assert env.kernel.writes == [] and env.digest(with_state=True) == before


def test_snapshot_archive_is_a_usage_error(env, tmp_path):
    import tarfile

    archive = tmp_path / "snap.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(env.root / "proc", arcname="proc")
    with pytest.raises(UsageError) as exc:
        engine.enable(Host(archive), [bh.E1000E])
    assert "--dry-run" in exc.value.remedy and "tar -xf" in exc.value.remedy


def test_bridge_is_refused_and_not_overridable(env):
    r = env.enable(bh.ROOT_PORT, force=True)
    assert outcomes(r) == {bh.ROOT_PORT: "refused"} and r.exit_code is ExitCode.REFUSED
    assert "not an endpoint" in r.devices[0].reasons[0]
    assert env.kernel.writes == []


def test_no_iommu_on_a_fake_root_refuses_each_device(env):
    _without_iommu(env)
    r = env.enable(bh.E1000E, force=True)
    assert r.exit_code is ExitCode.REFUSED and "no IOMMU" in r.devices[0].reasons[0]


def test_device_without_group_is_refused(env):
    env.fake.add_device("0000:00:0b.0", driver="e1000e")
    r = env.enable("00:0b.0", force=True)
    assert r.exit_code is ExitCode.REFUSED and "no IOMMU group" in r.devices[0].reasons[0]


def test_group_not_viable_names_the_peer(env):
    r = env.enable(bh.MF0)
    assert r.exit_code is ExitCode.REFUSED
    (reason,) = r.devices[0].reasons
    assert bh.MF1 in reason and "driver e1000" in reason and "--group" in reason
    assert r.errors[0].remedy and "--group" in r.errors[0].remedy
    assert env.kernel.writes == []


def test_naming_every_endpoint_of_the_group_is_enough(env):
    r = env.enable(bh.MF0, bh.MF1)
    assert outcomes(r) == {bh.MF0: "done", bh.MF1: "done"}


def test_unbound_and_stub_peers_do_not_block(env):
    env.fake.add_device("0000:00:0c.0", driver="e1000e", group=30)
    env.fake.add_device("0000:00:0c.1", group=30)
    env.fake.add_device("0000:00:0c.2", driver="pci-stub", group=30)
    env.kernel.default["0000:00:0c.0"] = "e1000e"
    r = env.enable("00:0c.0")
    assert outcomes(r) == {"0000:00:0c.0": "done"}


def test_not_found_is_a_failure(env):
    r = env.enable("0000:00:1f.7")
    assert r.exit_code is ExitCode.FAILED and r.devices[0].error["code"] == "not-found"


def _address_and_route(env):
    env.fake.write("proc/net/route", bh.ROUTE_HEADER + bh.route_line("eth0", "10.0.2.0", "0.0.0.0", "255.255.255.0"))
    env.fake.write("proc/net/fib_trie", bh.fib_trie_local("10.0.2.15"))
    return bh.E1000E, "eth0: has address 10.0.2.15"


def _ipv6_address(env):
    env.fake.write("proc/net/if_inet6", "20010db8000000000000000000000015 02 40 00 80     eth0\n")
    return bh.E1000E, "eth0: has address 2001:db8::15/64"


def _bond_member(env):
    (env.root / "sys/devices/virtual/net/bond0").mkdir(parents=True)
    env.fake.symlink("sys/class/net/bond0", env.root / "sys/devices/virtual/net/bond0")
    env.fake.symlink("sys/class/net/eth0/master", env.root / "sys/devices/virtual/net/bond0")
    env.fake.write("proc/net/route", bh.ROUTE_HEADER + bh.route_line("bond0", "0.0.0.0", "10.0.0.1", "0.0.0.0"))
    return bh.E1000E, "eth0: under bond0, which is in the routing table (default via 10.0.0.1)"


def _mounted(env):
    env.fake.write("proc/self/mountinfo", "30 1 259:1 / / rw - ext4 /dev/nvme0n1p1 rw\n")
    return bh.NVME, "nvme0n1p1: mounted on /"


def _swap(env):
    env.fake.write("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1\tpartition\t8\t0\t-2\n")
    return bh.NVME, "nvme0n1: active swap (/dev/nvme0n1)"


def _held(env):
    env.fake.write(f"sys/bus/pci/devices/{bh.NVME}/nvme/nvme0/nvme0n1/holders/md0", "")
    return bh.NVME, "nvme0n1: held by md0"


def _console(env):
    env.fake.add_device(
        "0000:00:10.0", vendor="1234", device="1111", class_="030000", driver="bochs-drm", group=20, boot_vga=True
    )
    fb = env.fake.devices["0000:00:10.0"].path / "graphics/fb0"
    fb.mkdir(parents=True)
    (fb / "name").write_text("bochs-drmdrmfb\n")
    env.fake.symlink("sys/class/graphics/fb0", fb)
    return "0000:00:10.0", "fb0: framebuffer 'bochs-drmdrmfb' (on this device) of the boot VGA device"


def _keyboard(env):
    env.fake.add_device("0000:00:14.0", vendor="8086", device="a36d", class_="0c0330", driver="xhci_hcd", group=21)
    bh.add_input(env.fake, "0000:00:14.0", "input3", "Dell KB216 Wired Keyboard", bh.KEYBOARD_KEYS)
    return "0000:00:14.0", "input3: keyboard 'Dell KB216 Wired Keyboard' behind it: the host's console input"


IN_USE = [_address_and_route, _ipv6_address, _bond_member, _mounted, _swap, _held, _console, _keyboard]


@pytest.mark.parametrize("setup", IN_USE, ids=lambda f: f.__name__.strip("_"))
def test_in_use_is_refused_then_forced(env, setup):
    address, reason = setup(env)
    env.kernel.default[address] = env.driver(address)
    r = env.enable(address)
    assert r.exit_code is ExitCode.REFUSED and env.kernel.writes == []
    assert any(reason in x for x in r.devices[0].reasons), r.devices[0].reasons
    assert "--force" in r.errors[0].remedy
    r = env.enable(address, force=True)
    assert r.exit_code is ExitCode.OK and env.driver(address) == "vfio-pci"
    assert any(reason in m and "--force" in m for m in r.messages)


def test_in_use_peer_blocks_the_group_move(env):
    env.fake.write("proc/net/if_inet6", "20010db8000000000000000000000015 02 40 00 80     eth3\n")
    r = env.enable(bh.MF0, move_group=True)
    assert r.exit_code is ExitCode.REFUSED and bh.MF1 in r.devices[0].reasons[0]
    assert env.kernel.writes == []


def test_sriov_pf_with_vfs_on_host_drivers_is_in_use(env):
    pf = "0000:00:11.0"
    env.fake.add_device(
        pf, vendor="8086", device="1521", driver="igb", group=40, extra={"sriov_totalvfs": "7", "sriov_numvfs": "1"}
    )
    env.fake.add_device("0000:00:11.4", vendor="8086", device="1520", driver="igbvf", group=41)
    env.fake.symlink(f"sys/bus/pci/devices/{pf}/virtfn0", env.fake.devices["0000:00:11.4"].path)
    r = env.enable(pf)
    assert r.exit_code is ExitCode.REFUSED and "SR-IOV PF with 1 VFs" in r.devices[0].reasons[0]


def test_partial_success_is_exit_3(env):
    r = env.enable(bh.E1000E, bh.MF0)
    assert outcomes(r) == {bh.E1000E: "done", bh.MF0: "refused"}
    assert r.exit_code is ExitCode.PARTIAL


def test_refused_and_failed_without_success_is_exit_1(env):
    r = env.enable(bh.ROOT_PORT, "0000:00:1f.7")
    assert r.exit_code is ExitCode.FAILED


def test_order_of_devices_in_the_report_is_the_order_given(env):
    r = env.enable(bh.AUDIO, bh.E1000E, bh.MF1, move_group=True, dry_run=True)
    assert [d.address for d in r.devices] == [bh.AUDIO, bh.E1000E, bh.MF1, bh.MF0]
