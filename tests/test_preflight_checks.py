"""Every verdict of every host check, on fake Intel and AMD hosts."""

import os

import pytest

from pcipass.host import Host
from pcipass.preflight import files, run
from pcipass.preflight.facts import Facts
from tests.support.preflight_hosts import amd_host, checks, intel_host, verdicts


def test_healthy_intel_host_passes_everything(fake):
    intel_host(fake)
    got = verdicts(fake)
    assert set(got.values()) == {"pass"}, got
    assert list(got) == [
        "iommu.vendor",
        "cpu.virt",
        "kvm.dev",
        "firmware.dmar",
        "iommu.active",
        "iommu.domain_type",
        "cmdline.intel_iommu",
        "cmdline.iommu_off",
        "cmdline.iommu_pt",
        "cmdline.acs_override",
        "cmdline.noiommu",
        "cmdline.vfio_ids",
        "irq.remap",
        "vfio.unsafe_interrupts",
        "kconfig.vfio_pci",
        "kconfig.intel_iommu",
        "kconfig.irq_remap",
        "module.vfio",
        "module.vfio_pci",
        "module.vfio_iommu_type1",
        "kernel.driver_override",
    ]
    report = run(Host(fake.root))
    assert report.summary.cmdline_remedy is None and report.summary.iommu_vendor == "intel"
    assert report.summary.counts == {"pass": 21, "warn": 0, "fail": 0, "skip": 0}


def test_healthy_amd_host_passes_everything(fake):
    amd_host(fake)
    c = checks(fake)
    assert {k: v.verdict.value for k, v in c.items() if v.verdict.value != "pass"} == {}
    assert "firmware.ivrs" in c and "cmdline.amd_iommu" in c and "kconfig.amd_iommu" in c
    assert "cmdline.intel_iommu" not in c and "firmware.dmar" not in c
    assert (
        c["irq.remap"].detail == "kernel log (/var/log/kern.log): Jan 1 00:00:00 h kernel: [    0.6] AMD-Vi: "
        "Interrupt remapping enabled"
    )
    assert c["module.vfio_pci"].detail == "built into the kernel"
    assert c["cmdline.amd_iommu"].detail == "no amd_iommu=off (the AMD IOMMU is on by default)"


# --- CPU, KVM, firmware ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vendor, expected", [("GenuineIntel", "intel"), ("AuthenticAMD", "amd"), ("HygonGenuine", "amd")]
)
def test_iommu_vendor_from_cpuinfo(fake, vendor, expected):
    fake.set_cpuinfo(vendor, ("svm",))
    assert run(Host(fake.root)).summary.iommu_vendor == expected
    assert checks(fake)["iommu.vendor"].detail.endswith(f"(CPU {vendor})")


def test_iommu_vendor_evidence_order(fake):
    fake.add_device("0000:00:00.0", vendor="1022", device="1480", class_="060000")
    assert checks(fake)["iommu.vendor"].detail == "AMD-Vi (host bridge vendor 0x1022)"
    fake.set_cpuinfo("GenuineIntel")
    assert checks(fake)["iommu.vendor"].detail == "Intel VT-d (CPU GenuineIntel)"
    fake.add_acpi_table("IVRS")
    assert checks(fake)["iommu.vendor"].detail == "AMD-Vi (ACPI IVRS table)"
    # an emulated Intel IOMMU with any CPU (qemu TCG): the IOMMU itself decides
    fake.enable_iommu("dmar0")
    assert checks(fake)["iommu.vendor"].detail == "Intel VT-d (IOMMU unit dmar0)"


def test_iommu_vendor_unknown_drops_vendor_checks(fake):
    c = checks(fake)
    assert c["iommu.vendor"].verdict.value == "skip"
    assert not any(
        k.startswith(("firmware.", "kconfig.intel", "kconfig.amd", "cmdline.intel", "cmdline.amd")) for k in c
    )


