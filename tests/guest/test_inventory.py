"""pcipass's inventory against the real kernel: every device, driver, group and role.

pcipass's view (library ``Inventory.scan(Host("/"))`` and the CLI's JSON) is compared with the
kernel's own (``/sys/bus/pci/devices``, ``/sys/kernel/iommu_groups``, config-space header type)
and with ``lspci -D -n -vmm -k`` for every device of the guest, in both topologies. Read-only.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.guest.kernel import SYS_PCI
from tests.guest.kernel import driver as _driver
from tests.guest.kernel import group as _group

TOPOLOGY = ("iommu_on", "iommu_off")

ASSIGNABLE_DRIVERS = {None, "vfio-pci", "pci-stub"}


def _header_is_bridge(address: str) -> bool:
    header_type = (SYS_PCI / address / "config").read_bytes()[0x0E] & 0x7F
    return header_type in (1, 2)


def _expected_verdict(members: set[str]) -> str:
    endpoints = [a for a in members if not _header_is_bridge(a)]
    return "ready" if all(_driver(a) in ASSIGNABLE_DRIVERS for a in endpoints) else "bindable"


@pytest.fixture(scope="module")
def inv():
    from pcipass.host import Host
    from pcipass.inventory import Inventory

    return Inventory.scan(Host("/"))


@pytest.fixture(scope="module")
def cli_list_subprocess():
    """``python -m pcipass --format json list`` as a real process, once (start-up costs ~3-5 s under TCG)."""
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "pcipass", "--format", "json", "list"], capture_output=True, text=True, timeout=180
    )
    try:
        return p.returncode, json.loads(p.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(f"pcipass list: no JSON on stdout ({e})\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}") from e


def cli_in_process(capsys, *args: str) -> tuple[int, dict]:
    """The CLI entry point in-process (tests/support/cli.py): same code path, no interpreter start-up."""
    from tests.support.cli import run

    r = run(capsys, "--format", "json", *args)
    try:
        return r.code, json.loads(r.out)
    except json.JSONDecodeError as e:
        raise AssertionError(f"pcipass {' '.join(args)}: no JSON ({e})\nstdout:\n{r.out}\nstderr:\n{r.err}") from e


# --------------------------------------------------------------------------- library


def test_device_set_matches_lspci_and_sysfs(inv, lspci):
    assert set(inv.devices) == set(lspci)
    assert set(inv.devices) == {p.name for p in SYS_PCI.iterdir()}


def test_ids_and_class_match_lspci(inv, lspci):
    got = {a: (d.vendor_id, d.device_id, d.class_id) for a, d in inv.devices.items()}
    want = {a: (v["vendor_id"], v["device_id"], v["class_id"]) for a, v in lspci.items()}
    assert got == want


def test_drivers_match_lspci(inv, lspci):
    got = {a: d.driver for a, d in inv.devices.items()}
    want = {a: v["driver"] for a, v in lspci.items()}
    assert got == want


def test_iommu_group_of_every_device_matches_sysfs(inv, topology):
    got = {a: d.iommu_group for a, d in inv.devices.items()}
    want = {a: _group(a) for a in inv.devices}
    assert got == want
    if not topology["iommu"]:
        assert set(got.values()) == {None}


def test_groups_match_sysfs(inv, sysfs_groups):
    got = {g.group: {m.address for m in g.devices} for g in inv.groups.values()}
    assert got == sysfs_groups


def test_roles_from_header_type(inv):
    for a, d in inv.devices.items():
        want = _header_is_bridge(a)
        assert d.is_bridge is want, a
        assert d.role.value == ("bridge" if want else "endpoint"), a
        cls = (SYS_PCI / a / "class").read_text().strip()
        assert want == cls.startswith("0x0604"), (a, cls)  # this topology: every bridge header is 0604


def test_group_members_carry_roles_and_drivers(inv):
    for g in inv.groups.values():
        for m in g.devices:
            assert m.role.value == ("bridge" if _header_is_bridge(m.address) else "endpoint"), m.address
            assert m.driver == _driver(m.address), m.address


def test_group_verdicts(inv, topology):
    for g in inv.groups.values():
        members = {m.address for m in g.devices}
        assert g.verdict.value == _expected_verdict(members), (g.group, members)
    if not topology["iommu"]:
        assert inv.groups == {}
        assert {inv.group_verdict(a).value for a in inv.devices} == {"none"}


def test_shared_groups_as_documented(inv, topology, addr):
    if not topology["iommu"]:
        assert all(inv.peers(a) == [] and inv.group_of(a) is None for a in inv.devices)
        return
    for name, members in topology["shared_groups"].items():
        for a in members:
            peers = {p.address for p in inv.peers(a)}
            assert peers == set(members) - {a}, (name, a, peers)
    # the PCI bridge group: one bridge + two endpoints, the bridge stays on no driver
    g = inv.group_of(addr["pci_bridge"])
    roles = sorted(m.role.value for m in g.devices)
    assert roles == ["bridge", "endpoint", "endpoint"]


def test_multifunction_siblings(inv, addr):
    assert inv.devices[addr["mf_virtio_net"]].functions == (addr["mf_e1000"],)
    assert inv.devices[addr["mf_e1000"]].functions == (addr["mf_virtio_net"],)
    assert inv.devices[addr["e1000e"]].functions == ()


def test_parent_bridges(inv, addr):
    assert inv.devices[addr["bridged_e1000"]].parent_bridge == addr["pci_bridge"]
    assert inv.devices[addr["bridged_rtl8139"]].parent_bridge == addr["pci_bridge"]
    assert inv.devices[addr["pci_bridge"]].parent_bridge == addr["rp_bridge"]
    assert inv.devices[addr["noacs_e1000e"]].parent_bridge == addr["rp_noacs"]
    assert inv.devices[addr["e1000e"]].parent_bridge is None


def test_net_and_block_objects(inv, addr):
    for role in ("e1000e", "virtio_net", "mf_e1000", "bridged_e1000", "noacs_e1000e"):
        a = addr[role]
        want = set(os.listdir(SYS_PCI / a / "net")) if (SYS_PCI / a / "net").is_dir() else set()
        if not want:  # virtio: the net device hangs below the virtioN child
            want = (
                {n for v in (SYS_PCI / a).glob("virtio*") for n in os.listdir(v / "net")}
                if list((SYS_PCI / a).glob("virtio*/net"))
                else set()
            )
        assert want, f"{role}: the kernel shows no network interface"
        assert set(inv.devices[a].net) == want, role
    assert "nvme0n1" in inv.devices[addr["nvme"]].block


# ------------------------------------------------------------------------- CLI (one real process; the rest in-process)


def test_cli_list_json(cli_list_subprocess, lspci, topology):
    rc, doc = cli_list_subprocess
    assert rc == 0, doc
    assert doc["pcipass"] == 1 and doc["command"] == "list" and doc["status"] == "ok", doc
    assert doc["errors"] == []
    rows = {d["address"]: d for d in doc["data"]}
    assert set(rows) == set(lspci)
    for a, d in rows.items():
        assert (d["vendor_id"], d["device_id"], d["class_id"]) == (
            lspci[a]["vendor_id"],
            lspci[a]["device_id"],
            lspci[a]["class_id"],
        ), a
        assert d["driver"] == lspci[a]["driver"], a
        assert d["iommu_group"] == _group(a), a
        assert d["is_bridge"] is _header_is_bridge(a), a
    if not topology["iommu"]:
        assert {d["iommu_group"] for d in rows.values()} == {None}


def test_cli_groups_json(capsys, sysfs_groups):
    rc, doc = cli_in_process(capsys, "groups")
    assert rc == 0, doc
    assert doc["command"] == "groups" and doc["status"] == "ok", doc
    got = {g["group"]: {m["address"] for m in g["devices"]} for g in doc["data"]}
    assert got == sysfs_groups
    for g in doc["data"]:
        members = {m["address"] for m in g["devices"]}
        assert g["verdict"] == _expected_verdict(members), g
        for m in g["devices"]:
            assert m["role"] == ("bridge" if _header_is_bridge(m["address"]) else "endpoint"), m
            assert m["driver"] == _driver(m["address"]), m


def test_cli_show_json(capsys, addr, topology):
    a = addr["mf_e1000"]
    rc, doc = cli_in_process(capsys, "show", a)
    assert rc == 0, doc
    assert doc["command"] == "show" and doc["status"] == "ok", doc
    dev = doc["data"]["device"]
    assert dev["address"] == a
    assert dev["driver"] == _driver(a)
    assert dev["iommu_group"] == _group(a)
    group = doc["data"]["iommu_group"]
    if topology["iommu"]:
        assert {m["address"] for m in group["devices"]} == set(topology["shared_groups"]["multifunction"])
    else:
        assert group is None
