"""Mediated devices on the real kernel: the sample ``mtty`` driver (built by the host tier for this kernel,
tests/realkernel/mtty.py) gives real mdev types; pcipass lists them, creates an instance, lists it, emits it
for libvirt, refuses to remove it while a process holds its VFIO group, removes it, and refuses a create
when no instance is left. One module load, in-process library calls; two CLI runs check the exit codes.
"""

from __future__ import annotations

import json
import os

import pytest

TOPOLOGY = "iommu_on"

U1 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"


def _types(host) -> dict[str, tuple[str | None, int | None, int]]:
    from pcipass.mdev import read

    return {t.type_id: (t.name, t.available_instances, len(t.devices)) for t in read.types(host) if t.parent == "mtty"}


def test_types_create_list_emit_remove(mtty, capsys):
    from pcipass.errors import Refused
    from pcipass.mdev import ops
    from tests.support.cli import run
    from tests.support.emit_schemas import LIBVIRT_VERSIONS, libvirt_errors, wrap_in_domain

    host = mtty
    assert _types(host) == {"mtty-1": ("Single port serial", 24, 0), "mtty-2": ("Dual port serial", 12, 0)}
    dry = ops.create(host, "mtty", "mtty-2", uuid=U1, dry_run=True)
    assert not dry.changed and not host.mdev_device(U1).exists()

    made = ops.create(host, "mtty", "mtty-2", uuid=U1)
    assert made.changed and host.mdev_device(U1).is_dir()
    assert _types(host) == {"mtty-1": ("Single port serial", 22, 0), "mtty-2": ("Dual port serial", 11, 1)}
    (dev,) = ops.list_devices(host)
    assert (dev.uuid, dev.parent, dev.mdev_type, dev.type_name, dev.device_api) == (
        U1,
        "mtty",
        "mtty-2",
        "Dual port serial",
        "vfio-pci",
    )
    assert dev.created_by_pcipass and dev.held_by == () and dev.iommu_group is not None
    node = host.vfio_group_node(dev.iommu_group)
    assert node.exists()

    emitted = run(capsys, "emit", "libvirt", "--mdev", U1)  # the CLI, in this process
    assert emitted.code == 0, emitted.err
    xml = emitted.out
    assert f'<address uuid="{U1}" />' in xml and 'model="vfio-pci"' in xml
    for version in LIBVIRT_VERSIONS:
        assert libvirt_errors(wrap_in_domain(xml), version) == ""

    # a process (this one) holding the group: remove is refused, naming it, and nothing changes
    fd = os.open(node, os.O_RDWR)
    try:
        assert ops.list_devices(host)[0].held_by == (f"{_comm()} (pid {os.getpid()})",)
        with pytest.raises(Refused, match=f"held open by .*pid {os.getpid()}"):
            ops.remove(host, U1)
    finally:
        os.close(fd)
    assert host.mdev_device(U1).is_dir()

    gone = ops.remove(host, U1)
    assert gone.changed and gone.undo == f"pcipass mdev create mtty mtty-2 --uuid {U1}"
    assert not host.mdev_device(U1).exists()
    assert _types(host) == {"mtty-1": ("Single port serial", 24, 0), "mtty-2": ("Dual port serial", 12, 0)}
    assert ops.list_devices(host) == []


def _comm() -> str:
    with open("/proc/self/comm") as fh:
        return fh.read().strip()


def test_declared_instances_come_back(mtty, tmp_path):
    """persist writes the instance into a desired-state file; once it is gone (as after a reboot) apply creates it
    again from the file, on the real kernel."""
    from pcipass.config import Editor, load
    from pcipass.mdev import declared, ops

    host = mtty
    ops.create(host, "mtty", "mtty-1", uuid=U1)
    path = tmp_path / "pcipass.yaml"
    editor = Editor(path, "pcipass.yaml")
    assert editor.upsert("mdev", declared.entry_for(host, U1).to_node()) == "added"
    editor.save()
    ops.remove(host, U1)
    entries = load(path, "pcipass.yaml").section("mdev")
    assert [c.state.value for c in declared.check(host, entries)] == ["missing"]
    assert [a.outcome for a in declared.apply(host, entries)] == ["created"]
    assert read_type(host, U1) == "mtty-1"
    assert [a.outcome for a in declared.apply(host, entries)] == ["unchanged"]
    ops.remove(host, U1)


def read_type(host, uuid: str) -> str | None:
    from pcipass.mdev import read

    return read.device(host, uuid).mdev_type


def test_the_cli_refuses_when_no_instance_is_left(mtty, run_cli):
    from pcipass.mdev import ops

    host = mtty
    made = [ops.create(host, "mtty", "mtty-2").uuid for _ in range(12)]
    try:
        assert _types(host)["mtty-2"] == ("Dual port serial", 0, 12)
        p = run_cli("mdev", "create", "mtty", "mtty-2", "--format", "json")
        assert p.returncode == 5, p.stderr
        assert "no instance of mtty-2 left on mtty: available_instances is 0 (12 of this type exist" in p.stderr
        assert json.loads(p.stdout)["errors"][0]["code"] == "refused"
        listed = run_cli("mdev", "list", "--format", "json", check=True)
        assert sorted(d["uuid"] for d in json.loads(listed.stdout)["data"]) == sorted(made)
    finally:
        for u in made:
            ops.remove(host, u)
    assert _types(host)["mtty-2"] == ("Dual port serial", 12, 0)
