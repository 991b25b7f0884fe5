"""``pcipass check-iommu`` against a real kernel: the IOMMU on (``intel_iommu=on iommu=pt``) and off
(``intel_iommu=off``), a real boot-loader file, and a real modprobe.d blacklist that the guest's own modprobe
then obeys. Everything written here lands in the guest's throw-away overlay and is removed again.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

TOPOLOGY = ("iommu_on", "iommu_off")

IOMMU_CHECKS = (
    "iommu.vendor",
    "firmware.dmar",
    "iommu.active",
    "cmdline.intel_iommu",
    "cmdline.iommu_off",
    "cmdline.iommu_pt",
    "irq.remap",
    "kconfig.vfio_pci",
    "kconfig.intel_iommu",
    "kconfig.irq_remap",
    "module.vfio",
    "module.vfio_pci",
    "module.vfio_iommu_type1",
    "kernel.driver_override",
)


# The kernel's build config in /boot for every test here (fixture in tests/guest/conftest.py).
pytestmark = pytest.mark.usefixtures("kernel_config")


@pytest.fixture
def write_file():
    """Write files into the guest's overlay for one test, removing them afterwards."""
    made: list[Path] = []

    def write(path: str, text: str) -> Path:
        p = Path(path)
        assert not p.exists(), f"{p} already exists in the guest"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        made.append(p)
        return p

    yield write
    for p in made:
        p.unlink(missing_ok=True)


def _report():
    from pcipass.host import Host
    from pcipass.preflight import run

    report = run(Host("/"))
    return {c.key: c for c in report.checks}, report


def _failing(checks: dict) -> dict:
    return {k: (c["verdict"], c["detail"]) for k, c in checks.items() if c["verdict"] == "fail"}


def test_cli_verdicts_and_exit_code(topology, run_cli):
    p = run_cli("check-iommu", "--format", "json")
    env = json.loads(p.stdout)
    by = {c["id"]: c for c in env["data"]["checks"]}
    if topology["iommu"]:
        assert p.returncode == 0, (_failing(by), p.stderr)
        assert {cid: by[cid]["verdict"] for cid in IOMMU_CHECKS} == {cid: "pass" for cid in IOMMU_CHECKS}, by
        assert by["iommu.vendor"]["detail"] == "Intel VT-d (IOMMU unit dmar0)"
        assert by["iommu.active"]["detail"].startswith("dmar0 registered; ")
        assert by["cmdline.intel_iommu"]["detail"] == "intel_iommu=on"
        assert by["cmdline.iommu_pt"]["detail"].startswith("iommu=pt: ")
        # qemu's intel-iommu with intremap=on sets the IR bit of the extended capability register
        assert by["irq.remap"]["detail"].startswith("supported by dmar0 (IR bit")
        groups = len(os.listdir("/sys/kernel/iommu_groups"))
        assert by["iommu.domain_type"]["detail"].startswith(f"default domain of {groups} groups: identity {groups} ")
        assert env["data"]["summary"]["cmdline_remedy"] is None
    else:
        assert p.returncode == 1
        assert by["iommu.active"]["verdict"] == "fail"
        assert by["iommu.active"]["detail"] == (
            "no IOMMU: /sys/class/iommu is empty and there are no IOMMU groups; intel_iommu=off is on the command line"
        )
        # no boot-loader configuration in this guest: the generic command-line edit
        assert by["iommu.active"]["remedy"] == (
            "remove intel_iommu=off and add intel_iommu=on on the kernel command line in your boot loader's "
            "configuration (no GRUB, grubby or systemd-boot configuration was found), then reboot"
        )
        assert by["cmdline.intel_iommu"]["verdict"] == "fail"
        assert by["firmware.dmar"]["verdict"] == "pass"  # qemu still provides the DMAR table
        assert set(_failing(by)) == {"iommu.active", "cmdline.intel_iommu"}, _failing(by)
    assert by["kconfig.vfio_pci"]["detail"] == f"CONFIG_VFIO_PCI=m (/boot/config-{os.uname().release})"


def test_interrupt_remapping_from_the_live_kernel_log(topology):
    checks, _ = _report()
    c = checks["irq.remap"]
    if topology["iommu"]:
        assert c.detail.startswith("supported by dmar0")
    else:
        # no IOMMU unit to ask: /dev/kmsg is read, and interrupt remapping works without DMA remapping
        assert c.verdict.value == "pass", c.detail
        assert c.detail.startswith("kernel log (/dev/kmsg): DMAR-IR: Enabled IRQ remapping in"), c.detail


def test_grub_remedy(topology, write_file):
    write_file(
        "/etc/default/grub",
        'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off"\nGRUB_CMDLINE_LINUX="console=ttyS0"\n',
    )
    checks, report = _report()
    assert report.summary.boot_loader == "GRUB (/etc/default/grub; Debian family)"  # the guest's / is Debian
    if topology["iommu"]:
        assert report.summary.cmdline_remedy is None
    else:
        expected = (
            'in /etc/default/grub set GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"; then run update-grub '
            "and reboot"
        )
        assert checks["iommu.active"].remedy == expected
        assert checks["cmdline.intel_iommu"].remedy == expected


def _modprobe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["modprobe", *args], capture_output=True, text=True, timeout=60)


def test_blacklisted_vfio_pci(write_file):
    from pcipass.preflight import Verdict

    loaded = Path("/sys/module/vfio_pci").exists()
    if loaded:
        p = _modprobe("-r", "vfio_pci")
        assert p.returncode == 0, f"vfio_pci is in use, cannot test its blacklist: {p.stderr}"
    try:
        conf = write_file("/etc/modprobe.d/pcipass-test-no-vfio.conf", "# pcipass guest test\nblacklist vfio_pci\n")
        c = _report()[0]["module.vfio_pci"]
        assert c.verdict is Verdict.WARN, c
        assert c.detail.startswith(f"blacklisted ({conf}:2): not loaded automatically"), c.detail
        assert c.remedy.startswith(f"delete line 2 of {conf}; ")
        # kmod agrees: blacklist rules apply to alias loads (-b, as udev uses), an explicit load still works
        assert "vfio-pci.ko" not in _modprobe("-b", "-n", "-v", "vfio-pci").stdout
        assert "vfio-pci.ko" in _modprobe("-n", "-v", "vfio-pci").stdout

        conf.write_text("install vfio_pci /bin/false\n")
        c = _report()[0]["module.vfio_pci"]
        assert c.verdict is Verdict.FAIL, c
        assert c.detail.startswith("disabled: 'install vfio-pci /bin/false'"), c.detail
        p = _modprobe("vfio-pci")
        assert p.returncode != 0 and not Path("/sys/module/vfio_pci").exists()
    finally:
        Path("/etc/modprobe.d/pcipass-test-no-vfio.conf").unlink(missing_ok=True)
        if loaded:
            _modprobe("vfio-pci")
    assert _report()[0]["module.vfio_pci"].verdict is Verdict.PASS
