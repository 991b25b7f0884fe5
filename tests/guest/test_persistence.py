"""The desired-state file and apply against the real kernel (the ordinary guest, no reboot): apply --check
writes nothing, apply converges and a second apply changes nothing, a bad file is rejected with file:line.
The reboot scenarios (systemd as PID 1, a persistent /etc) are tests/realkernel/test_reboot.py.

In-process library calls (a Python start costs seconds under TCG); one CLI run for the bad file, where the
process's exit status and stderr are the point. Every test gives the devices back (``restore``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.guest.kernel import SYS_PCI, binding, put_back
from tests.guest.kernel import driver as _driver

TOPOLOGY = "iommu_on"

STATE_DIR = Path("/run/pcipass")
REPO = str(Path(__file__).resolve().parents[2])


def _host():
    from pcipass.host import Host

    return Host("/")


def _snapshot() -> dict[str, tuple[str | None, str | None]]:
    return {a: binding(a) for a in sorted(os.listdir(SYS_PCI))}


def _digest(config: Path) -> str:
    """What apply could write: every device's driver and override, pcipass's state directory, the file."""
    h = hashlib.sha256(repr(_snapshot()).encode())
    for p in sorted(STATE_DIR.rglob("*")) if STATE_DIR.exists() else []:
        h.update(str(p).encode() + (p.read_bytes() if p.is_file() else b""))
    h.update(config.read_bytes())
    return h.hexdigest()


@pytest.fixture(autouse=True)
def restore(protected):
    boot = _snapshot()
    yield
    now = _snapshot()
    for a, (drv, ovr) in boot.items():
        assert a not in protected or now.get(a) == (drv, ovr), f"protected device {a} was touched"
        if now.get(a) != (drv, ovr):
            put_back(a, drv, ovr)
    if STATE_DIR.exists():
        for p in STATE_DIR.iterdir():
            p.unlink()


def test_check_writes_nothing_then_apply_twice(addr, tmp_path):
    from pcipass.config import load
    from pcipass.persistence.apply import apply
    from pcipass.persistence.persist import Persister

    conf = tmp_path / "pcipass.yaml"
    e1000e, mf0, mf1 = addr["e1000e"], addr["mf_virtio_net"], addr["mf_e1000"]
    p = Persister(_host(), conf, str(conf))
    p.report(p.add([e1000e]))
    p = Persister(_host(), conf, str(conf))
    p.report(p.add([mf0], group=True))
    text = conf.read_text()
    assert "path: '0000:00/02.0'" in text and f"group_peers:\n      - '{mf1}'" in text

    before = _digest(conf)
    check = apply(_host(), load(conf, str(conf)), check=True)
    assert check.exit_code == 0 and check.changed, check
    assert [(e.address, e.outcome.value, e.peers) for e in check.entries] == [
        (e1000e, "changed", ()),
        (mf0, "changed", (mf1,)),
    ]
    assert _digest(conf) == before, "apply --check wrote something"

    first = apply(_host(), load(conf, str(conf)))
    assert first.exit_code == 0 and first.changed, first
    assert [_driver(a) for a in (e1000e, mf0, mf1)] == ["vfio-pci"] * 3
    assert all(
        Path(f"/dev/vfio/{os.path.basename(os.readlink(SYS_PCI / a / 'iommu_group'))}").exists() for a in (e1000e, mf0)
    )
    second = apply(_host(), load(conf, str(conf)))
    assert second.exit_code == 0 and not second.changed
    assert {e.outcome.value for e in second.entries} == {"unchanged"}

    from pcipass.persistence.apply import verify

    assert {v.drift.value for v in verify(_host(), load(conf, str(conf)))} == {"match"}


def test_a_different_card_is_refused(addr, tmp_path):
    """The recorded fingerprint says e1000e; the file is pointed at the rtl8139's address: refused, not bound."""
    from pcipass.config import load
    from pcipass.persistence.apply import apply
    from pcipass.persistence.persist import Persister

    conf = tmp_path / "pcipass.yaml"
    p = Persister(_host(), conf, str(conf))
    p.report(p.add([addr["e1000e"]]))
    other = addr["virtio_net"]
    conf.write_text(conf.read_text().replace(addr["e1000e"], other))
    r = apply(_host(), load(conf, str(conf)))
    assert r.exit_code == 5 and r.entries[0].drift == "different-card", r
    assert _driver(other) == "virtio-pci"


def test_bad_file_is_rejected_with_file_and_line(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("version: 1\ndevices:\n  - address: 00:02.0\n    fingerprint: {vendor: '8086', device: '10d3'}\n")
    before = _snapshot()
    r = subprocess.run(
        [sys.executable, "-m", "pcipass", "apply", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert r.returncode == 2, r.stderr
    assert f"{conf}:3: devices[0].address:" in r.stderr
    assert _snapshot() == before
