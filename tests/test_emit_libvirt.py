"""emit libvirt: valid <hostdev> XML for libvirt 9.0 and 11.3, managed mode, guest slots, groups, goldens."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from pcipass.address import PciAddress
from pcipass.emit.libvirt import FIRST_GUEST_SLOT, LAST_GUEST_SLOT, guest_addresses
from pcipass.errors import UsageError
from tests.support.cli import run
from tests.support.emit_hosts import GPU, GPU_AUDIO, GPU_PORT, LONE, NIC_A, NIC_B, NO_GROUP
from tests.support.emit_schemas import LIBVIRT_VERSIONS, SCHEMAS, libvirt_errors, wrap_in_domain
from tests.support.golden import check_golden


def _emit(capsys, root, *args):
    r = run(capsys, "--root", str(root), "emit", "libvirt", *args)
    assert r.code == 0, r.err
    return r


def _hostdevs(xml_text: str) -> list[ET.Element]:
    root = ET.fromstring(xml_text)
    return list(root) if root.tag == "devices" else [root]


def _source(el: ET.Element) -> str:
    a = el.find("source/address")
    return str(PciAddress(*(int(a.get(k), 16) for k in ("domain", "bus", "slot", "function"))))


def _guest(el: ET.Element) -> tuple[int, int, int, str | None] | None:
    a = el.find("address")
    if a is None:
        return None
    return int(a.get("bus"), 16), int(a.get("slot"), 16), int(a.get("function"), 16), a.get("multifunction")


# --- schema validity -----------------------------------------------------------------------------------------

HPE_CASES = [
    ("08:00.0",),
    ("08:00.0", "--rom-bar", "off"),
    ("01:00.0", "--group", "--rom-bar", "on"),
    ("01:00.2", "01:00.4"),
    ("08:00.0", "08:00.4", "08:01.7", "--guest-address", "none", "--managed", "no"),
    ("04:00.0", "04:00.1", "05:00.0", "--managed", "yes"),
]
FAKE_CASES = [
    (GPU,),
    (GPU, "--group"),
    (GPU, LONE, NIC_A, NIC_B, "--managed", "auto", "--rom-bar", "off"),
    (NO_GROUP, "--guest-address", "none"),
]


@pytest.mark.parametrize("version", LIBVIRT_VERSIONS)
def test_the_validator_accepts_libvirts_own_example_and_rejects_a_broken_one(version):
    from lxml import etree

    good = etree.parse(str(SCHEMAS / "examples" / "hostdev-vfio.xml")).getroot()
    bad = etree.parse(str(SCHEMAS / "examples" / "invalid-bus-0x108.authored.xml")).getroot()
    assert libvirt_errors(good, version) == ""
    assert libvirt_errors(bad, version) != ""


@pytest.mark.parametrize("version", LIBVIRT_VERSIONS)
@pytest.mark.parametrize("args", HPE_CASES, ids=" ".join)
def test_every_document_is_valid_libvirt_xml_recorded_host(capsys, hpe_a2, version, args):
    out = _emit(capsys, hpe_a2, *args).out
    assert out.endswith("\n") and not out.startswith("<?xml")
    assert libvirt_errors(wrap_in_domain(out), version) == ""


@pytest.mark.parametrize("version", LIBVIRT_VERSIONS)
@pytest.mark.parametrize("args", FAKE_CASES, ids=" ".join)
def test_every_document_is_valid_libvirt_xml_fake_host(capsys, gpu, version, args):
    out = _emit(capsys, gpu, *args).out
    assert libvirt_errors(wrap_in_domain(out), version) == ""


def test_a_broken_hostdev_is_caught_by_the_validator(capsys, gpu):
    """The wrapper really puts our element under validation: corrupt it and both schemas object."""
    out = _emit(capsys, gpu, GPU).out.replace('bus="0x3b"', 'bus="0x13b"')
    for version in LIBVIRT_VERSIONS:
        assert libvirt_errors(wrap_in_domain(out), version) != ""


# --- shape ---------------------------------------------------------------------------------------------------


def test_one_device_is_a_bare_hostdev_several_are_wrapped_in_devices(capsys, gpu):
    assert ET.fromstring(_emit(capsys, gpu, GPU).out).tag == "hostdev"
    root = ET.fromstring(_emit(capsys, gpu, GPU, LONE).out)
    assert root.tag == "devices" and [el.tag for el in root] == ["hostdev", "hostdev"]


def test_attributes_come_in_a_fixed_order(capsys, gpu):
    (el,) = _hostdevs(_emit(capsys, gpu, GPU, "--rom-bar", "on").out)
    assert list(el.attrib) == ["mode", "type", "managed"]
    assert [c.tag for c in el] == ["driver", "source", "rom", "address"]
    assert list(el.find("source/address").attrib) == ["domain", "bus", "slot", "function"]
    assert list(el.find("address").attrib) == ["type", "domain", "bus", "slot", "function"]
    assert el.find("driver").attrib == {"name": "vfio"}
    assert el.find("rom").attrib == {"bar": "on"}


def test_source_address_is_the_devices_own(capsys, hpe_a2):
    (el,) = _hostdevs(_emit(capsys, hpe_a2, "08:02.3").out)
    assert el.find("source/address").attrib == {"domain": "0x0000", "bus": "0x08", "slot": "0x02", "function": "0x3"}


def test_no_rom_element_unless_asked(capsys, gpu):
    (el,) = _hostdevs(_emit(capsys, gpu, GPU).out)
    assert el.find("rom") is None
    (el,) = _hostdevs(_emit(capsys, gpu, GPU, "--rom-bar", "off").out)
    assert el.find("rom").attrib == {"bar": "off"}


# --- managed -------------------------------------------------------------------------------------------------


def test_managed_auto_is_no_on_vfio_and_yes_on_a_host_driver(capsys, gpu):
    els = _hostdevs(_emit(capsys, gpu, GPU, GPU_AUDIO).out)
    assert {_source(e): e.get("managed") for e in els} == {GPU: "no", GPU_AUDIO: "yes"}


def test_managed_auto_on_the_recorded_host(capsys, hpe_a2):
    (el,) = _hostdevs(_emit(capsys, hpe_a2, "08:00.0").out)
    assert el.get("managed") == "yes"  # the A2 is on the nvidia driver in the recording


@pytest.mark.parametrize("mode", ["yes", "no", "YES"])
def test_managed_explicit_wins(capsys, gpu, mode):
    els = _hostdevs(_emit(capsys, gpu, GPU, GPU_AUDIO, "--managed", mode).out)
    assert {e.get("managed") for e in els} == {mode.lower()}


def test_managed_sees_vfio_variant_drivers(fake, capsys):
    fake.enable_iommu()
    fake.add_device("0000:81:00.1", vendor="15b3", device="101e", driver="mlx5_vfio_pci", group=7)
    (el,) = _hostdevs(_emit(capsys, fake.root, "81:00.1").out)
    assert el.get("managed") == "no"


# --- guest addresses -----------------------------------------------------------------------------------------


def test_a_gpu_and_its_audio_share_one_guest_slot(capsys, gpu):
    els = _hostdevs(_emit(capsys, gpu, GPU, "--group").out)
    assert {_source(e): _guest(e) for e in els} == {
        GPU: (0, FIRST_GUEST_SLOT, 0, "on"),
        GPU_AUDIO: (0, FIRST_GUEST_SLOT, 1, None),
    }


def test_each_host_slot_gets_its_own_guest_slot_in_address_order(capsys, gpu):
    els = _hostdevs(_emit(capsys, gpu, NIC_B, LONE, GPU).out)
    assert [_source(e) for e in els] == [LONE, GPU, NIC_B]
    assert [_guest(e) for e in els] == [
        (0, FIRST_GUEST_SLOT, 0, None),
        (0, FIRST_GUEST_SLOT + 1, 0, None),
        (0, FIRST_GUEST_SLOT + 2, 0, None),  # NIC_B alone: renumbered to function 0
    ]


def test_ilo_functions_keep_their_numbers_on_one_guest_slot(capsys, hpe_a2):
    els = _hostdevs(_emit(capsys, hpe_a2, "01:00.0", "--group").out)
    assert [(_source(e), _guest(e)) for e in els] == [
        ("0000:01:00.0", (0, FIRST_GUEST_SLOT, 0, "on")),
        ("0000:01:00.1", (0, FIRST_GUEST_SLOT, 1, None)),
        ("0000:01:00.2", (0, FIRST_GUEST_SLOT, 2, None)),
        ("0000:01:00.4", (0, FIRST_GUEST_SLOT, 4, None)),
    ]


def test_functions_without_function_0_are_renumbered_from_0(capsys, hpe_a2):
    els = _hostdevs(_emit(capsys, hpe_a2, "01:00.4", "01:00.2").out)
    assert [(_source(e), _guest(e)) for e in els] == [
        ("0000:01:00.2", (0, FIRST_GUEST_SLOT, 0, "on")),
        ("0000:01:00.4", (0, FIRST_GUEST_SLOT, 1, None)),
    ]


def test_guest_address_none_leaves_the_choice_to_libvirt(capsys, gpu):
    els = _hostdevs(_emit(capsys, gpu, GPU, "--group", "--guest-address", "none").out)
    assert [_guest(e) for e in els] == [None, None]


def test_guest_slots_run_out_with_a_clear_error():
    capacity = LAST_GUEST_SLOT - FIRST_GUEST_SLOT + 1
    fits = [PciAddress(0, bus, 0, 0) for bus in range(1, capacity + 1)]
    assert len({g.slot for g in guest_addresses(fits).values()}) == capacity
    with pytest.raises(UsageError, match="--guest-address none"):
        guest_addresses([*fits, PciAddress(0, 0x80, 0, 0)])


def test_guest_addresses_are_deterministic_whatever_the_argument_order(capsys, hpe_a2):
    a = _emit(capsys, hpe_a2, "08:01.0", "01:00.0", "08:00.0").out
    b = _emit(capsys, hpe_a2, "08:00.0", "08:01.0", "01:00.0", "08:00.0").out
    assert a == b


# --- groups --------------------------------------------------------------------------------------------------


def test_group_adds_the_other_endpoints_but_never_a_bridge(capsys, gpu):
    els = _hostdevs(_emit(capsys, gpu, GPU, "--group").out)
    assert [_source(e) for e in els] == [GPU, GPU_AUDIO]
    assert GPU_PORT not in {_source(e) for e in els}


def test_group_33_of_the_recorded_host_gives_the_four_ilo_functions(capsys, hpe_a2):
    els = _hostdevs(_emit(capsys, hpe_a2, "01:00.4", "--group").out)
    assert [_source(e) for e in els] == ["0000:01:00.0", "0000:01:00.1", "0000:01:00.2", "0000:01:00.4"]


def test_a_group_left_behind_on_host_drivers_is_warned_about(capsys, gpu):
    r = _emit(capsys, gpu, GPU)
    assert f"also holds {GPU_AUDIO} (snd_hda_intel)" in r.err and "--group" in r.err
    assert _emit(capsys, gpu, GPU, "--group").err == ""


def test_a_device_without_iommu_group_is_warned_about(capsys, gpu):
    r = _emit(capsys, gpu, NO_GROUP)
    assert "no IOMMU group" in r.err


# --- refusals ------------------------------------------------------------------------------------------------


def test_a_bridge_is_refused(capsys, gpu):
    r = run(capsys, "--root", str(gpu), "emit", "libvirt", GPU_PORT)
    assert r.code == 5 and r.out == ""
    assert "bridge" in r.err


def test_an_unknown_device_fails(capsys, gpu):
    r = run(capsys, "--root", str(gpu), "emit", "libvirt", "0000:99:00.0")
    assert r.code == 1 and "no PCI device 0000:99:00.0" in r.err


def test_a_bad_address_is_a_usage_error(capsys, gpu):
    r = run(capsys, "--root", str(gpu), "emit", "libvirt", "3b:00.9")
    assert r.code == 2 and r.out == ""


def test_bad_managed_value_is_a_usage_error(capsys, gpu):
    r = run(capsys, "--root", str(gpu), "emit", "libvirt", GPU, "--managed", "maybe")
    assert r.code == 2


# --- snapshots are only read ---------------------------------------------------------------------------------


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[p] = (st.st_mtime_ns, st.st_size)
    return out


def test_emitting_from_a_snapshot_changes_nothing_in_it(capsys, hpe_a2):
    before = _tree_state(hpe_a2)
    _emit(capsys, hpe_a2, "01:00.0", "--group")
    assert _tree_state(hpe_a2) == before


# --- golden files --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,args",
    [
        ("hpe-a2.a2-rom-off", ("08:00.0", "--rom-bar", "off")),
        ("hpe-a2.group33", ("01:00.1", "--group")),
        ("hpe-a2.vfs-no-guest-address", ("08:00.4", "08:00.5", "--guest-address", "none")),
    ],
)
def test_golden_recorded_host(capsys, hpe_a2, name, args):
    check_golden(f"emit-libvirt.{name}.xml", _emit(capsys, hpe_a2, *args).out)


def test_golden_gpu_with_audio(capsys, gpu):
    check_golden("emit-libvirt.fake-gpu-group.xml", _emit(capsys, gpu, GPU, "--group").out)


# --- formats -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_json_and_yaml_wrap_the_xml_in_the_envelope(capsys, gpu, fmt):
    plain = _emit(capsys, gpu, GPU)
    for args in (("-f", fmt, "emit", "libvirt", GPU), ("emit", "libvirt", GPU, "--format", fmt)):
        r = run(capsys, "--root", str(gpu), *args)
        assert r.code == 0 and r.err == plain.err and "also holds" in r.err
        env = yaml.safe_load(r.out)
        assert (env["pcipass"], env["command"], env["status"], env["errors"]) == (1, "emit libvirt", "ok", [])
        assert env["data"]["text"] == plain.out
        assert [(t["address"], t["iommu_group"], t["vfio"]) for t in env["data"]["targets"]] == [(GPU, 40, True)]


def test_an_error_with_json_is_the_error_envelope(capsys, gpu):
    r = run(capsys, "--root", str(gpu), "-f", "json", "emit", "libvirt", GPU_PORT)
    env = json.loads(r.out)
    assert r.code == 5 and (env["command"], env["status"], env["data"]) == ("emit libvirt", "error", None)


# --- what is read --------------------------------------------------------------------------------------------


def test_only_the_named_devices_and_their_groups_are_read(capsys, gpu, scans):
    _emit(capsys, gpu, GPU)
    _emit(capsys, gpu, LONE, NIC_A, "--group")
    # The slot siblings of a device with --group are read too (its companions when there are no groups).
    assert scans == [{GPU_PORT, GPU, GPU_AUDIO}, {LONE, NIC_A, NIC_B}]


def test_group_without_iommu_groups_takes_the_slot_siblings(capsys, fake):
    fake.add_device(GPU, vendor="10de", device="1eb8", class_="030200", driver="nvidia")
    fake.add_device(GPU_AUDIO, vendor="10de", device="10f8", class_="040300", driver="snd_hda_intel")
    fake.add_device(NIC_A, vendor="8086", device="10fb", class_="020000", driver="ixgbe")
    r = _emit(capsys, fake.root, GPU, "--group")
    assert [_source(e) for e in _hostdevs(r.out)] == [GPU, GPU_AUDIO]
    assert f"{GPU} has no IOMMU group" in r.err and f"{GPU_AUDIO} has no IOMMU group" in r.err
    assert [_source(e) for e in _hostdevs(_emit(capsys, fake.root, GPU).out)] == [GPU]


def test_group_without_iommu_groups_on_the_recorded_host(capsys, hpe_iommu_off):
    els = _hostdevs(_emit(capsys, hpe_iommu_off, "01:00.4", "--group").out)
    assert [_source(e) for e in els] == ["0000:01:00.0", "0000:01:00.1", "0000:01:00.2", "0000:01:00.4"]
