"""Shared fixtures: fake hosts, recorded real hosts, pinned pci.ids."""

from __future__ import annotations

import lzma
import os
from pathlib import Path

import pytest

from pcipass.archive import max_unpacked, unpack
from tests.support.fakehost import FakeHost

DATA = Path(__file__).parent / "data"

# tests/guest/ runs only inside the real-kernel qemu guest (tests/realkernel boots it and sets
# PCIPASS_IN_GUEST=1 there): never collect it against this host's /sys.
collect_ignore = [] if os.environ.get("PCIPASS_IN_GUEST") == "1" else ["guest"]


@pytest.fixture(autouse=True)
def _pinned_environment(monkeypatch, tmp_path_factory):
    """Tests never read the machine's pci.ids or inherit a root from the environment."""
    monkeypatch.setenv("PCIPASS_PCI_IDS", str(pinned_pci_ids(tmp_path_factory)))
    monkeypatch.delenv("PCIPASS_ROOT", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")


_PCI_IDS_CACHE: dict[str, Path] = {}


def pinned_pci_ids(tmp_path_factory) -> Path:
    if "p" not in _PCI_IDS_CACHE:
        out = tmp_path_factory.getbasetemp() / "pci.ids"
        if not out.exists():
            out.write_bytes(lzma.decompress((DATA / "pci-ids" / "pci.ids.debian12-2023.04.11.xz").read_bytes()))
        _PCI_IDS_CACHE["p"] = out
    return _PCI_IDS_CACHE["p"]


@pytest.fixture
def fake(tmp_path) -> FakeHost:
    return FakeHost(tmp_path / "root")


@pytest.fixture
def gpu(fake) -> Path:
    """The emitters' fake host (tests/support/emit_hosts.py): a GPU with its audio function, NICs, a lone device."""
    from tests.support.emit_hosts import gpu_host

    return gpu_host(fake).root


@pytest.fixture
def scans(monkeypatch) -> list[set[str]]:
    """The device addresses of every inventory scanned during the test, in order."""
    from pcipass.inventory import Inventory

    seen: list[set[str]] = []
    real = Inventory.scan.__func__

    def spy(cls, *args, **kwargs):
        inv = real(cls, *args, **kwargs)
        seen.append(set(inv.devices))
        return inv

    monkeypatch.setattr(Inventory, "scan", classmethod(spy))
    return seen


def _unpack(name: str, dest: Path) -> Path:
    src = DATA / "hosts" / name
    dest.mkdir(parents=True, exist_ok=True)
    unpack(src, dest, limit=max_unpacked())  # pcipass's own checks: tarfile's filter= is not on every Python
    return dest


@pytest.fixture(scope="session")
def hpe_a2(tmp_path_factory) -> Path:
    """The HPE ProLiant Gen9 with the NVIDIA A2 (SR-IOV, 16 VFs), IOMMU on: 226 devices, 106 groups."""
    return _unpack("hpe-gen9-a2.sysfs-tree.tar.xz", tmp_path_factory.mktemp("hpe_a2"))


@pytest.fixture(scope="session")
def hpe_iommu_off(tmp_path_factory) -> Path:
    """The same HPE host recorded earlier with the IOMMU off: 208 devices, no groups."""
    return _unpack("hpe-gen9-iommu-off.sysfs-tree.tar.xz", tmp_path_factory.mktemp("hpe_off"))


@pytest.fixture(scope="session")
def hpe_ghw(tmp_path_factory) -> Path:
    """A ghw-style snapshot of the same host: few attributes, no config, no groups."""
    return _unpack("hpe-gen9-ghw.tar.gz", tmp_path_factory.mktemp("hpe_ghw"))
