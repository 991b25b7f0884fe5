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


def test_header_index_edges(tmp_path):
    """The top-level index (pciids._TOP_LINE): blocks end at the next top-level line only (comments and blank
    lines inside a block don't end it), an id is a whole field, the first of two equal headers wins, class
    headers may come anywhere, and the last block may end without a newline."""
    path = tmp_path / "pci.ids"
    path.write_bytes(b"# comment\n1234  Acme\n\t5678  Widget\n# inside\n\n\t9abc  Gadget\n\t\t1234 0001  Sub\n"
                     b"12345  Not a vendor id\nC 03  Display controller\n\t00  VGA compatible controller\n"
                     b"\t\t00  VGA controller\n1234  Second Acme\n\tdef0  Later\nbeef\nabcd  Last\n\t0001  End")
    ids = PciIds.load(path)
    assert ids.vendor_name("1234") == "Acme" and ids.device_name("1234", "9abc") == "Gadget"
    assert ids.subsystem_name("1234", "9abc", "1234", "0001") == "Sub"
    assert ids.device_name("1234", "def0") is None  # in the second block, which the first one shadows
    assert ids.vendor_name("12345") == "Not a vendor id" and ids.device_name("12345", "5678") is None
    assert ids.class_names("030000") == ("Display controller", "VGA compatible controller", "VGA controller")
    assert ids.vendor_name("beef") is None  # an id without a name is no header
    assert ids.vendor_name("abcd") == "Last" and ids.device_name("abcd", "0001") == "End"
