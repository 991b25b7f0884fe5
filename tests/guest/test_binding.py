"""The binding engine against the real kernel: enable/disable/status on real sysfs, real IOMMU groups, real
vfio-pci, real VFIO_GROUP_GET_STATUS, real uevents.

Mostly in-process library calls (a Python start costs seconds under TCG); the CLI runs as a real process
where the process boundary is the point (exit codes, two concurrent runs, kill -9). Every test gives every
device back to its boot driver (the ``restore`` fixture checks it, and repairs with raw sysfs writes if the
engine could not, so one failure does not cascade).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.guest.kernel import SYS_PCI, binding, put_back
from tests.guest.kernel import driver as _driver
from tests.guest.kernel import group as _group
from tests.guest.kernel import override as _override
from tests.guest.kernel import raw_write as _raw_write

TOPOLOGY = "iommu_on"

STATE_DIR = Path("/run/pcipass")
REPO = str(Path(__file__).resolve().parents[2])


def _ifname(a: str) -> str:
    """The device's interface (under net/ for e1000e, under virtioN/net/ for virtio-net; names are not stable
    across rebinds)."""
    (name,) = [n for n in os.listdir("/sys/class/net") if f"/{a}/" in os.path.realpath(f"/sys/class/net/{n}")]
    return name


def _sh(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _host():
    from pcipass.host import Host

    return Host("/")


def _snapshot() -> dict[str, tuple[str | None, str | None]]:
    return {a: binding(a) for a in sorted(os.listdir(SYS_PCI))}


@pytest.fixture(scope="module")
def boot() -> dict[str, tuple[str | None, str | None]]:
    """Every device's driver and override at boot (before this module touched anything)."""
    return _snapshot()


@pytest.fixture(autouse=True)
def restore(boot, protected):
    """After each test: every device on its boot driver, no override, no pcipass state, no blacklist."""
    yield
    Path("/etc/modprobe.d/pcipass-test-binding.conf").unlink(missing_ok=True)
    if len(os.listdir(SYS_PCI)) != len(boot):
        _raw_write(Path("/sys/bus/pci/rescan"), "1")
    now = _snapshot()
    for a, (drv, ovr) in boot.items():
        assert a not in protected or now.get(a) == (drv, ovr), f"protected device {a} was touched"
        if now.get(a) == (drv, ovr):
            continue
        put_back(a, drv, ovr)  # without the engine: one engine failure must not cascade into later tests
    if STATE_DIR.exists():
        for p in STATE_DIR.iterdir():
            p.unlink()
    assert _snapshot() == boot, "a test left a device off its boot driver (repaired)"


# --- round trips ----------------------------------------------------------------------------------------------------
def test_enable_disable_round_trip(addr):
    from pcipass import engine

    a = addr["e1000e"]
    r = engine.enable(_host(), [a])
    assert r.exit_code == 0, r.data()
    assert (_driver(a), _override(a)) == ("vfio-pci", "vfio-pci")
    assert r.wait == "immediate"  # drivers_probe binds synchronously: no wait was needed
    assert Path(f"/dev/vfio/{_group(a)}").exists()
    assert r.steps[-1].detail == "the kernel reports the group viable"
    report = engine.status(_host(), [a])
    (st,) = report.devices
    assert (st.recorded_driver, st.phase, st.vfio_viable) == ("e1000e", "enabled", True)
    # driver_override ends with the boot, and status says so; vfio-pci's ids= (modprobe.d) would renew it.
    assert (st.boot_driver, st.boot_by) == (None, None)
    assert [m for m in report.messages if m.startswith(f"{a}: on vfio-pci until the next boot only")]
    conf = Path("/etc/modprobe.d/pcipass-test-bootbind.conf")  # the guest's overlay, never the host's /etc
    conf.write_text("options vfio-pci ids=8086:10d3\n")
    try:
        report = engine.status(_host(), [a])
        assert (report.devices[0].boot_driver, report.devices[0].boot_where) == ("vfio-pci", f"{conf}:1")
        assert not [m for m in report.messages if "next boot" in m]
    finally:
        conf.unlink()
    again = engine.enable(_host(), [a])
    assert [d.outcome.value for d in again.devices] == ["unchanged"]
    r = engine.disable(_host(), [a])
    assert r.exit_code == 0, r.data()
    assert (_driver(a), _override(a)) == ("e1000e", None)
    assert not Path(f"/dev/vfio/{_group(a)}").exists()
    assert [d.outcome.value for d in engine.disable(_host(), [a]).devices] == ["unchanged"]


