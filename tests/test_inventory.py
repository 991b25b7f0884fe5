"""Inventory on fake hosts: every field, and tolerance of partial, broken and odd trees."""

import os
import random
import shutil
import sys
from collections import Counter

import pytest

from pcipass.address import PciAddress
from pcipass.cli.render import dump_json
from pcipass.errors import DeviceNotFound
from pcipass.group import GroupVerdict
from pcipass.host import Host
from pcipass.inventory import Inventory
from pcipass.inventory.scan import device_jobs
from pcipass.model import Role
from pcipass.result import Result, jsonable
from tests.support.bench_tree import all_functions, count_forks, gen_tree, scan_all, server  # noqa: F401 - fixture


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


# --- the scan's invariants, on the benchmark's generated server (tests/support/bench_tree.py) ----------------


def test_uevent_and_the_attribute_files_agree(server, tmp_path):
    """The scan takes ids, class, driver and modalias from ``uevent`` when there is one (a live kernel, a
    snapshot) and from the separate attributes otherwise (recorded trees): both must give the same devices."""
    root, _m = server
    bare = tmp_path / "host"
    shutil.copytree(root, bare, symlinks=True)
    removed = 0
    for dirpath, _dirs, files in os.walk(bare / "sys" / "devices"):
        if "uevent" in files:
            os.unlink(os.path.join(dirpath, "uevent"))
            removed += 1
    assert removed >= 600
    with_uevent, without = scan_all(root), scan_all(bare)
    assert with_uevent == without
    unbound = [d for d in with_uevent.values() if d.driver is None]
    assert unbound and any(d.driver for d in with_uevent.values())


def test_parallel_scan_is_the_sequential_scan(server, monkeypatch):
    import pcipass.inventory.scan as scan

    root, _m = server
    monkeypatch.setattr(scan, "PARALLEL_MIN", 10**9)
    sequential = {detail: scan_all(root, detail=detail) for detail in (True, False)}
    monkeypatch.setattr(scan, "PARALLEL_MIN", 2)
    forks = count_forks(monkeypatch)
    for detail in (True, False):
        parallel = scan_all(root, detail=detail)
        assert parallel == sequential[detail] and list(parallel) == list(sequential[detail])
    assert len(forks) == 2 and sequential[True] != sequential[False]


def test_parallel_scan_survives_its_child_failing(server, monkeypatch):
    """A child that dies (here: every read raises in the child only) or a fork that fails: the parent reads
    the child's half itself."""
    import pcipass.inventory.scan as scan

    root, _m = server
    expected = scan_all(root)
    monkeypatch.setattr(scan, "PARALLEL_MIN", 2)
    forks = count_forks(monkeypatch)
    parent = os.getpid()
    real_row = scan.Reader.row

    def row_failing_in_child(self, *args):
        if os.getpid() != parent:
            raise RuntimeError("child failure")
        return real_row(self, *args)

    monkeypatch.setattr(scan.Reader, "row", row_failing_in_child)
    assert scan_all(root) == expected and len(forks) == 1

    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    assert scan_all(root) == expected


def test_no_fork_from_a_threaded_process(server, monkeypatch):
    """Another thread could hold a lock the child needs: then the scan stays in one process."""
    import threading

    import pcipass.inventory.scan as scan

    root, _m = server
    monkeypatch.setattr(scan, "PARALLEL_MIN", 2)

    def fork():
        raise AssertionError("forked while another thread runs")

    monkeypatch.setattr(os, "fork", fork)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        devices = scan_all(root)
    finally:
        stop.set()
        other.join()
    assert len(devices) == 600


def test_a_reading_begun_early_is_the_scan(server, monkeypatch):
    """A reading begun before the scan (cli/startup.py begins one at process start) and taken by the scan it
    serves gives the devices that scan would read alone, with the one fork; a scan it does not serve (details
    wanted, other devices, another root) cancels it and reads alone."""
    import pcipass.inventory.scan as scan
    from pcipass.inventory import Reading

    def begin(root) -> Reading:
        return Reading(Host(root), None, detail=False, only=None)

    root, _m = server
    expected = {detail: scan_all(root, detail=detail) for detail in (True, False)}
    monkeypatch.setattr(scan, "PARALLEL_MIN", 2)
    forks = count_forks(monkeypatch)
    early = begin(root)
    assert len(forks) == 1
    assert scan_all(root, detail=False, reading=early) == expected[False] and len(forks) == 1
    assert early.child.reaped and early.child.rfd == -1

    other = root.parent / "same-host-elsewhere"
    if not other.exists():
        shutil.copytree(root, other, symlinks=True)
    for kwargs, want in (
        ({"detail": True}, expected[True]),
        ({"detail": False, "only": ["0000:00:00.0"]}, None),
        ({"detail": False, "root": other}, expected[False]),
    ):
        forks.clear()
        early = begin(root)
        scan_root = kwargs.pop("root", root)
        got = scan_all(scan_root, reading=early, **kwargs)
        assert early.child.reaped and early.child.rfd == -1  # cancelled
        assert len(forks) == (1 if "only" in kwargs else 2)  # its own fork (a targeted scan is small)
        if want is not None:
            assert got == want
    # A host too small to be worth a second process: read in this one when the scan takes it.
    monkeypatch.setattr(scan, "PARALLEL_MIN", 10**9)
    forks.clear()
    early = begin(root)
    assert early.child is None and scan_all(root, detail=False, reading=early) == expected[False] and not forks


