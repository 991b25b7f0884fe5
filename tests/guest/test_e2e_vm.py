"""End to end: a real VM receives the device (issue #7), inside the real-kernel guest.

The guest's emulated intel-iommu has ``caching-mode=on``, which is what nested VFIO needs, so a nested QEMU
(TCG) and a real libvirtd in the guest take vfio-bound devices for real. pcipass runs through its real CLI
code, in-process (``tests/support/cli.py``: a Python start-up costs seconds under TCG). Evidence is always the
consumer's own view: QEMU's PCI list (QMP ``query-pci``), libvirt's live domain XML, the host driver links.

1. ``pcipass enable`` an endpoint -> a nested QEMU with ``-device vfio-pci,host=ADDR`` lists its
   vendor:device -> quit -> ``pcipass disable`` -> the host driver (and its interface) is back.
2. ``enable --group`` of the multifunction slot -> ``emit libvirt --group`` -> that text, unmodified, is the
   ``<devices>`` of a domain that a real libvirtd defines and starts (paused) -> live XML and QEMU show both
   functions on one guest slot; pcipass sees the VM holding the group and will not pull it away.
3. ``pcipass attach DOMAIN ADDR --live`` / ``detach --live`` on a running domain with spare root ports ->
   the device enters and leaves QEMU's PCI list; libvirt (``managed='yes'``) moves the binding itself, and
   ``pcipass status`` reports that state (vfio-pci, not recorded by pcipass, group open by the VM).
4. One function of a shared group on vfio-pci, its peer left on its host driver (raw writes: pcipass's own
   guard would refuse) -> ``pcipass status`` says "not viable" -> the nested QEMU refuses: "group N is not
   viable", the same N.
5. ``pcipass attach --group --live`` of a two-function card on a running domain is refused (nothing attached,
   nothing rebound); ``--config`` puts both functions on one guest slot, the addresses ``emit libvirt`` gives,
   and the domain started from that definition has them there (libvirt managing the binding).

Every test gives every device back to its boot driver (finally blocks; ``restore`` checks all devices
after each test) and destroys its nested VMs; libvirtd is started for this module only and stopped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from contextlib import suppress
from pathlib import Path

import libvirt
import pytest

from tests.guest.kernel import SYS_PCI, put_back
from tests.guest.kernel import binding as _binding
from tests.guest.kernel import driver as _driver
from tests.guest.kernel import raw_write as _raw_write
from tests.support.cli import run
from tests.support.cli import run as _pcipass

from .nested import (
    URI,
    Libvirtd,
    bridges_numbered,
    domain_log,
    monitor_pci,
    nested_qemu,
    pci_functions,
    run_refused,
    wait_for,
)

TOPOLOGY = "iommu_on"


def _ids(a: str) -> str:
    """vendor:device as the kernel reads it from the device ("8086:10d3")."""
    return ":".join((SYS_PCI / a / f).read_text().strip()[2:] for f in ("vendor", "device"))


def _host():
    from pcipass.host import Host

    return Host("/")


def _held_by_the_domain(name: str, detail: str | None) -> None:
    """``status``'s detail names the domain's own QEMU (its command line says ``-name guest=NAME``)."""
    m = re.fullmatch(r"open by qemu-system-x86 \(pid (\d+)\)", detail or "")
    assert m, detail
    assert f"guest={name}," in Path(f"/proc/{m[1]}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _status(capsys, *addresses: str) -> list[dict]:
    r = run(capsys, "-f", "json", "status", *addresses)
    assert r.code == 0, r.out + r.err
    return json.loads(r.out)["data"]


@pytest.fixture(scope="module")
def boot() -> dict[str, tuple[str | None, str | None]]:
    return {a: _binding(a) for a in sorted(os.listdir(SYS_PCI))}


def _give_back(boot: dict, addresses: list[str]) -> None:
    """Return ``addresses`` to their boot driver: pcipass first, raw sysfs writes if it could not, and drop
    any record pcipass still holds for them."""
    from pcipass import engine
    from pcipass.engine.state import StateStore

    off = [a for a in addresses if _binding(a) != boot[a]]
    if off:
        with suppress(Exception):
            engine.disable(_host(), off)
    for a in addresses:
        if _binding(a) != boot[a]:
            put_back(a, *boot[a])
    store = StateStore(_host())
    records = store.load()
    if any(a in records for a in addresses):
        store.save({a: r for a, r in records.items() if a not in addresses})


@pytest.fixture(autouse=True)
def restore(boot, protected):
    """After each test: every device on its boot driver with its boot override (checked, not repaired:
    the tests' own finally blocks do that)."""
    yield
    now = {a: _binding(a) for a in boot}
    assert all(now[a] == boot[a] for a in protected), "a PROTECTED device was touched"
    assert {a: b for a, b in now.items() if b != boot[a]} == {}, "a device was left off its boot driver"


@pytest.fixture(scope="module")
def libvirt_conn():
    """A real libvirtd in the guest for this module's domains; stopped (domains destroyed) at the end."""
    daemon = Libvirtd()
    conn = None
    try:
        conn = daemon.start()
        yield conn
    finally:
        daemon.stop(conn)


def _start(conn, xml: str, flags: int):
    dom = conn.defineXML(xml)
    try:
        dom.createWithFlags(flags)
    except libvirt.libvirtError as exc:
        raise AssertionError(f"{exc}\n{domain_log(dom.name())}") from exc
    return dom


def _drop(dom) -> None:
    if dom is None:
        return
    with suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    with suppress(libvirt.libvirtError):
        dom.undefine()


def _live_hostdevs(dom) -> dict[str, dict]:
    """Source address -> managed, alias and guest address, from the running domain's live XML."""
    out = {}
    for el in ET.fromstring(dom.XMLDesc(0)).iterfind("devices/hostdev"):
        src = el.find("source/address")
        guest = el.find("address")
        key = "{:04x}:{:02x}:{:02x}.{:x}".format(*(int(src.get(k), 16) for k in ("domain", "bus", "slot", "function")))
        out[key] = {
            "managed": el.get("managed"),
            "alias": el.find("alias").get("name"),
            "guest": tuple(int(guest.get(k), 16) for k in ("bus", "slot", "function")),
            "multifunction": guest.get("multifunction"),
        }
    return out


# --- 1. enable -> a nested VM lists the device -> disable -> the host driver is back ---------------------------
def test_enabled_endpoint_is_assigned_to_a_nested_vm_then_given_back(addr, capsys, boot):
    a = addr["e1000e"]
    assert _driver(a) == "e1000e"
    try:
        r = _pcipass(capsys, "enable", a)
        assert r.code == 0, r.out + r.err
        assert _binding(a) == ("vfio-pci", "vfio-pci")
        (st,) = _status(capsys, a)
        assert st["vfio_viable"] is True, st  # status's prediction: QEMU can take the group
        with nested_qemu(f"vfio-pci,host={a},id=pt0", name="e2e-single") as vm:
            seen = {f.qdev_id: f for f in vm.pci()}
            assert "pt0" in seen, f"the device is not in the nested VM's PCI list: {vm.pci()}\n{vm.stderr()}"
            assert seen["pt0"].ids == _ids(a) == "8086:10d3"
            assert vm.quit() == 0, vm.stderr()
        r = _pcipass(capsys, "disable", a)
        assert r.code == 0, r.out + r.err
        assert _binding(a) == boot[a] == ("e1000e", None)
        assert os.listdir(SYS_PCI / a / "net"), "e1000e is bound but has not created its interface again"
    finally:
        _give_back(boot, [a])


# --- 4. a group left half on its host driver: status says not viable, QEMU refuses ----------------------------
def test_non_viable_group_is_refused_by_qemu_as_status_predicted(addr, capsys, boot):
    fn0, fn1 = addr["mf_virtio_net"], addr["mf_e1000"]
    assert (_driver(fn0), _driver(fn1)) == ("virtio-pci", "e1000")
    try:
        # Only .1 goes to vfio-pci, by raw writes (pcipass enable refuses this without --group).
        subprocess.run(["modprobe", "vfio-pci"], check=True, capture_output=True, timeout=60)
        _raw_write(SYS_PCI / fn1 / "driver_override", "vfio-pci")
        _raw_write(SYS_PCI / fn1 / "driver" / "unbind", fn1)
        _raw_write(Path("/sys/bus/pci/drivers_probe"), fn1)
        assert (_driver(fn0), _driver(fn1)) == ("virtio-pci", "vfio-pci")

        st = {d["address"]: d for d in _status(capsys, "--probe", fn0, fn1)}
        assert st[fn1]["vfio_viable"] is False, st[fn1]  # the kernel's answer, asked by status --probe
        assert st[fn1]["viable_from"] == "kernel", st[fn1]
        passive = {d["address"]: d for d in _status(capsys, fn0, fn1)}
        assert (passive[fn1]["vfio_viable"], passive[fn1]["viable_from"]) == (False, "sysfs")  # the same verdict
        assert st[fn1]["group_verdict"] == st[fn0]["group_verdict"] == "bindable"
        assert st[fn0]["group"] == st[fn1]["group"]
        table = _pcipass(capsys, "status", fn1)
        assert "NOT viable" in table.out, table.out

        refused = run_refused(f"vfio-pci,host={fn1}", name="e2e-not-viable")
        assert refused.returncode not in (0, None)
        assert f"group {st[fn1]['group']} is not viable" in refused.stderr, refused.stderr
    finally:
        _give_back(boot, [fn0, fn1])


# --- 2. the GPU-like case: a two-function group, emitted XML unmodified into a libvirt domain ------------------
GROUP_DOMAIN_HEAD = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
"""
GROUP_DOMAIN_TAIL = "</domain>\n"


def _card_on_one_slot(dom, fn0: str, fn1: str, *, managed: str) -> None:
    """The running domain has the card's two functions on guest slot 0x10 of bus 0 (function 0 multifunction),
    in its live XML and in QEMU's PCI list."""
    live = _live_hostdevs(dom)
    assert {a: (h["managed"], h["guest"], h["multifunction"]) for a, h in live.items()} == {
        fn0: (managed, (0, 0x10, 0), "on"),
        fn1: (managed, (0, 0x10, 1), None),
    }
    in_qemu = {f.qdev_id: f for f in pci_functions(monitor_pci(dom))}
    for a, h in live.items():
        f = in_qemu.get(h["alias"])
        assert f is not None, f"{a} ({h['alias']}) missing from QEMU's PCI list: {sorted(in_qemu)}"
        assert ((f.bus, f.slot, f.function), f.behind, f.ids) == (h["guest"], "", _ids(a)), f


def test_group_emitted_for_libvirt_runs_in_a_real_domain(addr, capsys, boot, libvirt_conn):
    fn0, fn1 = addr["mf_virtio_net"], addr["mf_e1000"]
    name = "pcipass-e2e-group"
    dom = None
    try:
        r = _pcipass(capsys, "enable", "--group", fn0)
        assert r.code == 0, r.out + r.err
        assert (_driver(fn0), _driver(fn1)) == ("vfio-pci", "vfio-pci")
        r = _pcipass(capsys, "emit", "libvirt", "--group", fn0)
        assert r.code == 0, r.out + r.err
        emitted = r.out
        assert emitted.startswith("<devices>"), emitted  # two hostdevs: the domain's whole <devices>, verbatim
        xml = GROUP_DOMAIN_HEAD.format(name=name) + emitted + GROUP_DOMAIN_TAIL
        dom = _start(libvirt_conn, xml, libvirt.VIR_DOMAIN_START_PAUSED)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED

        _card_on_one_slot(dom, fn0, fn1, managed="no")

        # pcipass sees the VM holding the group and does not pull the devices from under it.
        st = _status(capsys, fn0, fn1)
        held = st[0]["vfio_detail"]
        assert [(d["phase"], d["vfio_viable"], d["vfio_detail"]) for d in st] == [("enabled", None, held)] * 2
        _held_by_the_domain(name, held)
        r = _pcipass(capsys, "disable", fn0, fn1)
        assert r.code == 5 and f"is {held}: unbinding would block" in r.err, r.out + r.err
        assert (_driver(fn0), _driver(fn1)) == ("vfio-pci", "vfio-pci")

        dom.destroy()
        r = _pcipass(capsys, "disable", fn0, fn1)
        assert r.code == 0, r.out + r.err
        assert (_binding(fn0), _binding(fn1)) == (boot[fn0], boot[fn1])
    finally:
        _drop(dom)
        _give_back(boot, [fn0, fn1])


# --- 3. attach --live / detach --live on a running domain, libvirt managing the binding -----------------------
# Two spare root ports to hot-plug into. ACPI PCI hot-plug (QEMU's q35 default) needs a guest OS to finish an
# unplug; with it off the ports use native PCIe hot-plug, whose empty slots are powered off until a guest
# OS powers them on, and QEMU completes an unplug from a powered-off slot at once. No OS runs here: the
# domain runs only so that its firmware numbers the root ports' buses (QEMU lists what sits behind a bridge
# only then), then waits with no boot device.
HOTPLUG_DOMAIN = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-global'/>
    <qemu:arg value='ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off'/>
  </qemu:commandline>
</domain>
"""


def test_live_attach_and_detach_with_libvirt_managing_the_binding(addr, capsys, boot, libvirt_conn):
    a = addr["e1000e"]
    name = "pcipass-e2e-hotplug"
    dom = None
    assert _binding(a) == ("e1000e", None)
    try:
        dom = _start(libvirt_conn, HOTPLUG_DOMAIN.format(name=name), 0)
        wait_for(lambda: bridges_numbered(monitor_pci(dom)), 60, "the firmware to number the root ports' buses")

        r = _pcipass(capsys, "attach", name, a, "--live", "--connect", URI)
        assert r.code == 0, r.out + r.err
        live = _live_hostdevs(dom)
        # --managed auto on a device still on its host driver: managed='yes', libvirt moves the binding.
        assert list(live) == [a] and live[a]["managed"] == "yes", live
        in_qemu = {f.qdev_id: f for f in pci_functions(monitor_pci(dom))}
        f = in_qemu.get(live[a]["alias"])
        assert f is not None, f"{a} missing from QEMU's PCI list: {sorted(in_qemu)}"
        bus, slot, function = live[a]["guest"]
        # behind the spare root port libvirt chose (libvirt names the port of guest bus N "pci.N")
        assert (f.behind, f.slot, f.function, f.ids) == (f"pci.{bus}", slot, function, _ids(a)), f
        assert _binding(a) == ("vfio-pci", "vfio-pci")  # done by libvirt, not by pcipass

        (st,) = _status(capsys, a)
        assert (st["driver"], st["driver_override"], st["recorded_known"], st["phase"]) == (
            "vfio-pci",
            "vfio-pci",
            None,
            None,
        ), st  # on vfio, and pcipass did not do it
        assert st["vfio_viable"] is None, st
        _held_by_the_domain(name, st["vfio_detail"])
        assert a in [d["address"] for d in _status(capsys)]  # listed by a plain 'pcipass status'

        r = _pcipass(capsys, "detach", name, a, "--live", "--connect", URI)
        assert r.code == 0, r.out + r.err
        assert _live_hostdevs(dom) == {}
        assert live[a]["alias"] not in {f.qdev_id for f in pci_functions(monitor_pci(dom))}
        assert _binding(a) == boot[a]  # libvirt gave it back to e1000e and cleared the override
        (st,) = _status(capsys, a)
        assert (st["driver"], st["driver_override"], st["phase"], st["vfio_viable"]) == ("e1000e", None, None, None)
        assert a not in [d["address"] for d in _status(capsys)]
    finally:
        _drop(dom)
        _give_back(boot, [a])


# --- 5. attach keeps a card's functions together: --live refused, --config on one guest slot --------------------
def _guests(root: ET.Element) -> dict[str, tuple]:
    """Source address -> guest (bus, slot, function, multifunction) of each hostdev under ``root``."""
    out = {}
    for el in root.iterfind(".//hostdev"):
        src, guest = el.find("source/address"), el.find("address")
        key = "{:04x}:{:02x}:{:02x}.{:x}".format(*(int(src.get(k), 16) for k in ("domain", "bus", "slot", "function")))
        out[key] = (*(int(guest.get(k), 16) for k in ("bus", "slot", "function")), guest.get("multifunction"))
    return out


def test_attach_keeps_a_cards_functions_together(addr, capsys, boot, libvirt_conn):
    fn0, fn1 = addr["mf_virtio_net"], addr["mf_e1000"]
    name = "pcipass-e2e-card"
    dom = None
    try:
        dom = _start(libvirt_conn, HOTPLUG_DOMAIN.format(name=name), libvirt.VIR_DOMAIN_START_PAUSED)
        r = _pcipass(capsys, "attach", name, fn0, "--group", "--live", "--connect", URI)
        assert r.code == 5, r.out + r.err
        assert "cannot hot-plug a multifunction device" in r.err and "--config" in r.err, r.err
        assert _live_hostdevs(dom) == {}
        assert (_binding(fn0), _binding(fn1)) == (boot[fn0], boot[fn1])  # nothing half-attached or rebound

        r = _pcipass(capsys, "attach", name, fn0, "--group", "--config", "--connect", URI)
        assert r.code == 0, r.out + r.err
        placed = _guests(ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
        assert placed == {fn0: (0, 0x10, 0, "on"), fn1: (0, 0x10, 1, None)}, placed
        emitted = _pcipass(capsys, "emit", "libvirt", "--group", fn0)
        assert emitted.code == 0, emitted.err
        assert _guests(ET.fromstring(emitted.out)) == placed  # the addresses emit gives

        dom.destroy()
        try:
            dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
        except libvirt.libvirtError as exc:
            raise AssertionError(f"{exc}\n{domain_log(name)}") from exc
        _card_on_one_slot(dom, fn0, fn1, managed="yes")
        assert (_driver(fn0), _driver(fn1)) == ("vfio-pci", "vfio-pci")  # libvirt bound them (managed='yes')
    finally:
        _drop(dom)
        _give_back(boot, [fn0, fn1])
