"""The inventory commands' machine contract: envelope, keys, filters, exit codes, output hygiene."""

import json
import subprocess
import sys

import pytest

from tests.support.cli import run

CONTRACT_KEYS = {
    "address",
    "vendor_id",
    "device_id",
    "subsystem_vendor_id",
    "subsystem_device_id",
    "class_id",
    "vendor_name",
    "device_name",
    "class_name",
    "driver",
    "driver_override",
    "iommu_group",
    "numa_node",
    "is_bridge",
    "physfn",
    "sriov",
}


@pytest.fixture
def small(fake):
    fake.add_device(
        "0000:00:01.0", vendor="8086", device="1901", class_="060400", bridge=True, driver="pcieport", group=1
    )
    fake.add_device(
        "0000:01:00.0", vendor="10de", device="1eb8", class_="030200", parent="0000:00:01.0", driver="nvidia", group=2
    )
    fake.add_device(
        "0000:01:00.1", vendor="10de", device="10f8", class_="040300", parent="0000:00:01.0", driver="vfio-pci", group=2
    )
    fake.add_device("0000:00:19.0", vendor="8086", device="10d3", class_="020000", driver="e1000e", group=3)
    fake.add_device("0000:00:1f.2", vendor="8086", device="2922", class_="010601", driver=None, group=4)
    return fake


def test_list_json_contract(capsys, small):
    r = run(capsys, "--root", str(small.root), "list", "--format", "json")
    assert r.code == 0 and r.err == ""
    env = json.loads(r.out)
    assert list(env) == ["pcipass", "command", "status", "data", "errors"]
    assert env["pcipass"] == 1 and env["command"] == "list" and env["status"] == "ok"
    assert [d["address"] for d in env["data"]] == [
        "0000:00:01.0",
        "0000:00:19.0",
        "0000:00:1f.2",
        "0000:01:00.0",
        "0000:01:00.1",
    ]
    for dev in env["data"]:
        assert CONTRACT_KEYS <= set(dev)
        for key in ("vendor_id", "device_id", "subsystem_vendor_id", "subsystem_device_id"):
            assert len(dev[key]) == 4 and dev[key] == dev[key].lower()
        assert len(dev["class_id"]) == 6
        assert isinstance(dev["iommu_group"], int)
    assert r.out.endswith("}\n")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--class", "gpu"], ["0000:01:00.0"]),
        (["--class", "audio", "--class", "nic"], ["0000:00:19.0", "0000:01:00.1"]),
        (["--class", "0x0106"], ["0000:00:1f.2"]),
        (["--class", "bridge"], ["0000:00:01.0"]),
        (["--vendor", "10de"], ["0000:01:00.0", "0000:01:00.1"]),
        (["--vendor", "nvidia"], ["0000:01:00.0", "0000:01:00.1"]),
        (["--driver", "vfio_pci"], ["0000:01:00.1"]),
        (["--driver", "none"], ["0000:00:1f.2"]),
        (["--group", "2"], ["0000:01:00.0", "0000:01:00.1"]),
        (["--vfio"], ["0000:01:00.1"]),
    ],
)
def test_list_filters(capsys, small, args, expected):
    r = run(capsys, "--root", str(small.root), "-f", "json", "list", *args)
    assert r.code == 0
    assert [d["address"] for d in json.loads(r.out)["data"]] == expected


def test_list_tree(capsys, small):
    r = run(capsys, "--root", str(small.root), "-f", "json", "list", "--tree")
    data = json.loads(r.out)["data"]
    assert [(b["group"], b["verdict"], [d["address"] for d in b["devices"]]) for b in data] == [
        (1, "ready", ["0000:00:01.0"]),
        (2, "bindable", ["0000:01:00.0", "0000:01:00.1"]),
        (3, "bindable", ["0000:00:19.0"]),
        (4, "ready", ["0000:00:1f.2"]),
    ]
    table = run(capsys, "--root", str(small.root), "list", "--tree")
    assert "2 (bindable)" in table.out


