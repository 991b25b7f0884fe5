"""A snapshot answers every question pcipass asks the same way the original host does."""

import json
import tarfile

import pytest

from tests.support.bind_hosts import env  # noqa: F401 - fixture
from tests.support.cli import run
from tests.support.preflight_hosts import amd_host, intel_host


def _checks(capsys, root, *extra):
    r = run(capsys, "--root", str(root), "-f", "json", "check-iommu", *extra)
    data = json.loads(r.out)["data"]
    return r.code, data


def _snapshot(capsys, root, out):
    assert run(capsys, "--root", str(root), "snapshot", "-o", str(out)).code == 0
    return out


def _verdicts(capsys, root) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in _checks(capsys, root)[1]["checks"]}


@pytest.mark.parametrize("build", [intel_host, amd_host])
def test_preflight_same_on_snapshot(capsys, fake, tmp_path, build):
    build(fake)
    fake.write("etc/modprobe.d/vfio.conf", "blacklist vfio_pci\n")
    fake.add_net("0000:00:00.0", "eth0")
    out = _snapshot(capsys, fake.root, tmp_path / "bundle.tar.xz")
    assert _checks(capsys, fake.root) == _checks(capsys, out)
    dev = next(iter(sorted(a for a in fake.devices if a != "0000:00:00.0")))
    assert _checks(capsys, fake.root, "--device", dev) == _checks(capsys, out, "--device", dev)


def test_missing_acpi_table_stays_a_finding(capsys, fake, tmp_path):
    intel_host(fake)
    (fake.root / "sys/firmware/acpi/tables/DMAR").unlink()
    out = _snapshot(capsys, fake.root, tmp_path / "b.tar.gz")
    live, snap = _verdicts(capsys, fake.root), _verdicts(capsys, out)
    assert snap == live and live["firmware.dmar"] != "skip"


def test_boot_tools_and_grub_drop_ins_are_captured(capsys, fake, tmp_path):
    intel_host(fake)
    fake.write("etc/default/grub.d/50-cloudimg.cfg", 'GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0"\n')
    out = _snapshot(capsys, fake.root, tmp_path / "b.tar.gz")
    import tarfile

    names = set(tarfile.open(out).getnames())
    assert {"usr/sbin/update-grub", "etc/default/grub.d/50-cloudimg.cfg", "etc/default/grub"} <= names


def test_missing_kvm_node_stays_a_finding(capsys, fake, tmp_path):
    intel_host(fake)
    (fake.root / "dev/kvm").unlink()
    out = _snapshot(capsys, fake.root, tmp_path / "b.tar.gz")
    live, snap = _verdicts(capsys, fake.root), _verdicts(capsys, out)
    assert live["kvm.dev"] == "warn" and snap == live


def test_a_keyboard_behind_a_usb_controller_survives_the_snapshot(capsys, fake, tmp_path):
    from tests.support import bind_hosts as bh

    intel_host(fake)
    fake.add_device("0000:00:14.0", vendor="8086", device="a36d", class_="0c0330", driver="xhci_hcd", group=21)
    bh.add_input(fake, "0000:00:14.0", "input3", "Dell KB216 Wired Keyboard", bh.KEYBOARD_KEYS)
    out = _snapshot(capsys, fake.root, tmp_path / "kbd.tar.gz")
    for root in (fake.root, out):
        code, data = _checks(capsys, root, "--device", "00:14.0")
        (in_use,) = [c for c in data["checks"] if c["id"] == "device.in_use"]
        assert code == 1 and in_use["verdict"] == "fail" and "Dell KB216" in in_use["detail"], in_use


def test_status_same_on_snapshot(capsys, env, tmp_path):
    """The boot-time bindings status reports (driverctl, vfio-pci ids=) travel in the bundle."""
    from tests.support import bind_hosts as bh

    env.fake.write(f"etc/driverctl.d/pci-{bh.E1000E}", "vfio-pci\n")
    env.fake.write("etc/modprobe.d/vfio.conf", "options vfio-pci ids=1af4:1000\n")
    out = _snapshot(capsys, env.root, tmp_path / "bundle.tar.gz")
    before = run(capsys, "--root", str(env.root), "-f", "json", "status")
    after = run(capsys, "--root", str(out), "-f", "json", "status")
    assert before.out == after.out and before.err == after.err
    by = {d["address"]: d["boot_by"] for d in json.loads(after.out)["data"]}
    assert (by[bh.E1000E], by[bh.VIRTIO]) == ("driverctl", "vfio-pci ids=")


def test_snapshot_output_errors(capsys, fake, tmp_path, monkeypatch):
    import errno
    import tarfile

    r = run(capsys, "--root", str(fake.root), "snapshot", "-o", str(tmp_path / "bundle.zip"))
    assert r.code == 2 and "must end in .tar.gz, .tgz, .tar.xz, .txz" in r.err
    r = run(capsys, "--root", str(fake.root), "snapshot", "-o", str(tmp_path / "no/such/dir/b.tar.gz"))
    assert r.code == 1 and "(ENOENT) (-o needs a file in a directory that exists" in r.err

    def full_disk(*_args, **_kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "addfile", full_disk)
    r = run(capsys, "--root", str(fake.root), "snapshot", "-o", str(tmp_path / "b.tar.xz"))
    assert r.code == 1 and "No space left on device (ENOSPC)" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]  # no half-written archive, no .tmp


def test_every_file_a_host_accessor_marks_captured_is_in_the_snapshot(capsys, fake, tmp_path):
    """What the snapshot holds of the files readers read as they are follows from Host's accessors
    (``captured_files``), not from a list in snapshot.py: each of them, present on the host, is in it."""
    import tarfile

    from pcipass.host import Host

    intel_host(fake)
    host = Host(fake.root)
    files = host.captured_files()
    assert len(files) >= 15 and host.cmdline in files and host.default_grub in files
    for path in files:
        if not path.exists():
            fake.write(host.archive_name(path), "captured\n")
    names = set(tarfile.open(_snapshot(capsys, fake.root, tmp_path / "b.tar.gz")).getnames())
    assert {host.archive_name(p) for p in files} <= names


@pytest.mark.parametrize("existing", ["file", "link"])
def test_output_that_exists_is_refused_unless_forced(capsys, fake, tmp_path, existing):
    """snapshot -o never replaces a file silently, and never writes through a link to its target."""
    target = tmp_path / "precious"
    target.write_text("keep\n")
    out = tmp_path / "b.tar.gz"
    if existing == "file":
        out.write_text("keep\n")
    else:
        out.symlink_to(target)
    r = run(capsys, "--root", str(fake.root), "snapshot", "-o", str(out))
    assert r.code == 2 and "--force" in r.err and f"a {existing} of that name exists" in r.err, r.err
    assert out.read_text() == "keep\n" and target.read_text() == "keep\n"
    r = run(capsys, "--root", str(fake.root), "snapshot", "-o", str(out), "--force")
    assert r.code == 0, r.err
    assert not out.is_symlink() and tarfile.is_tarfile(out)
    assert target.read_text() == "keep\n"  # the link was replaced, its target never written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz", "precious", "root"]
