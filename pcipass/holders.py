"""Which processes hold a PCI device open: one pass over ``/proc``, looking only for what the run asks about.

A process holds a device through its host driver when it has one of the device's nodes open (an fd link in
``/proc/<pid>/fd``, as fuser(1) finds them) or has one of the device's ``/sys`` resource files mapped (a line of
``/proc/<pid>/maps``, which outlives the fd). The nodes of a device:

- DRM: ``/dev/dri/cardN`` and ``/dev/dri/renderDN`` whose sysfs ``device`` is the function (``/sys/class/drm``);
- NVIDIA: ``/dev/nvidiaN`` (N is the GPU's "Device Minor" in ``/proc/driver/nvidia/gpus/<address>/information``),
  and the driver's shared nodes (``/dev/nvidiactl``, ``-modeset``, ``-uvm``, ``-uvm-tools``) when it is the only
  GPU on the nvidia driver: ``nvidia-persistenced`` and every CUDA process hold those;
- VFIO: ``/dev/vfio/<group>`` and the device's ``/dev/vfio/devices/vfioN`` cdev (iommufd users).

What is read, and what is skipped (figures: bench/holders.py, bench/HOLDERS.md). Reading every fd link of
every process is one readlink(2) each, a million on a busy host, and Linux has no cheaper per-process answer to
"has this process a file of that device open" (``maps`` shows mappings only; ``fdinfo`` is per fd). So the scan
reads only what can matter to the run:

- no fd link at all when the devices asked about have no node (a NIC, a disk: their users are the network and
  storage checks of ``hostuse``), and maps only when resource mappings are asked about;
- a DRM device's nodes are not looked for when DRM says nobody has any of them open: the kernel keeps every open
  file of a DRM device on the device's ``filelist`` from open to last release (drivers/gpu/drm/drm_file.c
  drm_open_helper, drm_close_helper; a file mapped after its fd was closed stays open, and one passed to
  another process or inherited is the same file), and debugfs lists it (``/sys/kernel/debug/dri/<minor>/clients``,
  drm_clients_info). The kernel's own clients (fbdev emulation) are on ``clientlist``, not ``filelist``. So a
  ``clients`` list of only its header, for every minor of the device, proves no process holds it. Whenever that
  cannot be told (debugfs not mounted or not readable: not root; no list for a minor; a header of another
  format; a list longer than any real one), and whenever a client is listed, the fd links are read as before:
  the list names who opened (or, since 6.7, last used) the file, not every process holding it (a file passed
  with SCM_RIGHTS, logind's way, or inherited over fork is held by processes it does not name);
- NVIDIA's and VFIO's nodes have no such list (a VFIO group held without a device fd shows nowhere in sysfs),
  so they are looked for in every fd link.

Kernel threads and processes this user may not inspect have an empty or unreadable ``fd`` directory and cost one
failed listing. The scan happens once per run; lookups are dictionary reads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple

from .host import Host

if TYPE_CHECKING:
    from .inventory import Inventory

# What may be read of one process's maps or cgroup file: a --root tree may be hostile (a huge file), and a
# real maps file of a process with a million mappings is ~100 MiB; the resource mappings of interest are
# found in the part read.
_MAX_PROC_FILE = 64 << 20
# A DRM minor's node (drivers/gpu/drm/drm_drv.c drm_minor_alloc names them cardN, renderDN; controlDN
# before 6.8). Connector objects (card0-HDMI-A-1) in /sys/class/drm have no node.
_DRM_NODE = re.compile(r"(card|renderD|controlD)[0-9]+")
# NVIDIA's nodes shared by every GPU of the driver (nvidia.ko: nvidiactl 195:255, nvidia-modeset 195:254;
# nvidia-uvm.ko: nvidia-uvm, nvidia-uvm-tools).
_NVIDIA_SHARED = ("nvidiactl", "nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools")
# DRM's clients list (drivers/gpu/drm/drm_debugfs.c drm_clients_info): a header, then a line per open file. The
# header's first columns were "command pid dev master a" and are "command tgid dev master a" (more columns were
# appended later: name, id); it is checked so that a file of another format never reads as "no client".
_CLIENTS_HEADER = re.compile(rb" *command +(?:pid|tgid) +dev +master +a(?: [^\n]*)?\n")
# A clients list longer than this is not the kernel's (a line is ~150 bytes), or lists clients anyway.
_MAX_CLIENTS = 1 << 20
# A mapped PCI resource file (drivers/pci/pci-sysfs.c pci_create_resource_files: resourceN, resourceN_wc).
_RESOURCE = re.compile(rb"/([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])/resource[0-9]+(?:_wc)?$")


class HolderKind(str, Enum):
    DRM = "drm"  #: a DRM card or render node of the device is open
    NVIDIA = "nvidia"  #: an NVIDIA node of the device is open
    VFIO = "vfio"  #: the device's VFIO group or cdev is open
    MAPPED = "mapped"  #: a resource file (BAR) of the device is mapped


class Process(NamedTuple):
    pid: int
    command: str  #: ``comm``, made printable
    unit: str | None  #: the systemd unit it runs in (``/proc/<pid>/cgroup``), None when none or not systemd
    user_unit: bool  #: the unit is a user manager's (``user@UID.service``), not the system's

    @property
    def name(self) -> str:
        return f"{self.command} (pid {self.pid})"


class Holder(NamedTuple):
    address: str  #: the PCI device held
    kind: HolderKind
    node: str  #: the file held, as the process sees it (``/dev/dri/card0``, ``/sys/.../resource0``)
    process: Process


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def unit_of(cgroup_text: str) -> tuple[str | None, bool]:
    """The systemd unit of a process from its ``/proc/<pid>/cgroup``: the deepest ``.service`` of its path in
    the unified hierarchy (``0::/system.slice/nvidia-persistenced.service``), else of systemd's named v1
    hierarchy (``1:name=systemd:/...``). A process of a login session (``session-2.scope``) has no unit to
    stop. Also whether it is a user manager's unit (under ``user@UID.service``)."""
    paths = {}
    for line in cgroup_text.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":
            paths["v2"] = path
        elif controllers == "name=systemd":
            paths["v1"] = path
    path = paths.get("v2") or paths.get("v1") or ""
    parts = [p for p in path.split("/") if p]
    services = [i for i, p in enumerate(parts) if p.endswith(".service")]
    if not services:
        return None, False
    deepest = services[-1]
    user = any(p.startswith("user@") for p in parts[:deepest])
    return _printable(parts[deepest]), user


