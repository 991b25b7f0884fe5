"""emit libvirt --mdev and emit kubevirt --mdev: valid against libvirt's RelaxNG and KubeVirt's CRD/swagger,
golden files, multi-node configuration, every error."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import yaml

from pcipass.emit import names
from tests.support.cli import run
from tests.support.emit_hosts import GPU, gpu_host, yaml_documents
from tests.support.emit_schemas import (
    KUBEVIRT_CRD,
    LIBVIRT_VERSIONS,
    VM_CRD_V058,
    crd_errors,
    crd_schema,
    libvirt_errors,
    swagger_errors,
    swagger_unknown_keys,
    unknown_keys,
    wrap_in_domain,
)
from tests.support.fakemdev import add_mdev, add_mtty, add_parent, add_type
from tests.support.golden import check_golden

U1 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
U2 = "0a9ef2b1-6d4c-4c38-9d5e-39b9a1e2c0de"
U3 = "5b5b7326-6bb8-48cb-a321-8fa58ccbb38c"


@pytest.fixture
def host(fake):
    """The emitters' GPU host whose GPU is also a vGPU parent (two A2 types), plus mtty with two instances."""
    gpu_host(fake)
    add_parent(fake, GPU)
    add_type(fake, GPU, "nvidia-746", name="NVIDIA A2-4Q", available=4)
    add_type(fake, GPU, "nvidia-747", name="NVIDIA A2-8Q", available=2)
    add_mtty(fake)
    add_mdev(fake, "mtty", "mtty-2", U1)
    add_mdev(fake, "mtty", "mtty-1", U2)
    add_mdev(fake, GPU, "nvidia-747", U3, driver="nvidia-vgpu-vfio")
    return fake


def _emit(capsys, fake, kind, *args, code=0):
    r = run(capsys, "--root", str(fake.root), "emit", kind, *args)
    assert r.code == code, (r.out, r.err)
    return r


# --- libvirt -------------------------------------------------------------------------------------------------
def _valid(xml_text: str) -> None:
    for version in LIBVIRT_VERSIONS:
        assert libvirt_errors(wrap_in_domain(xml_text), version) == ""


def test_libvirt_one_mdev_is_a_bare_hostdev(capsys, host):
    out = _emit(capsys, host, "libvirt", "--mdev", U1.upper()).out
    assert out == (
        f'<hostdev mode="subsystem" type="mdev" model="vfio-pci">\n  <source>\n'
        f'    <address uuid="{U1}" />\n  </source>\n</hostdev>\n'
    )
    _valid(out)


def test_libvirt_mdevs_and_pci_devices_together_golden(capsys, host):
    out = _emit(capsys, host, "libvirt", "0000:00:19.0", "--mdev", U1, "--mdev", U3, "--mdev", U1).out
    root = ET.fromstring(out)
    assert root.tag == "devices" and [h.get("type") for h in root] == ["pci", "mdev", "mdev"]
    assert [a.get("uuid") for a in root.iter("address") if a.get("uuid")] == [U1, U3]
    _valid(out)
    check_golden("emit-libvirt.mdev.xml", out)


def test_the_validator_rejects_a_broken_mdev_hostdev(capsys, host):
    out = _emit(capsys, host, "libvirt", "--mdev", U1).out
    for broken in (out.replace('model="vfio-pci"', 'model="vfio-gpu"'), out.replace(U1, "not-a-uuid")):
        assert all(libvirt_errors(wrap_in_domain(broken), v) for v in LIBVIRT_VERSIONS)


def test_libvirt_mdev_errors(capsys, host):
    assert "no mediated device" in _emit(capsys, host, "libvirt", "--mdev", U1.replace("8", "9"), code=1).err
    assert "is not a UUID" in _emit(capsys, host, "libvirt", "--mdev", "mtty-2", code=2).err
    assert "no device" in _emit(capsys, host, "libvirt", code=2).err
    (host.root / "sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2/device_api").write_text("vfio-weird\n")
    assert "device_api is vfio-weird" in _emit(capsys, host, "libvirt", "--mdev", U1, code=2).err


