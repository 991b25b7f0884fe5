"""Inventory on fake hosts: every field, and tolerance of partial, broken and odd trees."""

import os
import random

import pytest

from pcipass.address import PciAddress
from pcipass.errors import DeviceNotFound
from pcipass.group import GroupVerdict
from pcipass.host import Host
from pcipass.inventory import Inventory
from pcipass.inventory.scan import device_jobs
from pcipass.model import Role


def _scan(fake):
    return Inventory.scan(Host(fake.root))


def test_fields(fake):
    fake.add_device(
        "0000:00:01.0", vendor="8086", device="1901", class_="060400", bridge=True, driver="pcieport", group=1
    )
    fake.add_device(
        "0000:01:00.0",
        vendor="10de",
        device="1eb8",
        class_="030200",
        parent="0000:00:01.0",
        driver="nvidia",
        group=2,
        numa_node=1,
        boot_vga=False,
        subsystem_device="12a2",
        extra={
            "current_link_speed": "8.0 GT/s PCIe",
            "current_link_width": "16",
            "max_link_speed": "8.0 GT/s PCIe",
            "max_link_width": "16",
        },
    )
    fake.add_device(
        "0000:01:00.1",
        vendor="10de",
        device="10f8",
        class_="040300",
        parent="0000:00:01.0",
        driver="snd_hda_intel",
        group=2,
    )
    fake.write("sys/bus/pci/slots/3/address", "0000:01:00\n")
    fake.add_drm("0000:01:00.0", "card1")
    inv = _scan(fake)
    gpu = inv.device("01:00.0")
    assert (gpu.vendor_id, gpu.device_id, gpu.subsystem_vendor_id, gpu.subsystem_device_id) == (
        "10de",
        "1eb8",
        "10de",
        "12a2",
    )
    assert gpu.vendor_name == "NVIDIA Corporation" and gpu.device_name == "TU104GL [Tesla T4]"
    assert gpu.class_id == "030200" and gpu.subclass_name == "3D controller"
    assert gpu.driver == "nvidia" and gpu.module == "nvidia" and gpu.driver_override is None
    # A 3D controller (0302) has no boot_vga on a real kernel (pci_is_vga() is VGA classes only), so even a
    # stray file is not read: unknown.
    assert gpu.iommu_group == 2 and gpu.numa_node == 1 and gpu.boot_vga is None
    assert gpu.reset_method == ("flr", "bus")
    assert gpu.parent_bridge == "0000:00:01.0" and gpu.functions == ("0000:01:00.1",)
    assert gpu.physical_slot == "3" and gpu.drm == ("card1",)
    assert gpu.link.current_link_width == 16 and gpu.link.max_link_speed == "8.0 GT/s PCIe"
    assert not gpu.is_bridge and gpu.role is Role.ENDPOINT
    port = inv.device("00:01.0")
    assert port.is_bridge and port.header_type == 1 and port.parent_bridge is None
    assert inv.groups[2].verdict is GroupVerdict.BINDABLE
    assert [m.address for m in inv.groups[2].devices] == ["0000:01:00.0", "0000:01:00.1"]
    assert inv.groups[1].verdict is GroupVerdict.READY  # a bridge on pcieport does not block a group
    assert [p.address for p in inv.peers("0000:01:00.0")] == ["0000:01:00.1"]


def test_no_subsystem_names_for_no_subsystem(fake):
    """Subsystem vendor 0000 or ffff: no subsystem id, so no subsystem names (lspci prints no Subsystem line;
    pci.ids would name ffff "Illegal Vendor ID"); the ids themselves are reported as read."""
    fake.add_device("0000:00:19.0", subsystem_vendor="8086", subsystem_device="a01f")
    fake.add_device("0000:00:1a.0", subsystem_vendor="0000", subsystem_device="0000")
    fake.add_device("0000:00:1b.0", subsystem_vendor="ffff", subsystem_device="ffff")
    inv = _scan(fake)
    named = inv.device("0000:00:19.0")
    assert (named.subsystem_vendor_name, named.subsystem_device_name) == (
        "Intel Corporation",
        "Gigabit CT Desktop Adapter",
    )
    for address, sub in (("0000:00:1a.0", "0000"), ("0000:00:1b.0", "ffff")):
        dev = inv.device(address)
        assert (dev.subsystem_vendor_id, dev.subsystem_device_id) == (sub, sub)
        assert dev.subsystem_vendor_name is None and dev.subsystem_device_name is None
        assert dev.vendor_name == "Intel Corporation"


