"""mdev types/list/create/remove on fake hosts: every branch and error, through the CLI and the library."""

from __future__ import annotations

import errno
import json
import os

import pytest

from pcipass.errors import DeviceNotFound, Refused, SysfsError
from pcipass.host import Host
from pcipass.mdev import ops, read
from pcipass.mdev.model import Interface
from tests.support.cli import run
from tests.support.fakekernel import tree_digest
from tests.support.fakemdev import (
    FakeMdevKernel,
    add_mdev,
    add_mtty,
    add_parent,
    add_type,
    as_root_with_fake_kernel,
    hold,
)
from tests.support.fakemdev import mdev_cli as _cli

U1 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
U2 = "0a9ef2b1-6d4c-4c38-9d5e-39b9a1e2c0de"
GPU = "0000:08:00.0"
VF = "0000:26:00.4"
L40S_TYPES = "ID    : vGPU Name\n1145  : NVIDIA L40S-1B\n1147  : NVIDIA L40S-1Q\n1155  : NVIDIA L40S-24Q\n"


@pytest.fixture(autouse=True)
def _root_and_fake_kernel(monkeypatch, fake):
    as_root_with_fake_kernel(monkeypatch, fake)


@pytest.fixture
def mtty(fake):
    add_mtty(fake)
    return fake


def _json(capsys, fake, *args, code=0):
    return json.loads(_cli(capsys, fake, *args, "--format", "json", code=code).out)


# --- types ---------------------------------------------------------------------------------------------------
def test_types_of_mtty(capsys, mtty):
    data = _json(capsys, mtty, "types")["data"]
    assert [
        (t["parent"], t["type_id"], t["name"], t["device_api"], t["available_instances"], t["devices"]) for t in data
    ] == [
        ("mtty", "mtty-1", "Single port serial", "vfio-pci", 24, []),
        ("mtty", "mtty-2", "Dual port serial", "vfio-pci", 12, []),
    ]
    assert data[0]["parent_driver"] == "mtty" and data[0]["interface"] == "mdev"
    table = _cli(capsys, mtty, "types").out
    assert "mtty-2   Dual port serial     vfio-pci   12" in table


def test_types_of_a_pci_parent_and_nvidia_vfs(capsys, fake):
    fake.add_device(GPU, vendor="10de", device="25b6", class_="030200", driver="nvidia", group=30)
    add_parent(fake, GPU)
    add_type(
        fake,
        GPU,
        "nvidia-746",
        name="NVIDIA A2-4Q",
        available=1,
        description="num_heads=4, frl_config=60,\nframebuffer=4096M",
    )
    add_type(fake, GPU, "nvidia-755", name="NVIDIA A2-8C", available=0, device_api=None)
    fake.add_device(VF, vendor="10de", device="26b9", class_="030200", driver="nvidia", group=31)
    fake.write(f"sys/bus/pci/devices/{VF}/nvidia/creatable_vgpu_types", L40S_TYPES)
    fake.write(f"sys/bus/pci/devices/{VF}/nvidia/current_vgpu_type", "0\n")
    vf2 = "0000:26:00.5"
    fake.add_device(vf2, vendor="10de", device="26b9", class_="030200", driver="nvidia", group=32)
    fake.write(f"sys/bus/pci/devices/{vf2}/nvidia/creatable_vgpu_types", "ID    : vGPU Name\n")
    fake.write(f"sys/bus/pci/devices/{vf2}/nvidia/current_vgpu_type", "1147\n")
    types = read.types(Host(fake.root))
    assert [(t.parent, t.type_id, t.available_instances, t.devices, t.interface) for t in types] == [
        (GPU, "nvidia-746", 1, (), Interface.MDEV),
        (GPU, "nvidia-755", 0, (), Interface.MDEV),
        (VF, "1145", 1, (), Interface.NVIDIA_VGPU),
        (VF, "1147", 1, (), Interface.NVIDIA_VGPU),
        (VF, "1155", 1, (), Interface.NVIDIA_VGPU),
        (vf2, "1147", 0, (vf2,), Interface.NVIDIA_VGPU),
    ]
    assert types[0].description == "num_heads=4, frl_config=60, framebuffer=4096M"  # one line
    assert types[0].parent_driver == "nvidia" and types[1].device_api is None
    assert types[2].name == "NVIDIA L40S-1B"
    # one parent, named with or without its PCI domain
    assert [t.type_id for t in read.types(Host(fake.root), "08:00.0")] == ["nvidia-746", "nvidia-755"]
    assert [t.type_id for t in read.types(Host(fake.root), VF)] == ["1145", "1147", "1155"]
    assert "(nvidia vGPU)" in _cli(capsys, fake, "types").out


