"""emit kubevirt: the CR merge patch and the VM snippet against KubeVirt's CRDs and swagger, names, fleets."""

from __future__ import annotations

import json

import pytest
import yaml

from pcipass.emit import names
from tests.support.cli import run
from tests.support.emit_hosts import GPU, GPU_AUDIO, LONE, NIC_A, NIC_B, yaml_documents
from tests.support.emit_schemas import (
    KUBEVIRT_CRD,
    SCHEMAS,
    VM_CRD_V058,
    VMI_CRD_V16,
    crd_errors,
    crd_schema,
    swagger_errors,
    swagger_unknown_keys,
    unknown_keys,
)
from tests.support.golden import check_golden

A2_FUNCTIONS = (
    ["08:00.0"]
    + [f"08:00.{f}" for f in range(4, 8)]
    + [f"08:01.{f}" for f in range(8)]
    + [f"08:02.{f}" for f in range(4)]
)


def _emit(capsys, root, *args, code=0):
    r = run(capsys, "--root", str(root), "emit", "kubevirt", *args)
    assert r.code == code, r.err
    return r


def _split(text: str) -> tuple[dict, dict]:
    cr, vm = yaml_documents(text)
    assert cr["kind"] == "KubeVirt" and vm["kind"] == "VirtualMachine"
    return cr, vm


def _permits(cr: dict) -> list[dict]:
    return cr["spec"]["configuration"]["permittedHostDevices"]["pciHostDevices"]


def _gates(cr: dict) -> list[str]:
    return cr["spec"]["configuration"]["developerConfiguration"]["featureGates"]


def _vm_devices(vm: dict) -> dict:
    return vm["spec"]["template"]["spec"]["domain"]["devices"]


def _save_inventory(capsys, root, path):
    r = run(capsys, "--root", str(root), "list", "--format", "json")
    assert r.code == 0, r.err
    path.write_text(r.out)
    return path


# --- validity against KubeVirt's own schemas -----------------------------------------------------------------


def assert_valid_cr(cr: dict) -> None:
    assert crd_errors(cr, KUBEVIRT_CRD, "KubeVirt") == []
    assert swagger_errors(cr, "v1.KubeVirt") == []
    assert swagger_unknown_keys(cr, "v1.KubeVirt") == []
    assert unknown_keys(cr, crd_schema(KUBEVIRT_CRD, "KubeVirt")) == []


def assert_valid_vm(vm: dict) -> None:
    # current shape (v1.9 swagger: deviceName optional) and the old one (v0.58 CRD: deviceName required)
    assert swagger_errors(vm, "v1.VirtualMachine") == []
    assert crd_errors(vm, VM_CRD_V058, "VirtualMachine") == []
    vmi = {"apiVersion": vm["apiVersion"], "kind": "VirtualMachineInstance", "spec": vm["spec"]["template"]["spec"]}
    assert crd_errors(vmi, VMI_CRD_V16, "VirtualMachineInstance") == []
    assert swagger_unknown_keys(vm, "v1.VirtualMachine") == []
    assert unknown_keys(vm, crd_schema(VM_CRD_V058, "VirtualMachine")) == []
    for entry in _vm_devices(vm).get("hostDevices", []) + _vm_devices(vm).get("gpus", []):
        assert set(entry) == {"name", "deviceName"}


def test_the_checks_catch_what_the_schemas_let_through():
    """Controls: the example CR passes; a misspelt key passes the schema but not the strict check; a
    missing deviceName passes v1.6+/swagger but not the v0.58 CRD."""
    example = yaml.safe_load((SCHEMAS / "examples" / "kubevirt-cr-permittedhostdevices.yaml").read_text())
    assert_valid_cr(example)
    typo = json.loads(json.dumps(example))
    typo["spec"]["configuration"]["permittedHostDevices"]["pciHostDevices"][0]["pciVendorSelectr"] = "10DE:1EB8"
    assert crd_errors(typo, KUBEVIRT_CRD, "KubeVirt") == []
    assert swagger_unknown_keys(typo, "v1.KubeVirt") == [
        ".spec.configuration.permittedHostDevices.pciHostDevices[0].pciVendorSelectr"
    ]
    vm = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "spec": {"template": {"spec": {"domain": {"devices": {"hostDevices": [{"name": "x"}]}}}}},
    }
    assert swagger_errors(vm, "v1.VirtualMachine") == []
    assert crd_errors(vm, VM_CRD_V058, "VirtualMachine") != []