def test_uevent_monitor_sees_a_later_bind(addr):
    """The waiter's uevent path on the real kernel (no udevd here): a bind that happens 0.5 s after the wait
    starts is seen through the netlink monitor, not by polling."""
    import threading

    from pcipass.engine.wait import Waiter

    a = addr["audio"]
    _raw_write(SYS_PCI / a / "driver" / "unbind", a)
    waiter = Waiter(_host())
    try:
        threading.Timer(0.5, _raw_write, (Path("/sys/bus/pci/drivers_probe"), a)).start()
        t0 = time.monotonic()
        assert waiter.until(lambda: _driver(a) == "snd_hda_intel", 30)
        assert waiter.last == "uevent" and waiter.note is None
        assert time.monotonic() - t0 < 25
    finally:
        waiter.close()


def test_every_free_endpoint_round_trips(topology):
    from pcipass import engine

    free = topology["free_endpoints"]
    before = {a: _driver(a) for a in free}
    r = engine.enable(_host(), free, force=True)  # the NVMe and NICs are idle here; force skips nothing else
    assert r.exit_code == 0, r.data()
    assert {a: _driver(a) for a in free} == {a: "vfio-pci" for a in free}
    assert engine.disable(_host(), free).exit_code == 0
    assert {a: _driver(a) for a in free} == before


# --- groups -----------------------------------------------------------------------------------------------------------
def test_shared_group_refused_then_moved_with_group(addr):
    from pcipass import engine
    from pcipass.engine.vfio import group_status

    a, peer = addr["mf_virtio_net"], addr["mf_e1000"]
    r = engine.enable(_host(), [a])
    assert r.exit_code == 5 and peer in r.devices[0].reasons[0] and "--group" in r.devices[0].reasons[0]
    assert (_driver(a), _override(a)) == ("virtio-pci", None)
    r = engine.enable(_host(), [a], move_group=True)
    assert r.exit_code == 0, r.data()
    assert {d.address: (d.outcome.value, d.requested) for d in r.devices} == {a: ("done", True), peer: ("done", False)}
    assert _driver(a) == _driver(peer) == "vfio-pci"
    assert group_status(_host(), _group(a)).viable is True  # the kernel's own verdict
    assert engine.disable(_host(), [a, peer]).exit_code == 0
    assert (_driver(a), _driver(peer)) == ("virtio-pci", "e1000")


def test_kernel_says_not_viable_while_a_peer_is_on_a_host_driver(addr):
    """The verify step asks the kernel; with one function moved by hand the answer is 'not viable'."""
    from pcipass import engine
    from pcipass.engine.vfio import group_status

    a, peer = addr["mf_virtio_net"], addr["mf_e1000"]
    engine.enable(_host(), [peer, a])
    _raw_write(SYS_PCI / a / "driver" / "unbind", a)
    _raw_write(SYS_PCI / a / "driver_override", "\n")
    _raw_write(Path("/sys/bus/pci/drivers_probe"), a)
    assert _driver(a) == "virtio-pci"
    assert group_status(_host(), _group(peer)).viable is False
    st = {d.address: d for d in engine.status(_host()).devices}
    assert st[peer].vfio_viable is False
    assert engine.disable(_host(), [peer]).exit_code == 0