def test_verdicts(fake):
    fake.add_device("0000:00:02.0", driver="vfio-pci", group=5)
    fake.add_device("0000:00:02.1", driver=None, group=5)
    fake.add_device("0000:00:03.0", driver="pci-stub", group=6)
    fake.add_device("0000:00:03.1", driver="mlx5_vfio_pci", group=6)
    fake.add_device("0000:00:04.0", driver="e1000e", group=7)
    fake.add_device("0000:00:05.0", driver="e1000e")
    inv = _scan(fake)
    assert inv.groups[5].verdict is GroupVerdict.READY
    assert inv.groups[6].verdict is GroupVerdict.READY
    assert inv.groups[7].verdict is GroupVerdict.BINDABLE
    assert inv.group_verdict("0000:00:05.0") is GroupVerdict.NONE
    assert inv.group_of("0000:00:05.0") is None and inv.peers("0000:00:05.0") == []


def test_variant_driver_by_module_holder(fake):
    fake.add_device("0000:00:02.0", driver="acme_passthru", group=3)
    (fake.root / "sys/module/vfio_pci_core/holders/acme_passthru").mkdir(parents=True)
    assert _scan(fake).groups[3].verdict is GroupVerdict.READY


def test_override_and_sriov(fake):
    fake.add_device(
        "0000:03:00.0",
        vendor="8086",
        device="10fb",
        driver="ixgbe",
        override="vfio-pci",
        extra={"sriov_totalvfs": "63", "sriov_numvfs": "2"},
    )
    for i, vf in enumerate(("0000:03:10.0", "0000:03:10.2")):
        fake.add_device(vf, vendor="8086", device="10ed", driver="ixgbevf")
        fake.symlink(f"{fake.devices['0000:03:00.0'].path.relative_to(fake.root)}/virtfn{i}", fake.devices[vf].path)
        fake.symlink(f"{fake.devices[vf].path.relative_to(fake.root)}/physfn", fake.devices["0000:03:00.0"].path)
    inv = _scan(fake)
    pf = inv.device("0000:03:00.0")
    assert pf.driver_override == "vfio-pci"
    assert pf.sriov.totalvfs == 63 and pf.sriov.numvfs == 2 and pf.sriov.vfs == ("0000:03:10.0", "0000:03:10.2")
    assert inv.device("0000:03:10.2").physfn == "0000:03:00.0" and inv.device("0000:03:10.2").sriov is None