@pytest.mark.parametrize(
    "flags, verdict, words",
    [
        (("vmx",), "pass", "vmx (Intel VT-x)"),
        (("svm",), "pass", "svm (AMD-V)"),
        (("hypervisor",), "warn", "without nested virtualization"),
        (("fpu",), "warn", "off in the firmware"),
    ],
)
def test_cpu_virt(fake, flags, verdict, words):
    fake.set_cpuinfo("GenuineIntel", flags)
    c = checks(fake)["cpu.virt"]
    assert c.verdict.value == verdict and words in c.detail


def test_cpu_virt_skips_without_cpuinfo(fake):
    assert checks(fake)["cpu.virt"].detail == "no /proc/cpuinfo in this root"


def test_kvm_dev(fake):
    fake.set_cpuinfo("GenuineIntel", ("vmx",))
    c = checks(fake)["kvm.dev"]
    assert (c.verdict.value, c.remedy) == ("warn", "modprobe kvm_intel")
    fake.set_cpuinfo("AuthenticAMD", ("fpu",))
    c = checks(fake)["kvm.dev"]
    assert c.verdict.value == "warn" and c.remedy == "enable VT-x/AMD-V (see cpu.virt), then modprobe kvm_amd"
    fake.write("dev/kvm", "")  # a snapshot's placeholder is a regular file
    assert checks(fake)["kvm.dev"].verdict.value == "pass"
    os.unlink(fake.path("dev/kvm"))
    os.rmdir(fake.path("dev"))
    assert checks(fake)["kvm.dev"].verdict.value == "skip"


def test_firmware_table(fake):
    intel_host(fake)
    os.unlink(fake.path("sys/firmware/acpi/tables/DMAR"))
    c = checks(fake)["firmware.dmar"]
    assert c.verdict.value == "fail" and "does not advertise VT-d" in c.detail and "firmware" in c.remedy
    import shutil

    shutil.rmtree(fake.path("sys/firmware"))
    assert checks(fake)["firmware.dmar"].verdict.value == "pass"  # no table list, but the IOMMU is active
    shutil.rmtree(fake.path("sys/kernel/iommu_groups"))
    os.unlink(fake.path("sys/class/iommu/dmar0"))
    assert checks(fake)["firmware.dmar"].verdict.value == "skip"


def test_firmware_ivrs_missing_on_amd(fake):
    amd_host(fake)
    os.unlink(fake.path("sys/firmware/acpi/tables/IVRS"))
    c = checks(fake)["firmware.ivrs"]
    assert c.verdict.value == "fail" and "AMD-Vi" in c.detail


# --- IOMMU state ---------------------------------------------------------------------------------------------


def _iommu_off(fake):
    """Take the fake host's IOMMU away: no units, no groups."""
    import shutil

    shutil.rmtree(fake.path("sys/kernel/iommu_groups"))
    fake.path("sys/kernel/iommu_groups").mkdir()
    for name in os.listdir(fake.path("sys/class/iommu")):
        os.unlink(fake.path(f"sys/class/iommu/{name}"))
    for dev in fake.devices.values():
        if (dev.path / "iommu_group").is_symlink():
            (dev.path / "iommu_group").unlink()


def test_iommu_active_pass_and_default_on_note(fake):
    intel_host(fake, cmdline="root=/dev/sda1 iommu=pt")
    fake.set_kconfig(VFIO_PCI="m", INTEL_IOMMU="y", IRQ_REMAP="y", INTEL_IOMMU_DEFAULT_ON="y")
    c = checks(fake)
    assert c["iommu.active"].detail == (
        "dmar0 registered; 2 IOMMU groups (enabled by the kernel's default: no intel_iommu=on on the command line)"
    )
    assert c["cmdline.intel_iommu"].verdict.value == "pass"
    assert "CONFIG_INTEL_IOMMU_DEFAULT_ON=y" in c["cmdline.intel_iommu"].detail
    # Debian's own option (on, except for integrated graphics) counts as on
    fake.set_kconfig(
        VFIO_PCI="m", INTEL_IOMMU="y", IRQ_REMAP="y", INTEL_IOMMU_DEFAULT_ON=None, INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF="y"
    )
    c = checks(fake)["cmdline.intel_iommu"]
    assert c.verdict.value == "pass" and "(CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y)" in c.detail


