"""A builder for small fake hosts: a directory tree laid out the way the kernel lays out sysfs/procfs.

Devices live under ``sys/devices/pci<domain>:<bus>/...`` with the ``bus/pci/devices`` symlinks, driver
directories and links, IOMMU group directories and per-device ``iommu_group`` links, exactly as the kernel
makes them, so pcipass reads a fake host through the same code paths as a real one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class FakeDevice:
    address: str
    path: Path  # the real directory under sys/devices


class FakeHost:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for d in (
            "sys/bus/pci/devices",
            "sys/bus/pci/drivers",
            "sys/kernel/iommu_groups",
            "sys/class/iommu",
            "sys/class/net",
            "sys/class/block",
            "sys/class/drm",
            "sys/module",
            "proc/self",
            "proc/net",
            "proc/sys/kernel",
            "dev",
            "etc",
            "run",
        ):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.devices: dict[str, FakeDevice] = {}
        (self.root / "sys/bus/pci/drivers_probe").write_text("")
        (self.root / "proc/sys/kernel/osrelease").write_text("6.1.0-test-amd64\n")
        self.write("proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n")
        self.write("proc/self/mountinfo", "")
        self.write("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n")
        self.write(
            "proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        )
        self.write("proc/net/ipv6_route", "")
        self.write("proc/net/if_inet6", "")
        self.write("proc/modules", "")

    # --- generic helpers -------------------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel

    def write(self, rel: str, content: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
        return p

    def symlink(self, rel: str, target: str | Path) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_symlink() or p.exists():
            p.unlink()
        target = Path(target)
        if target.is_absolute():
            target = Path(os.path.relpath(target, p.parent))
        p.symlink_to(target)
        return p

    # --- PCI ------------------------------------------------------------------------------------------
    def add_driver(self, name: str, module: str | None = None) -> Path:
        d = self.root / "sys/bus/pci/drivers" / name
        d.mkdir(parents=True, exist_ok=True)
        for attr in ("bind", "unbind", "new_id", "remove_id"):
            (d / attr).touch()
        mod = module if module is not None else name.replace("-", "_")
        if mod:
            (self.root / "sys/module" / mod).mkdir(parents=True, exist_ok=True)
            self.symlink(f"sys/bus/pci/drivers/{name}/module", self.root / "sys/module" / mod)
        return d

    def add_device(
        self,
        address: str,
        *,
        vendor: str = "8086",
        device: str = "10d3",
        class_: str = "020000",
        subsystem_vendor: str | None = None,
        subsystem_device: str | None = None,
        revision: str = "00",
        driver: str | None = None,
        group: int | None = None,
        parent: str | None = None,
        bridge: bool = False,
        numa_node: int = -1,
        boot_vga: bool | None = None,
        reset_method: str | None = "flr bus",
        override: str | None = None,
        config: bool = True,
        extra: dict[str, str] | None = None,
    ) -> FakeDevice:
        domain, bus = address.split(":")[0], address.split(":")[1]
        if parent is None:
            base = self.root / f"sys/devices/pci{domain}:{bus}"
        else:
            base = self.devices[parent].path
        path = base / address
        path.mkdir(parents=True, exist_ok=True)
        attrs = {
            "vendor": f"0x{vendor}",
            "device": f"0x{device}",
            "subsystem_vendor": f"0x{subsystem_vendor or vendor}",
            "subsystem_device": f"0x{subsystem_device or '0000'}",
            "class": f"0x{class_}",
            "revision": f"0x{revision}",
            "numa_node": str(numa_node),
            "driver_override": override if override is not None else "(null)",
            "modalias": f"pci:v0000{vendor.upper()}d0000{device.upper()}sv0000{(subsystem_vendor or vendor).upper()}"
            f"sd0000{(subsystem_device or '0000').upper()}bc{class_[0:2].upper()}sc{class_[2:4].upper()}"
            f"i{class_[4:6].upper()}",
            "remove": "",
            "reset": "",
            "enable": "1",
        }
        if reset_method is not None:
            attrs["reset_method"] = reset_method
        if boot_vga is not None:
            attrs["boot_vga"] = "1" if boot_vga else "0"
        attrs.update(extra or {})
        for k, v in attrs.items():
            (path / k).write_text(v + ("\n" if v and not v.endswith("\n") else ""))
        if config:
            cfg = bytearray(64)
            cfg[0:2] = int(vendor, 16).to_bytes(2, "little")
            cfg[2:4] = int(device, 16).to_bytes(2, "little")
            cfg[0x0E] = 1 if bridge else 0
            (path / "config").write_bytes(bytes(cfg))
        if bridge:
            (path / "pci_bus").mkdir(exist_ok=True)
        self.symlink(f"sys/bus/pci/devices/{address}", path)
        dev = FakeDevice(address, path)
        self.devices[address] = dev
        if driver:
            self.bind(address, driver)
        if group is not None:
            self.set_group(address, group)
        return dev

    def bind(self, address: str, driver: str) -> None:
        ddir = self.root / "sys/bus/pci/drivers" / driver
        if not ddir.exists():
            self.add_driver(driver)
        dev = self.devices[address]
        self.symlink(f"sys/bus/pci/drivers/{driver}/{address}", dev.path)
        self.symlink(str((dev.path / "driver").relative_to(self.root)), ddir)

    def unbind(self, address: str) -> None:
        dev = self.devices[address]
        link = dev.path / "driver"
        if link.is_symlink():
            drv = os.path.basename(os.readlink(link))
            (self.root / "sys/bus/pci/drivers" / drv / address).unlink(missing_ok=True)
            link.unlink()

    def make_sriov_pf(
        self,
        address: str,
        totalvfs: int,
        *,
        offset: int = 1,
        stride: int = 1,
        vf_device: str = "10ed",
        autoprobe: bool = True,
    ) -> None:
        """The SR-IOV attributes the kernel shows on a PF with no VFs (FakeKernel creates them on writes to
        ``sriov_numvfs``)."""
        path = self.devices[address].path
        for name, value in (
            ("sriov_totalvfs", totalvfs),
            ("sriov_numvfs", 0),
            ("sriov_offset", offset),
            ("sriov_stride", stride),
            ("sriov_vf_device", vf_device),
            ("sriov_drivers_autoprobe", int(autoprobe)),
        ):
            (path / name).write_text(f"{value}\n")

    def set_group(self, address: str, group: int, type_: str = "DMA") -> None:
        gdir = self.root / "sys/kernel/iommu_groups" / str(group)
        (gdir / "devices").mkdir(parents=True, exist_ok=True)
        if not (gdir / "type").exists():
            (gdir / "type").write_text(type_ + "\n")
        dev = self.devices[address]
        self.symlink(f"sys/kernel/iommu_groups/{group}/devices/{address}", dev.path)
        self.symlink(str((dev.path / "iommu_group").relative_to(self.root)), gdir)

    def enable_iommu(self, name: str = "dmar0", vendor: str = "intel") -> None:
        d = self.root / "sys/devices/virtual/iommu" / name
        d.mkdir(parents=True, exist_ok=True)
        if vendor == "intel":
            (d / "intel-iommu").mkdir(exist_ok=True)
            (d / "intel-iommu/cap").write_text("d2008c40660462\n")
            (d / "intel-iommu/ecap").write_text("f050da\n")
            (d / "intel-iommu/version").write_text("1:0\n")
        self.symlink(f"sys/class/iommu/{name}", d)

    def add_net(self, address: str, ifname: str) -> None:
        dev = self.devices[address]
        (dev.path / "net" / ifname).mkdir(parents=True, exist_ok=True)
        self.symlink(f"sys/class/net/{ifname}", dev.path / "net" / ifname)

    def add_block(self, address: str, disk: str, partitions: tuple[str, ...] = (), via: str = "nvme/nvme0") -> None:
        dev = self.devices[address]
        d = dev.path / via / disk
        d.mkdir(parents=True, exist_ok=True)
        (d / "holders").mkdir(exist_ok=True)
        self.symlink(f"sys/class/block/{disk}", d)
        for part in partitions:
            (d / part / "holders").mkdir(parents=True, exist_ok=True)
            (d / part / "partition").write_text("1\n")
            self.symlink(f"sys/class/block/{part}", d / part)

    def add_drm(self, address: str, card: str = "card0") -> None:
        dev = self.devices[address]
        (dev.path / "drm" / card).mkdir(parents=True, exist_ok=True)
        self.symlink(f"sys/class/drm/{card}", dev.path / "drm" / card)

    # --- preflight inputs -----------------------------------------------------------------------------
    KVER = "6.1.0-test-amd64"  #: the kernel release written to proc/sys/kernel/osrelease

    def set_cmdline(self, text: str) -> None:
        self.write("proc/cmdline", text + "\n")

    def set_cpuinfo(self, vendor: str = "GenuineIntel", flags: tuple[str, ...] = ("fpu", "vmx", "sse2")) -> None:
        block = f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: {' '.join(flags)}\n\n"
        self.write("proc/cpuinfo", block + block.replace("processor\t: 0", "processor\t: 1"))

    def add_acpi_table(self, name: str) -> None:
        self.write(f"sys/firmware/acpi/tables/{name}", "")

    def set_kconfig(self, **options: str | None) -> None:
        """boot/config-<kver>: ``VFIO_PCI="m"``; None writes "# CONFIG_X is not set"."""
        lines = [f"# CONFIG_{k} is not set" if v is None else f"CONFIG_{k}={v}" for k, v in options.items()]
        self.write(f"boot/config-{self.KVER}", "\n".join(lines) + "\n")

    def set_modules(self, builtin: tuple[str, ...] = (), dep: tuple[str, ...] = ()) -> None:
        """modules.builtin / modules.dep of the running kernel, from module names."""
        base = f"lib/modules/{self.KVER}"
        self.write(f"{base}/modules.builtin", "".join(f"kernel/drivers/{m}.ko\n" for m in builtin))
        self.write(f"{base}/modules.dep", "".join(f"kernel/drivers/{m}.ko.xz:\n" for m in dep))
