"""vfio-pci's ids= read and matched as the kernel does (pcipass.vfioids)."""

import pytest

from pcipass.model import PciDevice
from pcipass.vfioids import PCI_ANY_ID, VfioId, claimed, parse


def _dev(vendor="10de", device="1f08", sub_vendor="1458", sub_device="37c4", class_id="030000") -> PciDevice:
    fields = dict.fromkeys(PciDevice.__dataclass_fields__)
    fields.update(
        address="0000:3b:00.0",
        vendor_id=vendor,
        device_id=device,
        subsystem_vendor_id=sub_vendor,
        subsystem_device_id=sub_device,
        class_id=class_id,
        is_bridge=False,
        functions=(),
        net=(),
        block=(),
        drm=(),
    )
    return PciDevice(**fields)


def test_parse_like_sscanf():
    assert parse("10de:1f08,10DE:10F9") == [VfioId(0x10DE, 0x1F08), VfioId(0x10DE, 0x10F9)]
    assert parse(" 0x8086:0x10d3:ffffffff:1234") == [VfioId(0x8086, 0x10D3, PCI_ANY_ID, 0x1234)]
    assert parse("10de:1f08:1458:37c4:030000:ffff00") == [VfioId(0x10DE, 0x1F08, 0x1458, 0x37C4, 0x030000, 0xFFFF00)]
    # Fewer than two fields: skipped, as vfio_pci_fill_ids does ("invalid id string"); sscanf stops at junk.
    assert parse("10de,,zz:1f08,8086:10d3x:5,") == [VfioId(0x8086, 0x10D3)]
    assert parse("") == parse(None) == []


@pytest.mark.parametrize(
    "ids, expected",
    [
        ("10de:1f08", True),
        ("10de:1f09", False),
        ("ffffffff:1f08", True),  # PCI_ANY_ID
        ("10de:1f08:1458:37c4", True),
        ("10de:1f08:1458:0000", False),
        ("10de:1f08:ffffffff:ffffffff:030000:ffff00", True),  # display controller, any prog-if
        ("10de:1f08:ffffffff:ffffffff:040300:ffff00", False),  # audio class only
        ("10de:1f08:ffffffff:ffffffff:040300:0", True),  # mask 0: any class
        ("8086:10d3,10de:1f08", True),
    ],
)
def test_match_like_pci_match_one_device(ids, expected):
    assert claimed(parse(ids), _dev()) is expected


def test_unknown_fields_match_only_wildcards():
    dev = _dev(sub_vendor=None, sub_device=None, class_id=None)
    assert claimed(parse("10de:1f08"), dev)
    assert not claimed(parse("10de:1f08:1458:37c4"), dev)
    assert not claimed(parse("10de:1f08:ffffffff:ffffffff:030000:ff0000"), dev)
