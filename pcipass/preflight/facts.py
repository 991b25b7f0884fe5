"""What the checks read, each read once per run: command line, CPU, IOMMU units and groups, kernel config,
kernel log, boot loader, inventory."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from ..cmdline import Cmdline
from ..host import Host
from ..iommu import is_noiommu_group
from ..sysfs import read_kmsg
from . import bootloader, files, kconfig
from .kconfig import KernelConfig

INTEL = "intel"
AMD = "amd"
ARM = "arm"  #: Arm SMMU

X86 = "x86"
ARM64 = "arm64"

# /proc/cpuinfo vendor_id values; Hygon Dhyana CPUs use the AMD IOMMU (drivers/iommu/amd).
_CPU_VENDORS = {"GenuineIntel": INTEL, "AuthenticAMD": AMD, "HygonGenuine": AMD}
# Host bridge (00:00.0) vendor ids: Intel, AMD, Hygon.
_BRIDGE_VENDORS = {"0x8086": INTEL, "0x1022": AMD, "0x1d94": AMD}

#: Bound on the kernel log file: bytes read from its end (the live log's bounds: sysfs.read_kmsg).
LOG_TAIL_BYTES = 8 << 20


@dataclass(frozen=True)
class KernelLog:
    """Kernel messages read for the preflight, and where they came from."""

    source: str  #: where it was read (/dev/kmsg or a log file)
    lines: tuple[str, ...]


class Facts:
    def __init__(self, host: Host) -> None:
        self.host = host
        #: Kernel command-line changes the checks asked for, in order: (add tokens, remove names).
        self.changes: list[tuple[tuple[str, ...], tuple[str, ...]]] = []

    def shown(self, path) -> str:
        return self.host.shown(path)

    @property
    def here(self) -> str:
        """How messages name the place: the running host, or a snapshot/test root."""
        return "on this host" if self.host.is_live else "in this root"

    # --- command line, CPU ----------------------------------------------------------------------------
    @cached_property
    def cmdline(self) -> Cmdline | None:
        text = files.read_text(self.host.cmdline, 1 << 20)
        return None if text is None else Cmdline.parse(text)

    @cached_property
    def cpuinfo(self) -> dict[str, str] | None:
        """The first processor's fields from /proc/cpuinfo; None when the root has none."""
        text = files.read_text(self.host.cpuinfo)
        if text is None:
            return None
        out: dict[str, str] = {}
        for line in text.splitlines():
            if not line.strip():
                if out:
                    break
                continue
            key, _, value = line.partition(":")
            out.setdefault(key.strip(), value.strip())
        return out

    @cached_property
    def cpu_flags(self) -> set[str] | None:
        info = self.cpuinfo
        return None if info is None else set(info.get("flags", "").split())

    @cached_property
    def arch(self) -> str | None:
        """The CPU architecture as /proc/cpuinfo shows it: x86 (``vendor_id``/``flags``, arch/x86/kernel/cpu/proc.c)
        or arm64 (``CPU implementer``/``Features``, arch/arm64/kernel/cpuinfo.c); None when it shows neither
        (or there is none)."""
        try:
            info = self.cpuinfo or {}
        except files.Unreadable:
            return None
        if "vendor_id" in info or "flags" in info:
            return X86
        if "CPU implementer" in info or "Features" in info:
            return ARM64
        return None

    @cached_property
    def vendor(self) -> tuple[str | None, str]:
        """The IOMMU family (intel: VT-d, amd: AMD-Vi, arm: Arm SMMU, None: unknown) and the evidence.

        The IOMMU itself is the best evidence (its units, then its ACPI table); the CPU vendor decides only
        when neither is there. On real hardware they agree; an emulator can pair an Intel IOMMU with any CPU.
        """
        try:
            units = self.iommu_units or sorted(self.device_iommu_units)
        except files.Unreadable:
            units = sorted(self.device_iommu_units)
        for unit in units:
            if unit.startswith("dmar"):
                return INTEL, f"IOMMU unit {unit}"
            if unit.startswith("ivhd"):
                return AMD, f"IOMMU unit {unit}"
            if unit.startswith("smmu"):  # smmu3.<address> / smmu.<address> (drivers/iommu/arm/arm-smmu*)
                return ARM, f"IOMMU unit {unit}"
        try:
            tables = self.acpi_tables or []
        except files.Unreadable:
            tables = []
        if "DMAR" in tables:
            return INTEL, "ACPI DMAR table"
        if "IVRS" in tables:
            return AMD, "ACPI IVRS table"
        if "IORT" in tables:  # Arm's IO Remapping Table describes the SMMUs
            return ARM, "ACPI IORT table"
        try:
            info = self.cpuinfo or {}
        except files.Unreadable:
            info = {}
        vid = info.get("vendor_id")
        if vid in _CPU_VENDORS:
            return _CPU_VENDORS[vid], f"CPU {vid}"
        if self.arch == ARM64:
            return ARM, "arm64 CPU"
        bridge = self.host.pci_device("0000:00:00.0") / "vendor"
        try:
            text = files.read_text(bridge, 64)
        except files.Unreadable:
            text = None
        if text and text.strip() in _BRIDGE_VENDORS:
            return _BRIDGE_VENDORS[text.strip()], f"host bridge vendor {text.strip()}"
        return None, "no IOMMU unit, no ACPI DMAR/IVRS table, no vendor_id in /proc/cpuinfo, no host bridge"

    # --- IOMMU ----------------------------------------------------------------------------------------
    @cached_property
    def iommu_units(self) -> list[str]:
        return files.list_names(self.host.iommu_class_dir) or []

    @cached_property
    def device_iommu_units(self) -> set[str]:
        """IOMMU units named by the PCI devices' ``iommu`` links (snapshots may lack /sys/class/iommu)."""
        out: set[str] = set()
        try:
            names = files.list_names(self.host.pci_devices_dir) or []
        except files.Unreadable:
            return out
        for name in names:
            try:
                out.add(os.path.basename(os.readlink(self.host.pci_device(name) / "iommu")))
            except OSError:
                continue
        return out

    @cached_property
    def groups(self) -> dict[str, str | None]:
        """IOMMU group name -> its ``type`` (default domain type), in numeric order."""
        names = files.list_names(self.host.iommu_groups_dir) or []
        names.sort(key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
        out: dict[str, str | None] = {}
        for name in names:
            try:
                text = files.read_text(self.host.iommu_groups_dir / name / "type", 256)
            except files.Unreadable:
                text = None
            out[name] = text.strip() if text else None
        return out

    @cached_property
    def noiommu_groups(self) -> list[str]:
        """Groups vfio created for no-IOMMU mode (``iommu.is_noiommu_group``)."""
        return [name for name in self.groups if is_noiommu_group(self.host, name)]

    @cached_property
    def acpi_tables(self) -> list[str] | None:
        return files.list_names(self.host.acpi_tables_dir)

    # --- kernel config, log -------------------------------------------------------------------------------
    @cached_property
    def kconfig(self) -> KernelConfig | None:
        """The kernel config; raises files.Unreadable (not cached) when it exists but cannot be read."""
        return kconfig.load(self.host)

    def kconfig_or_none(self) -> KernelConfig | None:
        try:
            return self.kconfig
        except files.Unreadable:
            return None

    @cached_property
    def kernel_log(self) -> KernelLog | None:
        """The kernel log: /dev/kmsg on a live host, else a log file under the root (snapshots); None when
        there is none. Raises files.Unreadable when one exists and none can be read."""
        problem: files.Unreadable | None = None
        dev = self.host.kmsg_device
        try:
            is_chr = stat.S_ISCHR(os.stat(dev).st_mode)
        except OSError:
            is_chr = False
        if is_chr:
            try:
                return KernelLog(self.shown(dev), tuple(read_kmsg(os.fspath(dev))))
            except OSError as exc:
                problem = files.Unreadable(
                    dev,
                    "permission denied (run as root, or sysctl kernel.dmesg_restrict=0)"
                    if exc.errno in (errno.EACCES, errno.EPERM)
                    else exc.strerror or str(exc),
                )
        try:
            data = files.read_bytes(self.host.kmsg_log, LOG_TAIL_BYTES, tail=True)
        except files.Unreadable as exc:
            raise problem or exc from None
        if data is not None:
            return KernelLog(self.shown(self.host.kmsg_log), tuple(data.decode("utf-8", "replace").splitlines()))
        if problem is not None:
            raise problem
        return None

    # --- boot loader, inventory -----------------------------------------------------------------------
    @cached_property
    def bootloader(self) -> bootloader.BootLoader:
        try:
            running = self.cmdline
        except files.Unreadable:
            running = None
        return bootloader.detect(self.host, running)

    def cmdline_remedy(self, add: Sequence[str] = (), remove: Sequence[str] = ()) -> str:
        """The boot-loader edit for this change (and remember it for the summary's combined edit)."""
        self.changes.append((tuple(add), tuple(remove)))
        return self.bootloader.remedy(add, remove)

    def combined_cmdline_remedy(self) -> str | None:
        if not self.changes:
            return None
        add: list[str] = []
        remove: list[str] = []
        for tokens, names in self.changes:
            add += [t for t in tokens if t not in add]
            remove += [n for n in names if n not in remove]
        return self.bootloader.remedy(add, remove)

    @cached_property
    def inventory(self):
        from ..inventory import Inventory

        return Inventory.scan(self.host)