def test_iommu_active_units_without_groups_warns(fake):
    intel_host(fake)
    import shutil

    shutil.rmtree(fake.path("sys/kernel/iommu_groups"))
    c = checks(fake)["iommu.active"]
    assert c.verdict.value == "warn" and "no IOMMU groups" in c.detail


def test_iommu_active_groups_without_class_dir(fake):
    intel_host(fake)
    os.unlink(fake.path("sys/class/iommu/dmar0"))
    c = checks(fake)["iommu.active"]
    assert c.verdict.value == "pass" and c.detail.startswith("2 IOMMU groups (this root has no /sys/class/iommu")


def test_iommu_not_requested_fails_with_grub_remedy(fake):
    intel_host(fake, cmdline="BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet")
    fake.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n')
    _iommu_off(fake)
    c = checks(fake)
    assert c["iommu.active"].verdict.value == "fail"
    assert "not requested (no intel_iommu=on, and this kernel leaves VT-d off by default)" in c["iommu.active"].detail
    assert c["iommu.active"].remedy == (
        'in /etc/default/grub set GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"; then run update-grub and reboot'
    )
    assert c["cmdline.intel_iommu"].verdict.value == "fail"
    assert c["cmdline.iommu_pt"].verdict.value == "warn"
    summary = run(Host(fake.root)).summary
    assert summary.cmdline_remedy == (
        'in /etc/default/grub set GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on '
        'iommu=pt"; then run update-grub and reboot'
    )
    assert summary.verdict.value == "fail" and "iommu.active" in summary.failed


def test_iommu_requested_but_off_points_at_firmware_or_kernel(fake):
    intel_host(fake)
    _iommu_off(fake)
    os.unlink(fake.path("sys/firmware/acpi/tables/DMAR"))
    c = checks(fake)["iommu.active"]
    assert "although intel_iommu=on is on the command line" in c.detail
    assert c.remedy.startswith("enable VT-d / AMD-Vi (IOMMU) in the firmware setup")
    fake.add_acpi_table("DMAR")
    fake.set_kconfig(VFIO_PCI="m", IRQ_REMAP="y", INTEL_IOMMU=None)
    c = checks(fake)["iommu.active"]
    assert c.remedy.startswith("boot a kernel built with CONFIG_INTEL_IOMMU=y")
    fake.set_kconfig(VFIO_PCI="m", IRQ_REMAP="y", INTEL_IOMMU="y")
    assert checks(fake)["iommu.active"].remedy.startswith("the kernel did not enable it")


def test_iommu_off_by_parameters(fake):
    intel_host(fake, cmdline="root=/dev/sda1 intel_iommu=off,igfx_off iommu=off")
    _iommu_off(fake)
    c = checks(fake)
    assert "iommu=off is on the command line" in c["iommu.active"].detail
    assert c["iommu.active"].remedy == (
        'in /etc/default/grub set GRUB_CMDLINE_LINUX_DEFAULT="quiet '
        'intel_iommu=on,igfx_off"; then run update-grub and reboot'
    )
    assert c["cmdline.intel_iommu"].verdict.value == "fail"
    assert c["cmdline.iommu_off"].verdict.value == "fail"


def test_combined_remedy_is_one_consistent_edit(fake):
    intel_host(fake, cmdline="root=/dev/sda1 iommu=off intremap=off")
    fake.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=off"\nGRUB_CMDLINE_LINUX="intremap=off"\n')
    _iommu_off(fake)
    report = run(Host(fake.root))
    assert {c.id for c in report.checks if c.verdict.value == "fail"} >= {
        "iommu.active",
        "cmdline.intel_iommu",
        "cmdline.iommu_off",
        "irq.remap",
    }
    assert report.summary.cmdline_remedy == (
        'in /etc/default/grub set GRUB_CMDLINE_LINUX="" and GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on '
        'iommu=pt"; then run update-grub and reboot'
    )


