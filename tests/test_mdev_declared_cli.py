"""mdev persist / unpersist / apply on a fake host: the desired-state file written, read back and converged."""

from __future__ import annotations

import json

import pytest

from tests.support.fakemdev import add_mdev, add_mtty, add_parent, add_type, as_root_with_fake_kernel, remove_mdev
from tests.support.fakemdev import mdev_cli as _cli

U1 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
U2 = "0a9ef2b1-6d4c-4c38-9d5e-39b9a1e2c0de"
GPU = "0000:08:00.0"


@pytest.fixture
def host(fake, monkeypatch):
    as_root_with_fake_kernel(monkeypatch, fake)
    fake.add_device(GPU, vendor="10de", device="25b6", class_="030200", driver="nvidia", group=30)
    add_parent(fake, GPU)
    add_type(fake, GPU, "nvidia-747", name="NVIDIA A2-8Q", available=2)
    add_mtty(fake)
    return fake


def test_persist_reboot_apply(capsys, host):
    add_mdev(host, "mtty", "mtty-2", U1)
    add_mdev(host, GPU, "nvidia-747", U2)
    data = json.loads(_cli(capsys, host, "persist", U1, U2.upper(), "--format", "json").out)["data"]
    assert [(d["uuid"], d["change"]) for d in data] == [(U1, "added"), (U2, "added")]
    text = (host.root / "etc/pcipass/pcipass.yaml").read_text()
    assert f"uuid: '{U2}'" in text and "vendor: '10de'" in text and "parent: 'mtty'" in text
    assert _cli(capsys, host, "persist", U1, "--format", "json").out.count('"unchanged"') == 1
    assert _cli(capsys, host, "apply", "--check").code == 0  # as declared
    for u in (U1, U2):  # a reboot
        remove_mdev(host, u)
    r = _cli(capsys, host, "apply", "--check", code=1)
    assert "planned" in r.out and not (host.root / f"sys/bus/mdev/devices/{U1}").exists()
    applied = json.loads(_cli(capsys, host, "apply", "--format", "json").out)["data"]
    assert [(a["uuid"], a["state"], a["outcome"]) for a in applied] == [
        (U1, "missing", "created"),
        (U2, "missing", "created"),
    ]
    assert (host.root / f"sys/bus/mdev/devices/{U2}/mdev_type").resolve().name == "nvidia-747"
    assert [a["outcome"] for a in json.loads(_cli(capsys, host, "apply", "--format", "json").out)["data"]] == [
        "unchanged",
        "unchanged",
    ]


def test_apply_refusals_and_partial(capsys, host):
    add_mdev(host, "mtty", "mtty-2", U1)
    _cli(capsys, host, "persist", U1)
    from pcipass.config import Editor
    from pcipass.config.mdev import MdevEntry

    editor = Editor(host.root / "etc/pcipass/pcipass.yaml", "pcipass.yaml")
    editor.upsert(
        "mdev", MdevEntry("1e2f3a4b-0000-4000-8000-000000000001", "0000:09:00.0", "nvidia-747", None, None).to_node()
    )
    editor.save()
    r = _cli(capsys, host, "apply", code=3)
    assert "parent-absent" in r.out and "is its driver bound?" in r.out
    remove_mdev(host, U1)
    host.write("sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2/available_instances", "0\n")
    assert "no-instance" in _cli(capsys, host, "apply", code=5).out


def test_mdevctl_is_left_alone(capsys, host):
    add_mdev(host, "mtty", "mtty-2", U1)
    host.write(f"etc/mdevctl.d/mtty/{U1}", json.dumps({"mdev_type": "mtty-2", "start": "auto"}))
    r = _cli(capsys, host, "persist", U1)
    assert "mdevctl defines" in r.err and "keep one of the two" in r.err
    remove_mdev(host, U1)
    r = _cli(capsys, host, "apply")
    assert "left to mdevctl" in r.out and not (host.root / f"sys/bus/mdev/devices/{U1}").exists()


def test_unpersist_and_errors(capsys, host, tmp_path):
    add_mdev(host, "mtty", "mtty-2", U1)
    cfg = str(tmp_path / "other.yaml")
    _cli(capsys, host, "persist", U1, "--config", cfg)
    data = json.loads(_cli(capsys, host, "unpersist", U1, U2, "--config", cfg, "--format", "json").out)["data"]
    assert [(d["uuid"], d["change"]) for d in data] == [(U1, "removed"), (U2, "not declared")]
    assert "no mediated device" in _cli(capsys, host, "persist", U2, code=1).err
    assert "not a UUID" in _cli(capsys, host, "unpersist", "x", code=2).err
    assert "declares no mediated device" in _cli(capsys, host, "apply").out


def test_pcipass_apply_and_verify_cover_the_section(capsys, host):
    from tests.support.cli import run

    add_mdev(host, "mtty", "mtty-2", U1)
    _cli(capsys, host, "persist", U1)
    remove_mdev(host, U1)  # a reboot
    r = run(capsys, "--root", str(host.root), "verify", "--format", "json")
    assert r.code == 1 and json.loads(r.out)["drift"] is True
    (v,) = json.loads(r.out)["data"]
    assert (v["section"], v["address"], v["drift"]) == ("mdev", U1, "missing")
    r = run(capsys, "--root", str(host.root), "apply", "--format", "json")
    out = json.loads(r.out)
    assert r.code == 0 and out["changed"] is True
    assert [(e["section"], e["address"], e["outcome"]) for e in out["data"]["entries"]] == [("mdev", U1, "changed")]
    assert (host.root / f"sys/bus/mdev/devices/{U1}").is_dir()
    r = run(capsys, "--root", str(host.root), "verify")
    assert r.code == 0 and "mtty-2 on mtty" in r.out