def test_groups_contract(capsys, small):
    r = run(capsys, "--root", str(small.root), "-f", "json", "groups")
    data = json.loads(r.out)["data"]
    g2 = next(g for g in data if g["group"] == 2)
    assert g2["verdict"] == "bindable"
    assert [(m["address"], m["role"], m["driver"]) for m in g2["devices"]] == [
        ("0000:01:00.0", "endpoint", "nvidia"),
        ("0000:01:00.1", "endpoint", "vfio-pci"),
    ]


def test_show(capsys, small):
    r = run(capsys, "--root", str(small.root), "-f", "json", "show", "01:00.1")
    data = json.loads(r.out)["data"]
    assert data["device"]["address"] == "0000:01:00.1"
    assert [m["address"] for m in data["iommu_group"]["devices"]] == ["0000:01:00.0", "0000:01:00.1"]
    table = run(capsys, "--root", str(small.root), "show", "0000:01:00.1")
    assert "IOMMU group 2: bindable" in table.out and "0000:01:00.0" in table.out


@pytest.mark.parametrize("bad", ["3b:00", "zz:00.0", "../../etc", ""])
def test_bad_address_is_usage_error(capsys, small, bad):
    r = run(capsys, "--root", str(small.root), "show", bad)
    assert r.code == 2 and r.out == ""
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and repr(bad) in lines[0]


def test_unknown_device(capsys, small):
    r = run(capsys, "--root", str(small.root), "show", "3b:00.0")
    assert r.code == 1 and r.err.strip() == "pcipass: error: no PCI device 0000:3b:00.0"
    j = run(capsys, "--root", str(small.root), "-f", "json", "show", "3b:00.0")
    env = json.loads(j.out)
    assert j.code == 1 and env["status"] == "error" and env["data"] is None
    assert env["errors"] == [{"code": "not-found", "message": "no PCI device 0000:3b:00.0", "address": "0000:3b:00.0"}]


def test_bad_root_and_options(capsys, tmp_path):
    r = run(capsys, "--root", str(tmp_path / "nope"), "list")
    assert r.code == 2 and "nope" in r.err and len(r.err.strip().splitlines()) == 1
    for args in (("--root", ""), ("--root=",)):  # --root "$UNSET": never the running system
        for cmd in (("list",), ("enable", "--dry-run", "00:03.0")):
            r = run(capsys, *args, *cmd)
            assert r.code == 2 and r.out == "" and "--root is empty" in r.err, (args, cmd, r.err)
    r = run(capsys, "--root", str(tmp_path), "list", "--class", "toaster")
    assert r.code == 2 and "toaster" in r.err
    r = run(capsys, "list", "--frobnicate")
    assert r.code == 2 and "--frobnicate" in r.err


@pytest.mark.parametrize("cmd", [["list"], ["list", "--tree"], ["groups"]])
def test_root_without_a_pci_bus_is_said_not_listed_as_empty(capsys, tmp_path, small, cmd):
    """A --root that is not a host's root (or a kernel without PCI): the empty answer comes with the reason."""
    r = run(capsys, "--root", str(tmp_path), "-f", "json", *cmd)
    assert r.code == 0 and json.loads(r.out)["data"] == []
    assert (
        r.err == f"pcipass: no PCI bus in {tmp_path}: it has no sys/bus/pci/devices (not a Linux host's root, "
        "or a kernel without PCI)\n"
    )
    assert "no PCI bus" not in run(capsys, "--root", str(small.root), *cmd).err


def test_paths_are_shown_as_on_the_host(tmp_path):
    from pcipass.host import Host

    host = Host(tmp_path)
    assert host.shown(host.pci_devices_dir) == "/sys/bus/pci/devices"
    assert (host.shown(tmp_path), host.shown("/elsewhere/x")) == ("/", "/elsewhere/x")
    assert Host("/").shown("/proc/cmdline") == "/proc/cmdline"


