import gzip
from pathlib import Path

from pcipass.host import Host
from pcipass.pciids import PciIds

FIXTURE = Path(__file__).parent / "data" / "pci-ids" / "node_exporter-fixture.pci.ids"


def test_fixture_lookups():
    ids = PciIds.load(FIXTURE)
    assert ids.available
    text = FIXTURE.read_text()
    # Pick the first vendor and device of the fixture to avoid hard-coding its contents twice.
    vendor_line = next(line for line in text.splitlines() if line[:4].isalnum() and not line.startswith(("#", "C ")))
    vid, vname = vendor_line[:4], vendor_line[4:].strip()
    assert ids.vendor_name(vid) == vname
    assert ids.vendor_name(vid.upper()) == vname


def test_pinned_real_file(tmp_path_factory):
    from tests.conftest import pinned_pci_ids

    ids = PciIds.load(pinned_pci_ids(tmp_path_factory))
    assert ids.vendor_name("10de") == "NVIDIA Corporation"
    assert ids.device_name("10de", "25b6") == "GA107GL [A2 / A16]"
    assert ids.device_name("8086", "10d3") == "82574L Gigabit Network Connection"
    assert ids.subsystem_name("8086", "10d3", "8086", "a01f") == "Gigabit CT Desktop Adapter"
    assert ids.class_names("030000") == ("Display controller", "VGA compatible controller", "VGA controller")
    assert ids.class_names("010802") == ("Mass storage controller", "Non-Volatile memory controller", "NVM Express")
    assert ids.class_names("ff0000")[0] == "Unassigned class"
    # Unknown ids are None, never invented.
    assert ids.vendor_name("0002") is None
    assert ids.device_name("10de", "ffff") is None
    # A vendor id must match the whole field: "10de" must not match a line starting "10de0".
    assert ids.vendor_name("10d") is None


def test_gzip_and_missing(tmp_path):
    gz = tmp_path / "pci.ids.gz"
    gz.write_bytes(gzip.compress(b"1234  Acme Corp\n\t5678  Widget\n"))
    ids = PciIds.load(gz)
    assert ids.vendor_name("1234") == "Acme Corp" and ids.device_name("1234", "5678") == "Widget"
    none = PciIds.load(None)
    assert not none.available and none.vendor_name("1234") is None and none.class_names("030000") == (None,) * 3
    assert not PciIds.load(tmp_path / "absent").available


def test_lookup_order(tmp_path, monkeypatch):
    """Under the root first (a snapshot may carry its own), then $PCIPASS_PCI_IDS, then the system."""
    root = tmp_path / "root"
    (root / "usr/share/misc").mkdir(parents=True)
    env = tmp_path / "env.ids"
    env.write_text("1234  From env\n")
    monkeypatch.setenv("PCIPASS_PCI_IDS", str(env))
    assert Host(root).find_pci_ids() == env
    (root / "usr/share/misc/pci.ids").write_text("1234  From root\n")
    assert Host(root).find_pci_ids() == root / "usr/share/misc/pci.ids"


def test_header_edges(tmp_path):
    """Blocks end at the next top-level line only (comments and blank lines inside a block don't end it), an id
    is a whole field, an unsorted file still gives every name (class headers first, a vendor after the
    classes, ids out of order), and the first line and the last block (without a newline) count."""
    path = tmp_path / "pci.ids"
    path.write_bytes(
        b"fff0  First line\n\t0001  One\n# comment\n1234  Acme\n\t5678  Widget\n# inside\n\n"
        b"\t9abc  Gadget\n\t\t1234 0001  Sub\n\t0010  Out of order\n"
        b"12345  Not a vendor id\nC 03  Display controller\n\t00  VGA compatible controller\n"
        b"\t\t00  VGA controller\n0abc  After the classes\n\tdef0  Later\nbeef\nabcd  Last\n\t0001  End"
    )
    ids = PciIds.load(path)
    assert ids.vendor_name("fff0") == "First line" and ids.device_name("fff0", "0001") == "One"
    assert ids.vendor_name("1234") == "Acme" and ids.device_name("1234", "9abc") == "Gadget"
    assert ids.device_name("1234", "0010") == "Out of order"
    assert ids.subsystem_name("1234", "9abc", "1234", "0001") == "Sub"
    assert ids.device_name("1234", "def0") is None  # in another block
    assert ids.vendor_name("0abc") == "After the classes" and ids.device_name("0abc", "def0") == "Later"
    assert ids.vendor_name("12345") == "Not a vendor id" and ids.device_name("12345", "5678") is None
    assert ids.class_names("030000") == ("Display controller", "VGA compatible controller", "VGA controller")
    assert ids.vendor_name("beef") is None  # an id without a name is no header
    assert ids.vendor_name("abcd") == "Last" and ids.device_name("abcd", "0001") == "End"
    assert ids.vendor_name("0000") is None and ids.vendor_name("ffff") is None


