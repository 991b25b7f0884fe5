#!/usr/bin/env python3
"""Generate a large synthetic server: a sysfs (and a bit of procfs) tree laid out as the kernel lays it out.

    bench/gen_tree.py OUT                      4,096 PCI functions
    bench/gen_tree.py OUT --functions 16384    16,384 functions (any count >= 64)

The machine: two sockets (NUMA nodes 0 and 1), each with PCIe root complexes (a host bridge and up to 31 root
ports); when a PCI segment runs out of bus numbers, the next root complexes open a new segment (domain 0001,
...), as very large hosts do (4,096 functions use two segments, 16,384 four). Behind the root ports,
round-robin:

* SR-IOV NICs: a dual-port ConnectX-6 Dx (15b3:101d, mlx5_core) with up to 127 VFs per PF (15b3:101e) on
  the same bus via ARI, and a quad-port X710 (8086:1572, i40e) with 16 VFs per PF (8086:154c, iavf);
  ``sriov_*`` attributes, ``virtfnN`` / ``physfn`` links, a netdev per function; some VFs on vfio-pci;
* GPUs with their HDMI audio function (10de:2204 + 10de:1aef): directly on a root port, or four behind a
  PLX PEX 8747 switch *without ACS* (the switch's downstream ports and everything below share one IOMMU
  group, as the kernel groups them); some GPUs already on vfio-pci;
* NVMe drives (144d:a808, nvme, a block device each), directly or eight behind a PEX 8747 switch *with* ACS
  (a group per drive).

Plus the platform functions of socket 0: host bridge, C620 xHCI, AHCI, LPC + SMBus (one group, no ACS
between them), and the ASPEED BMC bridge + VGA (boot_vga). Every function has the attribute set of a real
one (vendor/device/subsystem ids, class, revision, a 256-byte ``config`` with the right header type, bus
numbers for bridges and a PCIe capability with link status, numa_node, driver_override, modalias, irq,
resource, local_cpus, link speed/width, reset_method, power attributes...), a ``driver`` link with the
driver directory in ``bus/pci/drivers`` and its ``module``, and an ``iommu_group`` link with
``kernel/iommu_groups/N/devices``. All ids exist in pci.ids. Output is deterministic.

The tree is plain files and symlinks; nothing here touches the real /sys.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

# --- the parts -------------------------------------------------------------------------------------------------
INTEL, NVIDIA, MELLANOX, SAMSUNG, PLX, ASPEED, HPE = 0x8086, 0x10DE, 0x15B3, 0x144D, 0x10B5, 0x1A03, 0x1590

# PCIe capability "device/port type" (PCIe base spec, 7.5.3.2).
PT_ENDPOINT, PT_LEGACY, PT_ROOT_PORT, PT_UPSTREAM, PT_DOWNSTREAM, PT_PCIE_TO_PCI, PT_RCIEP = 0, 1, 4, 5, 6, 7, 9
# Link speeds as sysfs prints them, with their encoding in the Link Capabilities / Status registers.
SPEEDS = {1: "2.5 GT/s PCIe", 2: "5.0 GT/s PCIe", 3: "8.0 GT/s PCIe", 4: "16.0 GT/s PCIe"}


@dataclass
class Fn:
    """One PCI function to write."""

    domain: int
    bus: int
    dev: int
    fn: int
    vendor: int
    device: int
    class_code: int
    subsys: tuple[int, int] = (0, 0)
    revision: int = 0
    driver: str | None = None
    module: str | None = None  # None: built-in driver (no module link), like pcieport
    numa: int = 0
    port_type: int | None = PT_ENDPOINT  # None: no PCIe capability (conventional PCI / host bridge)
    link: tuple[int, int, int, int] | None = None  # max speed, max width, current speed, current width
    bridge_buses: tuple[int, int] | None = None  # secondary, subordinate: a type-1 header
    multifunction: bool = False
    children: list[Fn] = field(default_factory=list)
    group: int | None = None
    reset: str | None = "flr bus"
    boot_vga: bool | None = None
    sriov: tuple[int, int, int, int] | None = None  # total VFs, num VFs, offset, stride (a PF)
    vf_device: int = 0
    vfs: list[Fn] = field(default_factory=list)
    physfn: Fn | None = None
    net: str | None = None
    block: str | None = None
    drm: str | None = None
    slot: tuple[str, str] | None = None  # physical slot (name, address) of the port's downstream device

    @property
    def address(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.dev:02x}.{self.fn:x}"


class Machine:
    """Allocates buses, IOMMU groups and interface names; builds the function tree."""

    def __init__(self) -> None:
        self.roots: list[tuple[str, list[Fn]]] = []  # (pciDDDD:BB, functions on the root bus)
        self.count = 0
        self.next_group = 0
        self.domain = 0
        self.next_bus = 0
        self.cards = 0
        self.nvme = 0
        self.drm = 0
        self.slots = 0

    # allocation
    def group(self) -> int:
        self.next_group += 1
        return self.next_group - 1

    def bus(self) -> int:
        if self.next_bus > 0xFF:
            self.domain += 1
            self.next_bus = 0
        self.next_bus += 1
        return self.next_bus - 1

    def buses_left(self) -> int:
        return 0x100 - self.next_bus

    def new_domain(self) -> None:
        self.domain += 1
        self.next_bus = 0

    def slot(self, domain: int, bus: int) -> tuple[str, str]:
        """A physical slot (name, address) for the device on ``bus``."""
        self.slots += 1
        return str(self.slots), f"{domain:04x}:{bus:02x}:00"

    def fn(self, **kw) -> Fn:
        self.count += 1
        return Fn(**kw)

    # the platform
    def root_complex(self, numa: int) -> tuple[int, int, list[Fn]]:
        """A new root bus with its host bridge; returns (domain, bus, top-level list)."""
        bus = self.bus()
        top: list[Fn] = []
        hb = self.fn(
            domain=self.domain,
            bus=bus,
            dev=0,
            fn=0,
            vendor=INTEL,
            device=0x2020,
            class_code=0x060000,
            subsys=(INTEL, 0x0000),
            revision=0x04,
            numa=numa,
            port_type=PT_RCIEP,
            reset=None,
        )
        hb.group = self.group()
        top.append(hb)
        self.roots.append((f"pci{self.domain:04x}:{bus:02x}", top))
        return self.domain, bus, top

    def platform(self, domain: int, bus: int, top: list[Fn]) -> None:
        for dev, fn, did, cls, drv, mod in (
            (0x14, 0, 0xA1AF, 0x0C0330, "xhci_hcd", "xhci_pci"),
            (0x17, 0, 0xA182, 0x010601, "ahci", "ahci"),
        ):
            f = self.fn(
                domain=domain,
                bus=bus,
                dev=dev,
                fn=fn,
                vendor=INTEL,
                device=did,
                class_code=cls,
                subsys=(HPE, 0x00E4),
                revision=0x09,
                driver=drv,
                module=mod,
                port_type=PT_RCIEP,
                reset=None,
            )
            f.group = self.group()
            top.append(f)
        lpc_group = self.group()  # 00:1f.x: a multifunction device without ACS between its functions
        for fn, did, cls, drv, mod in (
            (0, 0xA1C2, 0x060100, None, None),
            (4, 0xA1A3, 0x0C0500, "i801_smbus", "i2c_i801"),
        ):
            f = self.fn(
                domain=domain,
                bus=bus,
                dev=0x1F,
                fn=fn,
                vendor=INTEL,
                device=did,
                class_code=cls,
                subsys=(HPE, 0x00E4),
                revision=0x09,
                driver=drv,
                module=mod,
                port_type=PT_RCIEP,
                multifunction=True,
                reset=None,
            )
            f.group = lpc_group
            top.append(f)
        # BMC: root port -> ASPEED PCIe-to-PCI bridge -> VGA; the conventional bridge aliases its subordinates.
        rp = self.root_port(domain, bus, 0x1C, 0)
        top.append(rp)
        sec = self.bus()
        sub = self.bus()
        rp.bridge_buses = (sec, sub)
        g = self.group()
        br = self.fn(
            domain=domain,
            bus=sec,
            dev=0,
            fn=0,
            vendor=ASPEED,
            device=0x1150,
            class_code=0x060400,
            revision=0x04,
            port_type=PT_PCIE_TO_PCI,
            bridge_buses=(sub, sub),
            link=(1, 1, 1, 1),
            reset=None,
        )
        br.group = g
        vga = self.fn(
            domain=domain,
            bus=sub,
            dev=0,
            fn=0,
            vendor=ASPEED,
            device=0x2000,
            class_code=0x030000,
            subsys=(HPE, 0x00E4),
            revision=0x41,
            driver="ast",
            module="ast",
            port_type=None,
            boot_vga=True,
            reset="bus",
            drm=self.drm_name(),
        )
        vga.group = g
        br.children.append(vga)
        rp.children.append(br)

    def root_port(self, domain: int, bus: int, dev: int, numa: int) -> Fn:
        rp = self.fn(
            domain=domain,
            bus=bus,
            dev=dev,
            fn=0,
            vendor=INTEL,
            device=0x2030 + dev % 4,
            class_code=0x060400,
            subsys=(INTEL, 0x0000),
            revision=0x04,
            driver="pcieport",
            numa=numa,
            port_type=PT_ROOT_PORT,
            link=(3, 16, 3, 16),
            reset=None,
        )
        rp.group = self.group()
        return rp

    def drm_name(self) -> str:
        self.drm += 1
        return f"card{self.drm - 1}"

    # cards; each returns the functions below the root port, and uses its secondary bus `bus`
    def gpu(self, domain: int, bus: int, numa: int, on_vfio: bool, group: int | None = None) -> list[Fn]:
        g = self.group() if group is None else group
        drv = ("vfio-pci", "vfio_pci") if on_vfio else ("nvidia", "nvidia")
        gpu = self.fn(
            domain=domain,
            bus=bus,
            dev=0,
            fn=0,
            vendor=NVIDIA,
            device=0x2204,
            class_code=0x030000,
            subsys=(0x147D, 0x10DE),
            revision=0xA1,
            driver=drv[0],
            module=drv[1],
            numa=numa,
            link=(4, 16, 4, 16),
            multifunction=True,
            boot_vga=False,
            drm=None if on_vfio else self.drm_name(),
        )
        audio_drv = drv if on_vfio else ("snd_hda_intel", "snd_hda_intel")
        audio = self.fn(
            domain=domain,
            bus=bus,
            dev=0,
            fn=1,
            vendor=NVIDIA,
            device=0x1AEF,
            class_code=0x040300,
            subsys=(0x147D, 0x10DE),
            revision=0xA1,
            driver=audio_drv[0],
            module=audio_drv[1],
            numa=numa,
            link=(4, 16, 4, 16),
            multifunction=True,
        )
        gpu.group = audio.group = g
        return [gpu, audio]

    def nvme_drive(self, domain: int, bus: int, numa: int, group: int | None = None) -> list[Fn]:
        f = self.fn(
            domain=domain,
            bus=bus,
            dev=0,
            fn=0,
            vendor=SAMSUNG,
            device=0xA808,
            class_code=0x010802,
            subsys=(SAMSUNG, 0xA801),
            driver="nvme",
            module="nvme",
            numa=numa,
            link=(3, 4, 3, 4),
            reset="flr bus",
            block=f"nvme{self.nvme}",
        )
        self.nvme += 1
        f.group = self.group() if group is None else group
        return [f]

    def nic(self, domain: int, bus: int, numa: int, kind: str, vfs_per_pf: int) -> list[Fn]:
        self.cards += 1
        if kind == "mlx":
            pfs, vendor, did, vfdid, drv, mod, vfdrv, sub = (
                2,
                MELLANOX,
                0x101D,
                0x101E,
                "mlx5_core",
                "mlx5_core",
                ("mlx5_core", "mlx5_core"),
                (MELLANOX, 0x0042),
            )
            total, link = 127, (4, 16, 4, 16)
        else:
            pfs, vendor, did, vfdid, drv, mod, vfdrv, sub = (
                4,
                INTEL,
                0x1572,
                0x154C,
                "i40e",
                "i40e",
                ("iavf", "iavf"),
                (0x1028, 0x1F9C),
            )
            total, link = 32, (3, 8, 3, 8)
        out: list[Fn] = []  # the PFs; each writes its VFs next to it
        first_vf = pfs  # ARI: VFs follow the PFs on the same bus, routing ID = PF + offset + i * stride
        for p in range(pfs):
            pf = self.fn(
                domain=domain,
                bus=bus,
                dev=0,
                fn=p,
                vendor=vendor,
                device=did,
                class_code=0x020000,
                subsys=sub,
                revision=0x02,
                driver=drv,
                module=mod,
                numa=numa,
                link=link,
                multifunction=True,
                net=f"ens{self.cards}f{p}np{p}",
                vf_device=vfdid,
            )
            pf.group = self.group()
            offset = first_vf + p * vfs_per_pf - p
            pf.sriov = (total, vfs_per_pf, offset, 1)
            for i in range(vfs_per_pf):
                rid = p + offset + i
                # Every fourth VF of the first PF is passed through already.
                on_vfio = p == 0 and i % 4 == 0
                d = ("vfio-pci", "vfio_pci") if on_vfio else vfdrv
                vf = self.fn(
                    domain=domain,
                    bus=bus,
                    dev=rid >> 3,
                    fn=rid & 7,
                    vendor=vendor,
                    device=vfdid,
                    class_code=0x020000,
                    subsys=sub,
                    revision=0x02,
                    driver=d[0],
                    module=d[1],
                    numa=numa,
                    link=link,
                    reset="flr",
                    physfn=pf,
                    net=None if on_vfio else f"ens{self.cards}f{p}v{i}",
                )
                vf.group = self.group()
                pf.vfs.append(vf)
            out.append(pf)
        return out

    def switch(self, domain: int, bus: int, numa: int, acs: bool, ports: int, what: str) -> list[Fn]:
        """PEX 8747: upstream port on ``bus``, downstream ports on the next bus, one endpoint bus each."""
        up = self.fn(
            domain=domain,
            bus=bus,
            dev=0,
            fn=0,
            vendor=PLX,
            device=0x8747,
            class_code=0x060400,
            subsys=(PLX, 0x8747),
            revision=0xCA,
            driver="pcieport",
            numa=numa,
            port_type=PT_UPSTREAM,
            link=(3, 16, 3, 16),
            reset=None,
        )
        up.group = self.group()
        internal = self.bus()
        shared = None if acs else self.group()
        for i in range(ports):
            ep_bus = self.bus()
            dp = self.fn(
                domain=domain,
                bus=internal,
                dev=8 + i,
                fn=0,
                vendor=PLX,
                device=0x8747,
                class_code=0x060400,
                subsys=(PLX, 0x8747),
                revision=0xCA,
                driver="pcieport",
                numa=numa,
                port_type=PT_DOWNSTREAM,
                link=(3, 16 if what == "gpu" else 4, 3, 16 if what == "gpu" else 4),
                bridge_buses=(ep_bus, ep_bus),
                reset=None,
            )
            dp.group = self.group() if acs else shared
            if what == "gpu":
                dp.children = self.gpu(domain, ep_bus, numa, on_vfio=False, group=shared)
            else:
                dp.children = self.nvme_drive(domain, ep_bus, numa, group=shared)
            up.children.append(dp)
        up.bridge_buses = (internal, self.next_bus - 1)
        return [up]


# Cards behind successive root ports, round-robin: (kind, functions it needs excluding the root port).
_PATTERN = ("mlx", "gpu", "nvme", "x710", "switch-gpu", "nvme", "switch-nvme", "gpu")


def _card_size(kind: str, vfs: int) -> int:
    return {
        "mlx": 2 + 2 * vfs,
        "x710": 4 + 4 * vfs,
        "gpu": 2,
        "nvme": 1,
        "switch-gpu": 1 + 4 * 3,
        "switch-nvme": 1 + 8 * 2,
    }[kind]


def build(functions: int) -> Machine:
    """A machine with exactly ``functions`` PCI functions."""
    if functions < 64:
        raise SystemExit("gen_tree: at least 64 functions")
    m = Machine()
    sockets = 2
    # Spread the NIC VFs so that NICs carry most functions, as on a real SR-IOV host.
    mlx_vfs = max(4, min(127, functions // 64))
    x710_vfs = max(2, min(32, functions // 256))
    # Root complexes: (domain, root bus, functions on it, NUMA node, device numbers in use).
    complexes: list[tuple[int, int, list[Fn], int, set[int]]] = []
    d, b, top = m.root_complex(0)
    m.platform(d, b, top)
    complexes.append((d, b, top, 0, {f.dev for f in top}))
    d, b, top = m.root_complex(1)
    complexes.append((d, b, top, 1, {0}))
    turn = 0
    while m.count < functions:
        numa = turn % sockets
        kind = _PATTERN[turn % len(_PATTERN)]
        turn += 1
        buses = {"switch-gpu": 6, "switch-nvme": 10}.get(kind, 1)
        if m.buses_left() < buses + 1:
            m.new_domain()  # out of bus numbers: a new PCI segment, as on very large hosts
        d, b, top, _, used = next(c for c in reversed(complexes) if c[3] == numa)
        free = [dev for dev in range(1, 0x20) if dev not in used]
        if not free or d != m.domain:
            d, b, top = m.root_complex(numa)  # its host bridge counts too
            used = {0}
            complexes.append((d, b, top, numa, used))
            free = list(range(1, 0x20))
            if m.count == functions:
                break
        remaining = functions - m.count
        vfs = mlx_vfs if kind == "mlx" else x710_vfs
        need = 1 + _card_size(kind, vfs)
        if need > remaining:
            if kind == "mlx" and remaining >= 5:
                vfs = (remaining - 3) // 2  # a smaller SR-IOV configuration fills the rest
            elif remaining >= 2:
                kind = "nvme"
            else:
                kind = "empty"
        rp = m.root_port(d, b, free[0], numa)
        used.add(free[0])
        top.append(rp)
        if kind == "empty":
            rp.link = (3, 16, 1, 0)  # nothing trained on an empty slot
            continue
        sec = m.bus()
        rp.slot = m.slot(d, sec)
        if kind == "mlx" or kind == "x710":
            rp.children = m.nic(d, sec, numa, kind, vfs)
        elif kind == "gpu":
            rp.children = m.gpu(d, sec, numa, on_vfio=turn % 3 == 0)
        elif kind == "nvme":
            rp.children = m.nvme_drive(d, sec, numa)
        else:
            rp.children = m.switch(
                d,
                sec,
                numa,
                acs=kind == "switch-nvme",
                ports=4 if kind == "switch-gpu" else 8,
                what="gpu" if kind == "switch-gpu" else "nvme",
            )
        rp.bridge_buses = (sec, m.next_bus - 1)
    assert m.count == functions, (m.count, functions)
    return m


# --- writing ----------------------------------------------------------------------------------------------------
def _config(f: Fn) -> bytes:
    """256 bytes of configuration space: header, bus numbers or BARs and subsystem, a PCIe capability."""
    c = bytearray(256)
    c[0:2] = f.vendor.to_bytes(2, "little")
    c[2:4] = f.device.to_bytes(2, "little")
    c[4:6] = (0x0407 if f.bridge_buses else 0x0406).to_bytes(2, "little")  # io/mem/bus-master
    c[6:8] = (0x0010 if f.port_type is not None else 0).to_bytes(2, "little")  # capability list
    c[8] = f.revision
    c[9:12] = (f.class_code & 0xFF, (f.class_code >> 8) & 0xFF, f.class_code >> 16)
    c[0x0C] = 0x10
    c[0x0E] = (1 if f.bridge_buses else 0) | (0x80 if f.multifunction else 0)
    if f.bridge_buses:
        c[0x18], c[0x19], c[0x1A] = f.bus, f.bridge_buses[0], f.bridge_buses[1]
    else:
        c[0x10:0x14] = (0xC0000000 + ((f.bus << 20) | (f.dev << 15) | (f.fn << 12))).to_bytes(4, "little")
        c[0x2C:0x2E] = f.subsys[0].to_bytes(2, "little")
        c[0x2E:0x30] = f.subsys[1].to_bytes(2, "little")
        c[0x3D] = 1  # INTA
    if f.port_type is not None:
        c[0x34] = 0x40
        c[0x40], c[0x41] = 0x10, 0x00  # PCI Express capability, last in the list
        c[0x42:0x44] = (0x0002 | (f.port_type << 4)).to_bytes(2, "little")
        if f.link:
            mspeed, mwidth, cspeed, cwidth = f.link
            c[0x4C:0x50] = (mspeed | (mwidth << 4)).to_bytes(4, "little")
            c[0x52:0x54] = (cspeed | (cwidth << 4)).to_bytes(2, "little")
    return bytes(c)


class Writer:
    def __init__(self, root: str) -> None:
        self.root = root
        self.sys = os.path.join(root, "sys")
        self.files = 0
        self.drivers: dict[str, str | None] = {}

    def write(self, path: str, data: str | bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data if isinstance(data, bytes) else data.encode())
        finally:
            os.close(fd)
        self.files += 1

    def link(self, path: str, target: str) -> None:
        """A relative symlink, as the kernel's are."""
        os.symlink(os.path.relpath(target, os.path.dirname(path)), path)

    def function(self, f: Fn, parent_dir: str) -> str:
        d = os.path.join(parent_dir, f.address)
        os.mkdir(d)
        os.mkdir(os.path.join(d, "power"))
        w = self.write
        cls = f.class_code
        modalias = (
            f"pci:v{f.vendor:08X}d{f.device:08X}sv{f.subsys[0]:08X}sd{f.subsys[1]:08X}"
            f"bc{cls >> 16:02X}sc{(cls >> 8) & 0xFF:02X}i{cls & 0xFF:02X}"
        )
        attrs = {
            "vendor": f"0x{f.vendor:04x}\n",
            "device": f"0x{f.device:04x}\n",
            "subsystem_vendor": f"0x{f.subsys[0]:04x}\n",
            "subsystem_device": f"0x{f.subsys[1]:04x}\n",
            "class": f"0x{cls:06x}\n",
            "revision": f"0x{f.revision:02x}\n",
            "numa_node": f"{f.numa}\n",
            "driver_override": "(null)\n",
            "modalias": modalias + "\n",
            "irq": f"{(f.bus * 8 + f.fn) % 200 + 16}\n",
            "enable": "1\n",
            "local_cpus": "00000000,0000ffff\n" if f.numa == 0 else "00000000,ffff0000\n",
            "local_cpulist": "0-15\n" if f.numa == 0 else "16-31\n",
            "resource": "0x00000000c0000000 0x00000000c0ffffff 0x0000000000140204\n" + "0x0000000000000000 "
            "0x0000000000000000 0x0000000000000000\n" * 12,
            "dma_mask_bits": "64\n",
            "consistent_dma_mask_bits": "64\n",
            "msi_bus": "1\n",
            "broken_parity_status": "0\n",
            "d3cold_allowed": "1\n",
            "power_state": "D0\n",
            "ari_enabled": "1\n" if f.bridge_buses else "0\n",
            # As pci_uevent() (drivers/pci/pci-driver.c) and dev_uevent() print it: DRIVER= only when bound.
            "uevent": (f"DRIVER={f.driver}\n" if f.driver else "")
            + f"PCI_CLASS={cls:X}\nPCI_ID={f.vendor:04X}:{f.device:04X}\n"
            f"PCI_SUBSYS_ID={f.subsys[0]:04X}:{f.subsys[1]:04X}\nPCI_SLOT_NAME={f.address}\n"
            f"MODALIAS={modalias}\n",
            "power/control": "auto\n",
            "power/runtime_status": "active\n",
        }
        if f.link:
            mspeed, mwidth, cspeed, cwidth = f.link
            attrs["max_link_speed"] = SPEEDS[mspeed] + "\n"
            attrs["max_link_width"] = f"{mwidth}\n"
            attrs["current_link_speed"] = (SPEEDS[cspeed] if cwidth else "Unknown") + "\n"
            attrs["current_link_width"] = f"{cwidth}\n"
        if f.reset:
            attrs["reset_method"] = f.reset + "\n"
            attrs["reset"] = ""
        if f.boot_vga is not None:
            attrs["boot_vga"] = "1\n" if f.boot_vga else "0\n"
        if f.bridge_buses:
            attrs["secondary_bus_number"] = f"{f.bridge_buses[0]}\n"
            attrs["subordinate_bus_number"] = f"{f.bridge_buses[1]}\n"
        if f.sriov:
            total, num, offset, stride = f.sriov
            attrs.update(
                {
                    "sriov_totalvfs": f"{total}\n",
                    "sriov_numvfs": f"{num}\n",
                    "sriov_offset": f"{offset}\n",
                    "sriov_stride": f"{stride}\n",
                    "sriov_vf_device": f"{f.vf_device:x}\n",
                    "sriov_drivers_autoprobe": "1\n",
                    "sriov_vf_total_msix": "0\n",
                }
            )
        for name, value in attrs.items():
            w(os.path.join(d, name), value)
        # Only root can read past the first 64 bytes of a real config; the fake is readable by all.
        w(os.path.join(d, "config"), _config(f))
        if f.bridge_buses:
            os.makedirs(os.path.join(d, "pci_bus", f"{f.domain:04x}:{f.bridge_buses[0]:02x}"))
        self.link(os.path.join(self.sys, "bus/pci/devices", f.address), d)
        self.link(os.path.join(d, "subsystem"), os.path.join(self.sys, "bus/pci"))
        if f.driver:
            ddir = self.driver_dir(f.driver, f.module)
            self.link(os.path.join(ddir, f.address), d)
            self.link(os.path.join(d, "driver"), ddir)
        if f.group is not None:
            gdir = os.path.join(self.sys, "kernel/iommu_groups", str(f.group))
            if not os.path.isdir(gdir):
                os.makedirs(os.path.join(gdir, "devices"))
                w(os.path.join(gdir, "type"), "DMA-FQ\n")
                w(os.path.join(gdir, "reserved_regions"), "0x00000000fee00000 0x00000000feefffff msi\n")
            self.link(os.path.join(gdir, "devices", f.address), d)
            self.link(os.path.join(d, "iommu_group"), gdir)
            self.link(os.path.join(d, "iommu"), os.path.join(self.sys, "devices/virtual/iommu", f"dmar{f.numa}"))
        if f.net:
            ndir = os.path.join(d, "net", f.net)
            os.makedirs(ndir)
            w(os.path.join(ndir, "operstate"), "up\n" if f.physfn is None else "down\n")
            self.link(os.path.join(self.sys, "class/net", f.net), ndir)
        if f.block:
            bdir = os.path.join(d, "nvme", f.block, f"{f.block}n1")
            os.makedirs(os.path.join(bdir, f"{f.block}n1p1"))
            w(os.path.join(bdir, "size"), "1875385008\n")
            self.link(os.path.join(self.sys, "class/block", f"{f.block}n1"), bdir)
            self.link(os.path.join(self.sys, "class/block", f"{f.block}n1p1"), os.path.join(bdir, f"{f.block}n1p1"))
        if f.drm:
            ddir = os.path.join(d, "drm", f.drm)
            os.makedirs(ddir)
            self.link(os.path.join(self.sys, "class/drm", f.drm), ddir)
        if f.slot:
            sdir = os.path.join(self.sys, "bus/pci/slots", f.slot[0])
            os.makedirs(sdir)
            w(os.path.join(sdir, "address"), f.slot[1] + "\n")
        for child in f.children:
            self.function(child, d)
        for i, vf in enumerate(f.vfs):
            vdir = self.function(vf, parent_dir)
            self.link(os.path.join(d, f"virtfn{i}"), vdir)
            self.link(os.path.join(vdir, "physfn"), d)
        return d

    def driver_dir(self, name: str, module: str | None) -> str:
        ddir = os.path.join(self.sys, "bus/pci/drivers", name)
        if name not in self.drivers:
            os.makedirs(ddir)
            for attr in ("bind", "unbind", "new_id", "remove_id", "uevent"):
                self.write(os.path.join(ddir, attr), "")
            if module:
                mdir = os.path.join(self.sys, "module", module)
                os.makedirs(os.path.join(mdir, "holders"), exist_ok=True)
                self.link(os.path.join(ddir, "module"), mdir)
            self.drivers[name] = module
        return ddir


