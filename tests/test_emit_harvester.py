"""emit harvester: PCIDeviceClaim objects named as Harvester names them, valid against its CRDs."""

from __future__ import annotations

import json

import yaml

from tests.support.cli import run
from tests.support.emit_hosts import GPU, GPU_AUDIO, LONE, yaml_documents
from tests.support.emit_schemas import HARVESTER_CRDS, SCHEMAS, crd_errors, crd_schema, unknown_keys
from tests.support.golden import check_golden

API = "devices.harvesterhci.io/v1beta1"


def _emit(capsys, root, *args, code=0):
    r = run(capsys, "--root", str(root), "emit", "harvester", *args)
    assert r.code == code, r.err
    return r


def assert_valid_claim(claim: dict) -> None:
    assert crd_errors(claim, HARVESTER_CRDS, "PCIDeviceClaim") == []
    # The CRD schema describes spec and status only; apiVersion, kind and metadata are Kubernetes' own.
    assert unknown_keys({"spec": claim["spec"]}, crd_schema(HARVESTER_CRDS, "PCIDeviceClaim")) == []
    assert set(claim) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(claim["metadata"]) <= {"name", "ownerReferences"}


def test_the_checks_accept_harvesters_sample_and_catch_a_typo():
    sample = yaml.safe_load((SCHEMAS / "examples" / "pcideviceclaim.yaml").read_text())
    assert crd_errors(sample, HARVESTER_CRDS, "PCIDeviceClaim") == []
    sample["spec"]["nodeNmae"] = "titan"
    assert unknown_keys({"spec": sample["spec"]}, crd_schema(HARVESTER_CRDS, "PCIDeviceClaim")) == [".spec.nodeNmae"]
    sample["spec"]["address"] = 5
    assert crd_errors(sample, HARVESTER_CRDS, "PCIDeviceClaim") != []


def test_claims_are_named_like_harvesters_pcidevices(capsys, hpe_a2):
    claims = yaml_documents(
        _emit(capsys, hpe_a2, "08:00.0", "01:00.2", "--node", "harvester-node", "--user", "admin").out
    )
    assert claims == [
        {
            "apiVersion": API,
            "kind": "PCIDeviceClaim",
            "metadata": {"name": "harvester-node-000001002"},
            "spec": {"address": "0000:01:00.2", "nodeName": "harvester-node", "userName": "admin"},
        },
        {
            "apiVersion": API,
            "kind": "PCIDeviceClaim",
            "metadata": {"name": "harvester-node-000008000"},
            "spec": {"address": "0000:08:00.0", "nodeName": "harvester-node", "userName": "admin"},
        },
    ]
    for c in claims:
        assert_valid_claim(c)


def test_node_name_defaults_to_the_hostname_lower_cased(capsys, gpu, fake):
    fake.write("etc/hostname", "GPU-Box-3\n")
    (claim,) = yaml_documents(_emit(capsys, gpu, GPU).out)
    assert claim["metadata"]["name"] == "gpu-box-3-00003b000" and claim["spec"]["nodeName"] == "gpu-box-3"


def test_no_hostname_and_no_node_is_a_usage_error(capsys, hpe_a2):
    assert "--node" in _emit(capsys, hpe_a2, "08:00.0", code=2).err


def test_an_invalid_node_name_is_a_usage_error(capsys, gpu):
    r = _emit(capsys, gpu, GPU, "--node", "Node_1", code=2)
    assert "invalid node name" in r.err and r.out == ""


def test_per_device_disables_resource_pooling(capsys, gpu):
    (claim,) = yaml_documents(_emit(capsys, gpu, GPU, "--node", "n1", "--per-device").out)
    assert claim["spec"]["disableResourcePooling"] is True
    assert_valid_claim(claim)


def test_a_device_without_iommu_group_is_refused(capsys, hpe_iommu_off):
    r = _emit(capsys, hpe_iommu_off, "03:00.0", "--node", "n1", code=5)
    assert "no IOMMU group" in r.err and r.out == ""


def test_missing_owner_reference_is_warned_about(capsys, gpu):
    assert "--pcidevices" in _emit(capsys, gpu, GPU, "--node", "n1").err


