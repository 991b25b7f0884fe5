"""The binding engine on a real kernel booted with ``intel_iommu=off``: the live root without an IOMMU refuses
every mutating command (exit 5) before any write, through the library and through a real CLI process."""

from __future__ import annotations

import os
from pathlib import Path

TOPOLOGY = "iommu_off"

SYS_PCI = Path("/sys/bus/pci/devices")


def _bindings() -> dict[str, tuple[str | None, str]]:
    out = {}
    for a in sorted(os.listdir(SYS_PCI)):
        link = SYS_PCI / a / "driver"
        out[a] = (os.path.basename(os.readlink(link)) if link.is_symlink() else None,
                  (SYS_PCI / a / "driver_override").read_text())
    return out


def test_live_root_without_iommu_refuses_before_any_write(addr, run_cli):
    import pytest

    from pcipass import engine
    from pcipass.errors import Refused
    from pcipass.host import Host

    before = _bindings()
    for call in (lambda: engine.enable(Host("/"), [addr["e1000e"]], force=True),
                 lambda: engine.disable(Host("/"), [addr["e1000e"]])):
        with pytest.raises(Refused) as exc:
            call()
        assert "no IOMMU is active" in exc.value.message
    p = run_cli("enable", "--group", "--force", addr["mf_virtio_net"])
    assert p.returncode == 5 and "no IOMMU is active" in p.stderr
    assert _bindings() == before
    assert not Path("/run/pcipass").exists()