def _reference(text: str) -> tuple[dict, dict, dict]:
    """pci.ids read line by line, the obvious way: vendor -> name, (vendor, device) -> name, and
    (vendor, device, "ssss ssss") -> name (the first of duplicates)."""
    vendors: dict[str, str] = {}
    devices: dict[tuple[str, str], str] = {}
    subsystems: dict[tuple[str, str, str], str] = {}
    vendor = device = None
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        if line.startswith("C "):
            vendor = device = None
        elif not line.startswith("\t"):
            vendor, _, name = line.partition("  ")
            vendors.setdefault(vendor, name.strip())
            device = None
        elif vendor is None:
            continue
        elif line.startswith("\t\t"):
            if device is not None:
                sub, _, name = line[2:].partition("  ")
                subsystems.setdefault((vendor, device, sub), name.strip())
        else:
            device, _, name = line[1:].partition("  ")
            devices.setdefault((vendor, device), name.strip())
    return vendors, devices, subsystems


def test_lookups_agree_with_a_whole_parse(tmp_path_factory, monkeypatch):
    """The binary searches (pciids._header_after, _bisect_device) on the pinned real pci.ids give what a plain
    line-by-line parse gives, without the plain searches kept for unsorted files and absent ids: every vendor,
    every device of the largest blocks and a sample of the rest, their subsystems. Absent ids (next to real
    ones) are None."""
    import random

    from tests.conftest import pinned_pci_ids

    path = pinned_pci_ids(tmp_path_factory)
    vendors, devices, subsystems = _reference(path.read_text(encoding="utf-8", errors="replace"))
    ids = PciIds.load(path)

    def no_plain_search(self, *args):
        raise AssertionError(f"plain search for {args[0]!r} in a sorted file")

    monkeypatch.setattr(PciIds, "_search_header", no_plain_search)
    monkeypatch.setattr(PciIds, "_search_device", no_plain_search)
    for vendor, name in vendors.items():
        assert ids.vendor_name(vendor) == name, vendor
    rng = random.Random(7)
    big = {"8086", "10de", "1002", "14e4", "15b3"}
    keys = [k for k in devices if k[0] in big] + rng.sample(sorted(devices), 3000)
    for vendor, device in keys:
        assert ids.device_name(vendor, device) == devices[vendor, device], (vendor, device)
    for vendor, device, sub in rng.sample(sorted(subsystems), 2000):
        sv, sd = sub.split()
        assert ids.subsystem_name(vendor, device, sv, sd) == subsystems[vendor, device, sub]
    monkeypatch.undo()
    absent = [f"{int(v, 16) + 1:04x}" for v in vendors if f"{int(v, 16) + 1:04x}" not in vendors][:300]
    assert absent and all(ids.vendor_name(v) is None for v in [*absent, "0000"])
    for vendor in big:
        known = sorted(d for v, d in devices if v == vendor)
        gaps = [f"{int(d, 16) + 1:04x}" for d in known if f"{int(d, 16) + 1:04x}" not in known][:50]
        assert all(ids.device_name(vendor, d) is None for d in gaps)


def test_header_after_memo(tmp_path_factory):
    """pciids._header_after remembers what it scanned; whatever the order of the questions, each answer is the
    first top-level line at or after the position, as a search through the file finds it. Positions next to
    where earlier scans started are asked on purpose: a newline just before one is the edge case."""
    import random

    from pcipass.pciids import _TOP_LINE
    from tests.conftest import pinned_pci_ids

    ids = PciIds.load(pinned_pci_ids(tmp_path_factory))
    data = ids._data
    for vendor in ("8086", "10de", "1000", "105e"):
        ids.vendor_name(vendor)
    rng = random.Random(3)
    for _ in range(20000):
        starts = ids._scan_from
        pos = rng.randrange(len(data)) if rng.random() < 0.5 else max(0, rng.choice(starts) - rng.randrange(3))
        m = _TOP_LINE.search(data, pos)
        assert ids._header_after(pos) == ((m.start(), m.group(1)) if m else (len(data), None)), pos