# --- owner references from the cluster's PCIDevices ----------------------------------------------------------


def _pcidevice(name, address, node, vendor="10de", device="1eb8", uid="4f0c-uid"):
    return {
        "apiVersion": API,
        "kind": "PCIDevice",
        "metadata": {"name": name, "uid": uid},
        "status": {
            "address": address,
            "nodeName": node,
            "vendorId": vendor,
            "deviceId": device,
            "iommuGroup": "40",
            "resourceName": "nvidia.com/TU104GL_TESLA_T4",
        },
    }


def _pcidevices(tmp_path, *items):
    path = tmp_path / "pds.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)}))
    return path


def test_owner_references_come_from_the_clusters_pcidevices(capsys, gpu, tmp_path):
    pds = _pcidevices(
        tmp_path,
        _pcidevice("n1-00003b000", GPU, "n1", uid="aaaa-1"),
        _pcidevice("n1-00003b001", GPU_AUDIO, "n1", device="10f8", uid="bbbb-2"),
    )
    r = _emit(capsys, gpu, GPU, GPU_AUDIO, "--node", "n1", "--pcidevices", str(pds))
    claims = yaml_documents(r.out)
    assert [c["metadata"]["ownerReferences"] for c in claims] == [
        [{"apiVersion": API, "kind": "PCIDevice", "name": "n1-00003b000", "uid": "aaaa-1"}],
        [{"apiVersion": API, "kind": "PCIDevice", "name": "n1-00003b001", "uid": "bbbb-2"}],
    ]
    assert "owner reference" not in r.err
    for c in claims:
        assert_valid_claim(c)


def test_a_pcidevice_describing_other_hardware_is_refused(capsys, gpu, tmp_path):
    pds = _pcidevices(tmp_path, _pcidevice("n1-00003b000", GPU, "n1", device="2236"))
    r = _emit(capsys, gpu, GPU, "--node", "n1", "--pcidevices", str(pds), code=5)
    assert "refusing to claim the wrong device" in r.err and r.out == ""


def test_a_device_the_cluster_does_not_know_is_an_error(capsys, gpu, tmp_path):
    pds = _pcidevices(tmp_path, _pcidevice("n2-00003b000", GPU, "n2"))
    assert (
        "no PCIDevice 'n1-00003b000'" in _emit(capsys, gpu, GPU, "--node", "n1", "--pcidevices", str(pds), code=2).err
    )
    (tmp_path / "junk.yaml").write_text("- 1\n")
    assert _emit(capsys, gpu, GPU, "--node", "n1", "--pcidevices", str(tmp_path / "junk.yaml"), code=2).out == ""
    (tmp_path / "junk.yaml").write_text("items: [x, 3, {kind: PCIDevice, metadata: x}]\n")
    assert (
        "no PCIDevice"
        in _emit(capsys, gpu, GPU, "--node", "n1", "--pcidevices", str(tmp_path / "junk.yaml"), code=2).err
    )
    pds = _pcidevices(tmp_path, {**_pcidevice("n1-00003b000", GPU, "n1"), "metadata": {"name": "n1-00003b000"}})
    assert "no metadata.uid" in _emit(capsys, gpu, GPU, "--node", "n1", "--pcidevices", str(pds), code=2).err


# --- formats and goldens -------------------------------------------------------------------------------------


def test_json_is_the_envelope_with_the_claims_and_their_devices(capsys, gpu):
    env = json.loads(_emit(capsys, gpu, GPU, LONE, "--node", "n1", "-f", "json").out)
    assert (env["command"], env["status"]) == ("emit harvester", "ok")
    assert [d["kind"] for d in env["data"]["documents"]] == ["PCIDeviceClaim"] * 2
    assert env["data"]["text"] == _emit(capsys, gpu, GPU, LONE, "--node", "n1").out
    assert [t["address"] for t in env["data"]["targets"]] == sorted([GPU, LONE])


def test_golden_ilo_group(capsys, hpe_a2):
    out = _emit(capsys, hpe_a2, "01:00.0", "01:00.1", "01:00.2", "01:00.4", "--node", "hpe-1", "--user", "ops").out
    check_golden("emit-harvester.hpe-a2.ilo.yaml", out)
