"""The benchmark's synthetic server (bench/gen_tree.py) and the speed paths it measures.

The generated tree must be a faithful server (or the benchmark measures nothing real): pcipass and lspci
both read it, agree with each other and with what the generator meant. And the speed paths must not change
what the output means: ``dump_json`` is compared with ``json.dumps`` on every JSON type and a whole inventory,
and the ``uevent`` fast path of the scan with the attribute files it stands for.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from enum import Enum, IntEnum
from pathlib import Path

import pytest

from pcipass.cli.render import dump_json
from pcipass.group import GroupVerdict
from pcipass.host import Host
from pcipass.inventory import Inventory
from pcipass.result import Result, jsonable
from tests.support.cli import run as cli_run

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


gen_tree = _load("gen_tree")


def _all(m) -> list:
    out = []

    def walk(f):
        out.append(f)
        for c in f.children:
            walk(c)
        for v in f.vfs:
            walk(v)

    for _name, top in m.roots:
        for f in top:
            walk(f)
    return out


@pytest.mark.parametrize("functions", [64, 4096, 16384])
def test_exact_function_counts_unique_addresses(functions):
    m = gen_tree.build(functions)
    fns = _all(m)
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
    fns = _all(m)
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


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> tuple[Path, object]:
    m = gen_tree.build(600)
    root = tmp_path_factory.mktemp("bench") / "host"
    gen_tree.write_tree(m, str(root))
    return root, m


def test_pcipass_reads_what_was_generated(server):
    root, m = server
    inv = Inventory.scan(Host(root))
    fns = {f.address: f for f in _all(m)}
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


def _scan_all(root, **kw) -> dict:
    return Inventory.scan(Host(root), **kw).devices


def test_uevent_and_the_attribute_files_agree(server, tmp_path):
    """The scan takes ids, class, driver and modalias from ``uevent`` when there is one (a live kernel, a
    snapshot) and from the separate attributes otherwise (recorded trees): both must give the same devices."""
    root, _m = server
    bare = tmp_path / "host"
    shutil.copytree(root, bare, symlinks=True)
    removed = 0
    for dirpath, _dirs, files in os.walk(bare / "sys" / "devices"):
        if "uevent" in files:
            os.unlink(os.path.join(dirpath, "uevent"))
            removed += 1
    assert removed >= 600
    with_uevent, without = _scan_all(root), _scan_all(bare)
    assert with_uevent == without
    unbound = [d for d in with_uevent.values() if d.driver is None]
    assert unbound and any(d.driver for d in with_uevent.values())


def _count_forks(monkeypatch) -> list[int]:
    """Make the scan fork even though this test process has other threads (the real-kernel tier boots its
    guests in threads while these tests run), and count the forks, so a test cannot pass without one."""
    forks: list[int] = []
    real_fork = os.fork

    def fork():
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    import pcipass.inventory.parallel as parallel

    monkeypatch.setattr(parallel.threading, "active_count", lambda: 1)
    monkeypatch.setattr(parallel.os, "fork", fork)
    return forks


def test_parallel_scan_is_the_sequential_scan(server, monkeypatch):
    import pcipass.inventory.scan as scan

    root, _m = server
    monkeypatch.setattr(scan, "PARALLEL_MIN", 10**9)
    sequential = {detail: _scan_all(root, detail=detail) for detail in (True, False)}
    monkeypatch.setattr(scan, "PARALLEL_MIN", 2)
    forks = _count_forks(monkeypatch)
    for detail in (True, False):
        parallel = _scan_all(root, detail=detail)
        assert parallel == sequential[detail] and list(parallel) == list(sequential[detail])
    assert len(forks) == 2 and sequential[True] != sequential[False]


def test_parallel_scan_survives_its_child_failing(server, monkeypatch):
    """A child that dies (here: every read raises in the child only) or a fork that fails: the parent reads
    the child's half itself."""
    import pcipass.inventory.scan as scan

    root, _m = server
    expected = _scan_all(root)
    monkeypatch.setattr(scan, "PARALLEL_MIN", 2)
    forks = _count_forks(monkeypatch)
    parent = os.getpid()
    real_row = scan.Reader.row

    def row_failing_in_child(self, *args):
        if os.getpid() != parent:
            raise RuntimeError("child failure")
        return real_row(self, *args)

    monkeypatch.setattr(scan.Reader, "row", row_failing_in_child)
    assert _scan_all(root) == expected and len(forks) == 1

    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    assert _scan_all(root) == expected


def test_no_fork_from_a_threaded_process(server, monkeypatch):
    """Another thread could hold a lock the child needs: then the scan stays in one process."""
    import threading

    import pcipass.inventory.scan as scan

    root, _m = server
    monkeypatch.setattr(scan, "PARALLEL_MIN", 2)

    def fork():
        raise AssertionError("forked while another thread runs")

    monkeypatch.setattr(os, "fork", fork)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        devices = _scan_all(root)
    finally:
        stop.set()
        other.join()
    assert len(devices) == 600


