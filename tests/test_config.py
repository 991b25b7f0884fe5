"""The desired-state file (pcipass/config): validation with file:line and key, round-trip edits, fingerprints."""

from __future__ import annotations

import os
import stat

import pytest

from pcipass import fingerprint as fp
from pcipass.config import Editor, config_path, load, schema
from pcipass.config.devices import DeviceEntry
from pcipass.errors import ConfigError, ExitCode, UsageError
from pcipass.host import Host
from tests.support import bind_hosts as bh

GOOD = """\
# site-wide passthrough
version: 1
devices:
  # the GPU
  - address: '0000:3b:00.0'
    driver: vfio-pci   # bound at boot
    group: true
    fingerprint:
      vendor: '10de'
      device: '1eb8'
      class: '030200'
      path: '0000:3a/00.0/00.0'
"""


def _write(tmp_path, text: str):
    p = tmp_path / "pcipass.yaml"
    p.write_text(text)
    return p


def _error(tmp_path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(_write(tmp_path, text), "pcipass.yaml")
    assert info.value.exit_code is ExitCode.USAGE
    return info.value


def test_load_good(tmp_path):
    d = load(_write(tmp_path, GOOD), "pcipass.yaml")
    assert d.version == 1
    (e,) = d.devices
    assert e == DeviceEntry(
        "0000:3b:00.0",
        "vfio-pci",
        True,
        fp.Fingerprint("10de", "1eb8", None, None, "030200", None, "0000:3a/00.0/00.0"),
        line=5,
    )


def test_defaults_and_empty_section(tmp_path):
    text = "version: 1\ndevices:\n  - address: '0000:00:02.0'\n    fingerprint: {vendor: '8086', device: '10d3'}\n"
    (e,) = load(_write(tmp_path, text), "f").devices
    assert (e.driver, e.group) == ("vfio-pci", False)
    assert load(_write(tmp_path, "version: 1\ndevices: []\n"), "f").devices == ()
    assert load(_write(tmp_path, "version: 1\n"), "f").devices == ()


@pytest.mark.parametrize(
    "text, line, key, words",
    [
        ("version: 1\ndevices: [\n", 3, None, "not valid YAML"),
        ("version: 1\nversion: 1\n", 2, None, 'duplicate key "version"'),
        ("", 1, None, "empty"),
        ("version: 2\n", 1, "version", "1 was expected"),
        ("devices: []\n", 1, None, "'version' is missing"),
        (
            GOOD.replace("    group: true\n", "    group: true\n    colour: red\n"),
            8,
            "devices[0].colour",
            "unknown key",
        ),
        (
            GOOD.replace("      class:", "      vendour: x\n      class:"),
            11,
            "devices[0].fingerprint.vendour",
            "unknown key",
        ),
        (GOOD.replace("'0000:3b:00.0'", "3b:00.0"), 5, "devices[0].address", "canonical form"),
        (GOOD.replace("'0000:3b:00.0'", "0000:3B:00.0"), 5, "devices[0].address", "canonical form"),
        (GOOD.replace("'10de'", "8086"), 9, "devices[0].fingerprint.vendor", "quote it"),
        (GOOD.replace("group: true", "group: yes"), 7, "devices[0].group", "not of type 'boolean'"),
        (GOOD.replace("driver: vfio-pci", "driver: ../x"), 6, "devices[0].driver", "not valid here"),
        (
            GOOD.replace(
                "    fingerprint:\n      vendor: '10de'\n      device: '1eb8'\n      class: '030200'\n"
                "      path: '0000:3a/00.0/00.0'\n",
                "",
            ),
            5,
            "devices[0]",
            "'fingerprint' is missing",
        ),
        (GOOD + GOOD[GOOD.index("  - address") :], 13, "devices[1].address", "declared twice (first at line 5)"),
        (GOOD + "sriovv: []\n", 13, "sriovv", "unknown key (allowed here: version, devices"),
    ],
)
def test_errors_name_line_and_key(tmp_path, text, line, key, words):
    err = _error(tmp_path, text)
    assert (err.line, err.key) == (line, key), err.message
    assert words in err.message
    assert err.message.startswith(f"pcipass.yaml:{line}: " + (f"{key}: " if key else ""))
    assert err.to_dict()["line"] == line


def test_every_problem_is_reported(tmp_path):
    text = GOOD.replace("'0000:3b:00.0'", "3b:00.0").replace("group: true", "group: 1")
    err = _error(tmp_path, text)
    assert err.line == 5 and "also line 7: devices[0].group" in err.message


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "nope.yaml", "nope.yaml")
    assert load(tmp_path / "nope.yaml", "nope.yaml", missing_ok=True).devices == ()
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):  # and it does not block
        load(fifo, "fifo.yaml")
    big = _write(tmp_path, "version: 1\n" + "#" * (1 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load(big, "big")
    (tmp_path / "bin.yaml").write_bytes(b"version: 1\n\xff\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "bin.yaml", "bin.yaml")
    assert info.value.line == 2 and "UTF-8" in info.value.message


def test_config_path(tmp_path):
    host = Host(tmp_path)
    assert config_path(host, None) == (tmp_path / "etc/pcipass/pcipass.yaml", "/etc/pcipass/pcipass.yaml")
    assert config_path(host, "site.yaml")[1] == "site.yaml"
    with pytest.raises(UsageError, match="--config is empty"):
        config_path(host, "")


def test_schema_has_every_section():
    s = schema()
    assert s["additionalProperties"] is False and set(s["properties"]) == {"version", "devices", "mdev", "sriov"}
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(s)


# --- editing ----------------------------------------------------------------------------------------------------
def _entry(address: str, **kw) -> dict:
    e = DeviceEntry(
        address, kw.get("driver", "vfio-pci"), kw.get("group", False), fp.Fingerprint("8086", "10d3", class_id="020000")
    )
    return e.to_node()


def test_edit_keeps_comments_and_order(tmp_path):
    p = _write(tmp_path, GOOD)
    os.chmod(p, 0o600)
    ed = Editor(p, "f")
    assert ed.upsert("devices", _entry("0000:3b:00.0", driver="auto", group=True)) == "updated"
    assert ed.upsert("devices", _entry("0000:00:02.0")) == "added"
    assert ed.save() is True
    text = p.read_text()
    assert text.startswith("# site-wide passthrough\nversion: 1\ndevices:\n  # the GPU\n")
    assert "driver: auto       # bound at boot\n    group: true\n" in text
    assert "      vendor: '8086'\n      device: '10d3'\n      class: '020000'\n" in text
    assert "path:" not in text.split("0000:00:02.0")[0]  # the updated fingerprint lost the key the new one lacks
    assert text.index("0000:3b:00.0") < text.index("0000:00:02.0")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert [e.address for e in load(p, "f").devices] == ["0000:3b:00.0", "0000:00:02.0"]
    # A YAML 1.1 reader gets strings too.
    import yaml

    assert yaml.safe_load(text)["devices"][1]["address"] == "0000:00:02.0"


def test_edit_unchanged_writes_nothing(tmp_path):
    p = _write(tmp_path, GOOD)
    ed = Editor(p, "f")
    node = load(p, "f").devices[0].to_node()
    before = p.stat().st_mtime_ns, p.read_text()
    assert ed.upsert("devices", node) == "unchanged"
    assert ed.save() is False
    assert (p.stat().st_mtime_ns, p.read_text()) == before


def test_remove_and_new_file(tmp_path):
    p = tmp_path / "etc/pcipass/pcipass.yaml"
    ed = Editor(p, "f")
    assert ed.remove("devices", "0000:00:02.0") is False
    ed.upsert("devices", _entry("0000:00:02.0"))
    ed.upsert("devices", _entry("0000:00:03.0", group=True))
    assert ed.save() and p.read_text().startswith("# pcipass desired state")
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    ed = Editor(p, "f")
    assert ed.remove("devices", "0000:00:02.0") and ed.remove("devices", "0000:00:03.0")
    ed.save()
    assert load(p, "f").devices == ()
    # An empty list written as [] gets block-style entries again.
    ed = Editor(p, "f")
    ed.upsert("devices", _entry("0000:00:02.0"))
    ed.save()
    assert "devices:\n  - address: '0000:00:02.0'\n" in p.read_text()
    # No temporary file left; the validated content is kept beside the file (config/checked.py).
    assert sorted(x.name for x in p.parent.iterdir()) == [".pcipass.yaml.checked", "pcipass.yaml"]


def test_edit_refuses_an_invalid_file(tmp_path):
    p = _write(tmp_path, GOOD.replace("group: true", "group: maybe"))
    before = p.read_text()
    with pytest.raises(ConfigError, match="group"):
        Editor(p, "f")
    assert p.read_text() == before


# --- fingerprints ---------------------------------------------------------------------------------------------
def test_pci_path_and_fingerprint(tmp_path):
    f = bh.build(tmp_path / "root")
    host = Host(f.root)
    assert fp.pci_path(host, bh.E1000E) == "0000:00/02.0"
    assert fp.pci_path(host, bh.BR_E1000) == "0000:00/06.0/00.0/01.0"
    assert fp.pci_path(host, "0000:09:00.0") is None
    from pcipass.inventory import Inventory

    dev = Inventory.scan(host, only=[bh.BR_E1000]).device(bh.BR_E1000)
    got = fp.of(host, dev)
    assert got == fp.Fingerprint("8086", "100e", "8086", "0000", "020000", None, "0000:00/06.0/00.0/01.0")
    assert got.to_mapping() == {
        "vendor": "8086",
        "device": "100e",
        "subsystem_vendor": "8086",
        "subsystem_device": "0000",
        "class": "020000",
        "path": "0000:00/06.0/00.0/01.0",
    }


def test_differences():
    rec = fp.Fingerprint("8086", "10d3", "8086", "a01f", "020000", "3", "0000:00/1c.0/00.0")
    assert fp.differences(rec, rec) == ()
    assert fp.differences(rec, rec.__class__("8086", "10d3", "8086", "a01f", "020000", None, None)) == ()
    other = fp.Fingerprint("10de", "1eb8", None, None, "030200", "3", "0000:00/03.0/00.0")
    diffs = fp.differences(rec, other)
    assert [d.key for d in diffs] == ["vendor", "device", "subsystem_vendor", "subsystem_device", "class", "path"]
    assert not fp.same_card(rec, other)
    moved = fp.Fingerprint("8086", "10d3", "8086", "a01f", "020000", "4", "0000:00/1d.0/00.0")
    assert fp.same_card(rec, moved) and [d.key for d in fp.differences(rec, moved)] == ["physical_slot", "path"]
    hand = fp.Fingerprint("8086", "10d3")
    assert fp.differences(hand, rec) == ()
