"""Harness smoke tests: the guest is the machine tests/realkernel/topology.py says it is.

No pcipass here: these check the kernel's own view, so the tier is meaningful on its own and
later tests can rely on the documented layout (addresses, drivers, group membership).
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.guest.kernel import driver as _driver

TOPOLOGY = ("iommu_on", "iommu_off")

# role key -> driver the guest's kernel binds at boot (None: no driver)
EXPECTED_DRIVERS = {
    "host_bridge": None,
    "e1000e": "e1000e",
    "virtio_net": "virtio-pci",
    "nvme": "nvme",
    "mf_virtio_net": "virtio-pci",
    "mf_e1000": "e1000",
    "rp_bridge": "pcieport",
    "pci_bridge": None,
    "bridged_e1000": "e1000",
    "bridged_rtl8139": "8139cp",
    "rp_noacs": "pcieport",
    "noacs_e1000e": "e1000e",
    "audio": "snd_hda_intel",
    "usb_xhci": "xhci_hcd",
    "display": "bochs-drm",
    "io_9p": "virtio-pci",
    "root_9p": "virtio-pci",
    "lpc": "lpc_ich",
    "sata": "ahci",
    "smbus": "i801_smbus",
}


def test_running_in_the_guest_as_root(topology):
    assert os.geteuid() == 0
    assert "pcipass_guest=1" in Path("/proc/cmdline").read_text().split()
    assert os.environ["PCIPASS_GUEST_TOPOLOGY"] == topology["name"]


def test_device_set_is_the_documented_topology(addr):
    present = {p.name for p in Path("/sys/bus/pci/devices").iterdir()}
    assert present == set(addr.values())


def test_drivers_bound_at_boot(addr):
    got = {role: _driver(a) for role, a in addr.items()}
    assert got == EXPECTED_DRIVERS


def test_protected_devices_carry_the_9p_shares(protected, addr):
    assert protected == {addr["io_9p"], addr["root_9p"]}
    for a in protected:
        assert Path("/sys/bus/pci/devices", a, "vendor").read_text().strip() == "0x1af4"
        assert Path("/sys/bus/pci/devices", a, "device").read_text().strip() == "0x1009"  # virtio 9p


def test_bridges_and_buses(addr):
    for role in ("rp_bridge", "pci_bridge", "rp_noacs"):
        assert Path("/sys/bus/pci/devices", addr[role], "class").read_text().strip().startswith("0x0604")
    # the bridged NICs sit under the PCI bridge, which sits under the root port
    real = os.path.realpath(Path("/sys/bus/pci/devices", addr["bridged_e1000"]))
    assert f"/{addr['rp_bridge']}/{addr['pci_bridge']}/{addr['bridged_e1000']}" in real


def test_iommu_state_matches_topology(topology):
    dmar = Path("/sys/class/iommu/dmar0")
    groups = list(Path("/sys/kernel/iommu_groups").iterdir())
    if topology["iommu"]:
        assert dmar.exists()
        assert groups
    else:
        assert not list(Path("/sys/class/iommu").iterdir())
        assert groups == []
        assert not any(Path("/sys/bus/pci/devices", a, "iommu_group").exists() for a in topology["addresses"].values())


def test_group_layout(topology, sysfs_groups):
    if not topology["iommu"]:
        assert sysfs_groups == {}
        return
    by_members = {frozenset(m) for m in sysfs_groups.values()}
    for name, members in topology["shared_groups"].items():
        assert frozenset(members) in by_members, f"shared group {name} {members} not found in {sysfs_groups}"
    for a in topology["single_groups"]:
        assert frozenset([a]) in by_members, f"{a} is not alone in its group: {sysfs_groups}"
    # every device is in exactly one group
    allm = [a for m in sysfs_groups.values() for a in m]
    assert sorted(allm) == sorted(topology["addresses"].values())


def test_group_type_is_identity_with_iommu_pt(topology):
    if not topology["iommu"]:
        return
    types = {g.name: (g / "type").read_text().strip() for g in Path("/sys/kernel/iommu_groups").iterdir()}
    assert set(types.values()) == {"identity"}, types


def test_vfio_modules_available():
    import subprocess

    p = subprocess.run(["modprobe", "-n", "-v", "vfio-pci"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