def test_a_reading_begun_early_is_the_scan(server, monkeypatch):
    """A reading begun before the scan (cli/startup.py begins one at process start) and taken by the scan it
    serves gives the devices that scan would read alone, with the one fork; a scan it does not serve (details
    wanted, other devices, another root) cancels it and reads alone."""
    import pcipass.inventory.scan as scan
    from pcipass.inventory import Reading

    def begin(root) -> Reading:
        return Reading(Host(root), None, detail=False, only=None)

    root, _m = server
    expected = {detail: _scan_all(root, detail=detail) for detail in (True, False)}
    monkeypatch.setattr(scan, "PARALLEL_MIN", 2)
    forks = _count_forks(monkeypatch)
    early = begin(root)
    assert len(forks) == 1
    assert _scan_all(root, detail=False, reading=early) == expected[False] and len(forks) == 1
    assert early.child.reaped and early.child.rfd == -1

    other = root.parent / "same-host-elsewhere"
    if not other.exists():
        shutil.copytree(root, other, symlinks=True)
    for kwargs, want in (
        ({"detail": True}, expected[True]),
        ({"detail": False, "only": ["0000:00:00.0"]}, None),
        ({"detail": False, "root": other}, expected[False]),
    ):
        forks.clear()
        early = begin(root)
        scan_root = kwargs.pop("root", root)
        got = _scan_all(scan_root, reading=early, **kwargs)
        assert early.child.reaped and early.child.rfd == -1  # cancelled
        assert len(forks) == (1 if "only" in kwargs else 2)  # its own fork (a targeted scan is small)
        if want is not None:
            assert got == want
    # A host too small to be worth a second process: read in this one when the scan takes it.
    monkeypatch.setattr(scan, "PARALLEL_MIN", 10**9)
    forks.clear()
    early = begin(root)
    assert early.child is None and _scan_all(root, detail=False, reading=early) == expected[False] and not forks


def test_the_cli_begins_the_scan_its_arguments_ask_for(server, monkeypatch, tmp_path):
    """startup.begin_scan glances at the arguments: ``list``/``groups`` with the root from --root, its env
    variable or /; nothing for other commands, help, --version, an empty root or one that is not a
    directory. What it begins, ``list`` takes over (``take_reading``) through the real entry point."""
    import pcipass.inventory as inventory
    from pcipass.cli import startup

    root, _m = server
    began = []

    class Begun:
        def __init__(self, host, ids, **kwargs):
            began.append(str(host.root))

        def cancel(self):
            pass

    monkeypatch.setattr(inventory, "Reading", Begun)
    monkeypatch.delenv("PCIPASS_ROOT", raising=False)
    archive = tmp_path / "snap.tar.gz"
    archive.write_bytes(b"")
    cases = [
        (["--root", str(root), "list"], str(root)),
        ([f"--root={root}", "--format", "json", "groups", "--tree"], str(root)),
        (["-f", "json", "--root", "/nowhere", "--root", str(root), "list"], str(root)),  # click keeps the last
        (["list"], "/"),
        (["--root", str(root), "show", "0000:00:00.0"], None),
        (["--root", str(root), "list", "--help"], None),
        (["--version", "--root", str(root), "list"], None),
        (["--root", "", "list"], None),
        (["--root", str(archive), "list"], None),
        (["--root", str(tmp_path / "missing"), "list"], None),
        (["--root"], None),
        ([], None),
    ]
    for args, want in cases:
        began.clear()
        startup.begin_scan(args)
        assert began == ([want] if want else []), args
    monkeypatch.setenv("PCIPASS_ROOT", str(root))
    began.clear()
    startup.begin_scan(["list"])
    assert began == [str(root)]
    assert isinstance(startup.take_reading(), Begun) and startup.take_reading() is None

    # Only a head start: whatever goes wrong beginning it, the command runs as without it.
    def broken(host, ids, **kwargs):
        raise PermissionError(13, "Permission denied", str(host.root))

    monkeypatch.setattr(inventory, "Reading", broken)
    startup.begin_scan(["list"])
    assert startup.take_reading() is None


