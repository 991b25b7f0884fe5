import pytest

from pcipass.address import PciAddress
from pcipass.errors import ExitCode, UsageError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0000:3b:00.0", "0000:3b:00.0"),
        ("3b:00.0", "0000:3b:00.0"),
        ("0000:3B:1F.7", "0000:3b:1f.7"),
        ("10000:e0:00.0", "10000:e0:00.0"),  # Intel VMD domain
        ("  0001:00:02.1 ", "0001:00:02.1"),
    ],
)
def test_canonical(text, expected):
    assert str(PciAddress.parse(text)) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "3b:00",
        "zz:00.0",
        "../../etc",
        "",
        "0000:3b:00.8",
        "0000:3b:20.0",
        "0000:3b:00.0\n/etc",
        "123456789:00:00.0",
        "0000:3b:00.0.0",
    ],
)
def test_rejects(bad):
    with pytest.raises(UsageError) as exc:
        PciAddress.parse(bad)
    assert repr(bad) in exc.value.message
    assert exc.value.exit_code is ExitCode.USAGE


def test_order_and_slot():
    a, b = PciAddress.parse("0000:00:1f.0"), PciAddress.parse("0000:01:00.0")
    assert a < b
    assert b.slot_id == "0000:01:00"