def test_group_behind_a_pci_bridge_leaves_the_bridge(addr):
    from pcipass import engine
    from pcipass.engine.vfio import group_status

    nics, bridge = (addr["bridged_e1000"], addr["bridged_rtl8139"]), addr["pci_bridge"]
    bridge_before = (_driver(bridge), _override(bridge))
    r = engine.enable(_host(), [nics[0]], move_group=True)
    assert r.exit_code == 0, r.data()
    assert [_driver(n) for n in nics] == ["vfio-pci", "vfio-pci"]
    assert (_driver(bridge), _override(bridge)) == bridge_before
    assert group_status(_host(), _group(nics[0])).viable is True
    assert engine.disable(_host(), list(nics)).exit_code == 0


def test_root_port_stays_on_pcieport(addr):
    from pcipass import engine
    from pcipass.engine.vfio import group_status

    dev, port = addr["noacs_e1000e"], addr["rp_noacs"]
    assert _group(dev) == _group(port)
    r = engine.enable(_host(), [dev])
    assert r.exit_code == 0, r.data()
    assert (_driver(dev), _driver(port)) == ("vfio-pci", "pcieport")
    assert group_status(_host(), _group(dev)).viable is True
    r = engine.enable(_host(), [port], force=True)
    assert r.exit_code == 5 and "not an endpoint" in r.devices[0].reasons[0]
    assert engine.disable(_host(), [dev]).exit_code == 0


# --- in use -----------------------------------------------------------------------------------------------------------
def test_interface_with_address_and_route_refused_then_forced(addr):
    from pcipass import engine

    a = addr["virtio_net"]
    ifname = _ifname(a)
    assert _sh("ip", "addr", "add", "10.0.3.15/24", "dev", ifname).returncode == 0
    assert _sh("ip", "link", "set", ifname, "up").returncode == 0
    r = engine.enable(_host(), [a])
    assert r.exit_code == 5 and _driver(a) == "virtio-pci"
    reasons = " | ".join(r.devices[0].reasons)
    assert f"{ifname}: has address 10.0.3.15" in reasons
    assert f"{ifname}: in the routing table (10.0.3.0/24)" in reasons
    r = engine.enable(_host(), [a], force=True)
    assert r.exit_code == 0 and _driver(a) == "vfio-pci"
    assert any("--force" in m and "10.0.3.15" in m for m in r.messages)
    assert engine.disable(_host(), [a]).exit_code == 0


def test_a_container_with_the_hosts_root_mounted_reads_the_hosts_network(addr, tmp_path):
    """pcipass in a network namespace of its own (a container) with the host's sysfs and procfs under a root:
    the interface's address and route live in the host's namespace, PID 1's, and that is what it reads (its
    own /proc/self/net is empty); the root reaches this kernel, so the live checks apply."""
    a = addr["virtio_net"]
    ifname = _ifname(a)
    assert _sh("ip", "addr", "add", "10.0.4.15/24", "dev", ifname).returncode == 0
    assert _sh("ip", "link", "set", ifname, "up").returncode == 0
    root = tmp_path / "host"
    mounts = [(root / "sys", "sysfs"), (root / "proc", "proc")]
    try:
        for point, fstype in mounts:
            point.mkdir(parents=True)
            assert _sh("mount", "-t", fstype, fstype, str(point)).returncode == 0
        p = subprocess.run(
            ["unshare", "--net", sys.executable, "-m", "pcipass", "--root", str(root), "enable", "--dry-run", a],
            capture_output=True,
            text=True,
            timeout=300,
        )
        said = p.stdout + p.stderr
        assert p.returncode == 5, said
        assert f"{ifname}: has address 10.0.4.15" in said and f"{ifname}: in the routing table (10.0.4.0/24)" in said
        assert _driver(a) == "virtio-pci"
    finally:
        for point, _ in reversed(mounts):
            _sh("umount", str(point))
        _sh("ip", "addr", "del", "10.0.4.15/24", "dev", ifname)


