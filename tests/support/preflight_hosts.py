"""Fake hosts for the preflight tests: a healthy Intel and a healthy AMD passthrough host, to be broken one
piece at a time."""

from __future__ import annotations

from pcipass.host import Host
from pcipass.preflight import Check, run

VFIO_DEP = ("vfio/vfio", "vfio/pci/vfio-pci", "vfio/vfio_iommu_type1")


def intel_host(fake, cmdline: str = "BOOT_IMAGE=/vmlinuz-6.1 root=/dev/sda1 ro quiet intel_iommu=on iommu=pt"):
    fake.set_cpuinfo("GenuineIntel", ("fpu", "vmx", "sse2"))
    fake.write("dev/kvm", "")
    fake.add_acpi_table("DMAR")
    fake.add_acpi_table("APIC")
    fake.enable_iommu("dmar0")
    fake.add_device("0000:00:00.0", vendor="8086", device="29c0", class_="060000", group=0)
    fake.add_device("0000:00:02.0", vendor="8086", device="10d3", driver="e1000e", group=1)
    fake.set_cmdline(cmdline)
    fake.set_kconfig(VFIO_PCI="m", INTEL_IOMMU="y", AMD_IOMMU="y", IRQ_REMAP="y", INTEL_IOMMU_DEFAULT_ON=None)
    fake.set_modules(dep=VFIO_DEP)
    fake.write(
        "etc/default/grub",
        'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\nGRUB_CMDLINE_LINUX=""\n',
    )
    fake.write("usr/sbin/update-grub", "#!/bin/sh\n")
    return fake


def amd_host(fake, cmdline: str = "BOOT_IMAGE=/vmlinuz-6.1 root=/dev/sda1 ro quiet iommu=pt"):
    fake.set_cpuinfo("AuthenticAMD", ("fpu", "svm", "sse2"))
    fake.write("dev/kvm", "")
    fake.add_acpi_table("IVRS")
    fake.enable_iommu("ivhd0", vendor="amd")
    fake.add_device("0000:00:00.0", vendor="1022", device="1480", class_="060000", group=0)
    fake.add_device("0000:01:00.0", vendor="8086", device="10d3", driver="e1000e", group=1)
    fake.set_cmdline(cmdline)
    fake.set_kconfig(VFIO_PCI="y", INTEL_IOMMU="y", AMD_IOMMU="y", IRQ_REMAP="y")
    fake.set_modules(builtin=("vfio/vfio", "vfio/pci/vfio-pci", "vfio/vfio_iommu_type1"))
    fake.write("var/log/kern.log", "Jan 1 00:00:00 h kernel: [    0.6] AMD-Vi: Interrupt remapping enabled\n")
    return fake


def checks(fake, devices=()) -> dict[str, Check]:
    report = run(Host(fake.root), devices)
    return {c.key: c for c in report.checks}


def verdicts(fake, devices=()) -> dict[str, str]:
    return {k: c.verdict.value for k, c in checks(fake, devices).items()}