def test_iommu_only_noiommu_groups(fake):
    intel_host(fake)
    _iommu_off(fake)
    fake.write("sys/kernel/iommu_groups/0/name", "vfio-noiommu\n")
    c = checks(fake)
    assert c["iommu.active"].verdict.value == "fail" and "vfio no-IOMMU groups (0)" in c["iommu.active"].detail
    assert c["iommu.domain_type"].verdict.value == "skip"


def test_iommu_active_skips_without_sys(tmp_path):
    (tmp_path / "proc").mkdir()
    c = {x.id: x for x in run(Host(tmp_path)).checks}
    assert c["iommu.active"].verdict.value == "skip"


def test_domain_types(fake):
    intel_host(fake)
    fake.add_device("0000:00:03.0", group=2)
    fake.write("sys/kernel/iommu_groups/0/type", "identity\n")
    c = checks(fake)["iommu.domain_type"]
    assert c.detail.startswith("default domain of 3 groups: DMA 2, identity 1 — identity: host drivers bypass")
    for g in ("0", "1", "2"):
        os.unlink(fake.path(f"sys/kernel/iommu_groups/{g}/type"))
    assert checks(fake)["iommu.domain_type"].verdict.value == "skip"


# --- command line ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cmdline, verdict, detail",
    [
        ("intel_iommu=on", "pass", "intel_iommu=on"),
        ("intel_iommu=on,sm_on", "pass", "intel_iommu=on,sm_on"),
        ("intel_iommu=off intel_iommu=on", "pass", "intel_iommu=off,on"),  # options accumulate; the last wins
        ("intel_iommu=on intel_iommu=off", "fail", "intel_iommu=on,off: VT-d is switched off"),
        ("intel_iommu=1", "fail", "the kernel ignores the unknown option '1'"),
        ("quiet", "fail", "this kernel leaves VT-d off by default (CONFIG_INTEL_IOMMU_DEFAULT_ON is not set)"),
    ],
)
def test_cmdline_intel_iommu(fake, cmdline, verdict, detail):
    intel_host(fake, cmdline=cmdline)
    _iommu_off(fake)
    c = checks(fake)["cmdline.intel_iommu"]
    assert c.verdict.value == verdict and detail in c.detail
    if verdict == "fail":
        assert "intel_iommu=on" in c.remedy and "update-grub" in c.remedy


def test_cmdline_intel_iommu_default_unknown(fake):
    intel_host(fake, cmdline="quiet")
    os.unlink(fake.path(f"boot/config-{fake.KVER}"))
    c = checks(fake)["cmdline.intel_iommu"]
    assert c.verdict.value == "pass" and "the IOMMU is active, so this kernel enables VT-d by default" in c.detail
    _iommu_off(fake)
    c = checks(fake)["cmdline.intel_iommu"]
    assert c.verdict.value == "fail" and "kernel config is not available" in c.detail


@pytest.mark.parametrize(
    "cmdline, verdict, words",
    [
        ("amd_iommu=off", "fail", "switched off"),
        ("amd_iommu=fullflush,off", "fail", "switched off"),
        ("amd_iommu=on", "pass", "the kernel ignores 'on' (there is no amd_iommu=on"),
        ("amd_iommu=force_isolation", "pass", "amd_iommu=force_isolation"),
    ],
)
def test_cmdline_amd_iommu(fake, cmdline, verdict, words):
    amd_host(fake, cmdline=cmdline)
    c = checks(fake)["cmdline.amd_iommu"]
    assert c.verdict.value == verdict and words in c.detail
    if cmdline == "amd_iommu=fullflush,off":  # no boot loader configuration in this fake: the generic edit
        assert c.remedy == (
            "remove amd_iommu=fullflush,off and add amd_iommu=fullflush on the kernel command line "
            "in your boot loader's configuration (no GRUB, grubby or systemd-boot configuration was "
            "found), then reboot"
        )


@pytest.mark.parametrize(
    "cmdline, verdict",
    [
        ("iommu=pt", "pass"),
        ("iommu.passthrough=1", "pass"),
        ("iommu=force,pt", "pass"),
        ("iommu=pt iommu.passthrough=0", "warn"),  # iommu.passthrough= is applied after iommu=
        ("iommu=nopt", "warn"),
        ("quiet", "warn"),
    ],
)
def test_cmdline_iommu_pt(fake, cmdline, verdict):
    intel_host(fake, cmdline="intel_iommu=on " + cmdline)
    c = checks(fake)["cmdline.iommu_pt"]
    assert c.verdict.value == verdict
    if verdict == "warn":
        assert "iommu=pt" in c.remedy