def test_vfs_are_nobodys_multifunction_siblings(fake):
    """The kernel makes every VF single-function (pci_iov_add_virtfn()): VFs in their PF's slot (the recorded
    A2: 08:00.4-.7) or in slots of their own are not ``functions``, and a VF has none; a real second function
    stays. The same in a partial scan that did not read the sibling VFs."""
    fake.add_device(
        "0000:08:00.0",
        vendor="10de",
        device="25b6",
        class_="030200",
        group=40,
        extra={"sriov_totalvfs": "16", "sriov_numvfs": "4"},
    )
    fake.add_device("0000:08:00.1", vendor="10de", device="228b", class_="040300", group=40)
    for i, vf in enumerate(("0000:08:00.4", "0000:08:00.5", "0000:08:01.0", "0000:08:01.1")):
        fake.add_device(vf, vendor="10de", device="25b6", class_="030200", group=41 + i)
        fake.symlink(f"{fake.devices['0000:08:00.0'].path.relative_to(fake.root)}/virtfn{i}", fake.devices[vf].path)
        fake.symlink(f"{fake.devices[vf].path.relative_to(fake.root)}/physfn", fake.devices["0000:08:00.0"].path)
    inv = _scan(fake)
    assert inv.device("08:00.0").functions == ("0000:08:00.1",)
    assert inv.device("08:00.1").functions == ("0000:08:00.0",)
    assert all(inv.device(vf).functions == () for vf in ("08:00.4", "08:00.5", "08:01.0", "08:01.1"))
    # Partial scans: the audio function's group holds the PF, whose VFs are read with it; a VF that is not
    # among its PF's virtfn links (08:00.6, added below) is not read, and its own physfn link says what it is.
    partial = Inventory.scan(Host(fake.root), only=["0000:08:00.1"])
    assert partial.device("08:00.1").functions == ("0000:08:00.0",)
    lone = fake.add_device("0000:08:00.6", vendor="10de", device="25b6", class_="030200", group=50)
    fake.symlink(f"{lone.path.relative_to(fake.root)}/physfn", fake.devices["0000:08:00.0"].path)
    partial = Inventory.scan(Host(fake.root), only=["0000:08:00.1"])
    assert "0000:08:00.6" not in partial.devices
    assert partial.device("08:00.1").functions == ("0000:08:00.0",)


def test_host_objects(fake):
    fake.add_device("0000:00:03.0", vendor="1af4", device="1041", driver="virtio-pci")
    fake.add_device("0000:00:04.0", vendor="8086", device="0953", class_="010802", driver="nvme")
    fake.add_net("0000:00:03.0", "eth0")
    fake.add_block("0000:00:04.0", "nvme0n1", partitions=("nvme0n1p1", "nvme0n1p2"))
    inv = _scan(fake)
    assert inv.device("00:03.0").net == ("eth0",)
    assert inv.device("00:04.0").block == ("nvme0n1",)  # partitions are not listed as disks


def test_missing_attributes_never_lose_a_device(fake):
    fake.add_device("0000:00:02.0", driver="e1000e", group=4, config=False, reset_method=None)
    path = fake.devices["0000:00:02.0"].path
    for attr in (
        "vendor",
        "device",
        "class",
        "numa_node",
        "driver_override",
        "revision",
        "modalias",
        "subsystem_vendor",
        "subsystem_device",
    ):
        (path / attr).unlink()
    inv = _scan(fake)
    dev = inv.device("0000:00:02.0")
    assert dev.vendor_id is None and dev.device_id is None and dev.class_id is None
    assert dev.vendor_name is None and dev.numa_node is None and dev.reset_method is None
    assert dev.driver == "e1000e" and dev.iommu_group == 4 and not dev.is_bridge
    assert dev.display_name == "unknown device"


def test_dangling_links(fake):
    fake.add_device("0000:00:02.0", driver="weird-drv.v2_x", group=9)
    path = fake.devices["0000:00:02.0"].path
    # The group directory and the driver directory vanish: links dangle, names still read.
    import shutil

    shutil.rmtree(fake.root / "sys/kernel/iommu_groups/9")
    shutil.rmtree(fake.root / "sys/bus/pci/drivers/weird-drv.v2_x")
    assert os.path.islink(path / "iommu_group") and not os.path.exists(path / "iommu_group")
    # A bus entry whose target is gone entirely.
    fake.symlink("sys/bus/pci/devices/0000:00:09.0", fake.root / "sys/devices/pci0000:00/0000:00:09.0")
    inv = _scan(fake)
    dev = inv.device("0000:00:02.0")
    assert dev.iommu_group == 9 and dev.driver == "weird-drv.v2_x" and dev.module is None
    ghost = inv.device("0000:00:09.0")
    assert ghost.vendor_id is None and ghost.iommu_group is None
    assert 9 in inv.groups