def test_usb_controller_with_a_keyboard_refused_then_forced(addr):
    """qemu's usb-kbd behind qemu-xhci: the real kernel's input device (capabilities/key as usbhid and
    hid-generic report them) makes the controller the host's console input."""
    from pcipass import engine

    a = addr["usb_xhci"]
    keyboards = [
        n
        for n in os.listdir("/sys/class/input")
        if n.startswith("input") and f"/{a}/" in os.path.realpath(f"/sys/class/input/{n}")
    ]
    assert keyboards, "no input device behind the USB controller (usbhid/hid-generic not loaded?)"
    assert _driver(a) == "xhci_hcd"
    r = engine.enable(_host(), [a])
    assert r.exit_code == 5 and _driver(a) == "xhci_hcd"
    reasons = " | ".join(r.devices[0].reasons)
    assert f"{keyboards[0]}: keyboard 'QEMU QEMU USB Keyboard' behind it" in reasons, reasons
    r = engine.enable(_host(), [a], force=True)
    assert r.exit_code == 0 and _driver(a) == "vfio-pci"
    assert engine.disable(_host(), [a]).exit_code == 0 and _driver(a) == "xhci_hcd"


def test_address_without_any_route_is_found_by_ioctl(addr):
    """noprefixroute on a down interface: no route, nothing in fib_trie: only SIOCGIFCONF sees it."""
    from pcipass import engine

    a = addr["e1000e"]
    ifname = _ifname(a)
    assert _sh("ip", "addr", "add", "10.9.9.9/24", "dev", ifname, "noprefixroute").returncode == 0
    r = engine.enable(_host(), [a])
    assert r.exit_code == 5 and f"{ifname}: has address 10.9.9.9" in r.devices[0].reasons[0]
    assert _sh("ip", "addr", "flush", "dev", ifname).returncode == 0
    assert engine.enable(_host(), [a], dry_run=True).exit_code == 0


def test_mounted_filesystem_on_the_nvme_refused(addr, tmp_path):
    from pcipass import engine

    a = addr["nvme"]
    (disk,) = [
        n
        for n in os.listdir(SYS_PCI / a / "nvme" / os.listdir(SYS_PCI / a / "nvme")[0])
        if n.startswith("nvme") and "n" in n[4:]
    ]
    assert _sh("modprobe", "ext4").returncode == 0  # no udev/kmod helper autoloads it in this guest
    assert _sh("mkfs.ext4", "-q", "-F", f"/dev/{disk}").returncode == 0
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert _sh("mount", f"/dev/{disk}", str(mnt)).returncode == 0
    try:
        r = engine.enable(_host(), [a], force=False)
        assert r.exit_code == 5 and f"{disk}: mounted on {mnt}" in r.devices[0].reasons[0]
        assert _driver(a) == "nvme"
    finally:
        assert _sh("umount", str(mnt)).returncode == 0
    r = engine.enable(_host(), [a])
    assert r.exit_code == 0, r.data()
    assert engine.disable(_host(), [a]).exit_code == 0


# --- dry run ----------------------------------------------------------------------------------------------------------
def _sysfs_state() -> dict[str, object]:
    out: dict[str, object] = {}
    for a in sorted(os.listdir(SYS_PCI)):
        d = SYS_PCI / a
        out[a] = (_driver(a), _override(a), (d / "enable").read_text())
    drivers = Path("/sys/bus/pci/drivers")
    out["drivers"] = {
        n: sorted(x for x in os.listdir(drivers / n) if x.startswith("0000:")) for n in sorted(os.listdir(drivers))
    }
    out["vfio"] = sorted(os.listdir("/dev/vfio")) if Path("/dev/vfio").exists() else None
    out["modules"] = sorted(os.listdir("/sys/module"))
    out["state"] = STATE_DIR.exists()
    return out


