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
        out[a] = (
            os.path.basename(os.readlink(link)) if link.is_symlink() else None,
            (SYS_PCI / a / "driver_override").read_text(),
        )
    return out


def test_live_root_without_iommu_refuses_before_any_write(addr, run_cli):
    import pytest

    from pcipass import engine
    from pcipass.errors import Refused
    from pcipass.host import Host

    before = _bindings()
    for call in (
        lambda: engine.enable(Host("/"), [addr["e1000e"]], force=True),
        lambda: engine.disable(Host("/"), [addr["e1000e"]]),
    ):
        with pytest.raises(Refused) as exc:
            call()
        assert "no IOMMU is active" in exc.value.message
    p = run_cli("enable", "--group", "--force", addr["mf_virtio_net"])
    assert p.returncode == 5 and "no IOMMU is active" in p.stderr
    assert _bindings() == before
    assert not Path("/run/pcipass").exists()


def test_a_root_whose_sys_is_the_real_sysfs_is_refused_too(addr, run_cli, tmp_path):
    """As a container sees its host at /host: --root there reaches this kernel, so the same refusal, before any
    write (without it, the writes would go through to the real devices)."""
    import subprocess

    root = tmp_path / "host"
    (root / "sys").mkdir(parents=True)
    subprocess.run(["mount", "-t", "sysfs", "sysfs", str(root / "sys")], check=True)
    try:
        before = _bindings()
        for cmd in (
            ("enable", "--force", addr["e1000e"]),
            ("disable", addr["e1000e"]),
            ("enable", "--dry-run", addr["e1000e"]),
        ):
            p = run_cli("--root", str(root), *cmd)
            assert p.returncode == 5 and f"no IOMMU is active on this host: refusing to {cmd[0]}" in p.stderr, (
                cmd,
                p.stdout,
                p.stderr,
            )
        assert _bindings() == before
        assert not (root / "run").exists()
    finally:
        subprocess.run(["umount", str(root / "sys")], check=True)
