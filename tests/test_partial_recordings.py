"""Truthful verdicts on partial recordings: a fact the root does not hold is a skip with its reason, never a
pass or a fail (snapshots and other tools' recordings lack files a live host has)."""

from __future__ import annotations

import shutil

from pcipass.host import Host
from pcipass.preflight import run
from tests.support.preflight_hosts import checks, intel_host

NVME = "0000:02:00.0"
ARM64_CPUINFO = (
    "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\n\n"
)


# --- kernel.driver_override ---------------------------------------------------------------------------------


def _without_driver_override(fake):
    intel_host(fake)
    for dev in fake.devices.values():
        (dev.path / "driver_override").unlink()
    return fake


def test_no_driver_override_files_on_a_recent_kernel_is_a_recording_not_an_old_kernel(fake):
    _without_driver_override(fake)
    fake.write("proc/sys/kernel/osrelease", "6.1.0-28-amd64\n")
    c = checks(fake)["kernel.driver_override"]
    assert c.verdict.value == "skip" and "kernel 6.1.0-28-amd64 has it" in c.detail


def test_no_driver_override_files_and_no_kernel_release_is_a_skip(fake):
    _without_driver_override(fake)
    (fake.root / "proc/sys/kernel/osrelease").unlink(missing_ok=True)
    shutil.rmtree(fake.root / "lib/modules", ignore_errors=True)
    assert Host(fake.root).kernel_release is None
    c = checks(fake)["kernel.driver_override"]
    assert c.verdict.value == "skip" and "release is unknown" in c.detail


def test_no_driver_override_files_on_a_kernel_before_3_16_fails(fake):
    _without_driver_override(fake)
    fake.write("proc/sys/kernel/osrelease", "3.10.0-123.el7.x86_64\n")
    c = checks(fake)["kernel.driver_override"]
    assert c.verdict.value == "fail" and "3.10.0-123.el7.x86_64 predates 3.16" in c.detail


# --- iommu.active -------------------------------------------------------------------------------------------


def test_groups_without_the_iommu_class_directory_are_an_active_iommu(capsys, fake):
    intel_host(fake)
    shutil.rmtree(fake.root / "sys/class/iommu")
    c = checks(fake)["iommu.active"]
    assert c.verdict.value == "pass" and "2 IOMMU groups" in c.detail
    from tests.support.cli import run as cli

    r = cli(capsys, "--root", str(fake.root), "enable", "--dry-run", "00:02.0")
    assert r.code == 0 and "no IOMMU" not in r.err


# --- device.in_use ------------------------------------------------------------------------------------------


