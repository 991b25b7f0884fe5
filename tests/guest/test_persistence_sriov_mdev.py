"""The desired-state file's ``sriov`` and ``mdev`` sections on the real kernel, through the command line: a file
declaring QEMU's nvme PF with 2 VFs (autoprobe off, the VFs on vfio-pci) and an mtty-2 instance with a fixed UUID;
``apply --check`` reports both and writes nothing, ``apply`` creates the VFs, binds them and creates the instance,
a second ``apply`` changes nothing, ``verify`` is clean, and (as after a reboot) ``verify`` says what is gone.

The reboot itself (the boot unit bringing both back under systemd, pcipass as its own process) is
tests/realkernel/test_reboot.py. The JSON and exit status of the four commands are the point here (what a
provisioning tool reads): the CLI's entry point runs in this process (tests/support/cli.py; a Python start costs
seconds under TCG); the kernel's view is read from sysfs by tests/guest/kernel.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.guest.kernel import SYS_PCI, attr, driver, group, nvme_vf, raw_write, virtfns

TOPOLOGY = "sriov"

UUID = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1017"
MDEV = Path("/sys/bus/mdev/devices") / UUID
STATE_DIR = Path("/run/pcipass")

FILE = """\
# hand-written (no command writes an sriov entry): the documented format, docs/sriov.md
version: 1
sriov:
  - address: '{pf}'
    numvfs: 2
    autoprobe: false
    vfio: true
    fingerprint: {{vendor: '{vendor}', device: '{device}', class: '{cls}', path: '{path}'}}
mdev:
  - uuid: '{uuid}'
    parent: 'mtty'
    type: 'mtty-2'
"""


def _hex(pf: str, name: str) -> str:
    return attr(pf, name).removeprefix("0x")


@pytest.fixture
def declared(addr, mtty, tmp_path):
    """The file for the root-complex PF; afterwards the PF as the guest booted it (raw writes, not pcipass: a
    pcipass failure must not leave VFs for tests/guest/test_sriov.py) and no pcipass state."""
    pf = addr["sriov_pf"]
    assert driver(pf) == "nvme" and attr(pf, "sriov_numvfs") == "0" and not MDEV.exists()
    conf = tmp_path / "pcipass.yaml"
    bus, slot = pf.rsplit(":", 1)
    conf.write_text(
        FILE.format(
            pf=pf,
            vendor=_hex(pf, "vendor"),
            device=_hex(pf, "device"),
            cls=_hex(pf, "class"),
            path=f"{bus}/{slot}",  # on the root bus: one hop
            uuid=UUID,
        )
    )
    yield pf, conf
    if MDEV.exists():
        raw_write(MDEV / "remove", "1")
    for vf in virtfns(pf):
        if driver(vf):
            raw_write(SYS_PCI / vf / "driver" / "unbind", vf)
    raw_write(SYS_PCI / pf / "sriov_numvfs", "0")
    raw_write(SYS_PCI / pf / "sriov_drivers_autoprobe", "1")
    for p in STATE_DIR.iterdir() if STATE_DIR.exists() else ():
        if p.is_file():
            p.unlink()


def test_apply_check_apply_twice_and_verify(declared, capsys):
    from tests.support.cli import run

    pf, conf = declared
    vfs = (nvme_vf(pf, 1), nvme_vf(pf, 2))
    declared_rows = [("sriov", pf, "2 VFs"), ("mdev", UUID, "mtty-2 on mtty")]

    def cli(*args: str) -> tuple[int, dict, str]:
        r = run(capsys, *args, "--config", str(conf), "--format", "json")
        return r.code, json.loads(r.out), r.err

    def rows(doc: dict) -> list[tuple[str, str, str]]:
        entries = doc["data"]["entries"]
        assert [(e["section"], e["address"], e["driver"]) for e in entries] == declared_rows
        return [e["outcome"] for e in entries]

    # --check: both would change; nothing is written (no VF, no instance, autoprobe as booted, no validated copy)
    rc, doc, err = cli("apply", "--check")
    assert rc == 0, err
    assert (doc["changed"], doc["data"]["check"], rows(doc)) == (True, True, ["changed", "changed"])
    assert (attr(pf, "sriov_numvfs"), attr(pf, "sriov_drivers_autoprobe"), virtfns(pf)) == ("0", "1", [])
    assert not MDEV.exists() and sorted(os.listdir(conf.parent)) == ["pcipass.yaml"]

    # apply: the VFs where offset/stride put them, no host driver probed them, each on vfio-pci in a group of its
    # own; the instance of the declared type on mtty
    rc, doc, err = cli("apply")
    assert rc == 0, err
    assert (doc["changed"], doc["data"]["check"], rows(doc)) == (True, False, ["changed", "changed"])
    assert (attr(pf, "sriov_numvfs"), attr(pf, "sriov_drivers_autoprobe"), virtfns(pf)) == ("2", "0", list(vfs))
    assert [driver(vf) for vf in vfs] == ["vfio-pci", "vfio-pci"]
    groups = [group(vf) for vf in vfs]
    assert None not in groups and len(set(groups)) == 2 and all(Path(f"/dev/vfio/{g}").exists() for g in groups)
    assert driver(pf) == "nvme"
    assert os.path.basename(os.readlink(MDEV / "mdev_type")) == "mtty-2"
    assert MDEV.resolve().parent.name == "mtty"  # the instance's device sits under its parent's

    # again: converged, nothing changed, exit 0
    rc, doc, err = cli("apply")
    assert rc == 0, err
    assert (doc["changed"], rows(doc)) == (False, ["unchanged", "unchanged"])

    rc, doc, err = cli("verify")
    assert rc == 0, err
    assert doc["drift"] is False
    assert [(v["section"], v["address"], v["drift"]) for v in doc["data"]] == [
        ("sriov", pf, "match"),
        ("mdev", UUID, "match"),
    ]

    # As after a reboot (raw writes): verify names what is gone (in process, the library the CLI renders).
    from pcipass.config import load
    from pcipass.host import Host
    from pcipass.persistence.apply import verify

    raw_write(MDEV / "remove", "1")
    for vf in vfs:
        raw_write(SYS_PCI / vf / "driver" / "unbind", vf)
    raw_write(SYS_PCI / pf / "sriov_numvfs", "0")
    got = [(v.section, v.drift.value, v.reasons) for v in verify(Host("/"), load(conf, str(conf)))]
    assert got == [("sriov", "differs", ("0 VFs, 2 declared",)), ("mdev", "missing", ())]
