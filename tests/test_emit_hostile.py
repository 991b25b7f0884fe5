"""Hostile pci.ids names and attribute values: every emitter's output stays valid and carries them inertly."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import yaml

from pcipass.emit import names
from tests.support.cli import run
from tests.support.emit_hosts import HOSTILE_PCI_IDS, hostile_host
from tests.support.emit_schemas import (
    HARVESTER_CRDS,
    KUBEVIRT_CRD,
    LIBVIRT_VERSIONS,
    crd_errors,
    libvirt_errors,
    swagger_errors,
    swagger_unknown_keys,
    wrap_in_domain,
)

DEVICES = ("01:00.0", "01:00.1", "02:00.0", "03:00.0")
FRAGMENTS = ("<Corp>", "Widget <", "{{", "]]>", "-->", "${HOME}", "`id`", "&")


@pytest.fixture
def hostile(fake):
    # A snapshot carries its own pci.ids; pcipass reads it before the machine's.
    fake.write("usr/share/misc/pci.ids", HOSTILE_PCI_IDS)
    return hostile_host(fake).root


def test_the_hostile_names_are_really_read(capsys, hostile):
    out = json.loads(run(capsys, "--root", str(hostile), "list", "--format", "json").out)
    assert out["data"][0]["device_name"].startswith("Widget </hostdev><hostdev>")
    assert out["data"][0]["vendor_name"].startswith("Evil <Corp>")


def test_libvirt_xml_stays_valid(capsys, hostile):
    r = run(capsys, "--root", str(hostile), "emit", "libvirt", *DEVICES, "--group")
    assert r.code == 0, r.err
    assert len(ET.fromstring(r.out)) == 4
    for version in LIBVIRT_VERSIONS:
        assert libvirt_errors(wrap_in_domain(r.out), version) == ""
    assert [f for f in FRAGMENTS if f in r.out] == []


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_kubevirt_names_are_sanitized_and_documents_valid(capsys, hostile, fmt):
    r = run(capsys, "--root", str(hostile), "emit", "kubevirt", *DEVICES, "--vm", "v", "--format", fmt)
    assert r.code == 0, r.err
    if fmt == "json":
        # The envelope's targets keep the names as read (JSON keeps the true string); the documents do not.
        docs = json.loads(r.out)["data"]["documents"]
        r.out = json.dumps(docs, ensure_ascii=False)
    else:
        docs = [d for d in yaml.safe_load_all(r.out) if d]
    cr, vm = docs
    permits = cr["spec"]["configuration"]["permittedHostDevices"]["pciHostDevices"]
    resources = [p["resourceName"] for p in permits]
    assert resources[:2] == ["evil.com/Widget_hostdev_hostdev_x_template_HOME_id", "evil.com/5679"]
    assert len(set(resources)) == 4  # the two long names differ only at their end: still two names
    for res in resources:
        assert names.is_extended_resource_name(res)
        assert len(names.kubevirt_socket_path(res)) < names.SUN_PATH_MAX
    assert crd_errors(cr, KUBEVIRT_CRD, "KubeVirt") == [] and swagger_unknown_keys(cr, "v1.KubeVirt") == []
    assert swagger_errors(vm, "v1.VirtualMachine") == []
    assert [f for f in FRAGMENTS if f in r.out] == []


def test_harvester_user_name_round_trips_exactly(capsys, hostile):
    user = "ops'\"\n{{ .Values.x }} <&> ${HOME} #not-a-comment\n---\nkind: Secret"
    for fmt in ("table", "json"):
        r = run(
            capsys,
            "--root",
            str(hostile),
            "emit",
            "harvester",
            "01:00.0",
            "--node",
            "n1",
            "--user",
            user,
            "--format",
            fmt,
        )
        assert r.code == 0, r.err
        docs = json.loads(r.out)["data"]["documents"] if fmt == "json" else [d for d in yaml.safe_load_all(r.out) if d]
        assert len(docs) == 1 and docs[0]["kind"] == "PCIDeviceClaim"
        assert docs[0]["spec"]["userName"] == user
        assert crd_errors(docs[0], HARVESTER_CRDS, "PCIDeviceClaim") == []


def test_hostile_saved_inventories(capsys, hostile, tmp_path):
    """Another node's inventory is untrusted: hostile names are sanitized, hostile IDs refused."""
    env = json.loads(run(capsys, "--root", str(hostile), "list", "--format", "json").out)
    env["data"][0]["device_name"] = "A\nB: {{x}} <&>\r\n- injected: true"
    env["data"][1]["driver"] = "vfio-pci\nkind: Secret"  # not a vfio driver: not selected by --all-vfio
    path = tmp_path / "n1.json"
    path.write_text(json.dumps(env))
    r = run(capsys, "emit", "kubevirt", "--all-vfio", "--from", str(path))
    assert r.code == 0, r.err
    cr, _ = [d for d in yaml.safe_load_all(r.out) if d]
    assert "evil.com/A_B_x_injected_true" in [
        p["resourceName"] for p in cr["spec"]["configuration"]["permittedHostDevices"]["pciHostDevices"]
    ]
    assert "injected: true" not in r.out and "kind: Secret" not in r.out
    assert "5679" not in r.out
    for key, value in [
        ("address", "0000:01:00.0 <x>"),
        ("class_id", "<03>"),
        ("iommu_group", "1"),
        ("is_bridge", "no"),
    ]:
        bad = json.loads(json.dumps(env))
        bad["data"][0][key] = value
        path.write_text(json.dumps(bad))
        r = run(capsys, "emit", "kubevirt", "--all-vfio", "--from", str(path))
        assert r.code == 2 and r.out == "", (key, r.err)
