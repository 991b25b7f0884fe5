"""The IOMMU on by the kernel's default (no ``intel_iommu=`` and no ``iommu=`` on the command line): what
check-iommu says about a kernel that enables VT-d by itself, the groups it forms, and a binding round trip
with translated (DMA) default domains rather than ``iommu=pt``'s identity ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.guest.kernel import driver as _driver
from tests.guest.kernel import override as _override

TOPOLOGY = "iommu_default"


def _check_iommu(run_cli) -> dict:
    p = run_cli("check-iommu", "--format", "json")
    by = {c["id"]: c for c in json.loads(p.stdout)["data"]["checks"]}
    assert p.returncode == 0, {k: c["detail"] for k, c in by.items() if c["verdict"] == "fail"}
    return by


def test_check_iommu_infers_the_default_without_the_kernel_config(run_cli):
    """No /boot/config-*: the kernel's default is inferred from the IOMMU being active without a parameter."""
    assert "intel_iommu=" not in Path("/proc/cmdline").read_text()
    assert not Path(f"/boot/config-{os.uname().release}").exists()
    by = _check_iommu(run_cli)
    active = by["iommu.active"]
    assert active["verdict"] == "pass" and active["detail"].startswith("dmar0 registered; "), active
    assert "enabled by the kernel's default: no intel_iommu=on on the command line" in active["detail"]
    cl = by["cmdline.intel_iommu"]
    assert (cl["verdict"], cl["detail"]) == (
        "pass",
        "not on the command line; the IOMMU is active, so this kernel enables VT-d by default",
    ), cl
    # Translated default domains, as the kernel reports them in each group's type.
    types = {
        Path(f"/sys/kernel/iommu_groups/{g}/type").read_text().strip() for g in os.listdir("/sys/kernel/iommu_groups")
    }
    assert types and types <= {"DMA", "DMA-FQ"}, types
    assert "identity" not in by["iommu.domain_type"]["detail"], by["iommu.domain_type"]


def test_check_iommu_names_the_config_option(run_cli, kernel_config):
    """With the kernel's build config in /boot, the option that turns VT-d on is named."""
    cl = _check_iommu(run_cli)["cmdline.intel_iommu"]
    assert cl["verdict"] == "pass", cl
    assert cl["detail"].startswith("not on the command line; this kernel enables VT-d by default ("), cl
    assert "CONFIG_INTEL_IOMMU_DEFAULT_ON" in cl["detail"], cl


def test_groups_match_the_kernel(run_cli, topology):
    p = run_cli("groups", "--format", "json", check=True)
    ours = {g["group"]: sorted(m["address"] for m in g["devices"]) for g in json.loads(p.stdout)["data"]}
    kernel = {
        int(g): sorted(os.listdir(f"/sys/kernel/iommu_groups/{g}/devices"))
        for g in os.listdir("/sys/kernel/iommu_groups")
    }
    assert ours == kernel
    members = {tuple(m) for m in kernel.values()}
    for shared in topology["shared_groups"].values():
        assert tuple(sorted(shared)) in members, shared


def test_enable_disable_round_trip_with_dma_domains(run_cli, addr):
    a = addr["e1000e"]
    before = _driver(a)
    assert before == "e1000e" and _override(a) is None
    p = run_cli("--format", "json", "enable", a)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert _driver(a) == "vfio-pci" and _override(a) == "vfio-pci"
    group = os.path.basename(os.readlink(f"/sys/bus/pci/devices/{a}/iommu_group"))
    assert Path(f"/dev/vfio/{group}").exists()
    (dev,) = json.loads(run_cli("--format", "json", "status", "--probe", a, check=True).stdout)["data"]
    assert dev["driver"] == "vfio-pci" and dev["vfio_viable"] is True, dev
    assert dev["viable_from"] == "kernel", dev  # the kernel's VFIO answer (--probe)
    p = run_cli("--format", "json", "disable", a)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert _driver(a) == before and _override(a) is None
