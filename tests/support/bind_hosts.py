"""Fake hosts for the binding engine tests: the real-kernel guest's topology, as a FakeHost tree.

Addresses mirror tests/realkernel/topology.py so a reader can compare unit and guest tests::

    0000:00:02.0  e1000e NIC (eth0)           group 1   e1000e
    0000:00:03.0  virtio-net (eth1)           group 2   virtio-pci
    0000:00:04.0  NVMe (nvme0n1, nvme0n1p1)   group 3   nvme
    0000:00:05.0  virtio-net (eth2)           group 4   virtio-pci   } one group
    0000:00:05.1  e1000 (eth3)                group 4   e1000        }
    0000:00:06.0  PCIe root port              group 5   pcieport
    0000:01:00.0  PCIe-to-PCI bridge          group 6   -            }
    0000:02:01.0  e1000 behind the bridge     group 6   e1000        } one group
    0000:02:02.0  rtl8139 behind the bridge   group 6   8139cp       }
    0000:00:08.0  HDA audio                   group 7   snd_hda_intel
    0000:00:09.0  unbound endpoint            group 8   -

vfio-pci is not loaded (modules.dep has it: the plan loads it first). modules.alias declares a vfio variant
``virtio_vfio_pci`` for 1af4:1000, for ``--driver auto``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from pcipass import engine
from pcipass.host import Host
from tests.support.fakehost import FakeHost
from tests.support.fakekernel import FakeKernel, tree_digest

KVER = "6.1.0-test-amd64"

E1000E = "0000:00:02.0"
VIRTIO = "0000:00:03.0"
NVME = "0000:00:04.0"
MF0 = "0000:00:05.0"
MF1 = "0000:00:05.1"
ROOT_PORT = "0000:00:06.0"
PCI_BRIDGE = "0000:01:00.0"
BR_E1000 = "0000:02:01.0"
BR_RTL = "0000:02:02.0"
AUDIO = "0000:00:08.0"
UNBOUND = "0000:00:09.0"

_MODULES = (
    "vfio-pci",
    "vfio",
    "vfio_iommu_type1",
    "pci-stub",
    "e1000e",
    "e1000",
    "virtio_pci",
    "nvme",
    "8139cp",
    "snd-hda-intel",
    "virtio_vfio_pci",
)


def build(root: Path) -> FakeHost:
    f = FakeHost(root)
    f.enable_iommu()
    f.add_device(E1000E, vendor="8086", device="10d3", driver="e1000e", group=1)
    f.add_net(E1000E, "eth0")
    f.add_device(VIRTIO, vendor="1af4", device="1000", driver="virtio-pci", group=2)
    f.add_net(VIRTIO, "eth1")
    f.add_device(NVME, vendor="1b36", device="0010", class_="010802", driver="nvme", group=3)
    f.add_block(NVME, "nvme0n1", partitions=("nvme0n1p1",))
    f.write(f"sys/bus/pci/devices/{NVME}/nvme/nvme0/nvme0n1/dev", "259:0\n")
    f.write(f"sys/bus/pci/devices/{NVME}/nvme/nvme0/nvme0n1/nvme0n1p1/dev", "259:1\n")
    f.add_device(MF0, vendor="1af4", device="1000", driver="virtio-pci", group=4)
    f.add_net(MF0, "eth2")
    f.add_device(MF1, vendor="8086", device="100e", driver="e1000", group=4)
    f.add_net(MF1, "eth3")
    f.add_device(ROOT_PORT, vendor="1b36", device="000c", class_="060400", driver="pcieport", group=5, bridge=True)
    f.add_device(PCI_BRIDGE, vendor="1b36", device="000e", class_="060400", group=6, bridge=True, parent=ROOT_PORT)
    f.add_device(BR_E1000, vendor="8086", device="100e", driver="e1000", group=6, parent=PCI_BRIDGE)
    f.add_device(BR_RTL, vendor="10ec", device="8139", driver="8139cp", group=6, parent=PCI_BRIDGE)
    f.add_device(AUDIO, vendor="8086", device="293e", class_="040300", driver="snd_hda_intel", group=7)
    f.add_device(UNBOUND, vendor="8086", device="10d3", group=8)
    f.write(f"lib/modules/{KVER}/modules.dep", "".join(f"kernel/drivers/x/{m}.ko:\n" for m in _MODULES))
    f.write(
        f"lib/modules/{KVER}/modules.alias",
        "alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n"
        "alias vfio_pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_vfio_pci\n",
    )
    f.write(f"lib/modules/{KVER}/modules.builtin", "")
    return f


# --- host-use fixtures: the procfs lines that make a device "in use" ------------------------------------------
# capabilities/key of a real USB keyboard (input_id's test: every key 1..31 present) and of a mouse (none).
KEYBOARD_KEYS = "1000000000007 ff800000000007ff febeffdfffefffff fffffffffffffffe"
MOUSE_KEYS = "1f0000 0 0 0 0"


def add_input(f: FakeHost, address: str, name: str, label: str, keys: str, via: str = "usb1/1-1/1-1:1.0") -> None:
    """An input device (``inputN``, with its ``eventN`` handler) under ``address``'s device directory, and
    its /sys/class/input links, as the kernel lays out a USB HID device."""
    dev = f.devices[address].path / via / name
    (dev / "capabilities").mkdir(parents=True)
    (dev / "capabilities" / "key").write_text(keys + "\n")
    (dev / "name").write_text(label + "\n")
    event = dev / ("event" + name[len("input") :])
    event.mkdir()
    f.symlink(f"sys/class/input/{name}", dev)
    f.symlink(f"sys/class/input/{event.name}", event)


ROUTE_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"


def route_line(iface: str, dest: str, gateway: str, mask: str) -> str:
    """A /proc/net/route row; addresses in the kernel's little-endian hex form (as x86 prints them)."""

    def hx(ip: str) -> str:
        return "".join(f"{int(o):02X}" for o in reversed(ip.split(".")))

    return f"{iface}\t{hx(dest)}\t{hx(gateway)}\t0003\t0\t0\t0\t{hx(mask)}\t0\t0\t0\n"