def test_pcipass_list_takes_over_the_early_scan(server, tmp_path, capsys):
    """Through the process's own entry point (main() without arguments): ``list`` and ``groups`` fork once,
    early, and print what an in-process run prints; another command cancels what was begun for it."""
    root, _m = server
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, sys, atexit\n"
        "import pcipass.inventory.scan as scan, pcipass.inventory.parallel as parallel\n"
        "scan.PARALLEL_MIN = 2\n"
        "parallel.threading.active_count = lambda: 1\n"
        "forks, real_fork = [], os.fork\n"
        "def fork():\n"
        "    pid = real_fork()\n"
        "    if pid:\n"
        "        forks.append(pid)\n"
        "    return pid\n"
        "os.fork = fork\n"
        "atexit.register(lambda: sys.stderr.write(f'FORKS {forks}\\n'))\n"
        "sys.argv = ['pcipass', *sys.argv[1:]]\n"
        "from pcipass.cli import main\n"
        "main()\n"
    )

    def forks(run) -> list[int]:
        return json.loads(run.stderr.rpartition("FORKS ")[2])

    for command in ("list", "groups"):
        args = ["--root", str(root), command, "--format", "json"]
        run = subprocess.run([sys.executable, str(probe), *args], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert len(forks(run)) == 1
        assert json.loads(run.stdout) == json.loads(cli_run(capsys, *args).out)
    # Begun, then a usage error: the child is ended at exit, not left running.
    run = subprocess.run(
        [sys.executable, str(probe), "--root", str(root), "list", "--no-such-option"], capture_output=True, text=True
    )
    assert run.returncode == 2 and len(forks(run)) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(forks(run)[0], 0)


def test_targeted_scan_reads_the_devices_and_their_groups(server):
    """``scan(only=...)``, the binding engine's view: the devices asked for plus every member of their IOMMU
    groups, each exactly as a full scan reads it; nothing else."""
    root, m = server
    full = Inventory.scan(Host(root))
    fns = _all(m)
    # A GPU behind a switch without ACS (a 12-member group) and an NVMe drive with a group of its own.
    shared = Counter(f.group for f in fns if f.device == 0x8747 and f.port_type == gen_tree.PT_DOWNSTREAM)
    gpu = next(f for f in fns if f.device == 0x2204 and f.group == shared.most_common(1)[0][0])
    nvme = next(f for f in fns if f.device == 0xA808)
    part = Inventory.scan(Host(root), only=[gpu.address.upper()[5:], nvme.address, "zz:00.0", "0000:ff:1f.7"])
    expected = {a for a, d in full.devices.items() if d.iommu_group in (gpu.group, nvme.group)}
    assert set(part.devices) == expected and len(expected) == 12 + 1
    assert all(part.devices[a] == full.devices[a] for a in expected)
    assert part.partial and not full.partial
    assert set(part.groups) == {gpu.group, nvme.group}
    assert part.groups[gpu.group] == full.groups[gpu.group]
    assert part.peers(nvme.address) == [] and len(part.peers(gpu.address)) == 11
    # A PF brings its VFs (each in a group of its own here), as the binding guards need them.
    pf = next(f for f in fns if f.sriov and len(f.vfs) > 3)
    part = Inventory.scan(Host(root), only=[pf.address])
    expected = {a for a, d in full.devices.items() if d.iommu_group in {pf.group, *(v.group for v in pf.vfs)}}
    assert set(part.devices) == expected and {v.address for v in pf.vfs} < expected


def test_list_leaves_out_the_details_show_has(server):
    """``list`` skips the per-device details (five more reads each); ``summary`` is ``jsonable`` without them."""
    from pcipass.cli.inventory_cmds import DETAIL_FIELDS, summary

    root, _m = server
    lean, full = Inventory.scan(Host(root), detail=False), Inventory.scan(Host(root))
    for addr, dev in full.devices.items():
        expected = jsonable(dev)
        for key in DETAIL_FIELDS:
            del expected[key]
        assert summary(lean.devices[addr]) == expected == summary(dev)
        assert lean.devices[addr].link is None and lean.devices[addr].reset_method is None
    assert any(d.link and d.link.current_link_speed for d in full.devices.values())
    assert any(d.reset_method for d in full.devices.values())


def test_lazy_records_write_what_converted_data_writes(server, capsys, monkeypatch):
    """``list`` hands its devices over as Records, converted one by one while the JSON is written in pieces;
    the text is the same as from data converted beforehand, and YAML/tables get plain data from jsonable."""
    import pcipass.cli.render as render
    from pcipass.cli.inventory_cmds import summary
    from pcipass.result import Records

    root, _m = server
    devices = list(Inventory.scan(Host(root), detail=False).devices.values())
    lazy = Result("list", data=Records(devices, summary))
    eager = Result("list", data=[summary(d) for d in devices])
    expected = dump_json(eager.envelope())
    assert dump_json(lazy.envelope(lazy=True)) == expected
    assert lazy.envelope() == eager.envelope() and jsonable(lazy.data) == eager.data
    assert lazy.envelope(lazy=True)["data"] is lazy.data
    monkeypatch.setattr(render, "_FLUSH_PIECES", 10)
    writes = []
    real_write = sys.stdout.write
    monkeypatch.setattr(sys.stdout, "write", lambda text: writes.append(text) or real_write(text))
    render.write_json(lazy.envelope(lazy=True))
    assert capsys.readouterr().out == expected and len(writes) > len(devices) // 10


def test_build_frozen_builds_what_init_builds(server):
    from pcipass.model import PciDevice, build_frozen

    root, _m = server
    for dev in list(Inventory.scan(Host(root)).devices.values())[:50]:
        fields = {f: getattr(dev, f) for f in PciDevice.__dataclass_fields__}
        made = PciDevice(**fields)
        assert made == dev and hash(made) == hash(dev) and repr(made) == repr(dev)
        assert build_frozen(PciDevice, dict(fields)) == made
        with pytest.raises(AttributeError):
            dev.driver = "x"


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