# --- KubeVirt ------------------------------------------------------------------------------------------------
def _docs(text: str, fmt: str = "table") -> tuple[dict, dict]:
    docs = json.loads(text)["data"]["documents"] if fmt == "json" else yaml_documents(text)
    cr, vm = docs
    assert cr["kind"] == "KubeVirt" and vm["kind"] == "VirtualMachine"
    return cr, vm


def _assert_valid(cr: dict, vm: dict) -> None:
    assert crd_errors(cr, KUBEVIRT_CRD, "KubeVirt") == []
    assert swagger_errors(cr, "v1.KubeVirt") == []
    assert swagger_unknown_keys(cr, "v1.KubeVirt") == []
    assert unknown_keys(cr, crd_schema(KUBEVIRT_CRD, "KubeVirt")) == []
    assert swagger_errors(vm, "v1.VirtualMachine") == [] and swagger_unknown_keys(vm, "v1.VirtualMachine") == []
    assert crd_errors(vm, VM_CRD_V058, "VirtualMachine") == []


def _config(cr: dict) -> dict:
    return cr["spec"]["configuration"]


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_kubevirt_one_host_golden(capsys, host, fmt):
    r = _emit(
        capsys, host, "kubevirt", "--mdev", "mtty-2", "--mdev", U3, "--mdev", "mtty-2", "--vm", "vm1", "--format", fmt
    )
    cr, vm = _docs(r.out, fmt)
    _assert_valid(cr, vm)
    conf = _config(cr)
    assert conf["mediatedDevicesConfiguration"] == {"mediatedDeviceTypes": ["mtty-2", "nvidia-747"]}
    assert conf["permittedHostDevices"]["mediatedDevices"] == [
        {"mdevNameSelector": "Dual port serial", "resourceName": "mtty.com/Dual_port_serial"},
        {"mdevNameSelector": "NVIDIA A2-8Q", "resourceName": "nvidia.com/NVIDIA_A2_8Q"},
    ]
    assert conf["developerConfiguration"]["featureGates"] == ["HostDevices", "GPU"]
    assert vm["spec"]["template"]["spec"]["domain"]["devices"] == {
        "gpus": [{"name": "vgpu1", "deviceName": "nvidia.com/NVIDIA_A2_8Q"}],
        "hostDevices": [{"name": "mdev1", "deviceName": "mtty.com/Dual_port_serial"}],
    }
    assert "virt-handler creates the instances" in r.err and "--current" in r.err
    for p in conf["permittedHostDevices"]["mediatedDevices"]:
        assert names.is_extended_resource_name(p["resourceName"])
    if fmt == "table":
        check_golden("emit-kubevirt.mdev.yaml", r.out)


def _types_file(capsys, fake, path):
    r = run(capsys, "--root", str(fake.root), "mdev", "types", "--format", "json")
    assert r.code == 0, r.err
    path.write_text(r.out)
    return path


def test_kubevirt_nodes_that_differ_get_one_entry_each(capsys, host, tmp_path):
    from tests.support.fakehost import FakeHost

    other = FakeHost(tmp_path / "other")
    add_mtty(other)
    a = _types_file(capsys, host, tmp_path / "node-a.json")
    b = _types_file(capsys, other, tmp_path / "b.json")
    r = _emit(
        capsys,
        host,
        "kubevirt",
        "--mdev",
        "mtty-1",
        "--mdev",
        "nvidia-746",
        "--from",
        str(a),
        "--from",
        f"node-b={b}",
        "--only",
        "kubevirt",
    )
    (cr,) = yaml_documents(r.out)
    assert crd_errors(cr, KUBEVIRT_CRD, "KubeVirt") == [] and swagger_unknown_keys(cr, "v1.KubeVirt") == []
    assert _config(cr)["mediatedDevicesConfiguration"] == {
        "nodeMediatedDeviceTypes": [
            {"nodeSelector": {"kubernetes.io/hostname": "node-a"}, "mediatedDeviceTypes": ["mtty-1", "nvidia-746"]},
            {"nodeSelector": {"kubernetes.io/hostname": "node-b"}, "mediatedDeviceTypes": ["mtty-1"]},
        ]
    }
    assert "the nodes offer different types" in r.err
    # nodes alike: one list for all
    r = _emit(
        capsys, host, "kubevirt", "--mdev", "mtty-1", "--from", f"x={a}", "--from", f"y={b}", "--only", "kubevirt"
    )
    assert _config(yaml_documents(r.out)[0])["mediatedDevicesConfiguration"] == {"mediatedDeviceTypes": ["mtty-1"]}