def test_cmdline_iommu_pt_kernel_default(fake):
    intel_host(fake, cmdline="intel_iommu=on")
    fake.set_kconfig(VFIO_PCI="m", INTEL_IOMMU="y", IRQ_REMAP="y", IOMMU_DEFAULT_PASSTHROUGH="y")
    c = checks(fake)["cmdline.iommu_pt"]
    assert c.verdict.value == "pass" and "CONFIG_IOMMU_DEFAULT_PASSTHROUGH=y" in c.detail


def test_cmdline_iommu_off_keeps_other_options(fake):
    intel_host(fake, cmdline="intel_iommu=on iommu=off,pt")
    fake.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=off,pt"\n')
    c = checks(fake)["cmdline.iommu_off"]
    assert c.verdict.value == "fail"
    assert c.remedy == (
        'in /etc/default/grub set GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"; '
        "then run update-grub and reboot"
    )


def test_cmdline_acs_override(fake):
    intel_host(fake, cmdline="intel_iommu=on iommu=pt pcie_acs_override=downstream,multifunction")
    c = checks(fake)["cmdline.acs_override"]
    assert c.verdict.value == "warn" and "groups no longer show real isolation" in c.detail
    assert c.detail.startswith("pcie_acs_override=downstream,multifunction")


def test_cmdline_noiommu(fake):
    intel_host(fake, cmdline="intel_iommu=on iommu=pt vfio.enable_unsafe_noiommu_mode=1")
    c = checks(fake)["cmdline.noiommu"]
    assert c.verdict.value == "warn" and "no DMA isolation" in c.detail
    intel_host(fake)
    fake.write("sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "Y\n")
    c = checks(fake)["cmdline.noiommu"]
    assert c.verdict.value == "warn"
    assert "echo N > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode" in c.remedy
    fake.write("sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "N\n")
    assert checks(fake)["cmdline.noiommu"].verdict.value == "pass"


def test_cmdline_checks_skip_without_proc_cmdline(fake):
    intel_host(fake)
    os.unlink(fake.path("proc/cmdline"))
    got = verdicts(fake)
    for cid in (
        "cmdline.intel_iommu",
        "cmdline.iommu_off",
        "cmdline.iommu_pt",
        "cmdline.acs_override",
        "cmdline.noiommu",
        "cmdline.vfio_ids",
        "vfio.unsafe_interrupts",
    ):
        assert got[cid] == "skip", cid


def test_cmdline_vfio_ids_names_every_matching_device(fake):
    intel_host(fake, cmdline="intel_iommu=on iommu=pt vfio-pci.ids=10de:1eb8,8086:10D3")
    fake.add_device("0000:3b:00.0", vendor="10de", device="1eb8", class_="030200", group=5)
    fake.add_device("0000:d8:00.0", vendor="10de", device="1eb8", class_="030200", group=6)
    c = checks(fake)["cmdline.vfio_ids"]
    assert c.verdict.value == "warn"
    assert "(matching devices: 0000:00:02.0, 0000:3b:00.0, 0000:d8:00.0)" in c.detail
    assert c.remedy.endswith("then bind only the devices you mean, by address (pcipass enable)")


# --- interrupts ----------------------------------------------------------------------------------------------


def test_irq_remap_from_ecap(fake):
    intel_host(fake)
    fake.enable_iommu("dmar1")
    assert checks(fake)["irq.remap"].detail.startswith("supported by dmar0, dmar1 (IR bit")
    fake.write("sys/devices/virtual/iommu/dmar1/intel-iommu/ecap", "f050d2\n")  # bit 3 clear
    c = checks(fake)["irq.remap"]
    assert c.verdict.value == "fail" and c.detail.startswith("dmar1 lack the IR bit")
    fake.write("sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", "Y\n")
    c = checks(fake)
    assert c["irq.remap"].verdict.value == "warn" and "only because" in c["irq.remap"].detail
    assert c["vfio.unsafe_interrupts"].verdict.value == "warn"


def test_irq_remap_switched_off_on_cmdline(fake):
    intel_host(fake, cmdline="intel_iommu=on iommu=pt intremap=off")
    fake.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on intremap=off iommu=pt"\n')
    c = checks(fake)["irq.remap"]
    assert c.verdict.value == "fail" and c.detail.startswith("intremap=off on the command line")
    assert c.remedy == (
        'in /etc/default/grub set GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"; '
        "then run update-grub and reboot"
    )
    intel_host(fake, cmdline="intel_iommu=on iommu=pt nointremap")
    assert checks(fake)["irq.remap"].verdict.value == "fail"


def test_irq_remap_kernel_without_it(fake):
    intel_host(fake)
    fake.set_kconfig(VFIO_PCI="m", INTEL_IOMMU="y", IRQ_REMAP=None)
    c = checks(fake)
    assert c["irq.remap"].verdict.value == "fail" and "CONFIG_IRQ_REMAP is not set" in c["irq.remap"].detail
    assert c["kconfig.irq_remap"].verdict.value == "fail"


@pytest.mark.parametrize(
    "log, verdict",
    [
        ("kernel: DMAR-IR: Enabled IRQ remapping in x2apic mode\n", "pass"),
        ("kernel: DMAR-IR: Failed to enable irq remapping.  You are vulnerable to irq-injection attacks.\n", "fail"),
        ("kernel: Linux version 6.1\n", "skip"),
    ],
)
def test_irq_remap_from_kernel_log(fake, log, verdict):
    intel_host(fake)
    os.unlink(fake.path("sys/devices/virtual/iommu/dmar0/intel-iommu/ecap"))
    fake.write("var/log/kern.log", "kernel: old boot\n" + log)
    assert checks(fake)["irq.remap"].verdict.value == verdict


def test_irq_remap_no_evidence(fake):
    amd_host(fake)
    os.unlink(fake.path("var/log/kern.log"))
    c = checks(fake)["irq.remap"]
    assert c.verdict.value == "skip" and "no kernel log" in c.detail


def test_kernel_log_reads_a_character_device(fake):
    """/dev/kmsg read as a live host does (the machine's own /dev/kmsg, read-only)."""
    if not os.path.exists("/dev/kmsg") or not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("no readable /dev/kmsg on this machine")
    fake.symlink("dev/kmsg", "/dev/kmsg")
    log = Facts(Host(fake.root)).kernel_log
    assert log.source == "/dev/kmsg" and log.lines and all(";" not in line[:20] for line in log.lines[:5])


def test_unreadable_kernel_log_is_a_skip_naming_the_file(fake, monkeypatch):
    amd_host(fake)
    log = fake.path("var/log/kern.log")
    real_open = files._open

    def guarded(path, *a, **kw):
        if os.fspath(path) == os.fspath(log):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(files, "_open", guarded)
    c = checks(fake)["irq.remap"]
    assert (c.verdict.value, c.detail) == ("skip", "cannot read /var/log/kern.log: permission denied (run as root)")


def test_unsafe_interrupts(fake):
    intel_host(fake)
    fake.write("sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", "N\n")
    assert (
        checks(fake)["vfio.unsafe_interrupts"].detail
        == "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts = N"
    )
    intel_host(fake, cmdline="intel_iommu=on iommu=pt vfio_iommu_type1.allow_unsafe_interrupts=1")
    os.unlink(fake.path("sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts"))
    c = checks(fake)["vfio.unsafe_interrupts"]
    assert c.verdict.value == "warn" and "GRUB_CMDLINE" not in c.detail and "update-grub" in c.remedy


# --- kernel config -------------------------------------------------------------------------------------------


def test_kconfig_checks(fake):
    intel_host(fake)
    fake.set_kconfig(VFIO_PCI=None, INTEL_IOMMU="y", IRQ_REMAP="y")
    c = checks(fake)
    assert c["kconfig.vfio_pci"].verdict.value == "fail"
    assert c["kconfig.vfio_pci"].detail == (
        "CONFIG_VFIO_PCI is not set (/boot/config-6.1.0-test-amd64): this kernel has no vfio-pci driver"
    )
    assert c["kconfig.intel_iommu"].detail == "CONFIG_INTEL_IOMMU=y (/boot/config-6.1.0-test-amd64)"


def test_kconfig_from_proc_config_gz(fake):
    import gzip

    intel_host(fake)
    os.unlink(fake.path(f"boot/config-{fake.KVER}"))
    fake.path("proc/config.gz").write_bytes(
        gzip.compress(b"CONFIG_VFIO_PCI=y\nCONFIG_INTEL_IOMMU=y\n# CONFIG_IRQ_REMAP is not set\n")
    )
    c = checks(fake)
    assert c["kconfig.vfio_pci"].detail == "CONFIG_VFIO_PCI=y (/proc/config.gz)"
    assert c["kconfig.irq_remap"].verdict.value == "fail"
    fake.path("proc/config.gz").write_bytes(b"not gzip")
    c = checks(fake)["kconfig.vfio_pci"]
    assert c.verdict.value == "skip" and c.detail.startswith("cannot read /proc/config.gz: not a gzip file")
    # A gzip bomb (64 MiB of zeros in ~64 KiB) is refused while it inflates, as damage.
    fake.path("proc/config.gz").write_bytes(gzip.compress(b"\0" * (64 << 20), compresslevel=9))
    c = checks(fake)["kconfig.vfio_pci"]
    assert c.verdict.value == "skip" and "larger than a kernel config can be" in c.detail
    os.unlink(fake.path("proc/config.gz"))
    c = checks(fake)["kconfig.vfio_pci"]
    assert c.detail == "no /boot/config-6.1.0-test-amd64 or /proc/config.gz in this root"


def test_unreadable_kconfig_skips(fake, monkeypatch):
    intel_host(fake)
    cfg = os.fspath(fake.path(f"boot/config-{fake.KVER}"))
    real_open = files._open

    def guarded(path, *a, **kw):
        if os.fspath(path) == cfg:
            raise PermissionError(13, "Permission denied", cfg)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(files, "_open", guarded)
    c = checks(fake)
    assert c["kconfig.vfio_pci"].detail == "cannot read /boot/config-6.1.0-test-amd64: permission denied (run as root)"
    # the checks that only consult the config fall back to other evidence instead of skipping
    assert c["cmdline.intel_iommu"].verdict.value == "pass"


# --- modules, driver_override --------------------------------------------------------------------------------


def test_module_states(fake):
    intel_host(fake)
    fake.write("sys/module/vfio/initstate", "live\n")
    fake.set_modules(builtin=("vfio/vfio_iommu_type1",), dep=("vfio/vfio", "vfio/pci/vfio-pci"))
    c = checks(fake)
    assert (c["module.vfio"].verdict.value, c["module.vfio"].detail) == ("pass", "loaded")
    assert c["module.vfio_iommu_type1"].detail == "built into the kernel"
    assert c["module.vfio_pci"].detail == "available, not loaded (loaded on demand: modprobe vfio-pci)"


def test_module_blacklisted_warns_with_exact_line(fake):
    intel_host(fake)
    fake.write("usr/sbin/update-initramfs", "")
    fake.write("etc/modprobe.d/no-vfio.conf", "# keep the GPU on nouveau\nblacklist vfio-pci\n")
    c = checks(fake)["module.vfio_pci"]
    assert c.verdict.value == "warn"
    assert c.detail.startswith("blacklisted (/etc/modprobe.d/no-vfio.conf:2)")
    assert c.remedy == (
        "delete line 2 of /etc/modprobe.d/no-vfio.conf; run update-initramfs -u -k all (the initramfs "
        "keeps a copy of modprobe.d); modprobe vfio-pci; to load it at every boot: a line 'vfio-pci' in "
        "/etc/modules-load.d/vfio-pci.conf"
    )
    fake.write("sys/module/vfio_pci/initstate", "live\n")
    c = checks(fake)["module.vfio_pci"]
    assert c.verdict.value == "warn" and c.detail.startswith("loaded, but blacklisted")


def test_module_disabled_by_install_or_module_blacklist_fails(fake):
    intel_host(fake)
    fake.write("etc/modprobe.d/no-vfio.conf", "install vfio_pci /bin/false\n")
    c = checks(fake)["module.vfio_pci"]
    assert c.verdict.value == "fail" and "install vfio-pci /bin/false" in c.detail
    os.unlink(fake.path("etc/modprobe.d/no-vfio.conf"))
    intel_host(fake, cmdline="intel_iommu=on iommu=pt module_blacklist=vfio_pci,nouveau")
    c = checks(fake)["module.vfio_pci"]
    assert c.verdict.value == "fail" and "the kernel refuses to load it" in c.detail and "update-grub" in c.remedy
    # The parameter loses vfio_pci only: nouveau stays blacklisted.
    assert "module_blacklist=nouveau" in c.remedy and "vfio_pci" not in c.remedy.replace("module.vfio_pci", "")


def test_module_blacklisted_on_the_command_line_keeps_the_others(fake):
    intel_host(fake, cmdline="intel_iommu=on modprobe.blacklist=nouveau,vfio-pci")
    c = checks(fake)["module.vfio_pci"]
    assert c.verdict.value == "warn" and c.detail.startswith("blacklisted (kernel command line (modprobe.blacklist=))")
    assert "modprobe.blacklist=nouveau" in c.remedy and "vfio-pci" not in c.remedy and "delete line" not in c.remedy
    intel_host(fake, cmdline="intel_iommu=on modprobe.blacklist=vfio_pci")
    c = checks(fake)["module.vfio_pci"]
    assert "modprobe.blacklist" in c.remedy and "modprobe.blacklist=" not in c.remedy  # removed, nothing left


def test_module_missing_or_unknown(fake):
    intel_host(fake)
    fake.set_modules(dep=("vfio/vfio",))
    c = checks(fake)["module.vfio_pci"]
    assert (c.verdict.value, c.detail) == ("fail", "not built in and not in /lib/modules/6.1.0-test-amd64/modules.dep")
    os.unlink(fake.path(f"lib/modules/{fake.KVER}/modules.dep"))
    c = checks(fake)["module.vfio_pci"]
    assert c.verdict.value == "skip" and "no module index" in c.detail


def test_driver_override(fake):
    intel_host(fake)
    assert checks(fake)["kernel.driver_override"].verdict.value == "pass"
    for dev in fake.devices.values():
        os.unlink(dev.path / "driver_override")
    # No file on any device of a 6.1 kernel: a recording without them (tests/test_partial_recordings.py).
    assert checks(fake)["kernel.driver_override"].verdict.value == "skip"
    fake.write("proc/sys/kernel/osrelease", "3.13.0-170-generic\n")
    assert checks(fake)["kernel.driver_override"].verdict.value == "fail"


def test_driver_override_skips_without_devices(fake):
    assert checks(fake)["kernel.driver_override"].verdict.value == "skip"


def test_modprobe_d_options_are_read(fake):
    """`options vfio-pci ids=` and `options vfio_iommu_type1 allow_unsafe_interrupts=1` in modprobe.d are how
    those parameters are usually set; the checks must see them when the modules are not loaded."""
    from tests.support.preflight_hosts import checks, intel_host

    intel_host(fake)
    fake.write(
        "etc/modprobe.d/vfio.conf",
        "options vfio-pci ids=8086:10d3\noptions vfio_iommu_type1 allow_unsafe_interrupts=1\n",
    )
    got = checks(fake)
    ids = got["cmdline.vfio_ids"]
    assert ids.verdict.value == "warn" and "/etc/modprobe.d/vfio.conf:1" in ids.detail and "0000:00:02.0" in ids.detail
    unsafe = got["vfio.unsafe_interrupts"]
    assert unsafe.verdict.value == "warn" and "/etc/modprobe.d/vfio.conf:2" in unsafe.detail
