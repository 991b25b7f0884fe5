"""Values are what the contract says: ids are 4 (class 6) hex digits or null with a warning, a group is a
non-negative number, host strings reach the terminal without their control characters (JSON keeps them), and a
malformed kernel release is unknown, not a crash."""

from __future__ import annotations

import json

import pytest

from pcipass.cli import render
from pcipass.cli.render import KeyValues, Table
from pcipass.host import Host
from tests.support.cli import run

ADDR = "0000:00:19.0"
OTHER = "0000:00:1f.6"
ESC = "\x1b[2J\x1b]0;owned\x07"


def _list(capsys, root, *args):
    r = run(capsys, "--root", str(root), "list", "--format", "json", *args)
    assert r.code == 0, r.err
    return {d["address"]: d for d in json.loads(r.out)["data"]}, r.err


@pytest.mark.parametrize(
    "attrs,fields",
    [
        ({"vendor": "0x" + "1" * 100}, ["vendor_id"]),
        ({"class": "0x" + "1" * 16}, ["class_id"]),
        ({"device": "-001", "subsystem_device": "1_0"}, ["device_id", "subsystem_device_id"]),
        ({"subsystem_vendor": "0x+123", "device": "0x12345"}, ["device_id", "subsystem_vendor_id"]),
    ],
)
def test_malformed_ids_are_null_with_a_warning(capsys, fake, attrs, fields):
    fake.add_device(ADDR, vendor="8086", device="15b8", config=False, extra=attrs)
    fake.add_device(OTHER, vendor="8086", device="15b7")
    devices, err = _list(capsys, fake.root)
    for field in ("vendor_id", "device_id", "subsystem_vendor_id", "subsystem_device_id", "class_id"):
        assert (devices[ADDR][field] is None) is (field in fields), field
        assert devices[OTHER][field] is not None
    assert err.count("\n") == 1 and err.startswith(f"pcipass: {ADDR}: ") and "shown as unknown" in err
    for field in fields:
        assert field.removesuffix("_id") + " '" in err
    table = run(capsys, "--root", str(fake.root), "list")
    assert table.err == err
    if "vendor_id" in fields or "device_id" in fields:
        assert "????" in table.out


def test_malformed_ids_in_uevent_are_null_with_a_warning(capsys, fake):
    uevent = (
        "DRIVER=e1000e\nPCI_CLASS=20000\nPCI_ID=8086:" + "F" * 40 + "\nPCI_SUBSYS_ID=8086:0000\n"
        f"PCI_SLOT_NAME={ADDR[5:]}\nMODALIAS=pci:v00008086d000015B8sv00008086sd00000000bc02sc00i00\n"
    )
    fake.add_device(ADDR, vendor="8086", device="15b8", driver="e1000e", extra={"uevent": uevent})
    devices, err = _list(capsys, fake.root)
    assert devices[ADDR]["device_id"] is None and devices[ADDR]["vendor_id"] == "8086"
    assert devices[ADDR]["class_id"] == "020000"
    assert f"{ADDR}: device 'FFFFFFFF" in err and "..." in err


def test_well_formed_ids_of_every_spelling_pass(capsys, fake):
    fake.add_device(
        ADDR,
        vendor="8086",
        device="15b8",
        config=False,
        extra={"vendor": "0x8086", "device": "15B8", "class": "60400", "subsystem_vendor": "0X1028"},
    )
    devices, err = _list(capsys, fake.root)
    d = devices[ADDR]
    assert (d["vendor_id"], d["device_id"], d["class_id"], d["subsystem_vendor_id"]) == (
        "8086",
        "15b8",
        "060400",
        "1028",
    )
    assert err == ""


def test_an_iommu_group_link_to_minus_one_is_no_group(capsys, fake):
    fake.enable_iommu()
    fake.add_device(ADDR, group=-1)
    fake.add_device(OTHER, group=3)
    devices, _ = _list(capsys, fake.root)
    assert devices[ADDR]["iommu_group"] is None and devices[OTHER]["iommu_group"] == 3
    groups = json.loads(run(capsys, "--root", str(fake.root), "groups", "-f", "json").out)["data"]
    assert [g["group"] for g in groups] == [3]