def test_garbage_values_and_foreign_entries(fake):
    fake.add_device("0000:00:02.0", extra={"numa_node": "banana", "current_link_width": "x"})
    (fake.devices["0000:00:02.0"].path / "vendor").write_text("not-hex\n")
    (fake.devices["0000:00:02.0"].path / "driver_override").write_text("\n")
    (fake.root / "sys/bus/pci/devices/not-an-address").mkdir()
    (fake.root / "sys/kernel/iommu_groups/junk").mkdir()
    inv = _scan(fake)
    assert list(inv.devices) == ["0000:00:02.0"]
    dev = inv.device("0000:00:02.0")
    assert dev.vendor_id is None and dev.numa_node is None and dev.driver_override is None
    assert dev.link.current_link_width is None


def test_groups_from_directory_when_links_missing(fake):
    fake.add_device("0000:00:02.0")
    fake.set_group("0000:00:02.0", 11)
    (fake.devices["0000:00:02.0"].path / "iommu_group").unlink()
    assert _scan(fake).device("0000:00:02.0").iommu_group == 11


def test_bridge_without_config_uses_pci_bus_or_class(fake):
    fake.add_device("0000:00:01.0", class_="060400", bridge=False, config=False)
    fake.add_device("0000:00:01.1", class_="ff0000", bridge=True, config=False)  # pci_bus/ subdir present
    fake.add_device("0000:00:00.0", class_="060000", config=False)  # host bridge: type-0 header, an endpoint
    inv = _scan(fake)
    assert inv.device("00:01.0").is_bridge and inv.device("00:01.1").is_bridge
    assert not inv.device("00:00.0").is_bridge


def test_vmd_domain_sorted_after(fake):
    fake.add_device("10000:e0:00.0")
    fake.add_device("0000:00:02.0")
    assert list(_scan(fake).devices) == ["0000:00:02.0", "10000:e0:00.0"]


def _jobs_by_parsing(entries):
    """What _device_jobs must give, the slow obvious way: every entry that parses, sorted by its PciAddress,
    each with the other entries of its slot."""
    parsed = {n: PciAddress.try_parse(n) for n in entries}
    names = sorted((n for n in entries if parsed[n] is not None), key=lambda n: (parsed[n], n))
    by_slot: dict[str, list[str]] = {}
    for n in names:
        by_slot.setdefault(parsed[n].slot_id, []).append(n)
    return [(n, parsed[n].slot_id, tuple(m for m in by_slot[parsed[n].slot_id] if m != n)) for n in names]


@pytest.mark.parametrize("seed", range(20))
def test_device_order_and_siblings_from_the_names(seed):
    """Canonical names (domains of 4 to 8 digits, multifunction slots, SR-IOV-sized buses) in address order by
    the fast path; with a non-canonical entry or junk among them, by parsing; the same answer either way."""
    rng = random.Random(seed)
    names = set()
    for _ in range(rng.randint(1, 300)):
        domain = rng.choice([0, 0, 0, 1, 0xFFFF, 0x10000, 0x1234567, rng.randrange(1 << 32)])
        slot = f"{domain:04x}:{rng.randrange(256):02x}:{rng.randrange(32):02x}"
        for fn in rng.sample(range(8), rng.randint(1, 8)):
            names.add(f"{slot}.{fn}")
    entries = sorted(names)
    assert device_jobs(entries) == _jobs_by_parsing(entries)
    odd = entries + [rng.choice(["00:1f.3", "0000:00:1F.2", "1:02:00.0"]), "not-a-device", "0000:00:20.0"]
    odd.sort()
    assert device_jobs(odd) == _jobs_by_parsing(odd)


def test_not_found(fake):
    with pytest.raises(DeviceNotFound, match="no PCI device 0000:3b:00.0"):
        _scan(fake).device("3b:00.0")


def test_empty_root(tmp_path):
    inv = Inventory.scan(Host(tmp_path))
    assert inv.devices == {} and inv.groups == {}