def test_root_from_environment(capsys, small, monkeypatch):
    monkeypatch.setenv("PCIPASS_ROOT", str(small.root))
    r = run(capsys, "-f", "json", "list")
    assert len(json.loads(r.out)["data"]) == 5


def test_hostile_strings_are_not_markup(capsys, fake, tmp_path, monkeypatch):
    ids = tmp_path / "hostile.ids"
    ids.write_text('1234  [bold red]Evil[/] & <Co> "q" {{x}}\n\t5678  [link=http://x]dev[/link]\n')
    monkeypatch.setenv("PCIPASS_PCI_IDS", str(ids))
    fake.add_device("0000:00:02.0", vendor="1234", device="5678", driver="[b]bad")
    r = run(capsys, "--root", str(fake.root), "list")
    assert r.code == 0
    assert '[bold red]Evil[/] & <Co> "q" {{x}} [link=http://x]dev[/link]' in r.out
    assert "[b]bad" in r.out
    assert "\x1b" not in r.out


def test_no_ansi_when_piped(small):
    proc = subprocess.run(
        [sys.executable, "-m", "pcipass", "--root", str(small.root), "list"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0 and "\x1b" not in proc.stdout and "0000:01:00.0" in proc.stdout
    assert all(line == line.rstrip() for line in proc.stdout.splitlines())


def test_version_and_yaml(capsys, small):
    import yaml

    import pcipass

    r = run(capsys, "--version")
    assert r.out == f"pcipass {pcipass.__version__}\n"
    y = run(capsys, "--root", str(small.root), "-f", "yaml", "groups")
    assert yaml.safe_load(y.out)["data"][0]["group"] == 1


def test_internal_error_is_one_line(capsys, small, monkeypatch):
    from pcipass import inventory

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(inventory.Inventory, "scan", classmethod(boom))
    r = run(capsys, "--root", str(small.root), "list")
    assert r.code == 1 and len(r.err.strip().splitlines()) == 1 and "kaboom" in r.err and "--debug" in r.err
    r = run(capsys, "--root", str(small.root), "--debug", "list")
    assert "Traceback" in r.err


def test_snapshot_round_trip(capsys, small, tmp_path):
    small.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    small.add_net("0000:00:19.0", "eno1")
    out = tmp_path / "bundle.tar.gz"
    r = run(capsys, "--root", str(small.root), "-f", "json", "snapshot", "-o", str(out))
    assert r.code == 0 and json.loads(r.out)["data"]["entries"] > 50
    original = run(capsys, "--root", str(small.root), "-f", "json", "list").out
    from_archive = run(capsys, "--root", str(out), "-f", "json", "list").out
    assert original == from_archive
    groups_a = run(capsys, "--root", str(small.root), "-f", "json", "groups").out
    groups_b = run(capsys, "--root", str(out), "-f", "json", "groups").out
    assert groups_a == groups_b
    import tarfile

    names = tarfile.open(out).getnames()
    assert "etc/default/grub" in names and "proc/cmdline" in names
    assert not any(n.rsplit("/", 1)[-1] in ("remove", "reset") for n in names)


def test_snapshot_round_trip_recorded_host(capsys, hpe_a2, tmp_path):
    out = tmp_path / "a2.tar.xz"
    assert run(capsys, "--root", str(hpe_a2), "snapshot", "-o", str(out)).code == 0
    assert (
        run(capsys, "--root", str(hpe_a2), "-f", "json", "list").out
        == run(capsys, "--root", str(out), "-f", "json", "list").out
    )


def test_snapshot_archive_rejects_escaping_links(capsys, tmp_path):
    import io
    import tarfile

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escape")
        data = b"x"
        info.size = 1
        tar.addfile(info, io.BytesIO(data))
    r = run(capsys, "--root", str(evil), "list")
    assert r.code == 2 and "snapshot archive" in r.err
    assert not (tmp_path.parent / "escape").exists()
