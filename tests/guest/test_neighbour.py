"""Living beside running VMs and host services (issue 19), on the real kernel.

1. ``status`` opens nothing under /dev/vfio (proved by strace on the real CLI), and ``status --probe`` gives the
   kernel's VFIO_GROUP_GET_STATUS answer (it does open the group node: the trace shows it).
2. A process holding the bochs-display's /dev/dri/card0 (bochs-drm): ``enable`` refuses (exit 5) naming pid
   and command, ``check-iommu -d`` and ``show`` list it; once it lets go, ``enable`` binds the device, and
   ``disable`` gives it back to bochs-drm. A process mapping its resource0 (driverless) is refused likewise.
3. DRM's debugfs clients list, which spares the fd scan for a GPU nobody holds, says what the full scan finds:
   clients while processes hold card0, and the scan then names every holder, also one that inherited the file
   over fork, which DRM does not list; none once they let go (bochs-drm's own fbdev client is not listed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

from tests.guest.kernel import SYS_PCI, put_back
from tests.guest.kernel import driver as _driver
from tests.support.cli import run

TOPOLOGY = "iommu_on"


def _host():
    from pcipass.host import Host

    return Host("/")


def _traced(*args: str, trace: Path) -> subprocess.CompletedProcess:
    """``python -m pcipass ARGS`` under strace, every open/openat of every thread and child into ``trace``."""
    return subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", str(trace), sys.executable, "-m", "pcipass", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _vfio_opens(trace: Path) -> list[str]:
    return [line for line in trace.read_text().splitlines() if '"/dev/vfio' in line]


def test_status_opens_nothing_under_dev_vfio_and_probe_asks_the_kernel(addr, tmp_path):
    from pcipass import engine

    a = addr["e1000e"]
    assert _driver(a) == "e1000e"
    try:
        assert engine.enable(_host(), [a]).exit_code == 0
        group = os.path.basename(os.readlink(SYS_PCI / a / "iommu_group"))
        assert Path(f"/dev/vfio/{group}").exists()

        trace = tmp_path / "status.trace"
        p = _traced("--format", "json", "status", trace=trace)
        assert p.returncode == 0, p.stderr
        assert trace.read_text().count("openat(") > 10, "strace saw no opens: the trace proves nothing"
        assert _vfio_opens(trace) == []
        (st,) = [d for d in json.loads(p.stdout)["data"] if d["address"] == a]
        assert (st["vfio_viable"], st["viable_from"]) == (True, "sysfs"), st
        assert "no /dev/vfio node was opened" in p.stderr

        trace = tmp_path / "probe.trace"
        p = _traced("--format", "json", "status", "--probe", a, trace=trace)
        assert p.returncode == 0, p.stderr
        (st,) = json.loads(p.stdout)["data"]
        assert (st["vfio_viable"], st["viable_from"]) == (True, "kernel"), st
        assert any(f'"/dev/vfio/{group}"' in line for line in _vfio_opens(trace)), _vfio_opens(trace)
    finally:
        engine.disable(_host(), [a])
        if _driver(a) != "e1000e":
            put_back(a, "e1000e", None)
    assert _driver(a) == "e1000e"


def _hold(shell: str) -> subprocess.Popen:
    """A process holding something (``shell`` runs with ``exec``)."""
    return subprocess.Popen(["sh", "-c", shell])


def _stop(p: subprocess.Popen) -> None:
    with suppress(ProcessLookupError):
        p.kill()
    p.wait(timeout=60)


@pytest.fixture
def display(addr):
    a = addr["display"]
    assert _driver(a) == "bochs-drm"
    yield a
    if _driver(a) != "bochs-drm":
        from pcipass import engine

        with suppress(Exception):
            engine.disable(_host(), [a])
        if _driver(a) != "bochs-drm":
            put_back(a, "bochs-drm", None)
    assert _driver(a) == "bochs-drm"


def _card(a: str) -> str:
    (card,) = [n for n in os.listdir(SYS_PCI / a / "drm") if n.startswith("card")]
    assert Path(f"/dev/dri/{card}").exists()
    # the node's sysfs device is the function
    assert os.path.realpath(f"/sys/class/drm/{card}/device") == os.path.realpath(SYS_PCI / a)
    return card


def test_a_drm_client_is_named_and_refused_then_enable_binds_once_released(display, capsys):
    card = _card(display)
    holder = _hold(f"exec sleep 600 3</dev/dri/{card}")
    try:
        deadline = time.monotonic() + 60
        while f"/dev/dri/{card}" not in [
            os.readlink(f"/proc/{holder.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{holder.pid}/fd")
        ]:
            assert time.monotonic() < deadline, "the holder never opened the node"
            time.sleep(0.1)
        named = f"/dev/dri/{card}: open by sleep (pid {holder.pid})"

        r = run(capsys, "enable", display)
        assert r.code == 5, r.out + r.err
        assert named in r.err and f"end sleep (pid {holder.pid})" in r.err, r.err
        assert _driver(display) == "bochs-drm"

        r = run(capsys, "-f", "json", "check-iommu", "-d", display)
        (check,) = [c for c in json.loads(r.out)["data"]["checks"] if c["id"] == "device.in_use"]
        assert check["verdict"] == "fail" and named in check["detail"], check
        r = run(capsys, "-f", "json", "show", display)
        holders = json.loads(r.out)["data"]["holders"]
        assert [(h["pid"], h["command"], h["kind"], h["node"]) for h in holders] == [
            (holder.pid, "sleep", "drm", f"/dev/dri/{card}")
        ]
    finally:
        _stop(holder)

    r = run(capsys, "enable", display)
    assert r.code == 0, r.out + r.err
    assert _driver(display) == "vfio-pci"
    r = run(capsys, "disable", display)
    assert r.code == 0, r.out + r.err
    assert _driver(display) == "bochs-drm"
    _card(display)  # bochs-drm made its node again


def test_a_mapped_resource_file_is_named_and_refused(display, capsys):
    """A userspace driver mapping the BAR of a device no kernel driver holds (the kernel refuses to map a BAR
    its driver claimed: CONFIG_IO_STRICT_DEVMEM, pci_mmap_resource's iomem_is_exclusive)."""
    put_back(display, None, None)
    resource = SYS_PCI / display / "resource0"
    code = (
        "import mmap, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
        "m = mmap.mmap(fd, 4096); os.close(fd); print('mapped', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(resource)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "mapped"
        r = run(capsys, "enable", display)
        assert r.code == 5, r.out + r.err
        real = os.path.realpath(resource)
        comm = Path(f"/proc/{holder.pid}/comm").read_text().strip()
        assert f"{real}: mapped by {comm} (pid {holder.pid})" in r.err, r.err
        assert _driver(display) is None
    finally:
        _stop(holder)
        put_back(display, "bochs-drm", None)


def test_drm_clients_list_agrees_with_the_full_scan(display):
    from pcipass.holders import device_watch, drm_clients, scan
    from pcipass.inventory import Inventory

    assert Path("/sys/kernel/debug/dri").is_dir(), "debugfs is not mounted (guest_stage2.sh mounts it)"
    card = _card(display)
    minors = [n for n in os.listdir(SYS_PCI / display / "drm") if n.startswith(("card", "renderD"))]
    host = _host()

    def both() -> tuple[list, list]:
        watch = device_watch(host, Inventory.scan(host), [display])
        return scan(host, watch), scan(host, watch, drm_clients=False)

    assert [drm_clients(host, m) for m in minors] == [False] * len(minors), Path(
        f"/sys/kernel/debug/dri/{card[4:]}/clients"
    ).read_text()
    fast, full = both()
    assert fast == full == []

    # A shell holding the node forks a child (which inherits the file: DRM lists only the opener) and becomes
    # sleep; a second process opens the node itself. One session, so that the child is stopped with them.
    holders = subprocess.Popen(
        ["sh", "-c", f"exec 3</dev/dri/{card}; sleep 600 & exec sleep 600"], start_new_session=True
    )
    opener = subprocess.Popen(
        [sys.executable, "-c", "import os, sys; os.open(sys.argv[1], os.O_RDWR); sys.stdin.read()", f"/dev/dri/{card}"],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            fast, full = both()
            if len({h.process.pid for h in full}) >= 3:
                break
            assert time.monotonic() < deadline, full
            time.sleep(0.2)
        assert [drm_clients(host, m) for m in minors] == [True] * len(minors)
        assert fast == full
        assert {holders.pid, opener.pid} < {h.process.pid for h in full}, full
    finally:
        for p in (opener, holders):
            with suppress(ProcessLookupError):
                os.killpg(p.pid, 9)
            p.wait(timeout=60)

    deadline = time.monotonic() + 60
    while any(drm_clients(host, m) for m in minors):
        assert time.monotonic() < deadline, Path(f"/sys/kernel/debug/dri/{card[4:]}/clients").read_text()
        time.sleep(0.2)
    fast, full = both()
    assert fast == full == []