CASES = [
    ("gpu", (GPU, GPU_AUDIO)),
    ("gpu", (LONE, NIC_A, NIC_B, "--vm", "my-vm")),
    ("gpu", ("--all-vfio", "--per-device", "--node", "worker-1")),
    ("hpe", tuple(A2_FUNCTIONS)),
    ("hpe", ("01:00.0", "01:00.1", "01:00.2", "01:00.4", "04:00.0", "05:00.0")),
    ("hpe", ("08:00.0", "08:00.4", "--per-device", "--node", "hpe-dl380.example.com")),
]


@pytest.mark.parametrize("host,args", CASES, ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_every_document_is_valid(capsys, gpu, hpe_a2, host, args):
    cr, vm = _split(_emit(capsys, gpu if host == "gpu" else hpe_a2, *args).out)
    assert_valid_cr(cr)
    assert_valid_vm(vm)
    for p in _permits(cr):
        assert names.is_extended_resource_name(p["resourceName"])
        assert len(names.kubevirt_socket_path(p["resourceName"])) < names.SUN_PATH_MAX


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_json_and_yaml_wrap_the_documents_in_the_envelope(capsys, gpu, fmt):
    text = _emit(capsys, gpu, GPU).out
    env = yaml.safe_load(_emit(capsys, gpu, GPU, "--format", fmt).out)
    assert (env["pcipass"], env["command"], env["status"], env["errors"]) == (1, "emit kubevirt", "ok", [])
    assert env["data"]["text"] == text
    assert env["data"]["documents"] == yaml_documents(text)
    assert [t["address"] for t in env["data"]["targets"]] == [GPU]
    cr = json.loads(_emit(capsys, gpu, GPU, "--only", "kubevirt", "--format", "json").out)["data"]["documents"]
    assert [d["kind"] for d in cr] == ["KubeVirt"]
    assert_valid_cr(cr[0])
    vm = json.loads(run(capsys, "--root", str(gpu), "--format", "json", "emit", "kubevirt", GPU, "--only", "vm").out)
    assert [d["kind"] for d in vm["data"]["documents"]] == ["VirtualMachine"]


def test_yaml_documents_say_how_to_apply_them(capsys, gpu):
    out = _emit(capsys, gpu, GPU).out
    assert out.startswith("---\n# KubeVirt CR merge patch: kubectl patch kubevirt kubevirt -n kubevirt --type merge")
    assert "\n---\n# VirtualMachine merge patch: kubectl patch vm NAME" in out
    assert yaml_documents(_emit(capsys, gpu, GPU, "--only", "vm").out)[0]["kind"] == "VirtualMachine"


# --- what the patch says -------------------------------------------------------------------------------------


def test_permits_and_gates_for_a_gpu_and_its_audio(capsys, gpu):
    cr, vm = _split(_emit(capsys, gpu, GPU, GPU_AUDIO).out)
    assert _permits(cr) == [
        {"pciVendorSelector": "10DE:10F8", "resourceName": "nvidia.com/TU104_HD_Audio_Controller"},
        {"pciVendorSelector": "10DE:1EB8", "resourceName": "nvidia.com/TU104GL_Tesla_T4"},
    ]
    assert _gates(cr) == ["HostDevices", "GPU"]
    assert _vm_devices(vm) == {
        "gpus": [{"name": "gpu1", "deviceName": "nvidia.com/TU104GL_Tesla_T4"}],
        "hostDevices": [{"name": "hostdevice1", "deviceName": "nvidia.com/TU104_HD_Audio_Controller"}],
    }


def test_no_display_controller_no_gpu_gate(capsys, gpu):
    cr, vm = _split(_emit(capsys, gpu, LONE, "--vm", "db-1").out)
    assert _gates(cr) == ["HostDevices"]
    assert "gpus" not in _vm_devices(vm) and vm["metadata"] == {"name": "db-1"}


def test_identical_devices_share_one_entry_and_are_warned_about(capsys, hpe_a2):
    r = _emit(capsys, hpe_a2, *A2_FUNCTIONS)
    cr, vm = _split(r.out)
    assert _permits(cr) == [{"pciVendorSelector": "10DE:25B6", "resourceName": "nvidia.com/GA107GL_A2_A16"}]
    assert len(_vm_devices(vm)["gpus"]) == 17
    assert "17 identical devices share nvidia.com/GA107GL_A2_A16" in r.err and "--per-device" in r.err


def test_per_device_names_each_device_like_harvester(capsys, hpe_a2):
    r = _emit(capsys, hpe_a2, "08:00.0", "08:00.4", "--per-device", "--node", "node1")
    cr, vm = _split(r.out)
    assert _permits(cr) == [
        {
            "pciVendorSelector": "10DE:25B6",
            "resourceName": "nvidia.com/node1-000008000",
            "externalResourceProvider": True,
        },
        {
            "pciVendorSelector": "10DE:25B6",
            "resourceName": "nvidia.com/node1-000008004",
            "externalResourceProvider": True,
        },
    ]
    assert [g["deviceName"] for g in _vm_devices(vm)["gpus"]] == [
        "nvidia.com/node1-000008000",
        "nvidia.com/node1-000008004",
    ]
    assert "identical" not in r.err


def test_per_device_takes_the_node_from_the_hostname(capsys, gpu, fake):
    fake.write("proc/sys/kernel/hostname", "Worker-7\n")
    cr, _ = _split(_emit(capsys, gpu, LONE, "--per-device").out)
    assert _permits(cr)[0]["resourceName"] == "intel.com/worker-7-000000190"


def test_per_device_without_any_node_name_is_a_usage_error(capsys, hpe_a2):
    r = _emit(capsys, hpe_a2, "08:00.0", "--per-device", code=2)
    assert "--node" in r.err and r.out == ""


def test_devices_not_on_vfio_pci_are_warned_about(capsys, gpu):
    r = _emit(capsys, gpu, GPU, GPU_AUDIO)
    assert f"{GPU_AUDIO} is on snd_hda_intel" in r.err and f"{GPU} is on" not in r.err


def test_without_current_the_list_replacement_is_spelled_out(capsys, gpu):
    assert "replaces whole lists" in _emit(capsys, gpu, GPU).err


def test_all_vfio_takes_every_device_on_vfio(capsys, gpu):
    cr, _ = _split(_emit(capsys, gpu, "--all-vfio").out)
    assert [p["pciVendorSelector"] for p in _permits(cr)] == ["10DE:1EB8", "8086:15B8"]


def test_all_vfio_with_nothing_on_vfio_is_an_error(capsys, hpe_a2):
    assert _emit(capsys, hpe_a2, "--all-vfio", code=2).out == ""


def test_no_selection_is_a_usage_error(capsys, gpu):
    assert "--all-vfio" in _emit(capsys, gpu, code=2).err


# --- merging with the live CR ------------------------------------------------------------------------------


def _current(tmp_path, entries, gates=("LiveMigration", "Snapshot")):
    cr = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {
            "configuration": {
                "developerConfiguration": {"featureGates": list(gates)},
                "permittedHostDevices": {
                    "pciHostDevices": entries,
                    "mediatedDevices": [{"mdevNameSelector": "GRID T4-1Q", "resourceName": "nvidia.com/T4"}],
                },
            }
        },
    }
    path = tmp_path / "kv.yaml"
    path.write_text(yaml.safe_dump(cr))
    return path


