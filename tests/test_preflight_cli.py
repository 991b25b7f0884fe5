"""``pcipass check-iommu``: output formats, exit codes, skipped checks, recorded hosts, running as non-root."""

import json
import os

import pytest
import yaml

from tests.support.cli import run, run_unprivileged
from tests.support.fakehost import FakeHost
from tests.support.preflight_hosts import intel_host


def test_healthy_host_exits_0_with_table(fake, capsys):
    intel_host(fake)
    r = run(capsys, "--root", str(fake.root), "check-iommu")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["CHECK", "VERDICT", "DETAIL", "REMEDY"]
    assert any(line.split()[:2] == ["iommu.active", "pass"] for line in lines)
    assert "pass: 21 passed, 0 warned, 0 failed, 0 skipped" in r.out
    assert "boot loader: GRUB (/etc/default/grub; Debian family)" in r.out
    assert r.err == ""


def test_warnings_still_exit_0(fake, capsys):
    intel_host(fake, cmdline="intel_iommu=on pcie_acs_override=downstream")
    r = run(capsys, "--root", str(fake.root), "check-iommu", "--format", "json")
    env = json.loads(r.out)
    assert r.code == 0
    assert env["status"] == "ok" and env["command"] == "check-iommu"
    assert env["data"]["summary"]["verdict"] == "warn"
    assert env["data"]["summary"]["warned"] == ["cmdline.iommu_pt", "cmdline.acs_override"]


def test_failure_exits_1_with_json_envelope(fake, capsys):
    intel_host(fake, cmdline="BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet intel_iommu=off")
    fake.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off"\n')
    import shutil as sh

    sh.rmtree(fake.path("sys/kernel/iommu_groups"))
    os.unlink(fake.path("sys/class/iommu/dmar0"))
    r = run(capsys, "--root", str(fake.root), "check-iommu", "-f", "json")
    assert r.code == 1
    data = json.loads(r.out)["data"]
    assert set(data) == {"checks", "summary"}
    first = data["checks"][0]
    assert list(first) == ["id", "verdict", "detail", "remedy", "device"]
    by_id = {c["id"]: c for c in data["checks"]}
    assert by_id["iommu.active"]["verdict"] == "fail"
    assert by_id["iommu.active"]["remedy"] == (
        'in /etc/default/grub set GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"; then run update-grub and reboot'
    )
    s = data["summary"]
    assert s["verdict"] == "fail" and s["failed"] == ["iommu.active", "cmdline.intel_iommu"]
    assert s["counts"] == {"pass": 16, "warn": 1, "fail": 2, "skip": 2}  # warn: iommu_pt; skip: domain_type, irq.remap
    assert s["boot_loader"] == "GRUB (/etc/default/grub; Debian family)"
    assert s["cmdline_remedy"] == (
        'in /etc/default/grub set GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on '
        'iommu=pt"; then run update-grub and reboot'
    )


def test_yaml_and_device_option(fake, capsys):
    intel_host(fake)
    r = run(capsys, "--root", str(fake.root), "check-iommu", "-f", "yaml", "--device", "00:02.0", "-d", "0000:00:02.0")
    env = yaml.safe_load(r.out)
    devs = [c for c in env["data"]["checks"] if c["device"]]
    assert [c["id"] for c in devs][:2] == ["device.present", "device.endpoint"]
    assert {c["device"] for c in devs} == {"0000:00:02.0"}  # the same device given twice is checked once
    assert r.code == 0


def test_unknown_device_exits_1_and_bad_address_exits_2(fake, capsys):
    intel_host(fake)
    r = run(capsys, "--root", str(fake.root), "check-iommu", "--device", "0000:42:00.0")
    assert r.code == 1 and "device.present 0000:42:00.0" in r.out
    r = run(capsys, "--root", str(fake.root), "check-iommu", "--device", "not-an-address")
    assert r.code == 2 and "invalid PCI address 'not-an-address'" in r.err


