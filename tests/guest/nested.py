"""Nested VMs inside the real-kernel guest: a bare qemu driven over QMP, and a throw-away libvirtd.

Guest-only (``tests/guest/`` is never imported on the host). Every process started here runs in its own
session under ``timeout -s KILL`` (a hard limit even if the test hangs) and is killed by process group when
its context ends. The QEMUs libvirtd starts are bounded by libvirtd's own limit (a libvirt call cannot
outlive it) and ended when the fixture stops it: destroyed through libvirt, then killed by their pid files.
Nothing here writes outside the guest's throw-away overlay (``/etc/libvirt``, ``/run``, ``/var``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

WORK = Path("/run/pcipass-e2e")
QEMU_LIMIT_S = 120  #: hard limit of one nested qemu (a VM paused at reset needs seconds)
LIBVIRTD_LIMIT_S = 300  #: hard limit of the libvirtd of one test module
URI = "qemu:///system"

#: The bare nested VM of the scenarios: TCG (the guest has no usable KVM), q35, no default devices,
#: 64 MiB, stopped before the first instruction (-S): no OS is needed to see what QEMU assigned.
BASE_ARGS = ("-accel", "tcg", "-machine", "q35", "-nodefaults", "-display", "none", "-m", "64", "-S")


def in_guest() -> bool:
    try:
        return "pcipass_guest=1" in Path("/proc/cmdline").read_text().split()
    except OSError:
        return False


def qemu_binary() -> str:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise AssertionError("qemu-system-x86_64 not visible in the guest (it comes from the host's / over 9p)")
    return qemu


def _kill_group(proc: subprocess.Popen, grace: float) -> None:
    """End the process group of ``proc`` (started with start_new_session): TERM, then KILL after ``grace``."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


# --------------------------------------------------------------------------- PCI lists (query-pci)


@dataclass(frozen=True)
class GuestFn:
    """One PCI function as QEMU itself lists it (``query-pci``)."""

    bus: int
    slot: int
    function: int
    ids: str  #: "vvvv:dddd"
    qdev_id: str
    behind: str  #: qdev id of the bridge (root port) the function sits behind; "" on a root bus


def pci_functions(query_pci: list[dict]) -> list[GuestFn]:
    """Flatten QMP ``query-pci``'s answer (buses, with devices behind bridges nested) into functions."""
    out: list[GuestFn] = []

    def walk(devices: list[dict], behind: str) -> None:
        for d in devices:
            out.append(
                GuestFn(
                    d["bus"],
                    d["slot"],
                    d["function"],
                    f"{d['id']['vendor']:04x}:{d['id']['device']:04x}",
                    d.get("qdev_id", ""),
                    behind,
                )
            )
            walk(d.get("pci_bridge", {}).get("devices", []), d.get("qdev_id", ""))

    for bus in query_pci:
        walk(bus["devices"], "")
    return out


def bridges_numbered(query_pci: list[dict]) -> bool:
    """True once firmware gave every bridge a secondary bus number (``query-pci`` lists what sits behind a
    bridge only then)."""
    found = [d["pci_bridge"]["bus"]["secondary"] for b in query_pci for d in b["devices"] if "pci_bridge" in d]
    return bool(found) and all(found)


# --------------------------------------------------------------------------- bare qemu + QMP


class QmpError(Exception):
    pass