def test_types_of_an_unknown_parent(capsys, mtty):
    r = _cli(capsys, mtty, "types", "0000:99:00.0", code=1)
    assert "0000:99:00.0 is not a mediated-device parent" in r.err and "parents here: mtty" in r.err


def test_no_parent_at_all(capsys, fake):
    assert _json(capsys, fake, "types")["data"] == []
    assert "No mediated-device parent" in _cli(capsys, fake, "types").out
    r = _cli(capsys, fake, "create", "mtty", "mtty-1", code=1)
    assert "load the parent's vendor driver" in r.err


def test_hostile_names_are_quoted(capsys, fake):
    add_parent(fake, "evil\x1b[2J")
    r = _cli(capsys, fake, "create", "nope", "x", code=1)
    assert "'evil\\x1b[2J'" in r.err and "\x1b" not in r.err


# --- list ----------------------------------------------------------------------------------------------------
def test_list_shows_group_driver_holder_and_managers(capsys, mtty):
    assert _json(capsys, mtty, "list")["data"] == []
    assert "No mediated device exists" in _cli(capsys, mtty, "list").out
    add_mdev(mtty, "mtty", "mtty-2", U1)
    add_mdev(mtty, "mtty", "mtty-1", U2, driver=None, group=False)
    mtty.write(f"etc/mdevctl.d/mtty/{U2}", json.dumps({"mdev_type": "mtty-1", "start": "auto", "attrs": []}))
    group = os.path.basename(os.readlink(mtty.root / f"sys/bus/mdev/devices/{U1}/iommu_group"))
    hold(mtty, f"vfio/{group}")
    data = _json(capsys, mtty, "list")["data"]
    by = {d["uuid"]: d for d in data}
    assert [d["uuid"] for d in data] == sorted([U1, U2])
    assert by[U1] == {
        "uuid": U1,
        "parent": "mtty",
        "mdev_type": "mtty-2",
        "type_name": "Dual port serial",
        "device_api": "vfio-pci",
        "iommu_group": int(group),
        "driver": "mtty",
        "held_by": ["qemu-system-x86 (pid 4242)"],
        "created_by_pcipass": False,
        "mdevctl": None,
    }
    assert by[U2]["held_by"] == [] and by[U2]["mdevctl"] == "auto" and by[U2]["iommu_group"] is None
    table = _cli(capsys, mtty, "list").out
    assert "qemu-system-x86 (pid 4242)" in table and "mdevctl (auto)" in table
    # the type's counts follow the instances
    t2 = next(t for t in _json(capsys, mtty, "types")["data"] if t["type_id"] == "mtty-2")
    assert t2["available_instances"] == 11 and t2["devices"] == [U1]


# --- create --------------------------------------------------------------------------------------------------
def test_create_dry_run_plans_and_writes_nothing(capsys, mtty):
    before = tree_digest(mtty.root)
    env = _json(capsys, mtty, "create", "mtty", "mtty-2", "--uuid", U1.upper(), "--dry-run")
    assert env["data"] == {
        "action": "create",
        "dry_run": True,
        "changed": False,
        "uuid": U1,
        "parent": "mtty",
        "mdev_type": "mtty-2",
        "steps": [
            {
                "op": "write",
                "path": "/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2/create",
                "value": U1,
                "note": f"create mtty-2 instance {U1}",
            },
            {
                "op": "verify-present",
                "path": f"/sys/bus/mdev/devices/{U1}",
                "value": None,
                "note": "the device appeared",
            },
        ],
        "undo": f"pcipass mdev remove {U1}",
    }
    assert tree_digest(mtty.root) == before
    assert "Plan (dry run: nothing was written)" in _cli(capsys, mtty, "create", "mtty", "mtty-2", "--dry-run").out


def test_create_records_it_and_remove_reverses_it(capsys, mtty):
    before = tree_digest(mtty.root, exclude=("run",))
    env = _json(capsys, mtty, "create", "mtty", "mtty-2", "--uuid", U1)
    assert env["data"]["changed"] is True and env["data"]["undo"] == f"pcipass mdev remove {U1}"
    assert (mtty.root / f"sys/bus/mdev/devices/{U1}").is_dir()
    state = json.loads((mtty.root / "run/pcipass/mdev.json").read_text())
    assert state["mdevs"][U1]["phase"] == "created" and state["mdevs"][U1]["mdev_type"] == "mtty-2"
    assert oct((mtty.root / "run/pcipass/mdev.json").stat().st_mode & 0o777) == "0o600"
    listed = _json(capsys, mtty, "list")["data"]
    assert [(d["uuid"], d["created_by_pcipass"]) for d in listed] == [(U1, True)]
    assert "pcipass" in _cli(capsys, mtty, "list").out
    # converges: the same create again changes nothing
    again = _json(capsys, mtty, "create", "mtty", "mtty-2", "--uuid", U1)
    assert again["data"]["changed"] is False and again["data"]["steps"] == []
    gone = _json(capsys, mtty, "remove", U1)["data"]
    assert gone["changed"] is True and gone["undo"] == f"pcipass mdev create mtty mtty-2 --uuid {U1}"
    assert tree_digest(mtty.root, exclude=("run",)) == before
    assert json.loads((mtty.root / "run/pcipass/mdev.json").read_text())["mdevs"] == {}