def fib_trie_local(*addresses: str) -> str:
    """A minimal /proc/net/fib_trie with ``addresses`` as local leaves."""
    lines = ["Main:\n", "  +-- 0.0.0.0/0 3 0 5\n"]
    for a in addresses:
        lines += [f"     |-- {a}\n", "        /32 host LOCAL\n"]
    return "".join(lines) + "Local:\n  +-- 0.0.0.0/0 3 0 5\n"


# --- the engine under test, on a fake host with a fake kernel ------------------------------------------------
STATE = "run/pcipass"


@dataclass
class Env:
    fake: FakeHost
    kernel: FakeKernel
    host: Host

    @property
    def root(self) -> Path:
        return self.fake.root

    def enable(self, *addresses: str, **kw) -> engine.BindReport:
        kw.setdefault("timeout", 0.3)
        kw.setdefault("lock_wait", 1.0)
        return engine.enable(self.host, list(addresses), kernel=self.kernel, **kw)

    def disable(self, *addresses: str, **kw) -> engine.BindReport:
        kw.setdefault("timeout", 0.3)
        kw.setdefault("lock_wait", 1.0)
        return engine.disable(self.host, list(addresses), kernel=self.kernel, **kw)

    def status(self, *addresses: str) -> engine.StatusReport:
        return engine.status(self.host, list(addresses) or None, kernel=self.kernel)

    def digest(self, *, with_state: bool = False) -> dict[str, str]:
        return tree_digest(self.root, exclude=() if with_state else (STATE,))

    def driver(self, address: str) -> str | None:
        return self.kernel.driver(address)

    def override(self, address: str) -> str | None:
        return self.kernel.override(address)

    def state(self) -> dict:
        p = self.root / STATE / "state.json"
        return json.loads(p.read_text())["devices"] if p.exists() else {}


@pytest.fixture
def env(tmp_path) -> Env:
    fake = build(tmp_path / "root")
    return Env(fake, FakeKernel(fake), Host(fake.root))


@pytest.fixture
def cli(env, monkeypatch, capsys):
    """``pcipass --root <env's root> ARGS`` through the real CLI entry point, with the fake kernel."""
    import pcipass.engine.kernel as kernel
    import pcipass.engine.readstatus as status
    from tests.support.cli import run

    monkeypatch.setattr(kernel, "SysfsKernel", lambda host: env.kernel)  # what a mutating run writes through
    monkeypatch.setattr(status, "SysfsKernel", lambda host: env.kernel)

    def call(*args: str):
        return run(capsys, "--root", str(env.root), *args)

    return call


@pytest.fixture(autouse=True)
def _never_the_real_sys(monkeypatch, tmp_path):
    """Belt and braces for every binding test: the engine's real writer may only touch the test's tmp tree,
    and the tests act as root (CI may run them unprivileged)."""
    import pcipass.engine.guards as guards_mod
    import pcipass.engine.kernel as kernel_mod

    real = kernel_mod.write_attr
    base = os.path.realpath(tmp_path)

    def guarded(path, value, **kw):
        if not os.path.realpath(path).startswith(base + os.sep):
            raise AssertionError(f"a test tried to write {path} outside its fake root")
        return real(path, value, **kw)

    monkeypatch.setattr(kernel_mod, "write_attr", guarded)
    monkeypatch.setattr(guards_mod, "effective_uid", lambda: 0)
