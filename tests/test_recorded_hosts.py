"""The recorded real HPE ProLiant Gen9 hosts (see tests/data/SOURCES.md): facts and golden outputs."""

import json

import pytest
import yaml

from pcipass.group import GroupVerdict
from pcipass.host import Host
from pcipass.inventory import Inventory
from tests.support.cli import run
from tests.support.golden import check_golden


def test_a2_host_facts(hpe_a2):
    inv = Inventory.scan(Host(hpe_a2))
    assert len(inv.devices) == 226
    assert len(inv.groups) == 106
    assert [m.address for m in inv.groups[33].devices] == [
        "0000:01:00.0",
        "0000:01:00.1",
        "0000:01:00.2",
        "0000:01:00.4",
    ]
    assert inv.groups[33].verdict is GroupVerdict.BINDABLE
    gpu = inv.device("0000:08:00.0")
    assert gpu.device_name == "GA107GL [A2 / A16]" and gpu.driver == "nvidia"
    assert gpu.sriov.numvfs == 16 and len(gpu.sriov.vfs) == 16
    for vf in gpu.sriov.vfs:
        dev = inv.device(vf)
        assert dev.physfn == "0000:08:00.0"
        assert dev.iommu_group is not None and dev.iommu_group != gpu.iommu_group  # each VF in its own group
    ixgbe = inv.device("0000:04:00.0")
    assert ixgbe.driver == "ixgbe" and ixgbe.sriov.totalvfs == 63 and ixgbe.sriov.numvfs == 0
    bridges = [d for d in inv.devices.values() if d.is_bridge]
    assert bridges and all(d.driver in ("pcieport", None) for d in bridges)


def test_iommu_off_host(hpe_iommu_off):
    inv = Inventory.scan(Host(hpe_iommu_off))
    assert len(inv.devices) == 208
    assert inv.groups == {}
    assert all(d.iommu_group is None for d in inv.devices.values())
    assert inv.group_verdict("0000:04:00.0") is GroupVerdict.NONE


def test_ghw_snapshot(hpe_ghw):
    inv = Inventory.scan(Host(hpe_ghw))
    assert len(inv.devices) == 225
    t4 = inv.device("0000:08:00.0")
    assert t4.device_name == "TU104GL [Tesla T4]" and t4.subsystem_vendor_id is None and t4.header_type is None
    # The raid controller's disks are found through the old /sys/block layout.
    assert inv.device("0000:03:00.0").block


@pytest.mark.parametrize("fmt", ["table", "json", "yaml"])
@pytest.mark.parametrize(
    "cmd",
    [["list"], ["groups"], ["list", "--tree"], ["show", "08:00.0"], ["show", "01:00.1"], ["list", "--class", "nic"]],
)
def test_golden(capsys, hpe_a2, fmt, cmd):
    r = run(capsys, "--root", str(hpe_a2), "--format", fmt, *cmd)
    assert r.code == 0, r.err
    name = "hpe-a2." + "-".join(c.replace(":", "").replace(".", "") for c in cmd).replace("--", "") + "." + fmt
    check_golden(name, r.out)
    assert r.out.endswith("\n")
    if fmt == "json":
        env = json.loads(r.out)
        assert env["pcipass"] == 1 and env["status"] == "ok" and env["errors"] == []
    elif fmt == "yaml":
        assert yaml.safe_load(r.out)["command"] == cmd[0]


def test_golden_iommu_off_groups(capsys, hpe_iommu_off):
    r = run(capsys, "--root", str(hpe_iommu_off), "-f", "json", "groups")
    assert r.code == 0 and json.loads(r.out)["data"] == []
    assert "no IOMMU groups" in r.err
