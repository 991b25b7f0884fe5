"""Every preflight check: its ID, what it looks at, and the verdicts it can give.

The table of checks in docs/check-iommu.md is generated from ``CHECKS`` (scripts/gen_docs.py), and
tests/test_preflight_checks.py holds ``CHECKS`` to the checks the preflight runs, in their order.
"""

from __future__ import annotations

from typing import NamedTuple

from .model import Verdict


class CheckDoc(NamedTuple):
    """One row of the table: checks documented together, what they look at, the verdicts they give."""

    ids: tuple[str, ...]
    looks_at: str  #: Markdown
    verdicts: tuple[Verdict, ...]
    vendor: str | None = None  #: "intel" or "amd": run only on hosts of that IOMMU family


#: In report order: the host checks, then the device checks (``check-iommu -d``).
CHECKS: tuple[CheckDoc, ...] = (
    CheckDoc(
        ("iommu.vendor",),
        (
            "IOMMU family (Intel VT-d, AMD-Vi, Arm SMMU): the IOMMU units, then ACPI DMAR/IVRS/IORT, then the CPU "
            "vendor or an arm64 CPU, then the host bridge"
        ),
        (Verdict.PASS, Verdict.SKIP),
    ),
    CheckDoc(
        ("cpu.virt",),
        (
            "`vmx`/`svm` in `/proc/cpuinfo` (warn inside a VM without nested virtualization); skip on arm64, which "
            "shows no such flag, and when `/proc/cpuinfo` shows no known architecture"
        ),
        (Verdict.PASS, Verdict.WARN, Verdict.SKIP),
    ),
    CheckDoc(
        ("kvm.dev",),
        "`/dev/kvm` (remedy: `modprobe kvm_intel`/`kvm_amd`; on arm64 a kernel started at EL2)",
        (Verdict.PASS, Verdict.WARN, Verdict.SKIP),
    ),
    CheckDoc(
        ("firmware.dmar",),
        "the ACPI table that advertises VT-d (DMAR)",
        (Verdict.PASS, Verdict.FAIL, Verdict.SKIP),
        vendor="intel",
    ),
    CheckDoc(
        ("firmware.ivrs",),
        "the ACPI table that advertises AMD-Vi (IVRS)",
        (Verdict.PASS, Verdict.FAIL, Verdict.SKIP),
        vendor="amd",
    ),
    CheckDoc(
        ("iommu.active",),
        (
            "an entry in `/sys/class/iommu` and groups in `/sys/kernel/iommu_groups`; says whether it is on by a "
            "parameter or by the kernel's default, or why not (requested but off: firmware, kernel config)"
        ),
        (Verdict.PASS, Verdict.WARN, Verdict.FAIL, Verdict.SKIP),
    ),
    CheckDoc(
        ("iommu.domain_type",),
        "default DMA domain of the groups (`identity`, `DMA`, `DMA-FQ`), informational",
        (Verdict.PASS, Verdict.SKIP),
    ),
    CheckDoc(
        ("cmdline.intel_iommu",),
        (
            "`intel_iommu=` options; default-on kernels (`CONFIG_INTEL_IOMMU_DEFAULT_ON`, Debian's "
            "`..._INTGPU_OFF`); unknown options the kernel ignores (`intel_iommu=1`)"
        ),
        (Verdict.PASS, Verdict.FAIL, Verdict.SKIP),
        vendor="intel",
    ),
    CheckDoc(
        ("cmdline.amd_iommu",),
        "`amd_iommu=off` (there is no `amd_iommu=on`: it is on by default)",
        (Verdict.PASS, Verdict.FAIL, Verdict.SKIP),
        vendor="amd",
    ),
    CheckDoc(
        ("cmdline.iommu_off",),
        "`iommu=off`",
        (Verdict.PASS, Verdict.FAIL, Verdict.SKIP),
    ),
    CheckDoc(
        ("cmdline.iommu_pt",),
        "`iommu=pt` / `iommu.passthrough=1` or `CONFIG_IOMMU_DEFAULT_PASSTHROUGH` (recommended)",
        (Verdict.PASS, Verdict.WARN, Verdict.SKIP),
    ),
    CheckDoc(
        ("cmdline.acs_override",),
        "`pcie_acs_override=` (groups then no longer show real isolation)",
        (Verdict.PASS, Verdict.WARN, Verdict.SKIP),
    ),
    CheckDoc(
        ("cmdline.noiommu",),
        "`vfio.enable_unsafe_noiommu_mode` on the command line or live",
        (Verdict.PASS, Verdict.WARN, Verdict.SKIP),
    ),
    CheckDoc(
        ("cmdline.vfio_ids",),
        "`vfio-pci.ids=` and every device it claims at boot",
        (Verdict.PASS, Verdict.WARN, Verdict.SKIP),
    ),
    CheckDoc(
        ("irq.remap",),
        (
            "`intremap=off`/`nointremap`, `CONFIG_IRQ_REMAP`, then the IR bit (3) of each VT-d unit's `intel-"
            "iommu/ecap`, else the kernel log (`/dev/kmsg` live, `/var/log/kern.log` in a snapshot); warn instead"
            " of fail when `allow_unsafe_interrupts` is set"
        ),
        (Verdict.PASS, Verdict.WARN, Verdict.FAIL, Verdict.SKIP),
    ),
    CheckDoc(
        ("vfio.unsafe_interrupts",),
        "`vfio_iommu_type1.allow_unsafe_interrupts` (live parameter, else command line)",
        (Verdict.PASS, Verdict.WARN, Verdict.SKIP),
    ),
    CheckDoc(
        ("kconfig.vfio_pci",),
        "`CONFIG_VFIO_PCI` in `/boot/config-$(uname -r)`, else `/proc/config.gz`",
        (Verdict.PASS, Verdict.FAIL, Verdict.SKIP),
    ),
    CheckDoc(
        ("kconfig.intel_iommu",),
        "`CONFIG_INTEL_IOMMU` in `/boot/config-$(uname -r)`, else `/proc/config.gz`",
        (Verdict.PASS, Verdict.FAIL, Verdict.SKIP),
        vendor="intel",
    ),
    CheckDoc(
        ("kconfig.amd_iommu",),
        "`CONFIG_AMD_IOMMU` in `/boot/config-$(uname -r)`, else `/proc/config.gz`",
        (Verdict.PASS, Verdict.FAIL, Verdict.SKIP),
        vendor="amd",
    ),
    CheckDoc(
        ("kconfig.irq_remap",),
        "`CONFIG_IRQ_REMAP` in `/boot/config-$(uname -r)`, else `/proc/config.gz`",
        (Verdict.PASS, Verdict.FAIL, Verdict.SKIP),
    ),
    CheckDoc(
        ("module.vfio", "module.vfio_pci", "module.vfio_iommu_type1"),
        (
            "loaded, built in, available (pass); blacklisted in modprobe.d (warn: alias/boot loads are off, an "
            "explicit `modprobe` still works); `install ... /bin/false` or `module_blacklist=` (fail); missing "
            "(fail); no module index in the root (skip)"
        ),
        (Verdict.PASS, Verdict.WARN, Verdict.FAIL, Verdict.SKIP),
    ),
    CheckDoc(
        ("kernel.driver_override",),
        (
            "the PCI `driver_override` attribute (kernel ≥ 3.16): fail only on an older kernel; none with the "
            "release unknown or ≥ 3.16 is a recording without the files (skip)"
        ),
        (Verdict.PASS, Verdict.FAIL, Verdict.SKIP),
    ),
    CheckDoc(
        ("device.present",),
        "`--device` exists",
        (Verdict.PASS, Verdict.FAIL),
    ),
    CheckDoc(
        ("device.endpoint",),
        "not a bridge/port",
        (Verdict.PASS, Verdict.FAIL),
    ),
    CheckDoc(
        ("device.group",),
        "has an IOMMU group",
        (Verdict.PASS, Verdict.FAIL),
    ),
    CheckDoc(
        ("device.group_peers",),
        "other endpoints of the group on host drivers (the group is only assignable whole)",
        (Verdict.PASS, Verdict.WARN, Verdict.SKIP),
    ),
    CheckDoc(
        ("device.reset",),
        "`reset_method` (or `reset`)",
        (Verdict.PASS, Verdict.WARN),
    ),
    CheckDoc(
        ("device.boot_vga",),
        "the boot display device",
        (Verdict.PASS, Verdict.WARN),
    ),
    CheckDoc(
        ("device.in_use",),
        (
            "the host uses it: addresses, routes, bonds/bridges, mounts, swap, dm/md/LVM, framebuffer console, a "
            "keyboard behind it, a process holding its DRM or NVIDIA nodes or mapping its resource files (named "
            "with pid, command and systemd unit; the remedy names the unit to stop); a use found fails, and none "
            "found among facts the root lacks (`/proc/self/mountinfo`, `/proc/swaps` or a disk's `holders/`; "
            "`/proc/net/route` or `fib_trie` for its interfaces) is a skip naming them"
        ),
        (Verdict.PASS, Verdict.FAIL, Verdict.SKIP),
    ),
)