def _read_capped(path: str, dir_fd: int | None = None, limit: int = _MAX_PROC_FILE) -> bytes | None:
    """A /proc file's content up to ``limit``; None when unreadable. O_NONBLOCK: a FIFO planted in a --root tree
    must not block the scan."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        chunks = []
        size = 0
        while size < limit:
            chunk = os.read(fd, min(1 << 20, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


class Watch:
    """What one run looks for: node path (as processes see it) -> (PCI address, kind); and the addresses whose
    mapped resource files count."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[str, HolderKind]] = {}
        self.prefixes: dict[str, HolderKind] = {}  #: every node under a directory (``/dev/vfio/``), for no address
        self.mapped: set[str] = set()
        self.drm: dict[str, set[str]] = {}  #: address -> its DRM minors (``card0``, ``renderD128``)

    def drm_minor(self, host: Host, name: str, address: str) -> None:
        """A DRM minor of ``address``: its node, and its debugfs ``clients`` list that may spare the fd scan."""
        self.node(host, host.dri_node(name), address, HolderKind.DRM)
        self.drm.setdefault(address, set()).add(name)

    def without_drm(self, addresses: set[str]) -> Watch:
        """This watch without the DRM nodes of ``addresses``."""
        out = Watch()
        out.nodes = {p: v for p, v in self.nodes.items() if not (v[1] is HolderKind.DRM and v[0] in addresses)}
        out.prefixes = dict(self.prefixes)
        out.mapped = set(self.mapped)
        out.drm = {a: set(m) for a, m in self.drm.items() if a not in addresses}
        return out

    def node(self, host: Host, path: os.PathLike[str] | str, address: str, kind: HolderKind) -> None:
        # A process's fd link shows the path in its own mount namespace (/dev/...); a tree under --root may
        # also have been made with links to the node under the root.
        self.nodes[host.shown(path)] = (address, kind)
        self.nodes[os.fspath(path)] = (address, kind)

    def prefix(self, host: Host, directory: os.PathLike[str] | str, kind: HolderKind) -> None:
        self.prefixes[host.shown(directory) + "/"] = kind
        self.prefixes[os.fspath(directory) + "/"] = kind

    def __bool__(self) -> bool:
        return bool(self.nodes or self.prefixes or self.mapped)