def test_targeted_scan_reads_the_devices_and_their_groups(server):
    """``scan(only=...)``, the binding engine's view: the devices asked for plus every member of their IOMMU
    groups, each exactly as a full scan reads it; nothing else."""
    root, m = server
    full = Inventory.scan(Host(root))
    fns = all_functions(m)
    # A GPU behind a switch without ACS (a 12-member group) and an NVMe drive with a group of its own.
    shared = Counter(f.group for f in fns if f.device == 0x8747 and f.port_type == gen_tree.PT_DOWNSTREAM)
    gpu = next(f for f in fns if f.device == 0x2204 and f.group == shared.most_common(1)[0][0])
    nvme = next(f for f in fns if f.device == 0xA808)
    part = Inventory.scan(Host(root), only=[gpu.address.upper()[5:], nvme.address, "zz:00.0", "0000:ff:1f.7"])
    expected = {a for a, d in full.devices.items() if d.iommu_group in (gpu.group, nvme.group)}
    assert set(part.devices) == expected and len(expected) == 12 + 1
    assert all(part.devices[a] == full.devices[a] for a in expected)
    assert part.partial and not full.partial
    assert set(part.groups) == {gpu.group, nvme.group}
    assert part.groups[gpu.group] == full.groups[gpu.group]
    assert part.peers(nvme.address) == [] and len(part.peers(gpu.address)) == 11
    # A PF brings its VFs (each in a group of its own here), as the binding guards need them.
    pf = next(f for f in fns if f.sriov and len(f.vfs) > 3)
    part = Inventory.scan(Host(root), only=[pf.address])
    expected = {a for a, d in full.devices.items() if d.iommu_group in {pf.group, *(v.group for v in pf.vfs)}}
    assert set(part.devices) == expected and {v.address for v in pf.vfs} < expected


def test_list_leaves_out_the_details_show_has(server):
    """``list`` skips the per-device details (five more reads each); ``summary`` is ``jsonable`` without them."""
    from pcipass.cli.inventory_cmds import summary
    from pcipass.model import DETAIL_FIELDS

    root, _m = server
    lean, full = Inventory.scan(Host(root), detail=False), Inventory.scan(Host(root))
    for addr, dev in full.devices.items():
        expected = jsonable(dev)
        for key in DETAIL_FIELDS:
            del expected[key]
        assert summary(lean.devices[addr]) == expected == summary(dev)
        assert lean.devices[addr].link is None and lean.devices[addr].reset_method is None
    assert any(d.link and d.link.current_link_speed for d in full.devices.values())
    assert any(d.reset_method for d in full.devices.values())


def test_lazy_records_write_what_converted_data_writes(server, capsys, monkeypatch):
    """``list`` hands its devices over as Records, converted one by one while the JSON is written in pieces;
    the text is the same as from data converted beforehand, and YAML/tables get plain data from jsonable."""
    import pcipass.cli.render as render
    from pcipass.cli.inventory_cmds import summary
    from pcipass.result import Records

    root, _m = server
    devices = list(Inventory.scan(Host(root), detail=False).devices.values())
    lazy = Result("list", data=Records(devices, summary))
    eager = Result("list", data=[summary(d) for d in devices])
    expected = dump_json(eager.envelope())
    assert dump_json(lazy.envelope(lazy=True)) == expected
    assert lazy.envelope() == eager.envelope() and jsonable(lazy.data) == eager.data
    assert lazy.envelope(lazy=True)["data"] is lazy.data
    monkeypatch.setattr(render, "_FLUSH_PIECES", 10)
    writes = []
    real_write = sys.stdout.write
    monkeypatch.setattr(sys.stdout, "write", lambda text: writes.append(text) or real_write(text))
    render.write_json(lazy.envelope(lazy=True))
    assert capsys.readouterr().out == expected and len(writes) > len(devices) // 10


def test_build_frozen_builds_what_init_builds(server):
    from pcipass.model import PciDevice, build_frozen

    root, _m = server
    for dev in list(Inventory.scan(Host(root)).devices.values())[:50]:
        fields = {f: getattr(dev, f) for f in PciDevice.__dataclass_fields__}
        made = PciDevice(**fields)
        assert made == dev and hash(made) == hash(dev) and repr(made) == repr(dev)
        assert build_frozen(PciDevice, dict(fields)) == made
        with pytest.raises(AttributeError):
            dev.driver = "x"


# --- the field spec (PciDevice's declaration, model.device_fields) ---------------------------------------------
def test_the_reader_builds_the_spec_s_fields_in_its_order(server):
    """Reader.row keys its values by the spec's names, in its order: the scan makes them the device's own dict,
    whose order ``summary`` and the JSON keep."""
    from pcipass.inventory import Reading
    from pcipass.model import device_fields

    names = [f.name for f in device_fields()]
    root, _m = server
    for detail in (True, False):
        reading = Reading(Host(root), None, detail=detail, only=None)
        for job in reading.jobs[:50]:
            values, malformed = reading.reader.row(job)
            assert list(values) == names and malformed == ()
        assert [list(vars(d)) for d in list(reading.devices().values())[:50]] == [names] * 50


def test_the_json_goldens_keys_are_the_spec_s_names():
    """What ``show`` and ``list`` write for a device has the spec's names as keys, in its order (``list``: all
    but the fields only a detail scan reads), in every JSON golden that has devices."""
    import json

    from pcipass.model import device_fields
    from tests.support.golden import GOLDEN

    show = [f.name for f in device_fields()]
    listed = [f.name for f in device_fields() if not f.metadata["detail"]]
    seen = 0
    for path in sorted(GOLDEN.glob("hpe-a2.*.json")):
        data = json.loads(path.read_text())["data"]
        if ".show-" in path.name:
            assert list(data["device"]) == show, path.name
            seen += 1
        elif ".list" in path.name:
            devices = [d for g in data for d in g["devices"]] if ".list-tree" in path.name else data
            assert devices and all(list(d) == listed for d in devices), path.name
            seen += 1
    assert seen == 5
