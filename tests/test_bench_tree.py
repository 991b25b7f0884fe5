"""The benchmark's synthetic server (bench/gen_tree.py) and the speed paths it measures.

The generated tree must be a faithful server (or the benchmark measures nothing real): pcipass and lspci
both read it, agree with each other and with what the generator meant. And the speed paths must not change
what the output means: ``dump_json`` is compared with ``json.dumps`` on every JSON type and a whole inventory,
and pci.ids lookups with a plain reading of the real file. The scan's own invariants on this tree (the
``uevent`` fast path, the forked reader, the early scan, targeted scans) are in tests/test_inventory.py.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from collections import Counter
from enum import Enum, IntEnum

import pytest

from pcipass.cli.render import dump_json
from pcipass.group import GroupVerdict
from pcipass.host import Host
from pcipass.inventory import Inventory
from pcipass.result import Result, jsonable
from tests.support.bench_tree import all_functions, gen_tree, server  # noqa: F401 - fixture


@pytest.mark.parametrize("functions", [64, 4096, 16384])
def test_exact_function_counts_unique_addresses(functions):
    m = gen_tree.build(functions)
    fns = all_functions(m)
    assert len(fns) == m.count == functions
    addresses = [f.address for f in fns]
    assert len(set(addresses)) == functions
    assert all(re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]", a) for a in addresses)
    kinds = Counter((f.vendor, f.device) for f in fns)
    if functions >= 4096:
        # The mix the issue asks for: root ports, switches, GPUs with audio, SR-IOV NICs with VFs, NVMe.
        assert kinds[(0x15B3, 0x101E)] > 1000 and kinds[(0x8086, 0x154C)] > 100
        assert kinds[(0x10DE, 0x2204)] == kinds[(0x10DE, 0x1AEF)] > 10
        assert kinds[(0x10B5, 0x8747)] > 10 and kinds[(0x144D, 0xA808)] > 10


def test_cannot_build_a_toy():
    with pytest.raises(SystemExit):
        gen_tree.build(10)


def test_config_blob_header_and_capability():
    m = gen_tree.build(64)
    fns = all_functions(m)
    bridge = next(f for f in fns if f.bridge_buses and f.port_type == gen_tree.PT_ROOT_PORT)
    gpu = next(f for f in fns if f.device == 0x2204)
    for f, header in ((bridge, 0x01), (gpu, 0x80)):
        cfg = gen_tree._config(f)
        assert len(cfg) == 256
        assert int.from_bytes(cfg[0:2], "little") == f.vendor and cfg[0x0E] == header
        assert int.from_bytes(cfg[9:12], "little") == f.class_code
        assert cfg[0x34] == 0x40 and cfg[0x40] == 0x10  # PCI Express capability
        assert (cfg[0x42] >> 4) == f.port_type
    cfg = gen_tree._config(bridge)
    assert (cfg[0x19], cfg[0x1A]) == bridge.bridge_buses


def test_pcipass_reads_what_was_generated(server):
    root, m = server
    inv = Inventory.scan(Host(root))
    fns = {f.address: f for f in all_functions(m)}
    assert list(inv.devices) == sorted(fns, key=lambda a: (int(a[:4], 16), a[5:]))
    for addr, f in fns.items():
        dev = inv.devices[addr]
        assert (dev.vendor_id, dev.device_id, dev.class_id) == (
            f"{f.vendor:04x}",
            f"{f.device:04x}",
            f"{f.class_code:06x}",
        )
        assert dev.is_bridge == bool(f.bridge_buses) and dev.iommu_group == f.group and dev.driver == f.driver
        assert dev.vendor_name and dev.device_name, addr  # every id exists in pci.ids
        assert dev.numa_node == f.numa
    pf = next(f for f in fns.values() if f.sriov and f.vfs)
    assert inv.devices[pf.address].sriov.vfs == tuple(v.address for v in pf.vfs)
    assert inv.devices[pf.vfs[0].address].physfn == pf.address
    assert inv.devices[pf.address].net and inv.devices[pf.address].physical_slot
    # A switch without ACS: its downstream ports and GPUs share one group, which is not assignable as is.
    shared = Counter(f.group for f in fns.values() if f.device == 0x8747 and f.port_type == gen_tree.PT_DOWNSTREAM)
    group, ports = shared.most_common(1)[0]
    assert ports == 4
    members = inv.groups[group].devices
    assert len(members) == 4 + 8 and inv.groups[group].verdict is GroupVerdict.BINDABLE
    # The BMC's VGA is the boot display, behind its own PCIe-to-PCI bridge.
    vga = next(d for d in inv.devices.values() if d.vendor_id == "1a03" and d.device_id == "2000")
    assert vga.boot_vga is True and vga.drm and inv.devices[vga.parent_bridge].is_bridge


def test_lspci_reads_the_same_devices(server):
    """lspci (pciutils, installed by scripts/setup.sh test) sees the same functions with the same ids."""
    root, _m = server
    assert shutil.which("lspci"), "lspci missing: scripts/setup.sh test installs pciutils"
    out = subprocess.run(
        ["lspci", "-D", "-nn", "-k", "-A", "linux-sysfs", "-O", f"sysfs.path={root}/sys/bus/pci"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    theirs = {m[1]: m[2] for m in re.finditer(r"^(\S+) .*\[([0-9a-f]{4}:[0-9a-f]{4})\]", out, re.M)}
    ours = {a: d.id_pair for a, d in Inventory.scan(Host(root)).devices.items()}
    assert theirs == ours
    drivers = dict(re.findall(r"^(\S+) .*\n(?:\t.*\n)*?\tKernel driver in use: (\S+)", out, re.M))
    assert drivers == {a: d.driver for a, d in Inventory.scan(Host(root)).devices.items() if d.driver}


class _Colour(str, Enum):
    red = "red"


class _Level(IntEnum):
    high = 3


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**70,
        1.5,
        1e300,
        float("nan"),
        float("inf"),
        float("-inf"),
        "",
        "plain",
        'quote " backslash \\ newline \n tab \t nul \x00 é ☃ \U0001f600',
        "lone surrogate \udc80",
        [],
        {},
        (),
        [[]],
        [{}],
        {"a": []},
        {"a": {"b": {"c": [1, (2, 3), {"d": None}]}}},
        {1: "int key", 2.5: "float key", False: "f", None: "n"},
        {"enum": _Colour.red, _Colour.red: "str-enum key", "level": _Level.high},
        [1, "two", 3.0, None, [False]],
    ],
)
def test_dump_json_means_what_json_dumps_means(value):
    text = dump_json(value)
    assert text.endswith("}\n") or text.endswith("]\n") or "\n" not in text[:-1]
    # Same JSON value: re-serialised compactly, ours and json.dumps's agree; except that a float that is not
    # finite is null, as strict JSON parsers need (json.dumps writes NaN/Infinity, which they reject).
    expected = None if isinstance(value, float) and not math.isfinite(value) else value
    assert json.dumps(json.loads(text), ensure_ascii=False) == json.dumps(expected, ensure_ascii=False)


def test_dump_json_layout():
    value = {"data": [{"a": 1, "b": [1, 2], "c": {"d": None}}, {"a": "é"}], "list": [1, "x"], "obj": {"k": []}}
    assert dump_json(value) == (
        "{\n"
        '  "data": [\n'
        '    {"a":1,"b":[1,2],"c":{"d":null}},\n'
        '    {"a":"é"}\n'
        "  ],\n"
        '  "list": [\n'
        "    1,\n"
        '    "x"\n'
        "  ],\n"
        '  "obj": {\n'
        '    "k": []\n'
        "  }\n"
        "}\n"
    )


@pytest.mark.parametrize("value", [{(1, 2): "tuple key"}, {"x": object()}, {1, 2}, b"bytes"])
def test_dump_json_raises_what_json_dumps_raises(value):
    with pytest.raises(TypeError) as ours:
        dump_json(value)
    with pytest.raises(TypeError) as theirs:
        json.dumps(value, indent=2, ensure_ascii=False)
    assert str(ours.value) == str(theirs.value)


def test_dump_json_circular():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        dump_json(loop)


def test_dump_json_whole_inventory(server):
    root, _m = server
    inv = Inventory.scan(Host(root))
    env = Result("list", data=[jsonable(d) for d in inv.devices.values()]).envelope()
    text = dump_json(env)
    assert json.loads(text) == env
    # One device per line.
    lines = text.splitlines()
    assert lines[:5] == ["{", '  "pcipass": 1,', '  "command": "list",', '  "status": "ok",', '  "data": [']
    assert len(lines) == len(inv.devices) + 8


def _reference_pci_ids(text: str):
    """Every vendor, device, subsystem and class entry of a pci.ids file, parsed line by line in full."""
    vendors, devices, subsystems, classes = {}, {}, {}, {}
    top = dev = None
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        if not line.startswith("\t"):
            top, dev = line, None
            if line.startswith("C "):
                classes[(line[2:4],)] = line[4:].strip()
            else:
                vendors[line[:4]] = line[4:].strip()
        elif top.startswith("C "):
            if line.startswith("\t\t"):
                classes[(top[2:4], dev, line[2:4])] = line[4:].strip()
            else:
                dev = line[1:3]
                classes[(top[2:4], dev)] = line[3:].strip()
        elif line.startswith("\t\t"):
            key, _, name = line[2:].partition("  ")
            subsystems.setdefault((top[:4], dev), {})[key] = name.strip()
        else:
            dev, _, name = line[1:].partition("  ")
            devices[(top[:4], dev)] = name.strip()
    return vendors, devices, subsystems, classes


def test_pci_ids_lookups_find_every_entry_of_the_real_file(tmp_path_factory):
    """The lazy vendor-block search of pciids.py (speed) names every entry of the pinned pci.ids as a full
    parse does: all 2,000+ vendors, 15,000+ devices and their subsystems, all classes."""
    from pcipass.pciids import PciIds
    from tests.conftest import pinned_pci_ids

    path = pinned_pci_ids(tmp_path_factory)
    vendors, devices, subsystems, classes = _reference_pci_ids(path.read_text(encoding="utf-8", errors="replace"))
    assert len(vendors) > 2000 and len(devices) > 15000 and len(classes) > 100
    ids = PciIds.load(path)
    assert {v: ids.vendor_name(v) for v in vendors} == vendors
    assert {k: ids.device_name(*k) for k in devices} == devices
    for (v, d), subs in subsystems.items():
        assert {s: ids.subsystem_name(v, d, *s.split()) for s in subs} == subs
    for key, name in classes.items():
        if len(key) == 3:
            assert ids.class_names("".join(key)) == (classes[key[:1]], classes[key[:2]], name)
    # Upper-case ids, and ids that are a prefix of another, as before.
    assert ids.device_name("8086", "10D3") == devices[("8086", "10d3")]
    assert ids.device_name("8086", "10d") is None and ids.device_name("10de", "ffff") is None