def write_tree(m: Machine, root: str) -> int:
    """Write the machine under ``root`` (which must not exist yet); returns the number of files written."""
    os.makedirs(root)
    wr = Writer(root)
    for rel in (
        "sys/bus/pci/devices",
        "sys/bus/pci/drivers",
        "sys/bus/pci/slots",
        "sys/kernel/iommu_groups",
        "sys/class/net",
        "sys/class/block",
        "sys/class/drm",
        "sys/class/iommu",
        "sys/module",
        "sys/devices/virtual/iommu",
        "proc/sys/kernel",
        "lib/modules",
    ):
        os.makedirs(os.path.join(root, rel))
    wr.write(os.path.join(root, "sys/bus/pci/drivers_probe"), "")
    wr.write(os.path.join(root, "sys/bus/pci/rescan"), "")
    for node in (0, 1):
        idir = os.path.join(root, f"sys/devices/virtual/iommu/dmar{node}")
        os.makedirs(os.path.join(idir, "intel-iommu"))
        wr.write(os.path.join(idir, "intel-iommu/cap"), "8d2078c106f0466\n")
        wr.write(os.path.join(idir, "intel-iommu/ecap"), "f020df\n")
        wr.link(os.path.join(root, f"sys/class/iommu/dmar{node}"), idir)
    # vfio-pci is a module built on vfio_pci_core (its holder), as on a real host with vfio loaded.
    wr.driver_dir("vfio-pci", "vfio_pci")
    os.makedirs(os.path.join(root, "sys/module/vfio_pci_core/holders"))
    wr.link(os.path.join(root, "sys/module/vfio_pci_core/holders/vfio_pci"), os.path.join(root, "sys/module/vfio_pci"))
    wr.write(
        os.path.join(root, "proc/cmdline"),
        "BOOT_IMAGE=/vmlinuz-6.1.0-18-amd64 root=/dev/sda2 ro intel_iommu=on iommu=pt\n",
    )
    wr.write(os.path.join(root, "proc/sys/kernel/osrelease"), "6.1.0-18-amd64\n")
    for name, top in m.roots:
        rdir = os.path.join(root, "sys/devices", name)
        os.makedirs(rdir)
        for f in top:
            wr.function(f, rdir)
    return wr.files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="directory to create (must not exist)")
    parser.add_argument("--functions", type=int, default=4096, help="PCI functions (default 4096)")
    opts = parser.parse_args(argv)
    if os.path.lexists(opts.out):
        parser.error(f"{opts.out} exists")
    t0 = time.perf_counter()
    m = build(opts.functions)
    files = write_tree(m, opts.out)
    print(
        f"{opts.out}: {m.count} PCI functions, {m.next_group} IOMMU groups, {len(m.roots)} root complexes, "
        f"{files} files in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
