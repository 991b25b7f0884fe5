"""emit against the real kernel: libvirt XML follows the device's real binding and real addresses.

Before ``enable``, ``emit libvirt --managed auto`` says ``managed="yes"`` (libvirt would have to move the
device); once pcipass has bound it to vfio-pci, ``managed="no"``. The source address is the device's own,
the XML is valid for libvirt 9.0 and 11.3, and a real multifunction slot keeps its functions on one guest
slot. Only the e1000e free endpoint is rebound (and always given back); the rest is read-only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.guest.kernel import driver as _driver

TOPOLOGY = "iommu_on"


def _hostdevs(text: str) -> list[ET.Element]:
    root = ET.fromstring(text)
    return list(root) if root.tag == "devices" else [root]


def _source(el: ET.Element) -> str:
    a = el.find("source/address")
    return "{:04x}:{:02x}:{:02x}.{:x}".format(*(int(a.get(k), 16) for k in ("domain", "bus", "slot", "function")))


def _assert_valid(xml_text: str) -> None:
    from tests.support.emit_schemas import LIBVIRT_VERSIONS, libvirt_errors, wrap_in_domain

    for version in LIBVIRT_VERSIONS:
        assert libvirt_errors(wrap_in_domain(xml_text), version) == ""


def _emit_in_process(capsys, *args: str) -> str:
    from tests.support.cli import run

    r = run(capsys, "emit", "libvirt", *args)
    assert r.code == 0, r.err
    return r.out


@pytest.fixture
def e1000e(addr, protected):
    """The e1000e endpoint on its boot driver; given back to it whatever the test did."""
    from pcipass.engine import disable
    from pcipass.host import Host

    a = addr["e1000e"]
    assert a not in protected and _driver(a) == "e1000e"
    yield a
    if _driver(a) != "e1000e":
        disable(Host("/"), [a])
    assert _driver(a) == "e1000e"


def test_managed_follows_the_real_binding(capsys, run_cli, e1000e):
    """Before in-process (the same entry point, no interpreter start: ~1 s each under TCG), after through a
    real ``python -m pcipass`` process."""
    from pcipass.engine import enable
    from pcipass.host import Host

    before = _emit_in_process(capsys, e1000e, "--managed", "auto")
    (el,) = _hostdevs(before)
    assert el.get("managed") == "yes" and _source(el) == e1000e
    _assert_valid(before)

    report = enable(Host("/"), [e1000e])
    assert report.exit_code == 0, report.data
    assert _driver(e1000e) == "vfio-pci"

    after = run_cli("emit", "libvirt", e1000e, "--managed", "auto", check=True).stdout
    (el,) = _hostdevs(after)
    assert el.get("managed") == "no" and _source(el) == e1000e
    _assert_valid(after)


def test_kubevirt_sees_the_vfio_binding(e1000e):
    """In-process (a CLI start costs ~1 s under TCG): no 'not on vfio-pci' warning once enabled."""
    from pcipass.emit import devices, kubevirt
    from pcipass.engine import enable
    from pcipass.host import Host
    from pcipass.inventory import Inventory

    def warnings() -> tuple[str, ...]:
        targets = devices.select(Inventory.scan(Host("/")), [e1000e])
        p = kubevirt.plan(targets)
        assert [x.selector for x in p.permits] == ["8086:10D3"]
        return p.warnings

    assert any("is on e1000e" in w for w in warnings())
    assert enable(Host("/"), [e1000e]).exit_code == 0
    assert not any(" is on " in w for w in warnings())


def test_a_real_multifunction_slot_stays_on_one_guest_slot(addr):
    from pcipass.emit import devices
    from pcipass.emit import libvirt as lv
    from pcipass.host import Host
    from pcipass.inventory import Inventory

    first, second = addr["mf_virtio_net"], addr["mf_e1000"]
    items = lv.hostdevs(devices.select(Inventory.scan(Host("/")), [first], group=True))
    text = lv.to_xml(lv.document(items))
    els = _hostdevs(text)
    assert [_source(e) for e in els] == [first, second]
    guest = [e.find("address") for e in els]
    assert {g.get("slot") for g in guest} == {"0x10"}
    assert [g.get("function") for g in guest] == ["0x0", "0x1"]
    assert [g.get("multifunction") for g in guest] == ["on", None]
    assert {e.get("managed") for e in els} == {"yes"}  # virtio-pci and e1000: libvirt would move them
    _assert_valid(text)