def device_watch(host: Host, inv: Inventory, addresses: Iterable[str]) -> Watch:
    """The DRM and NVIDIA nodes of ``addresses``, and their resource mappings."""
    watch = Watch()
    nvidia = [d.address for d in inv.devices.values() if d.driver == "nvidia"]
    for a in addresses:
        dev = inv.devices.get(a)
        if dev is None:
            continue
        watch.mapped.add(a)
        for name in dev.drm:
            if _DRM_NODE.fullmatch(name):
                watch.drm_minor(host, name, a)
        if dev.driver == "nvidia":
            minor = nvidia_minor(host, a)
            if minor is not None:
                watch.node(host, host.nvidia_node(f"nvidia{minor}"), a, HolderKind.NVIDIA)
            if nvidia == [a]:
                for name in _NVIDIA_SHARED:
                    watch.node(host, host.nvidia_node(name), a, HolderKind.NVIDIA)
    return watch


def nvidia_minor(host: Host, address: str) -> int | None:
    """The GPU's ``Device Minor`` (its /dev/nvidiaN) from the NVIDIA driver's procfs."""
    text = (_read_capped(os.fspath(host.nvidia_gpu_information(address))) or b"").decode("utf-8", "replace")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Device Minor":
            value = value.strip()
            return int(value) if value.isdigit() else None
    return None


def drm_clients(host: Host, minor: str) -> bool | None:
    """Whether DRM's debugfs lists an open file of the device of ``minor`` (``card0``, ``renderD128``): False when
    its ``clients`` list is only the header, True when it lists one, None when it cannot tell (not a DRM node
    name, no debugfs or not readable, a header of another format, a file too long or not ending in a newline).
    Bounded and non-blocking (a FIFO or a huge file there in a --root tree)."""
    m = _DRM_NODE.fullmatch(minor)
    if m is None:
        return None
    data = _read_capped(os.fspath(host.drm_debugfs(minor[len(m.group(1)) :]) / "clients"), limit=_MAX_CLIENTS)
    if data is None or len(data) >= _MAX_CLIENTS or not data.endswith(b"\n"):
        return None
    header = _CLIENTS_HEADER.match(data)
    if header is None:
        return None
    return bool(data[header.end() :].strip())


def idle_drm(host: Host, watch: Watch) -> set[str]:
    """The addresses of ``watch`` whose DRM devices no process holds, by DRM's own clients list (``drm_clients``
    False for every minor of the address): their nodes need not be looked for in any fd link."""
    return {a for a, minors in watch.drm.items() if minors and all(drm_clients(host, m) is False for m in minors)}


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: Below this many processes the scan is not worth a forked helper (a fork costs milliseconds).
_FORK_FROM = 2048

Hit = tuple[str, str, str]  #: (address, kind value, node): plain values, for the forked helper's marshal