def _nvme_root_disk(fake, *, mountinfo: bool, holders: bool, swaps: bool = True):
    """An NVMe disk whose second partition is the root filesystem, in a recording with proc/self/mounts and
    optionally mountinfo, holders/ and swaps."""
    intel_host(fake)
    fake.add_device(NVME, vendor="144d", device="a808", class_="010802", driver="nvme", group=5)
    fake.add_block(NVME, "nvme0n1", partitions=("nvme0n1p1", "nvme0n1p2"))
    disk = fake.devices[NVME].path / "nvme/nvme0/nvme0n1"
    for d, devnum in ((disk, "259:0"), (disk / "nvme0n1p1", "259:1"), (disk / "nvme0n1p2", "259:2")):
        (d / "dev").write_text(devnum + "\n")
        if not holders:
            shutil.rmtree(d / "holders")
    fake.write("proc/self/mounts", "/dev/nvme0n1p2 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n")
    if mountinfo:
        fake.write("proc/self/mountinfo", "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n")
    if swaps:
        fake.write("proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
    return fake


def test_in_use_without_mountinfo_and_holders_is_a_skip_not_a_pass(fake):
    _nvme_root_disk(fake, mountinfo=False, holders=False)
    c = checks(fake, [NVME])[f"device.in_use@{NVME}"]
    assert c.verdict.value == "skip", c.detail
    assert "/proc/self/mountinfo (for nvme0n1, nvme0n1p1, nvme0n1p2)" in c.detail
    assert "holders of nvme0n1, nvme0n1p1, nvme0n1p2" in c.detail


def test_in_use_without_holders_only_is_a_skip(fake):
    fake.write("proc/self/mountinfo", "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    _nvme_root_disk(fake, mountinfo=False, holders=False)
    fake.write("proc/self/mountinfo", "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    c = checks(fake, [NVME])[f"device.in_use@{NVME}"]
    assert c.verdict.value == "skip" and "mountinfo" not in c.detail and "holders" in c.detail


def test_in_use_with_every_fact_is_answered(fake):
    _nvme_root_disk(fake, mountinfo=True, holders=True)
    c = checks(fake, [NVME])[f"device.in_use@{NVME}"]
    assert c.verdict.value == "fail" and "nvme0n1p2: mounted on /" in c.detail


def test_a_use_found_fails_even_with_facts_missing(fake):
    _nvme_root_disk(fake, mountinfo=True, holders=False, swaps=False)
    assert checks(fake, [NVME])[f"device.in_use@{NVME}"].verdict.value == "fail"


def test_a_device_with_no_disk_or_interface_needs_none_of_those_facts(fake):
    _nvme_root_disk(fake, mountinfo=False, holders=False)
    assert checks(fake, ["0000:00:02.0"])["device.in_use@0000:00:02.0"].verdict.value == "pass"


def test_an_interface_without_the_route_table_is_a_skip(fake):
    intel_host(fake)
    fake.add_net("0000:00:02.0", "eno1")
    (fake.root / "proc/net/route").unlink(missing_ok=True)
    c = checks(fake, ["0000:00:02.0"])["device.in_use@0000:00:02.0"]
    assert c.verdict.value == "skip"
    assert "/proc/net/route (for eno1), /proc/net/fib_trie (for eno1)" in c.detail


# --- arm64 --------------------------------------------------------------------------------------------------


def _arm64_host(fake, *, smmu: bool = True):
    fake.write("proc/cpuinfo", ARM64_CPUINFO + ARM64_CPUINFO.replace("processor\t: 0", "processor\t: 1"))
    fake.set_cmdline("BOOT_IMAGE=/vmlinuz-6.1 root=/dev/sda1 ro quiet")
    if smmu:
        fake.enable_iommu("smmu3.0x0000000009050000", vendor="arm")
    fake.add_device("0000:00:01.0", vendor="8086", device="10d3", driver="e1000e", group=1)
    return fake


def test_arm64_cpuinfo_does_not_ask_for_vt_x(fake):
    _arm64_host(fake)
    report = run(Host(fake.root))
    c = {x.id: x for x in report.checks}
    assert c["cpu.virt"].verdict.value == "skip" and c["cpu.virt"].detail.startswith("arm64:")
    assert c["iommu.vendor"].verdict.value == "pass" and c["iommu.vendor"].detail.startswith(
        "Arm SMMU (IOMMU unit smmu3"
    )
    assert c["iommu.active"].verdict.value == "pass"
    assert report.summary.iommu_vendor == "arm"
    assert not [x.id for x in report.checks if "intel" in x.id or "amd" in x.id or "firmware." in x.id]
    text = " ".join(f"{x.detail} {x.remedy}" for x in report.checks)
    assert "VT-x" not in text and "SVM" not in text and "kvm_intel" not in text


def test_arm64_without_smmu_units_is_still_arm(fake):
    _arm64_host(fake, smmu=False)
    c = {x.id: x for x in run(Host(fake.root)).checks}
    assert c["iommu.vendor"].detail.startswith("Arm SMMU (arm64 CPU)")
    assert "VT-x" not in (c["kvm.dev"].remedy or "")


def test_a_cpuinfo_of_no_known_architecture_is_a_skip(fake):
    fake.write("proc/cpuinfo", "processor\t: 0\ncpu\t\t: POWER9\n\n")
    fake.add_device("0000:00:01.0", group=1)
    c = {x.id: x for x in run(Host(fake.root)).checks}
    assert c["cpu.virt"].verdict.value == "skip" and "cannot tell" in c["cpu.virt"].detail