def test_current_entries_and_gates_are_kept(capsys, gpu, tmp_path):
    path = _current(tmp_path, [{"pciVendorSelector": "8086:6F54", "resourceName": "intel.com/qat"}])
    r = _emit(capsys, gpu, LONE, "--current", str(path))
    cr, _ = _split(r.out)
    assert _permits(cr) == [
        {"pciVendorSelector": "8086:15B8", "resourceName": "intel.com/Ethernet_Connection_2_I219_V"},
        {"pciVendorSelector": "8086:6F54", "resourceName": "intel.com/qat"},
    ]
    assert _gates(cr) == ["LiveMigration", "Snapshot", "HostDevices"]
    assert "mediatedDevices" not in cr["spec"]["configuration"]["permittedHostDevices"]  # objects merge: untouched
    assert "replaces whole lists" not in r.err
    assert_valid_cr(cr)


def test_a_selector_already_permitted_keeps_its_name_in_any_case(capsys, gpu, tmp_path):
    path = _current(
        tmp_path, [{"pciVendorSelector": "10de:1eb8", "resourceName": "nvidia.com/T4"}], gates=("HostDevices",)
    )
    cr, vm = _split(_emit(capsys, gpu, GPU, "--current", str(path)).out)
    assert _permits(cr) == [{"pciVendorSelector": "10DE:1EB8", "resourceName": "nvidia.com/T4"}]
    assert _vm_devices(vm)["gpus"] == [{"name": "gpu1", "deviceName": "nvidia.com/T4"}]
    assert _gates(cr) == ["HostDevices", "GPU"]