def test_groups_prints_unknown_ids_like_list(capsys, fake):
    fake.enable_iommu()
    fake.add_device(ADDR, group=3, config=False, extra={"vendor": "zzzz", "device": ""})
    r = run(capsys, "--root", str(fake.root), "groups")
    assert r.code == 0
    assert "????:????" in r.out and "None" not in r.out


# --- control characters -------------------------------------------------------------------------------------


def test_printable_escapes_what_a_terminal_acts_on():
    assert render.printable("plain café 10de:1eb8 [x]") == "plain café 10de:1eb8 [x]"
    assert (
        render.printable("a\x1b[31mb\nc\td\x7fe\x9bf\u202eg\u2028h\ud800")
        == "a\\x1b[31mb\\nc\\td\\x7fe\\x9bf\\u202eg\\u2028h\\ud800"
    )
    assert render.printable("no\u00a0break") == "no\u00a0break"  # a space, if not an ASCII one


@pytest.mark.parametrize("tty", [False, True])
def test_no_block_passes_control_characters(capsys, monkeypatch, tty):
    monkeypatch.setattr(render, "_stdout_is_tty", lambda: tty)
    blocks = [
        Table(("A", ESC), [[ESC, [ESC, "x"]]], title=ESC),
        KeyValues([(ESC, ESC)], title=ESC),
        f"line one {ESC}\nline two",
    ]
    render.render_table(blocks)
    out = capsys.readouterr().out
    assert "\x1b[2J" not in out and "\x07" not in out and "\\x1b[2J" in out
    assert "line one" in out and "\nline two" in out  # a text block's own line breaks stay


def test_host_strings_reach_the_table_escaped_and_json_true(capsys, fake, tmp_path, monkeypatch):
    fake.add_device(ADDR, vendor="1234", device="5678", driver="e1000e", override=f"vfio-pci{ESC}")
    ids = tmp_path / "pci.ids"
    ids.write_text(f"1234  Evil{ESC} Corp\n\t5678  Widget\x9b31m\n")
    monkeypatch.setenv("PCIPASS_PCI_IDS", str(ids))
    for args in (("list",), ("show", ADDR), ("groups",), ("list", "--tree")):
        r = run(capsys, "--root", str(fake.root), *args)
        assert r.code == 0, r.err
        assert not any(c in r.out + r.err for c in "\x1b\x07\x9b"), args
    assert "Evil\\x1b[2J" in run(capsys, "--root", str(fake.root), "list").out
    devices, _ = _list(capsys, fake.root)
    assert devices[ADDR]["driver_override"] == f"vfio-pci{ESC}"
    assert devices[ADDR]["vendor_name"] == f"Evil{ESC} Corp"


def test_messages_on_stderr_are_escaped(capsys, fake):
    r = run(capsys, "--root", str(fake.root), f"bogus{ESC}")
    assert r.code == 2 and "\x1b" not in r.err and "bogus\\x1b[2J" in r.err
    render.warn(f"a {ESC}\nb")
    assert capsys.readouterr().err == "pcipass: a \\x1b[2J\\x1b]0;owned\\x07\\nb\n"


# --- kernel release -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"\xff\xfe6.1.0\n", b"6" * 300 + b"\n", b"../../etc\n", b"6.1 0\n", b"6.1\x1b\n"])
def test_a_malformed_osrelease_is_an_unknown_release(capsys, fake, content):
    fake.enable_iommu()
    fake.add_device(ADDR, driver="e1000e", group=1)
    fake.write("proc/sys/kernel/osrelease", "")
    (fake.root / "proc/sys/kernel/osrelease").write_bytes(content)
    assert Host(fake.root).kernel_release is None
    r = run(capsys, "--root", str(fake.root), "-f", "json", "check-iommu")
    assert r.code in (0, 1) and "internal error" not in r.err, r.err
    checks = {c["id"]: c for c in json.loads(r.out)["data"]["checks"]}
    assert checks["module.vfio"]["verdict"] == "skip" and "kernel release unknown" in checks["module.vfio"]["detail"]
    assert run(capsys, "--root", str(fake.root), "enable", "--dry-run", ADDR).code == 0


def test_a_well_formed_osrelease_is_the_release(fake):
    fake.write("proc/sys/kernel/osrelease", "6.1.0-28-amd64\n")
    assert Host(fake.root).kernel_release == "6.1.0-28-amd64"
