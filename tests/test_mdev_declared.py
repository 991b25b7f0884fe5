"""The desired-state file's ``mdev`` section: parsing and validation, what each entry finds, creating the missing."""

from __future__ import annotations

import json

import pytest

from pcipass.config import Editor, load
from pcipass.config.mdev import MdevEntry
from pcipass.errors import ConfigError, DeviceNotFound
from pcipass.fingerprint import Fingerprint
from pcipass.host import Host
from pcipass.mdev import declared
from pcipass.mdev.declared import MdevState
from tests.support.fakemdev import FakeMdevKernel, add_mdev, add_mtty, add_parent, add_type

U1 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
U2 = "0a9ef2b1-6d4c-4c38-9d5e-39b9a1e2c0de"
U3 = "5b5b7326-6bb8-48cb-a321-8fa58ccbb38c"
GPU = "0000:08:00.0"

GOOD = f"""\
version: 1
mdev:
  # a serial port for the test VM
  - uuid: '{U1}'
    parent: mtty
    type: mtty-2
  - uuid: '{U3}'
    parent: '{GPU}'
    type: nvidia-747
    fingerprint: {{vendor: '10de', device: '25b6', class: '030200'}}
"""


def _load(tmp_path, text):
    p = tmp_path / "pcipass.yaml"
    p.write_text(text)
    return load(p, "pcipass.yaml")


def test_the_section_loads(tmp_path):
    d = _load(tmp_path, GOOD)
    assert d.section("mdev") == (
        MdevEntry(U1, "mtty", "mtty-2", None, 4),
        MdevEntry(U3, GPU, "nvidia-747", Fingerprint("10de", "25b6", class_id="030200"), 7),
    )


@pytest.mark.parametrize(
    "text, words",
    [
        (f"version: 1\nmdev:\n  - uuid: '{U1.upper()}'\n    parent: mtty\n    type: mtty-2\n", "lower case"),
        ("version: 1\nmdev:\n  - uuid: x\n    parent: mtty\n", "'type' is missing"),
        (f"version: 1\nmdev:\n  - uuid: '{U1}'\n    parent: mtty\n    type: mtty-2\n    count: 2\n", "unknown key"),
        (
            f"version: 1\nmdev:\n  - uuid: '{U1}'\n    parent: mtty\n    type: mtty-2\n"
            "    fingerprint: {vendor: 10de}\n",
            "fingerprint",
        ),
        (
            f"version: 1\nmdev:\n  - {{uuid: '{U1}', parent: mtty, type: mtty-2}}\n  - {{uuid: '{U1}', parent: mtty, "
            "type: mtty-1}\n",
            "declared twice",
        ),
    ],
)
def test_the_section_is_validated(tmp_path, text, words):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert words in info.value.message


def test_editor_round_trip(tmp_path):
    p = tmp_path / "pcipass.yaml"
    p.write_text(GOOD)
    ed = Editor(p, "pcipass.yaml")
    assert ed.upsert("mdev", MdevEntry(U2, "mtty", "mtty-1", None, 0).to_node()) == "added"
    assert ed.remove("mdev", U3) and ed.save()
    text = p.read_text()
    assert "# a serial port for the test VM" in text and U3 not in text
    assert [e.uuid for e in load(p, "f").section("mdev")] == [U1, U2]


@pytest.fixture
def host(fake, monkeypatch):
    import pcipass.engine.guards as guards

    monkeypatch.setattr(guards, "effective_uid", lambda: 0)
    fake.add_device(GPU, vendor="10de", device="25b6", class_="030200", driver="nvidia", group=30)
    add_parent(fake, GPU)
    add_type(fake, GPU, "nvidia-747", name="NVIDIA A2-8Q", available=2)
    add_type(fake, GPU, "nvidia-755", name="NVIDIA A2-8C", available=0)
    add_mtty(fake)
    return fake


def _entry(uuid, parent, type_, fp=None):
    return MdevEntry(uuid, parent, type_, fp, 1)