def test_duplicates_in_the_current_cr_are_dropped(capsys, gpu, tmp_path):
    dup = [
        {"pciVendorSelector": "8086:6F54", "resourceName": "intel.com/qat"},
        {"pciVendorSelector": "8086:6f54", "resourceName": "intel.com/qat"},
        {"pciVendorSelector": "8086:6F54", "resourceName": "intel.com/qat2"},
    ]
    r = _emit(capsys, gpu, LONE, "--current", str(_current(tmp_path, dup)))
    cr, _ = _split(r.out)
    assert [p["pciVendorSelector"] for p in _permits(cr)] == ["8086:15B8", "8086:6F54"]
    assert "lists 8086:6F54 twice" in r.err


def test_pooled_and_external_for_one_selector_is_refused(capsys, hpe_a2, tmp_path):
    path = _current(tmp_path, [{"pciVendorSelector": "10DE:25B6", "resourceName": "nvidia.com/A2"}])
    r = _emit(capsys, hpe_a2, "08:00.0", "--per-device", "--node", "n1", "--current", str(path), code=5)
    assert "both would hand out the same devices" in r.err and r.out == ""


def test_current_may_be_the_list_kubectl_get_prints(capsys, gpu, tmp_path):
    path = _current(tmp_path, [{"pciVendorSelector": "8086:6F54", "resourceName": "intel.com/qat"}])
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [yaml.safe_load(path.read_text())]}))
    cr, _ = _split(_emit(capsys, gpu, LONE, "--current", str(path)).out)
    assert "intel.com/qat" in [p["resourceName"] for p in _permits(cr)]