def test_dry_run_leaves_every_attribute_as_it_was(addr, topology):
    from pcipass import engine

    before = _sysfs_state()
    for args, kw in (
        ([addr["e1000e"], addr["audio"]], {}),
        ([addr["mf_e1000"]], {"move_group": True}),
        ([addr["bridged_rtl8139"]], {"move_group": True, "driver": "auto"}),
        ([addr["nvme"]], {"driver": "pci-stub"}),
    ):
        r = engine.enable(_host(), args, dry_run=True, **kw)
        assert r.exit_code == 0 and r.steps, r.data()
    engine.disable(_host(), topology["free_endpoints"], dry_run=True)
    assert _sysfs_state() == before


# --- failures ---------------------------------------------------------------------------------------------------
class _Injecting:
    """The real kernel, with one failure injected (or an action run) before the n-th write."""

    def __init__(self, n: int, action):
        from pcipass.engine.kernel import SysfsKernel

        self.real = SysfsKernel(_host())
        self.n, self.action, self.count = n, action, 0

    def write(self, path, value, *, address, timeout):
        self.count += 1
        if self.count == self.n + 1:
            self.action(path, value)
        self.real.write(path, value, address=address, timeout=timeout)

    def load_module(self, name, *, timeout):
        self.real.load_module(name, timeout=timeout)

    def vfio_status(self, group):
        return self.real.vfio_status(group)


def test_failure_injected_mid_group_puts_every_device_back(addr):
    from pcipass import engine
    from pcipass.errors import SysfsError

    nics = [addr["bridged_e1000"], addr["bridged_rtl8139"]]
    before = _snapshot()

    def busy(path, value):
        raise SysfsError(f"injected: write {path}", errno=errno.EBUSY, remedy="injected")

    for n in range(6):  # every write of the two-device group: override, unbind, probe, x2
        r = engine.enable(_host(), [nics[0]], move_group=True, kernel=_Injecting(n, busy))
        assert r.exit_code == 1 and {d.rolled_back for d in r.devices} == {True}, (n, r.data())
        assert _snapshot() == before, f"not restored after a failure at write {n}"
        assert not Path(f"/dev/vfio/{_group(nics[0])}").exists()


# Removal uses the group behind the PCI bridge: a function of a multifunction slot that is removed and
# rescanned comes back in a NEW group of its own (seen here with 6.1: the slot's function-alias grouping is not
# applied to a lone rescanned function), which would change the topology for every later test.
def test_device_removed_between_planning_and_writing(addr, monkeypatch):
    import pcipass.engine.ops as ops
    from pcipass import engine

    a, peer = addr["bridged_e1000"], addr["bridged_rtl8139"]
    real_waiter = ops.Waiter

    def unplug_then_wait(host):
        # The run makes its waiter after planning and before the first write: unplug right there.
        _raw_write(SYS_PCI / peer / "remove", "1")
        return real_waiter(host)

    monkeypatch.setattr(ops, "Waiter", unplug_then_wait)
    r = engine.enable(_host(), [a], move_group=True)
    assert r.exit_code == 1 and "gone since planning" in r.errors[0].message
    assert (_driver(a), _override(a)) == ("e1000", None)  # nothing written
    _raw_write(Path("/sys/bus/pci/rescan"), "1")
    assert _driver(peer) == "8139cp" and _group(peer) == _group(a)


def test_device_removed_mid_group_rolls_back_the_rest(addr):
    from pcipass import engine

    a, peer = addr["bridged_e1000"], addr["bridged_rtl8139"]

    def unplug(path, value):
        _raw_write(SYS_PCI / peer / "remove", "1")

    r = engine.enable(_host(), [a], move_group=True, kernel=_Injecting(3, unplug))  # before peer's override
    assert r.exit_code == 1 and r.errors[0].errno == errno.ENOENT, r.data()
    assert {d.address: d.rolled_back for d in r.devices} == {a: True, peer: True}
    assert (_driver(a), _override(a)) == ("e1000", None)
    _raw_write(Path("/sys/bus/pci/rescan"), "1")
    assert _driver(peer) == "8139cp" and _group(peer) == _group(a)