def test_every_state(host, tmp_path):
    add_mdev(host, "mtty", "mtty-1", U2)
    host.write(f"etc/mdevctl.d/mtty/{U3}", json.dumps({"mdev_type": "mtty-2", "start": "auto"}))
    other = "1e2f3a4b-0000-4000-8000-000000000001"
    entries = (
        _entry(U1, "mtty", "mtty-2"),  # missing
        _entry(U2, "mtty", "mtty-1"),  # present
        _entry(U2.replace("0a", "0b", 1), "mtty", "mtty-9"),  # no such type
        _entry(U3, "mtty", "mtty-2"),  # mdevctl's
        _entry(other, "0000:09:00.0", "nvidia-747"),  # parent absent
        _entry("1e2f3a4b-0000-4000-8000-000000000002", GPU, "nvidia-755"),  # none left
        _entry("1e2f3a4b-0000-4000-8000-000000000003", GPU, "nvidia-747", Fingerprint("10de", "1eb8")),  # another card
        _entry(U2, "mtty", "mtty-2"),  # the UUID is another type
    )
    states = [(c.state, c.detail) for c in declared.check(Host(host.root), entries)]
    assert [s for s, _ in states] == [
        MdevState.MISSING,
        MdevState.PRESENT,
        MdevState.NO_TYPE,
        MdevState.MDEVCTL,
        MdevState.PARENT_ABSENT,
        MdevState.NO_INSTANCE,
        MdevState.OTHER_CARD,
        MdevState.CONFLICT,
    ]
    assert "left to mdevctl" in states[3][1] and "is its driver bound?" in states[4][1]
    assert "device 1eb8 recorded, 25b6 found" in states[6][1]
    assert states[7][1] == "it exists as mtty-1 on mtty"


def test_apply_creates_the_missing_and_converges(host):
    h = Host(host.root)
    entries = (
        _entry(U1, "mtty", "mtty-2"),
        _entry(U3, GPU, "nvidia-747", Fingerprint("10de", "25b6")),
        _entry(U2, "0000:09:00.0", "x"),
    )
    planned = declared.apply(h, entries, check_only=True)
    assert [(a.outcome, a.state) for a in planned] == [
        ("planned", MdevState.MISSING),
        ("planned", MdevState.MISSING),
        ("left", MdevState.PARENT_ABSENT),
    ]
    assert not (host.root / f"sys/bus/mdev/devices/{U1}").exists()
    kernel = FakeMdevKernel(host)
    done = declared.apply(h, entries, kernel=kernel)
    assert [a.outcome for a in done] == ["created", "created", "left"]
    assert (host.root / f"sys/bus/mdev/devices/{U3}").is_dir()
    assert [a.outcome for a in declared.apply(h, entries, kernel=kernel)] == ["unchanged", "unchanged", "left"]
    kernel.fail[len(kernel.writes)] = 28  # ENOSPC from the driver
    failed = declared.apply(h, (_entry(U2, "mtty", "mtty-1"),), kernel=kernel)
    assert failed[0].outcome == "failed" and failed[0].error["errno"] == "ENOSPC"


def test_entry_for_an_existing_instance(host):
    add_mdev(host, GPU, "nvidia-747", U3)
    add_mdev(host, "mtty", "mtty-2", U1)
    h = Host(host.root)
    e = declared.entry_for(h, U3.upper())
    assert (e.uuid, e.parent, e.type) == (U3, GPU, "nvidia-747")
    assert (e.fingerprint.vendor, e.fingerprint.device, e.fingerprint.class_id) == ("10de", "25b6", "030200")
    assert declared.entry_for(h, U1).fingerprint is None
    with pytest.raises(DeviceNotFound):
        declared.entry_for(h, U2)


def test_pcipass_apply_and_verify_run_the_section(host, tmp_path):
    """``pcipass apply`` recreates an instance (after the devices' bindings); ``verify`` says one is missing."""
    from pcipass.persistence.apply import Change, apply, verify
    from pcipass.persistence.drift import Drift

    h = Host(host.root)
    desired = _load(tmp_path, f"version: 1\nmdev:\n  - uuid: '{U1}'\n    parent: mtty\n    type: mtty-2\n")
    (v,) = verify(h, desired)
    assert (v.section, v.address, v.drift, v.declared) == ("mdev", U1, Drift.MISSING, "mtty-2 on mtty")
    planned = apply(h, desired, check=True)
    assert planned.changed and [(e.section, e.outcome) for e in planned.entries] == [("mdev", Change.CHANGED)]
    assert not (host.root / f"sys/bus/mdev/devices/{U1}").exists()
    kernel = FakeMdevKernel(host)
    done = apply(h, desired, kernel=kernel)
    assert done.changed and done.exit_code == 0 and (host.root / f"sys/bus/mdev/devices/{U1}").is_dir()
    again = apply(h, desired, kernel=kernel)
    assert not again.changed and again.entries[0].outcome is Change.UNCHANGED
    assert [v.drift for v in verify(h, desired)] == [Drift.MATCH]
    gone = _load(tmp_path, f"version: 1\nmdev:\n  - uuid: '{U2}'\n    parent: '0000:09:00.0'\n    type: x\n")
    refused = apply(h, gone, kernel=kernel)
    assert refused.exit_code == 5 and refused.entries[0].outcome is Change.REFUSED
    assert "is its driver bound?" in refused.errors[0].message