def test_current_must_be_a_kubevirt_object(capsys, gpu, tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("kind: ConfigMap\n")
    assert "not one KubeVirt object" in _emit(capsys, gpu, LONE, "--current", str(bad), code=2).err
    bad.write_text("kind: List\nitems: [{kind: KubeVirt}, {kind: KubeVirt}]\n")
    assert "not one KubeVirt object" in _emit(capsys, gpu, LONE, "--current", str(bad), code=2).err
    for entries in ("[{a: 1}]", "[x]", "{a: 1}"):
        bad.write_text(
            f"kind: KubeVirt\nspec: {{configuration: {{permittedHostDevices: {{pciHostDevices: {entries}}}}}}}\n"
        )
        assert "malformed" in _emit(capsys, gpu, LONE, "--current", str(bad), code=2).err
    bad.write_text("kind: KubeVirt\nspec: {configuration: {developerConfiguration: {featureGates: x}}}\n")
    assert "malformed" in _emit(capsys, gpu, LONE, "--current", str(bad), code=2).err
    assert _emit(capsys, gpu, LONE, "--current", str(tmp_path / "missing.yaml"), code=2).out == ""


# --- fleets ------------------------------------------------------------------------------------------------


def test_overlapping_inventories_never_duplicate_a_selector(capsys, gpu, hpe_a2, tmp_path):
    a = _save_inventory(capsys, hpe_a2, tmp_path / "node-a.json")
    b = _save_inventory(capsys, hpe_a2, tmp_path / "node-b.json")
    c = _save_inventory(capsys, gpu, tmp_path / "node-c.json")
    r = run(capsys, "emit", "kubevirt", "08:00.0", "08:00.4", "--from", str(a), "--from", str(b), "--from", str(c))
    assert r.code == 0, r.err
    cr, vm = _split(r.out)
    selectors = [p["pciVendorSelector"] for p in _permits(cr)]
    assert selectors == ["10DE:25B6"] and len(set(selectors)) == len(selectors)
    # two A2 functions on each of two nodes: a VM asks for two, not four
    assert [g["deviceName"] for g in _vm_devices(vm)["gpus"]] == ["nvidia.com/GA107GL_A2_A16"] * 2
    assert "2 identical devices on node-a" in r.err and "2 identical devices on node-b" in r.err
    assert_valid_cr(cr)
    assert_valid_vm(vm)


def test_fleet_all_vfio_and_explicit_node_names(capsys, gpu, hpe_a2, tmp_path):
    a = _save_inventory(capsys, gpu, tmp_path / "x.json")
    b = _save_inventory(capsys, hpe_a2, tmp_path / "y.json")
    r = run(capsys, "emit", "kubevirt", "--all-vfio", "--per-device", "--from", f"gpu-1={a}", "--from", f"hpe={b}")
    assert r.code == 0, r.err
    cr, _ = _split(r.out)
    assert [p["resourceName"] for p in _permits(cr)] == ["nvidia.com/gpu-1-00003b000", "intel.com/gpu-1-000000190"]


def test_fleet_node_name_is_the_file_name_without_its_extension(capsys, gpu, tmp_path):
    a = _save_inventory(capsys, gpu, tmp_path / "gpu-1.rack2.example.com.json")
    r = run(capsys, "emit", "kubevirt", LONE, "--per-device", "--from", str(a))
    assert r.code == 0, r.err
    assert _permits(_split(r.out)[0])[0]["resourceName"] == "intel.com/gpu-1.rack2.example.com-000000190"


def test_fleet_named_address_must_exist_somewhere(capsys, gpu, tmp_path):
    a = _save_inventory(capsys, gpu, tmp_path / "n1.json")
    r = run(capsys, "emit", "kubevirt", "0000:77:00.0", "--from", str(a))
    assert r.code == 2 and "no node has PCI device 0000:77:00.0" in r.err


def test_fleet_input_is_checked(capsys, gpu, tmp_path):
    good = _save_inventory(capsys, gpu, tmp_path / "n1.json")
    tree = tmp_path / "tree.json"
    tree.write_text(run(capsys, "--root", str(gpu), "list", "--tree", "--format", "json").out)
    env = json.loads(good.read_text())
    env["data"][0]["vendor_id"] = "10de\n<x>"
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps(env))
    for args, needle in [
        (["--from", str(tree)], "list --tree"),
        (["--from", str(hostile)], "bad vendor_id"),
        (["--from", str(good), "--from", str(good)], "given twice"),
        (["--from", f"Bad_Node={good}"], "invalid node name"),
        (["--from", str(tmp_path / "nope.json")], "cannot read"),
        (["--from", str(good), "--node", "x"], "--node"),
    ]:
        r = run(capsys, "emit", "kubevirt", "--all-vfio", *args)
        assert r.code == 2 and needle in r.err and r.out == "", (args, r.err)
    (tmp_path / "notjson.json").write_text("{")
    assert run(capsys, "emit", "kubevirt", "--all-vfio", "--from", str(tmp_path / "notjson.json")).code == 2


# --- golden files --------------------------------------------------------------------------------------------


def test_golden_a2_with_its_vfs(capsys, hpe_a2):
    check_golden(
        "emit-kubevirt.hpe-a2.a2-all-functions.yaml", _emit(capsys, hpe_a2, *A2_FUNCTIONS, "--vm", "gpu-vm").out
    )


def test_golden_per_device_json(capsys, hpe_a2):
    out = _emit(capsys, hpe_a2, "08:00.0", "08:00.4", "--per-device", "--node", "node1", "--format", "json").out
    check_golden("emit-kubevirt.hpe-a2.per-device.json", out)


def test_golden_gpu_with_audio(capsys, gpu):
    check_golden("emit-kubevirt.fake-gpu-audio.yaml", _emit(capsys, gpu, GPU, GPU_AUDIO).out)


def test_two_models_with_one_name_get_distinct_resources():
    """pci.ids may name two device IDs alike; KubeVirt would then pool both models under one resource."""
    from pcipass.emit import kubevirt
    from pcipass.emit.devices import Target

    def target(address, device):
        return Target(
            address=address,
            vendor_id="8086",
            device_id=device,
            vendor_name="Intel Corporation",
            device_name="I350 Gigabit Network Connection",
            class_id="020000",
            driver="vfio-pci",
            vfio=True,
            iommu_group=1,
            is_bridge=False,
        )

    plan = kubevirt.plan([target("0000:01:00.0", "1521"), target("0000:02:00.0", "1522")])
    assert [(p.selector, p.resource) for p in plan.permits] == [
        ("8086:1521", "intel.com/I350_Gigabit_Network_Connection_8086_1521"),
        ("8086:1522", "intel.com/I350_Gigabit_Network_Connection_8086_1522"),
    ]