def test_skipped_checks_are_named_on_stderr(fake, capsys):
    intel_host(fake)
    os.unlink(fake.path("proc/cpuinfo"))
    os.unlink(fake.path(f"boot/config-{fake.KVER}"))
    r = run(capsys, "--root", str(fake.root), "check-iommu")
    assert r.code == 0
    assert r.err.startswith(
        "pcipass: skipped 4 checks: cpu.virt (no /proc/cpuinfo in this root); kconfig.vfio_pci, "
        "kconfig.intel_iommu, kconfig.irq_remap (no /boot/config-6.1.0-test-amd64 or "
        "/proc/config.gz in this root)"
    )


def test_recorded_host_iommu_on(hpe_a2, capsys):
    r = run(capsys, "--root", str(hpe_a2), "check-iommu", "-f", "json", "-d", "08:00.0", "-d", "01:00.0")
    data = json.loads(r.out)["data"]
    by = {(c["id"], c["device"]): c for c in data["checks"]}
    assert by[("iommu.active", None)]["verdict"] == "pass"
    assert by[("iommu.active", None)]["detail"].startswith("106 IOMMU groups")
    assert by[("iommu.vendor", None)]["detail"] == "Intel VT-d (IOMMU unit dmar0)"
    assert by[("kernel.driver_override", None)]["verdict"] == "pass"
    assert by[("device.group", "0000:08:00.0")]["detail"] == "IOMMU group 38"
    assert by[("device.group_peers", "0000:08:00.0")]["verdict"] == "pass"
    # the iLO functions share group 33 with host drivers
    assert by[("device.group_peers", "0000:01:00.0")]["verdict"] == "warn"
    assert data["summary"]["failed"] == []
    assert r.code == 0


def test_recorded_host_iommu_off(hpe_iommu_off, capsys):
    r = run(capsys, "--root", str(hpe_iommu_off), "check-iommu", "-f", "json", "-d", "0000:03:00.0")
    data = json.loads(r.out)["data"]
    by = {(c["id"], c["device"]): c for c in data["checks"]}
    assert r.code == 1
    assert by[("iommu.active", None)]["verdict"] == "fail"
    assert by[("iommu.active", None)]["remedy"].startswith("unless the kernel command line already has intel_iommu=on")
    assert by[("device.group", "0000:03:00.0")]["verdict"] == "fail"
    assert data["summary"]["failed"] == ["iommu.active", "device.group@0000:03:00.0"]


def test_as_non_root_skips_what_it_cannot_read(fake, capsys):
    intel_host(fake)
    os.unlink(fake.path("sys/devices/virtual/iommu/dmar0/intel-iommu/ecap"))  # force the kernel-log path
    fake.write("var/log/kern.log", "kernel: DMAR-IR: Enabled IRQ remapping in x2apic mode\n")
    os.chmod(fake.path(f"boot/config-{fake.KVER}"), 0)
    os.chmod(fake.path("var/log/kern.log"), 0)
    p = run_unprivileged("--root", str(fake.root), "check-iommu", "-f", "json")
    out, err, code = p.stdout, p.stderr, p.returncode
    data = json.loads(out)["data"]
    by = {c["id"]: c for c in data["checks"]}
    assert by["kconfig.vfio_pci"]["verdict"] == "skip"
    assert by["kconfig.vfio_pci"]["detail"] == (
        "cannot read /boot/config-6.1.0-test-amd64: permission denied (run as root)"
    )
    assert by["irq.remap"]["detail"] == "cannot read /var/log/kern.log: permission denied (run as root)"
    assert by["iommu.active"]["verdict"] == "pass"
    assert "skipped 4 checks: irq.remap (cannot read /var/log/kern.log" in err
    assert code == 0


@pytest.mark.parametrize("fmt", ["table", "json", "yaml"])
def test_device_strings_are_not_markup(tmp_path, capsys, fmt):
    fake = FakeHost(tmp_path / "r")
    intel_host(fake, cmdline="intel_iommu=on iommu=pt vfio-pci.ids=[bold]x:[/]")
    r = run(capsys, "--root", str(fake.root), "check-iommu", "-f", fmt)
    assert "vfio-pci.ids=[bold]x:[/]" in r.out
