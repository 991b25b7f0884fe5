"""``pcipass snapshot`` on a real kernel: it reads every attribute pcipass reads without hanging or failing,
and ``--root SNAPSHOT`` answers ``list``, ``groups`` and ``check-iommu`` exactly as the live system does.
Read-only for the guest's devices (the archive goes to a temporary directory)."""

from __future__ import annotations

import json
import time

TOPOLOGY = ("iommu_on", "iommu_off")


def _json(capsys, *args):
    from tests.support.cli import run

    r = run(capsys, *args)
    return r.code, json.loads(r.out)


def test_snapshot_round_trip_on_the_real_kernel(capsys, tmp_path, topology):
    out = tmp_path / "guest.tar.xz"
    start = time.monotonic()
    code, env = _json(capsys, "-f", "json", "snapshot", "-o", str(out))
    assert code == 0 and env["data"]["entries"] > 100
    assert time.monotonic() - start < 120  # no attribute blocked the capture
    for command in (("list",), ("groups",)):
        live = _json(capsys, "-f", "json", *command)
        snap = _json(capsys, "--root", str(out), "-f", "json", *command)
        assert snap == live, command
    live_code, live = _json(capsys, "-f", "json", "check-iommu")
    snap_code, snap = _json(capsys, "--root", str(out), "-f", "json", "check-iommu")
    verdicts = {c["id"]: c["verdict"] for c in live["data"]["checks"]}
    assert {c["id"]: c["verdict"] for c in snap["data"]["checks"]} == verdicts
    assert snap_code == live_code == (0 if topology["iommu"] else 1)