def test_create_without_uuid_makes_one(capsys, mtty):
    data = _json(capsys, mtty, "create", "mtty", "mtty-1")["data"]
    assert (mtty.root / f"sys/bus/mdev/devices/{data['uuid']}").is_dir()


def test_create_refused_when_no_instance_is_left(capsys, mtty):
    add_type(mtty, "mtty", "mtty-9", name="Nine", available=1)
    add_mdev(mtty, "mtty", "mtty-9", U2)
    r = _cli(capsys, mtty, "create", "mtty", "mtty-9", "--uuid", U1, code=5)
    assert f"no instance of mtty-9 left on mtty: available_instances is 0 (1 of this type exist: {U2})" in r.err
    env = _json(capsys, mtty, "create", "mtty", "mtty-9", "--uuid", U1, code=5)
    assert env["errors"][0]["code"] == "refused"
    assert not (mtty.root / f"sys/bus/mdev/devices/{U1}").exists()


def test_create_refused_for_a_uuid_in_use(capsys, mtty):
    add_mdev(mtty, "mtty", "mtty-1", U1)
    r = _cli(capsys, mtty, "create", "mtty", "mtty-2", "--uuid", U1, code=5)
    assert f"{U1} is already a mtty-1 device on mtty" in r.err


@pytest.mark.parametrize(
    "args, code, text",
    [
        (("mtty", "mtty-3"), 2, "mtty has no mediated-device type mtty-3 (its types: mtty-1, mtty-2)"),
        (("nope", "mtty-1"), 1, "nope is not a mediated-device parent"),
        (("mtty", "mtty-1", "--uuid", "not-a-uuid"), 2, "not-a-uuid is not a UUID"),
    ],
)
def test_create_bad_input(capsys, mtty, args, code, text):
    assert text in _cli(capsys, mtty, "create", *args, code=code).err


def test_create_with_mdevctl_definitions(capsys, mtty):
    mtty.write(f"etc/mdevctl.d/mtty/{U1}", json.dumps({"mdev_type": "mtty-1", "start": "manual"}))
    r = _cli(capsys, mtty, "create", "mtty", "mtty-2", "--uuid", U1, code=5)
    assert f"mdevctl defines {U1} as mtty-1 on mtty (/etc/mdevctl.d/mtty/{U1})" in r.err
    assert f"'mdevctl start -u {U1}'" in r.err
    r = _cli(capsys, mtty, "create", "mtty", "mtty-1", "--uuid", U1)
    assert f"mdevctl defines {U1} this way too" in r.err


def test_create_the_kernel_refuses(capsys, mtty):
    """The driver's own count can be lower than sysfs said (another user raced us): its error, no record."""
    k = FakeMdevKernel(mtty)
    k.instances_left["mtty-1"] = 0
    with pytest.raises(SysfsError) as exc:
        ops.create(Host(mtty.root), "mtty", "mtty-1", uuid=U1, kernel=k)
    assert exc.value.errno == errno.ENOSPC and "the parent's driver refused" in (exc.value.remedy or "")
    assert json.loads((mtty.root / "run/pcipass/mdev.json").read_text())["mdevs"] == {}


def test_not_root_and_snapshot(capsys, mtty, monkeypatch, tmp_path):
    import tarfile

    import pcipass.engine.guards as guards

    monkeypatch.setattr(guards, "effective_uid", lambda: 1000)
    assert "needs root" in _cli(capsys, mtty, "create", "mtty", "mtty-1", code=4).err
    _cli(capsys, mtty, "create", "mtty", "mtty-1", "--dry-run")  # a preview needs no root
    archive = tmp_path / "snap.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(mtty.root / "sys", "sys")
    r = run(capsys, "--root", str(archive), "mdev", "remove", U1)
    assert r.code == 2 and "snapshot" in r.err


# --- remove --------------------------------------------------------------------------------------------------
def test_remove_refused_while_held(capsys, mtty):
    add_mdev(mtty, "mtty", "mtty-2", U1)
    group = os.path.basename(os.readlink(mtty.root / f"sys/bus/mdev/devices/{U1}/iommu_group"))
    hold(mtty, f"vfio/{group}", pid=777, comm="qemu-kvm")
    before = tree_digest(mtty.root, exclude=("run",))
    r = _cli(capsys, mtty, "remove", U1, code=5)
    assert f"{U1} is held open by qemu-kvm (pid 777)" in r.err and "stop the VM" in r.err
    assert _cli(capsys, mtty, "remove", U1, "--dry-run", code=5)
    assert tree_digest(mtty.root, exclude=("run",)) == before  # the lock file only