class Qmp:
    """A minimal QMP client: newline-delimited JSON on a unix socket, every read bounded by a deadline."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""
        greeting = self._read(time.monotonic() + timeout)
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities", timeout=timeout)

    def _read(self, deadline: float) -> dict:
        while b"\n" not in self.buf:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QmpError("QMP connection closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def execute(self, command: str, timeout: float = 30, **arguments):
        msg = {"execute": command, **({"arguments": arguments} if arguments else {})}
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if "event" in reply:
                continue
            if "error" in reply:
                raise QmpError(f"{command}: {reply['error'].get('desc')}")
            return reply["return"]

    def close(self) -> None:
        self.sock.close()


class QemuRefused(Exception):
    """The nested qemu exited before its QMP monitor answered."""

    def __init__(self, returncode: int | None, stderr: str) -> None:
        super().__init__(f"qemu exited with {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass
class NestedQemu:
    proc: subprocess.Popen
    qmp: Qmp
    stderr_path: Path

    def pci(self) -> list[GuestFn]:
        return pci_functions(self.qmp.execute("query-pci"))

    def quit(self, timeout: float = 30) -> int:
        """QMP ``quit``; the exit status of qemu."""
        with suppress(QmpError):  # qemu may close the socket before the reply reaches us
            self.qmp.execute("quit", timeout=timeout)
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextmanager
def nested_qemu(*devices: str, name: str, timeout: float = 60) -> Iterator[NestedQemu]:
    """Start ``qemu BASE_ARGS -device D...`` paused with a QMP socket; yield once QMP answers.

    Raises :class:`QemuRefused` if qemu exits first (e.g. "group N is not viable"). The VM is killed (its
    whole process group) when the block ends, whatever happened.
    """
    WORK.mkdir(parents=True, exist_ok=True)
    sock = WORK / f"{name}.qmp"
    sock.unlink(missing_ok=True)
    err_path = WORK / f"{name}.stderr"
    args = [
        "timeout",
        "-s",
        "KILL",
        str(QEMU_LIMIT_S),
        qemu_binary(),
        *BASE_ARGS,
        "-qmp",
        f"unix:{sock},server=on,wait=off",
    ]
    for d in devices:
        args += ["-device", d]
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    qmp = None
    try:
        deadline = time.monotonic() + timeout
        while qmp is None:
            if proc.poll() is not None:
                raise QemuRefused(proc.returncode, err_path.read_text(errors="replace"))
            if time.monotonic() > deadline:
                raise TimeoutError(f"nested qemu: no QMP socket after {timeout:.0f} s\n{err_path.read_text()}")
            if sock.exists():
                try:
                    qmp = Qmp(sock, timeout=max(1.0, deadline - time.monotonic()))
                except (OSError, QmpError):  # not listening yet, or qemu is exiting (checked above next)
                    qmp = None
            if qmp is None:
                time.sleep(0.05)
        yield NestedQemu(proc, qmp, err_path)
    finally:
        if qmp is not None:
            qmp.close()
        _kill_group(proc, grace=5)


def run_refused(*devices: str, name: str, timeout: float = 60) -> QemuRefused:
    """Start the nested VM expecting qemu to refuse; the refusal (a started VM is an AssertionError)."""
    try:
        with nested_qemu(*devices, name=name, timeout=timeout) as vm:
            raise AssertionError(f"nested qemu started although it should not have; PCI: {vm.pci()}")
    except QemuRefused as refused:
        return refused


# --------------------------------------------------------------------------- libvirtd in the guest

#: Settings measured in this guest (docs: ../shared/notes/real-kernel-testing.md): no udev, so no mount
#: namespace or cgroups for QEMU (else "failed to open /dev/vfio/N"), QEMU as root, no security driver,
#: QEMU's output straight to /var/log/libvirt/qemu/<domain>.log (no virtlogd needed).
QEMU_CONF = """\
namespaces = []
cgroup_controllers = []
user = "root"
group = "root"
security_driver = "none"
stdio_handler = "file"
"""


class Libvirtd:
    """A libvirtd of our own in the guest (system mode, qemu:///system), for one test module."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.log = WORK / "libvirtd.log"

    def start(self, timeout: float = 60):
        if not in_guest():  # the fixture runs only in the guest; never start libvirtd anywhere else
            raise AssertionError("refusing to start libvirtd outside the real-kernel guest")
        import libvirt

        # libvirt refuses VFIO hostdevs ("host doesn't support VFIO PCI passthrough") until /dev/vfio/vfio
        # exists, as on any host prepared for passthrough.
        subprocess.run(["modprobe", "vfio-pci"], check=True, capture_output=True, timeout=60)
        for d in ("/run/libvirt", "/var/lib/libvirt/qemu", "/var/log/libvirt/qemu", "/var/cache/libvirt"):
            os.makedirs(d, exist_ok=True)
        Path("/etc/libvirt/qemu.conf").write_text(QEMU_CONF)
        # The guest sees the outer machine's /etc: never autostart its networks (dnsmasq, a bridge) or domains.
        for autostart in (Path("/etc/libvirt/qemu/autostart"), Path("/etc/libvirt/qemu/networks/autostart")):
            for link in autostart.glob("*.xml"):
                link.unlink()
        WORK.mkdir(parents=True, exist_ok=True)
        sock = Path("/run/libvirt/libvirt-sock")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                ["timeout", "-s", "KILL", str(LIBVIRTD_LIMIT_S), "libvirtd"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"libvirtd did not come up (exit {self.proc.poll()}):\n{self.log_tail()}")
            time.sleep(0.05)
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        while True:
            try:
                return libvirt.open(URI)
            except libvirt.libvirtError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, conn) -> None:
        """Destroy and undefine every domain (they hold devices), then end libvirtd and any qemu it left."""
        import libvirt

        if conn is not None:
            with suppress(libvirt.libvirtError):
                for dom in conn.listAllDomains():
                    with suppress(libvirt.libvirtError):
                        if dom.isActive():
                            dom.destroy()
                    with suppress(libvirt.libvirtError):
                        dom.undefine()
            with suppress(libvirt.libvirtError):
                conn.close()
        if self.proc is not None:
            _kill_group(self.proc, grace=15)
        for pidfile in Path("/run/libvirt/qemu").glob("*.pid"):  # qemu processes libvirtd started, if any
            with suppress(ValueError, OSError):
                pid = int(pidfile.read_text().strip())
                if Path(f"/proc/{pid}/comm").read_text().startswith("qemu-system"):
                    os.kill(pid, signal.SIGKILL)


def domain_log(name: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(f"/var/log/libvirt/qemu/{name}.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def monitor_pci(dom) -> list[dict]:
    """QMP ``query-pci`` of a libvirt domain through libvirt's own monitor connection."""
    import libvirt_qemu

    return json.loads(libvirt_qemu.qemuMonitorCommand(dom, '{"execute": "query-pci"}', 0))["return"]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
