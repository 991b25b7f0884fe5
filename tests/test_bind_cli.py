"""``pcipass enable/disable/status`` through the real CLI entry point, on a fake root with the fake kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcipass.archive import max_unpacked, unpack
from pcipass.engine.state import Lock
from tests.support import bind_hosts as bh
from tests.support.bind_hosts import _never_the_real_sys, cli, env  # noqa: F401 - fixtures
from tests.support.cli import run
from tests.support.golden import check_golden


def test_dry_run_table(cli, env):
    before = env.digest(with_state=True)
    r = cli("enable", "--dry-run", "--group", "00:05.0")
    assert r.code == 0, r.err
    assert env.digest(with_state=True) == before
    check_golden("bind-cli.enable-group-dry-run.txt", r.out)


def test_json_report_and_partial_exit(cli, env):
    r = cli("--format", "json", "enable", "00:02.0", "00:05.0")
    assert r.code == 3
    doc = json.loads(r.out)
    assert doc["status"] == "partial" and doc["command"] == "enable"
    assert [(d["address"], d["outcome"]) for d in doc["data"]["devices"]] == [(bh.E1000E, "done"), (bh.MF0, "refused")]
    assert [e["code"] for e in doc["errors"]] == ["refused"]
    assert "would not be viable" in r.err and "--group" in r.err


def test_enable_status_disable(cli, env):
    assert cli("enable", "00:02.0").code == 0
    r = cli("status")
    assert r.code == 0
    row = next(line for line in r.out.splitlines() if line.startswith(bh.E1000E))
    assert row.split() == [
        bh.E1000E,
        "1",
        "vfio-pci",
        "vfio-pci",
        "e1000e",
        "enabled",
        "ready",
        "viable",
        "(sysfs)",
        "-",
    ]
    assert f"{bh.E1000E}: on vfio-pci until the next boot only" in r.err
    doc = json.loads(cli("status", "--format", "json", "00:02.0").out)
    assert doc["data"][0]["recorded_driver"] == "e1000e" and doc["data"][0]["vfio_viable"] is True
    assert [doc["data"][0][k] for k in ("boot_driver", "boot_by", "boot_where")] == [None, None, None]
    r = cli("disable", "00:02.0")
    assert r.code == 0 and "done" in r.out
    assert env.driver(bh.E1000E) == "e1000e"
    assert "unchanged" in cli("disable", "00:02.0").out


@pytest.mark.parametrize("where", ["driverctl", "modprobe.d", "cmdline"])
def test_status_says_what_binds_a_device_at_boot(cli, env, where):
    """The reboot trap: driver_override ends with the boot; driverctl's saved override or vfio-pci's ids=
    renew a binding, and status says which (and warns of a host driver that boot will take away)."""
    if where == "driverctl":
        env.fake.write(f"etc/driverctl.d/pci-{bh.E1000E}", "vfio-pci\n")
        by, src = "driverctl", f"/etc/driverctl.d/pci-{bh.E1000E}"
    elif where == "modprobe.d":
        env.fake.write("etc/modprobe.d/vfio.conf", "# passthrough NICs\noptions vfio-pci ids=8086:10d3\n")
        by, src = "vfio-pci ids=", "/etc/modprobe.d/vfio.conf:2"
    else:
        env.fake.set_cmdline("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro intel_iommu=on vfio-pci.ids=8086:10d3")
        by, src = "vfio-pci ids=", "kernel command line"
    # On e1000e now: listed by a plain status all the same, with the warning.
    r = cli("--format", "json", "status")
    (dev,) = [d for d in json.loads(r.out)["data"] if d["address"] == bh.E1000E]
    assert (dev["driver"], dev["boot_driver"], dev["boot_by"], dev["boot_where"]) == ("e1000e", "vfio-pci", by, src)
    assert f"{bh.E1000E}: on e1000e now, but {by} ({src}) binds it to vfio-pci at the next boot" in r.err
    assert cli("enable", "00:02.0").code == 0
    r = cli("status", "00:02.0")
    assert r.out.splitlines()[-1].rstrip().endswith(f"viable (sysfs)   vfio-pci ({by})") and "next boot" not in r.err


def test_disable_says_driverctl_takes_the_device_again_at_boot(cli, env):
    env.fake.write(f"etc/driverctl.d/pci-{bh.E1000E}", "vfio-pci\n")
    assert cli("enable", "00:02.0").code == 0
    note = (
        f"{bh.E1000E}: driverctl binds it to vfio-pci again at the next boot (/etc/driverctl.d/pci-{bh.E1000E}); "
        f"'driverctl unset-override {bh.E1000E}' removes that"
    )
    for args in (("--dry-run",), ()):
        r = cli("disable", *args, "00:02.0")
        assert r.code == 0 and note in r.err, r.err
    assert env.driver(bh.E1000E) == "e1000e"
    assert note not in cli("disable", bh.VIRTIO).err


def test_status_on_vfio_with_a_boot_binding_elsewhere(cli, env):
    env.fake.write(f"etc/driverctl.d/pci-{bh.E1000E}", "none\n")  # driverctl's "none": no driver at boot
    assert cli("enable", "00:02.0").code == 0
    r = cli("status", "00:02.0")
    assert (
        f"{bh.E1000E}: on vfio-pci until the next boot only: driverctl (/etc/driverctl.d/pci-{bh.E1000E}) gives "
        f"it no driver; to keep it there: driverctl set-override {bh.E1000E} vfio-pci"
    ) in r.err


def test_refusal_exit_5_and_remedy(cli):
    r = cli("enable", "00:06.0")
    assert r.code == 5 and "not an endpoint" in r.err


def test_not_root_exit_4(cli, env, monkeypatch):
    import pcipass.engine.guards as g

    monkeypatch.setattr(g, "effective_uid", lambda: 1000)
    r = cli("enable", "00:02.0")
    assert r.code == 4 and "needs root" in r.err
    assert env.kernel.writes == []
    assert cli("enable", "--dry-run", "00:02.0").code == 0


def test_lock_busy_exit_1(cli, env, monkeypatch):
    import pcipass.engine

    monkeypatch.setattr(pcipass.engine, "DEFAULT_LOCK_WAIT", 0.2)
    with Lock(env.host, wait=0, command="disable 0000:00:08.0"):
        r = cli("enable", "00:02.0")
    assert r.code == 1
    assert "waiting up to 0.2 s for the lock held by pid" in r.err
    assert "pcipass disable 0000:00:08.0" in r.err and "gave up" in r.err


def test_bad_timeout_is_a_usage_error(cli):
    assert cli("enable", "--timeout", "0", "00:02.0").code == 2


def test_bad_address_is_a_usage_error(cli):
    r = cli("enable", "00:02.0", "zz:zz")
    assert r.code == 2 and "invalid PCI address" in r.err


def test_host_driver_or_path_as_driver_is_a_usage_error(cli):
    for driver, says in (("../../x", "invalid driver name '../../x'"), ("e1000e", "--driver e1000e: not vfio-pci")):
        r = cli("enable", "--driver", driver, "00:02.0")
        assert r.code == 2 and r.out == "" and len(r.err.splitlines()) == 1 and says in r.err, r.err


def test_failure_shows_steps_and_rollback(cli, env):
    import errno

    env.kernel.fail[2] = errno.EBUSY
    r = cli("enable", "00:02.0")
    assert r.code == 1
    assert "Rollback (in reverse order)" in r.out and "rolled back" in r.out
    assert "Device or resource busy" in r.err


def test_live_root_without_iommu_refuses(capsys, monkeypatch, tmp_path):
    """A machine like this one (root disk and network on virtio PCI devices, no IOMMU): enable and disable
    must refuse with exit 5 before any write. Tests never run a mutating command against the real /sys, so
    the live system is a fake tree mirroring this machine, with ``Host.is_live`` forced on for it."""
    from pcipass.host import Host
    from tests.support.fakehost import FakeHost

    fake = FakeHost(tmp_path / "live")
    fake.add_device("0000:00:02.0", vendor="1af4", device="1042", class_="010000", driver="virtio-pci")
    fake.add_device("0000:00:03.0", vendor="1af4", device="1041", class_="020000", driver="virtio-pci")
    fake.add_block("0000:00:02.0", "vda", via="virtio0/block")
    fake.add_net("0000:00:03.0", "eth0")
    monkeypatch.setattr(Host, "is_live", property(lambda self: self.root == fake.root))

    def tree():
        return {
            p: (p.read_bytes() if p.is_file() and not p.is_symlink() else None) for p in sorted(fake.root.rglob("*"))
        }

    before = tree()
    for args in (
        ("enable", "00:03.0"),
        ("enable", "--force", "--group", "00:02.0"),
        ("disable", "00:03.0"),
        ("enable", "--dry-run", "00:03.0"),
    ):
        r = run(capsys, "--root", str(fake.root), *args)
        assert r.code == 5, r.err
        assert "no IOMMU is active" in r.err
    assert tree() == before  # not a write, not even the state directory


def _mount_table(monkeypatch, tmp_path, *sysfs_points: str):
    """This process's mount table, faked: the real /sys and a sysfs at each of ``sysfs_points`` (escaped as
    procfs escapes paths). Nothing real is mounted. Returns the file, to rewrite."""
    import pcipass.host as host_mod

    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n"
        + "".join(
            f"99 1 0:21 / {p.replace(' ', chr(92) + '040')} rw,nosuid shared:7 - sysfs sysfs rw\n" for p in sysfs_points
        )
    )
    monkeypatch.setattr(host_mod, "SELF_MOUNTINFO", str(mountinfo))
    return mountinfo


def test_a_root_whose_sys_is_a_mounted_sysfs_is_treated_as_live(capsys, monkeypatch, tmp_path):
    """A container with its host's / at /host: pcipass --root /host reaches the host's kernel, so the live
    refusal (no IOMMU) applies there too. This process's mount table is a fake one naming the fake tree's sys
    as a sysfs (path escaped as procfs escapes it); nothing real is mounted."""
    from pcipass.host import Host
    from tests.support.fakehost import FakeHost

    fake = FakeHost(tmp_path / "the host")
    fake.add_device("0000:00:03.0", vendor="1af4", device="1041", class_="020000", driver="virtio-pci")
    mountinfo = _mount_table(monkeypatch, tmp_path, str(fake.root / "sys"))
    assert Host(fake.root).reaches_kernel and not Host(fake.root).is_live
    before = sorted(p.name for p in fake.root.rglob("*"))
    r = run(capsys, "--root", str(fake.root), "enable", "--dry-run", "00:03.0")
    assert r.code == 5 and "no IOMMU is active on this host: refusing to enable devices" in r.err
    assert sorted(p.name for p in fake.root.rglob("*")) == before
    mountinfo.write_text("22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n")
    assert not Host(fake.root).reaches_kernel  # a plain tree: the fake-root rules


def test_a_containers_host_root_is_read_through_the_hosts_init(capsys, monkeypatch, tmp_path):
    """In a container with its host's / at /host, /host/proc/self and /host/proc/net are the container's own
    mounts and network, PID 1's are the host's: the management NIC's route is seen there, and a snapshot keeps
    it under the usual names."""
    fake = bh.build(tmp_path / "host")
    fake.write("proc/net/route", bh.ROUTE_HEADER)  # the container's network: nothing of the host's
    fake.write("proc/1/net/route", bh.ROUTE_HEADER + bh.route_line("eth0", "0.0.0.0", "10.0.2.2", "0.0.0.0"))
    fake.write("proc/self/mountinfo", "")
    fake.write("proc/1/mountinfo", "")
    _mount_table(monkeypatch, tmp_path, str(fake.root / "sys"))
    r = run(capsys, "--root", str(fake.root), "enable", "--dry-run", bh.E1000E)
    assert r.code == 5 and "in the routing table" in r.err, r.err
    out = tmp_path / "bundle.tar.gz"
    assert run(capsys, "--root", str(fake.root), "snapshot", "-o", str(out)).code == 0
    (tmp_path / "unpacked").mkdir()
    unpack(out, tmp_path / "unpacked", limit=max_unpacked())
    assert (tmp_path / "unpacked/proc/net/route").read_text().count("eth0") == 1
    r = run(capsys, "--root", str(tmp_path / "unpacked"), "enable", "--dry-run", bh.E1000E)
    assert r.code == 5 and "in the routing table" in r.err, r.err


@pytest.mark.parametrize("noiommu", [False, True])
def test_groups_without_iommu_class_dir(capsys, monkeypatch, tmp_path, noiommu):
    """A tree recorded without /sys/class/iommu (tests/data's HPE hosts) but with IOMMU groups has an active
    IOMMU, for enable as for check-iommu; vfio's no-IOMMU groups alone do not make one, for either."""
    from pcipass.host import Host
    from tests.support.fakehost import FakeHost

    fake = FakeHost(tmp_path / "host")
    fake.add_device("0000:00:03.0", vendor="8086", device="10d3", class_="020000", driver="e1000e")
    fake.add_driver("vfio-pci")
    fake.set_group("0000:00:03.0", 7)
    if noiommu:
        fake.write("sys/kernel/iommu_groups/7/name", "vfio-noiommu\n")
    assert not any((fake.root / "sys/class/iommu").iterdir())
    monkeypatch.setattr(Host, "is_live", property(lambda self: self.root == fake.root))
    r = run(capsys, "--root", str(fake.root), "enable", "--dry-run", "00:03.0")
    check = run(capsys, "--root", str(fake.root), "--format", "json", "check-iommu")
    active = next(c for c in json.loads(check.out)["data"]["checks"] if c["id"] == "iommu.active")
    if noiommu:
        assert r.code == 5 and "no IOMMU is active" in r.err
        assert active["verdict"] == "fail"
    else:
        assert r.code == 0, r.err
        assert "planned" in r.out and "/sys/bus/pci/devices/0000:00:03.0/driver_override   vfio-pci" in r.out
        assert active["verdict"] == "pass"


def test_this_machine_is_recognised_as_live(tmp_path):
    """Read-only: the running system is seen as live, and the refusal's IOMMU test reads it as the kernel does
    (this development machine has no IOMMU: no unit, no group, so enable and disable refuse here)."""
    from pcipass.host import Host
    from pcipass.iommu import active

    host = Host("/")
    assert host.is_live and host.reaches_kernel
    # A tree whose sys is a link to the real /sys reaches this kernel too (read-only: nothing is run on it).
    (tmp_path / "sys").symlink_to("/sys")
    assert Host(tmp_path).reaches_kernel and not Host(tmp_path).is_live
    assert active(host) == (any(Path("/sys/class/iommu").iterdir()) or any(Path("/sys/kernel/iommu_groups").iterdir()))