def test_kubevirt_keeps_the_current_cr(capsys, host, tmp_path):
    current = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt"},
        "spec": {
            "configuration": {
                "developerConfiguration": {"featureGates": ["LiveMigration"]},
                "mediatedDevicesConfiguration": {"mediatedDeviceTypes": ["nvidia-222"]},
                "permittedHostDevices": {
                    "mediatedDevices": [{"mdevNameSelector": "GRID T4-1Q", "resourceName": "nvidia.com/GRID_T4-1Q"}]
                },
            }
        },
    }
    path = tmp_path / "kv.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [current]}))
    r = _emit(capsys, host, "kubevirt", "--mdev", U1, "--current", str(path), "--only", "kubevirt")
    conf = _config(yaml_documents(r.out)[0])
    assert conf["mediatedDevicesConfiguration"]["mediatedDeviceTypes"] == ["nvidia-222", "mtty-2"]
    assert [p["mdevNameSelector"] for p in conf["permittedHostDevices"]["mediatedDevices"]] == [
        "Dual port serial",
        "GRID T4-1Q",
    ]
    assert conf["developerConfiguration"]["featureGates"] == ["LiveMigration", "HostDevices"]
    assert "--current" not in r.err
    # the same type already served by an external plugin: refused
    current["spec"]["configuration"]["permittedHostDevices"]["mediatedDevices"].append(
        {"mdevNameSelector": "Dual_port_serial", "resourceName": "x.com/y", "externalResourceProvider": True}
    )
    path.write_text(yaml.safe_dump(current))
    assert "external device plugin" in _emit(capsys, host, "kubevirt", "--mdev", U1, "--current", str(path), code=5).err


@pytest.mark.parametrize(
    "args, code, text",
    [
        (("--mdev", "mtty-9"), 2, "--mdev mtty-9: no such mediated-device type or instance on this host"),
        (("--mdev", "mtty-1", "0000:00:19.0"), 2, "--mdev emits mediated devices"),
        (("--mdev", "mtty-1", "--per-device"), 2, "--mdev emits mediated devices"),
        (("--mdev", "mtty-1", "--from", "/nonexistent.json"), 2, "cannot read it"),
    ],
)
def test_kubevirt_mdev_errors(capsys, host, args, code, text):
    assert text in _emit(capsys, host, "kubevirt", *args, code=code).err


def test_kubevirt_from_files_are_checked(capsys, host, tmp_path):
    listing = tmp_path / "n1.json"
    r = run(capsys, "--root", str(host.root), "list", "--format", "json")
    listing.write_text(r.out)
    assert (
        "not the output of 'pcipass mdev types"
        in _emit(capsys, host, "kubevirt", "--mdev", "mtty-1", "--from", str(listing), code=2).err
    )
    bad = json.loads(_types_file(capsys, host, tmp_path / "n2.json").read_text())
    bad["data"][0]["devices"] = "x"
    (tmp_path / "n2.json").write_text(json.dumps(bad))
    assert (
        "bad devices"
        in _emit(capsys, host, "kubevirt", "--mdev", "mtty-1", "--from", str(tmp_path / "n2.json"), code=2).err
    )


def test_kubevirt_nvidia_vf_types_are_pci_devices(capsys, fake):
    vf = "0000:26:00.4"
    fake.add_device(vf, vendor="10de", device="26b9", class_="030200", driver="nvidia", group=31)
    fake.write(f"sys/bus/pci/devices/{vf}/nvidia/creatable_vgpu_types", "ID    : vGPU Name\n1147  : NVIDIA L40S-1Q\n")
    fake.write(f"sys/bus/pci/devices/{vf}/nvidia/current_vgpu_type", "0\n")
    r = _emit(capsys, fake, "kubevirt", "--mdev", "1147", code=2)
    assert f"pcipass emit kubevirt {vf}" in r.err