def test_blacklisted_vfio_pci_is_a_clear_error_then_loaded_by_modprobe(addr):
    from pcipass import engine

    a = addr["audio"]
    if Path("/sys/module/vfio_pci").exists():
        p = _sh("modprobe", "-r", "vfio_pci")
        assert p.returncode == 0, p.stderr
    conf = Path("/etc/modprobe.d/pcipass-test-binding.conf")
    conf.write_text("blacklist vfio_pci\n")
    r = engine.enable(_host(), [a])
    assert r.exit_code == 1 and _driver(a) == "snd_hda_intel"
    err = r.errors[0]
    assert err.code == "module" and f"blacklisted ({conf}:1)" in err.message and "modprobe vfio_pci" in err.remedy
    conf.unlink()
    r = engine.enable(_host(), [a])  # now the engine loads it itself (modprobe)
    assert r.exit_code == 0, r.data()
    assert r.steps[0].step.op.value == "load-module" and r.steps[0].status == "done"
    assert engine.disable(_host(), [a]).exit_code == 0


# --- processes: CLI exit codes, concurrency, kill -9 ----------------------------------------------------------------
def test_cli_partial_exit_code_and_json(addr, run_cli):
    """One real process (each costs seconds under TCG): exit 3 and the per-device JSON report."""
    from pcipass import engine

    p = run_cli("--format", "json", "enable", addr["e1000e"], addr["mf_virtio_net"])
    assert p.returncode == 3, p.stderr
    doc = json.loads(p.stdout)
    assert doc["status"] == "partial"
    assert [(d["address"], d["outcome"]) for d in doc["data"]["devices"]] == [
        (addr["e1000e"], "done"),
        (addr["mf_virtio_net"], "refused"),
    ]
    assert "would not be viable" in p.stderr
    assert engine.disable(_host(), [addr["e1000e"]]).exit_code == 0


def test_two_concurrent_enables_are_serialized(addr):
    from pcipass.engine.state import Lock

    targets = [addr["e1000e"], addr["audio"]]
    with Lock(_host(), wait=0, command="enable (held by the test)"):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "pcipass", "enable", t],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            for t in targets
        ]
        # Each run announces that it waits for the lock (the test holds it) before doing anything.
        for p in procs:
            line = p.stderr.readline()
            assert "waiting up to 30 s for the lock held by pid" in line, line
        assert [_driver(t) for t in targets] == ["e1000e", "snd_hda_intel"]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [_driver(t) for t in targets] == ["vfio-pci", "vfio-pci"]
    assert all("waited" in err for _, err in outs)
    from pcipass import engine

    assert engine.disable(_host(), targets).exit_code == 0


def test_kill_9_during_enable_then_the_next_run_recovers(addr, tmp_path):
    from pcipass import engine

    a, peer = addr["mf_virtio_net"], addr["mf_e1000"]
    marker = tmp_path / "stopped"
    code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from pcipass import engine
        from pcipass.engine.kernel import SysfsKernel
        from pcipass.host import Host
        class Stopping(SysfsKernel):
            n = 0
            def write(self, path, value, **kw):
                super().write(path, value, **kw)
                Stopping.n += 1
                if Stopping.n == 4:  # {a} on vfio-pci, {peer}'s override written
                    Path({str(marker)!r}).write_text("x")
                    time.sleep(120)
        engine.enable(Host("/"), [{a!r}], move_group=True, kernel=Stopping(Host("/")))
    """)
    p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert p.poll() is None and time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.1)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert (_driver(a), _driver(peer), _override(peer)) == ("vfio-pci", "e1000", "vfio-pci")
    st = engine.status(_host())
    assert {d.address for d in st.devices if d.interrupted} == {a, peer}
    assert any("died before finishing" in m for m in st.messages)
    r = engine.disable(_host(), [a, peer])
    assert r.exit_code == 0, r.data()
    assert {x.address for x in r.interrupted} == {a, peer}
    assert (_driver(a), _override(a), _driver(peer), _override(peer)) == ("virtio-pci", None, "e1000", None)