def test_remove_dry_run(capsys, mtty):
    add_mdev(mtty, "mtty", "mtty-2", U1)
    before = tree_digest(mtty.root)
    data = _json(capsys, mtty, "remove", U1, "--dry-run")["data"]
    assert [s["op"] for s in data["steps"]] == ["write", "verify-absent"]
    assert data["steps"][0]["path"] == f"/sys/bus/mdev/devices/{U1}/remove" and data["steps"][0]["value"] == "1"
    assert tree_digest(mtty.root) == before


def test_remove_unknown_and_already_gone(capsys, mtty):
    assert f"no mediated device {U1}" in _cli(capsys, mtty, "remove", U1, code=1).err
    _cli(capsys, mtty, "create", "mtty", "mtty-1", "--uuid", U1)
    from tests.support.fakemdev import remove_mdev

    remove_mdev(mtty, U1)  # by someone else
    r = _cli(capsys, mtty, "remove", U1)
    assert "already gone (pcipass had created it)" in r.err
    assert json.loads((mtty.root / "run/pcipass/mdev.json").read_text())["mdevs"] == {}


def test_remove_says_mdevctl_brings_it_back(capsys, mtty):
    add_mdev(mtty, "mtty", "mtty-2", U1)
    mtty.write(f"etc/mdevctl.d/mtty/{U1}", json.dumps({"mdev_type": "mtty-2", "start": "auto"}))
    r = _cli(capsys, mtty, "remove", U1)
    assert "mdevctl defines" in r.err and f"'mdevctl undefine -u {U1}'" in r.err


def test_remove_that_hangs_keeps_the_record(mtty):
    """A write the kernel never returns from (a holder pcipass could not see) is abandoned; the record stays."""
    host = Host(mtty.root)
    k = FakeMdevKernel(mtty)
    ops.create(host, "mtty", "mtty-2", uuid=U1, kernel=k)
    k.hang.add(len(k.writes))
    with pytest.raises(SysfsError) as exc:
        ops.remove(host, U1, kernel=k, timeout=0.1)
    assert exc.value.errno == errno.ETIMEDOUT
    assert ops.MdevStore(host).load()[U1]["phase"] == "created"
    assert (mtty.root / f"sys/bus/mdev/devices/{U1}").is_dir()


def test_library_errors_are_typed(mtty):
    host = Host(mtty.root)
    with pytest.raises(DeviceNotFound):
        ops.remove(host, U2, dry_run=True)
    add_mdev(mtty, "mtty", "mtty-1", U2)
    hold(mtty, "vfio/" + os.path.basename(os.readlink(mtty.root / f"sys/bus/mdev/devices/{U2}/iommu_group")))
    with pytest.raises(Refused):
        ops.remove(host, U2, dry_run=True)


def test_a_damaged_state_file_is_an_error(capsys, mtty):
    mtty.write("run/pcipass/mdev.json", "{not json")
    r = _cli(capsys, mtty, "list", code=1)
    assert "is not pcipass mdev state" in r.err


def test_damaged_trees_are_read_tolerantly(capsys, mtty):
    """A dangling instance link, a stray name, a type without its counts, garbage in NVIDIA's list: read as
    unknown, never a crash."""
    add_type(mtty, "mtty", "mtty-x", name=None, available=None, device_api=None)
    mtty.symlink(f"sys/bus/mdev/devices/{U2}", mtty.root / "sys/devices/virtual/gone")
    mtty.write("sys/bus/mdev/devices/not-a-uuid", "")
    (dev,) = _json(capsys, mtty, "list")["data"]
    assert (dev["uuid"], dev["parent"], dev["mdev_type"], dev["iommu_group"], dev["driver"]) == (
        U2,
        None,
        None,
        None,
        None,
    )
    tx = next(t for t in _json(capsys, mtty, "types")["data"] if t["type_id"] == "mtty-x")
    assert (tx["name"], tx["available_instances"], tx["device_api"]) == (None, None, None)
    r = _cli(capsys, mtty, "create", "mtty", "mtty-x", "--uuid", U1, "--dry-run")
    assert "available_instances of mtty-x is unreadable: the kernel decides" in r.err
    mtty.add_device(VF, vendor="10de", device="26b9", class_="030200", driver="nvidia", group=31)
    mtty.write(f"sys/bus/pci/devices/{VF}/nvidia/creatable_vgpu_types", "garbage\n12x : y\n 7 : NVIDIA X-1Q \n")
    vgpu = [t for t in read.types(Host(mtty.root)) if t.parent == VF]
    assert [(t.type_id, t.name, t.available_instances) for t in vgpu] == [("7", "NVIDIA X-1Q", 1)]