def _reader(proc_fd: int, watch: Watch):
    """``read(pid)``: what one process holds of ``nodes`` and ``mapped``, as hits (None: nothing). Paths are
    opened relative to directory fds: a path walk from / for each of a million fd links costs a third of
    the scan (bench/holders.py)."""
    readlink = os.readlink
    listdir = os.listdir
    targets = {path: (address, kind.value) for path, (address, kind) in watch.nodes.items()}
    prefixes = tuple(watch.prefixes)
    prefix_kind = {p: k.value for p, k in watch.prefixes.items()}
    mapped = watch.mapped

    def read(pid: object) -> list[Hit] | None:
        hits: list[Hit] = []
        if targets or prefixes:
            try:
                fd_dir = os.open(f"{pid}/fd", _DIR, dir_fd=proc_fd)
            except OSError:  # gone, or not ours to inspect
                fd_dir = -1
            if fd_dir >= 0:
                try:
                    for fd in listdir(fd_dir):
                        try:
                            target = readlink(fd, dir_fd=fd_dir)
                        except OSError:
                            continue
                        hit = targets.get(target)
                        if hit is not None:
                            hits.append((hit[0], hit[1], target))
                        elif prefixes and target.startswith(prefixes):
                            kind = next(k for p, k in prefix_kind.items() if target.startswith(p))
                            hits.append(("", kind, target))
                except OSError:
                    pass
                finally:
                    os.close(fd_dir)
        if mapped:
            data = _read_capped(f"{pid}/maps", proc_fd)
            if data and b"/resource" in data:
                for line in data.splitlines():
                    m = _RESOURCE.search(line)
                    if m and m.group(1).decode() in mapped:
                        path = line.split(None, 5)[-1].decode("utf-8", "replace")
                        hits.append((m.group(1).decode(), HolderKind.MAPPED.value, path))
        return hits or None

    return read


def scan(host: Host, watch: Watch, *, drm_clients: bool = True) -> list[Holder]:
    """Every process holding what ``watch`` names, in pid order then node. Reads nothing when it names nothing.

    The DRM nodes of a device DRM lists no client of are not looked for (``idle_drm``; ``drm_clients=False``
    looks for them in every fd link regardless). A large /proc is read by two processes
    (``inventory.parallel.ForkedReader``: the fd links are system-call bound, and a forked child has its own
    interpreter), meeting wherever their speeds take them."""
    from .inventory.parallel import ForkedReader

    if drm_clients and watch.drm:
        watch = watch.without_drm(idle_drm(host, watch))
    if not watch:
        return []
    try:
        proc_fd = os.open(host.proc(), _DIR)
    except OSError:
        return []
    try:
        pids = sorted((p for p in os.listdir(proc_fd) if p.isdigit()), key=int)
        read = _reader(proc_fd, watch)
        child = ForkedReader.start(read, pids) if len(pids) >= _FORK_FROM else None
        results = child.join(read) if child is not None else [read(p) for p in pids]
        out: list[Holder] = []
        for pid, hits in zip(pids, results):
            if not hits:
                continue
            comm = (_read_capped(f"{pid}/comm", proc_fd) or b"").decode("utf-8", "replace").strip() or "unknown"
            unit, user = unit_of((_read_capped(f"{pid}/cgroup", proc_fd) or b"").decode("utf-8", "replace"))
            process = Process(int(pid), _printable(comm), unit, user)
            for address, kind, node in sorted(set(hits)):
                out.append(Holder(address, HolderKind(kind), _printable(node), process))
        return out
    finally:
        os.close(proc_fd)


def remedy(holders: Iterable[Holder]) -> str:
    """What to stop: each systemd unit once (``systemctl stop``), else each process by name and pid."""
    units: list[str] = []
    others: list[str] = []
    for h in holders:
        p = h.process
        if p.unit:
            cmd = f"systemctl {'--user ' if p.user_unit else ''}stop {p.unit}"
            if cmd not in units:
                units.append(cmd)
        elif p.name not in others:
            others.append(p.name)
    parts = units + ([f"end {', '.join(others)}"] if others else [])
    return "; ".join(parts)
