"""Is a PCI device in use by the host? Network, storage and console users, found the way the kernel shows them.

``HostUse.scan`` reads every host-wide table ONCE (network interfaces and their uppers, IPv4/IPv6 addresses,
routes, mounts, swaps, block devices and holders, framebuffers and consoles); ``reasons(address)`` is then a
dictionary lookup per device, so checking 1,024 SR-IOV VFs costs the same per device as checking one.

What counts as "in use" (each one cuts the host off, or crashes it, when the device is handed to a VM):
- network: an interface of the device with an address that is not link-local, or named by a route, or
  enslaved (``master``) / stacked under (``upper_*``) an interface that is (a bond or bridge carrying the
  management address: harvester/harvester#2960). Link-local IPv6 addresses and their routes exist on every
  interface that is up, so they do not count.
- storage: a disk of the device or one of its partitions that is mounted (``/proc/self/mountinfo`` by
  major:minor), a member of a mounted btrfs (whose mountinfo major:minor is anonymous), used as swap, or held
  by device-mapper/md/LVM (``holders/``).
- display: the boot VGA device (``boot_vga`` = 1) while a framebuffer or the framebuffer console lives on it:
  efifb/simpledrm keep the BAR reserved and vfio-pci fails with "BAR 1: can't reserve" (harvester/pcidevices#81).
- input: a keyboard behind the device (a USB controller, typically): handing the controller to a VM takes the
  host's console keyboard (or the BMC's virtual one) with it. A USB disk or NIC behind a controller needs no
  rule of its own: its block device or interface already belongs to the controller (the nearest PCI device
  on its path) and counts as above.
- processes: a process with a DRM or NVIDIA node of the device open, or a resource file (BAR) of it mapped
  (``holders``): unbinding the driver waits for them (a display server, ``nvidia-persistenced``, a compute job)
  or pulls the device from under them. Each is named with its pid, command and systemd unit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import PurePosixPath
from typing import NamedTuple

from .address import pci_owner
from .holders import Holder, HolderKind, device_watch
from .holders import scan as scan_holders
from .host import Host, unescape_mount
from .inventory import Inventory
from .sysfs import link_name, link_target, list_dir, read_lines, read_str

# if_inet6 scope values (include/net/ipv6.h IPV6_ADDR_SCOPE_*, shifted as /proc prints them).
_SCOPE_LINK = 0x20
_SCOPE_HOST = 0x10
# include/uapi/linux/ipv6_route.h: RTF_LOCAL marks the route of a local address, RTF_REJECT an unreachable
# route (the "::/0 dev lo" placeholder); neither is a path out through the interface.
_RTF_LOCAL = 0x80000000
_RTF_REJECT = 0x0200


class UseKind(str, Enum):
    NET_ADDRESS = "net-address"  #: the interface has an address
    NET_ROUTE = "net-route"  #: the interface is in the routing table
    NET_UPPER = "net-upper"  #: enslaved to / stacked under an interface that is in use
    MOUNTED = "mounted"  #: a filesystem on the disk or a partition is mounted
    SWAP = "swap"  #: the disk or a partition is active swap
    HELD = "held"  #: device-mapper / md / LVM holds the disk or a partition
    CONSOLE = "console"  #: the boot display: framebuffer or framebuffer console
    KEYBOARD = "keyboard"  #: a keyboard behind the device (a USB controller's)
    DRM_OPEN = "drm-open"  #: a process has a DRM card/render node of the device open
    NVIDIA_OPEN = "nvidia-open"  #: a process has an NVIDIA node of the device open
    MAPPED = "mapped"  #: a process has a resource file (BAR) of the device mapped


_HOLDER_KIND = {
    HolderKind.DRM: UseKind.DRM_OPEN,
    HolderKind.NVIDIA: UseKind.NVIDIA_OPEN,
    HolderKind.MAPPED: UseKind.MAPPED,
}


# NamedTuples rather than dataclasses: every ``enable`` imports this module, and a dataclass compiles its
# generated methods at import (tens of milliseconds each under emulation).
class InUse(NamedTuple):
    address: str  #: the PCI device
    kind: UseKind
    object: str  #: the interface, block device, framebuffer or node concerned
    detail: str  #: what uses it, for humans
    holder: Holder | None = None  #: the process, for the process kinds

    @property
    def message(self) -> str:
        return f"{self.object}: {self.detail}"


def _hex_ipv4(text: str) -> int | None:
    """A /proc/net/route address as an int in network order. The kernel prints the __be32 with %08X, i.e.
    as the host reads the bytes: on a little-endian host "0100A8C0" is 192.168.0.1."""
    try:
        return int.from_bytes(int(text, 16).to_bytes(4, sys.byteorder), "big")
    except (ValueError, OverflowError):
        return None


def _ipv4_text(value: int) -> str:
    return ".".join(str(b) for b in value.to_bytes(4, "big"))


def _ipv4_value(text: str) -> int | None:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return None
    return int.from_bytes(bytes(int(p) for p in parts), "big")


def _ipv6_text(hex32: str) -> str:
    import ipaddress

    return str(ipaddress.IPv6Address(bytes.fromhex(hex32)))


def _fib_local_addresses(lines: list[str]) -> set[str]:
    """Local IPv4 addresses: leaves followed by a ``/32 host LOCAL`` line (net/ipv4/fib_trie.c
    fib_trie_seq_show). Only the ``Local:`` table holds them; the same leaf may appear in ``Main:`` too."""
    out: set[str] = set()
    leaf: str | None = None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("|-- "):
            leaf = stripped[4:]
        elif stripped.startswith("/32 host LOCAL") and leaf is not None:
            if not leaf.startswith("127."):
                out.add(leaf)
        elif stripped.startswith("+-- "):
            leaf = None
    return out


def _ifconf_ipv4() -> dict[str, set[str]]:
    """IPv4 addresses per interface from the running kernel (SIOCGIFCONF, every address of every
    interface, up or down: net/ipv4/devinet.c inet_gifconf). Live root only; {} when it fails."""
    # The C module: socket.py builds its enums at import (bench/profile_binding.py), and a
    # datagram socket to ask the ioctl on is all that is needed.
    import _socket
    import array
    import fcntl
    import struct

    siocgifconf = 0x8912
    ifreq_size = 40  # struct ifreq on LP64: IFNAMSIZ (16) + a 24-byte union
    out: dict[str, set[str]] = {}
    try:
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    except OSError:
        return out
    try:
        size = 128
        while True:
            buf = array.array("B", bytes(ifreq_size * size))
            addr, _ = buf.buffer_info()
            try:
                res = fcntl.ioctl(sock.fileno(), siocgifconf, struct.pack("iL", len(buf), addr))
            except OSError:
                return out
            used = struct.unpack("iL", res)[0]
            if used < len(buf):
                break
            size *= 4
        raw = buf.tobytes()[:used]
    finally:
        sock.close()
    for off in range(0, used, ifreq_size):
        name = raw[off : off + 16].split(b"\0", 1)[0].decode(errors="replace")
        ip = _socket.inet_ntoa(raw[off + 20 : off + 24])
        # Address labels (eth0:1) name the interface before the colon.
        out.setdefault(name.split(":", 1)[0], set()).add(ip)
    return out


class _Net(NamedTuple):
    name: str
    owner: str | None  #: PCI device the interface belongs to
    path: str  #: its class directory, where its master and upper_* links are read when asked (``_uppers``)


class _Block(NamedTuple):
    name: str
    owner: str | None
    devnum: str | None  #: major:minor
    holders: tuple[str, ...] | None  #: None: no ``holders/`` directory (a recording without it)


class HostUse:
    """The host's users of PCI devices, read once. Build with ``HostUse.scan(host, inventory)``."""

    def __init__(
        self,
        *,
        nets: dict[str, _Net],
        addresses: dict[str, tuple[str, ...]],
        routed: dict[str, str],
        blocks: dict[str, _Block],
        mounts: dict[str, tuple[str, ...]],
        btrfs: dict[str, str],
        swaps: dict[str, str],
        consoles: dict[str, tuple[tuple[str, str], ...]],
        keyboards: dict[str, tuple[tuple[str, str], ...]],
        unread_storage: tuple[str, ...] = (),
        unread_network: tuple[str, ...] = (),
        holders: Sequence[Holder] = (),
    ) -> None:
        self._nets = nets
        self._upper_cache: dict[str, tuple[str, ...]] = {}
        self._addresses = addresses
        self._routed = routed
        self._blocks = blocks
        self._mounts = mounts
        self._btrfs = btrfs
        self._swaps = swaps
        self._consoles = consoles
        self._keyboards = keyboards
        #: The tables (shown paths) a disk's or an interface's use is read from that could not be read.
        self._unread_storage = unread_storage
        self._unread_network = unread_network
        self._holders: dict[str, list[Holder]] = {}
        for h in holders:
            self._holders.setdefault(h.address, []).append(h)
        self._net_by_owner: dict[str, list[str]] = {}
        for net in nets.values():
            if net.owner:
                self._net_by_owner.setdefault(net.owner, []).append(net.name)
        self._block_by_owner: dict[str, list[str]] = {}
        for blk in blocks.values():
            if blk.owner:
                self._block_by_owner.setdefault(blk.owner, []).append(blk.name)

    # --- building ---------------------------------------------------------------------------------------
    @classmethod
    def scan(cls, host: Host, inventory: Inventory, holders_of: list[str] | None = None) -> HostUse:
        """The host's tables, and the processes holding ``holders_of`` (default: every device of ``inventory``,
        which for enable and disable is the devices named and their groups)."""
        nets = _scan_nets(host)
        route_lines = read_lines(host.route_v4)
        routes_v4 = _route_rows(route_lines)
        fib_lines = [] if host.is_live else read_lines(host.fib_trie)
        addresses = _scan_addresses(host, routes_v4, fib_lines)
        routed = _scan_routes(host, routes_v4)
        blocks = _scan_blocks(host)
        mount_lines = read_lines(host.mountinfo)
        swap_lines = read_lines(host.swaps)
        # None of these is ever empty on a running kernel (a header line, the root mount, the loopback's
        # addresses): empty means missing or unreadable, as in a recording made without them.
        unread_storage = tuple(
            host.shown(p) for p, lines in ((host.mountinfo, mount_lines), (host.swaps, swap_lines)) if not lines
        )
        unread_network = tuple(
            host.shown(p)
            for p, lines in ((host.route_v4, route_lines), (host.fib_trie, fib_lines))
            if not lines and not (host.is_live and p == host.fib_trie)
        )
        mounts: dict[str, list[str]] = {}
        for line in mount_lines:
            fields = line.split()
            if len(fields) >= 5:
                point = unescape_mount(fields[4])
                mounts.setdefault(fields[2], []).append(point)
        btrfs: dict[str, str] = {}
        for fsid in list_dir(host.btrfs_fs_dir):
            for name in list_dir(host.btrfs_fs_dir / fsid / "devices"):
                btrfs[name] = fsid
        swaps = _scan_swaps(host, blocks, swap_lines)
        consoles = _scan_consoles(host, inventory)
        return cls(
            nets=nets,
            addresses={k: tuple(sorted(v)) for k, v in addresses.items() if v},
            routed=routed,
            blocks=blocks,
            mounts={k: tuple(v) for k, v in mounts.items()},
            btrfs=btrfs,
            swaps=swaps,
            consoles=consoles,
            keyboards=_scan_keyboards(host),
            unread_storage=unread_storage,
            unread_network=unread_network,
            holders=scan_holders(
                host, device_watch(host, inventory, inventory.devices if holders_of is None else holders_of)
            ),
        )

    # --- lookups -----------------------------------------------------------------------------------------
    def reasons(self, address: str) -> list[InUse]:
        """Why ``address`` is in use by the host ([] when it is not). Deterministic order."""
        out: list[InUse] = []
        for ifname in sorted(self._net_by_owner.get(address, ())):
            out += self._net_reasons(address, ifname)
        for name in sorted(self._block_by_owner.get(address, ())):
            out += self._block_reasons(address, name)
        for obj, detail in self._consoles.get(address, ()):
            out.append(InUse(address, UseKind.CONSOLE, obj, detail))
        for obj, detail in self._keyboards.get(address, ()):
            out.append(InUse(address, UseKind.KEYBOARD, obj, detail))
        for h in self._holders.get(address, ()):
            verb = "mapped" if h.kind is HolderKind.MAPPED else "open"
            unit = f", unit {h.process.unit}" if h.process.unit else ""
            out.append(InUse(address, _HOLDER_KIND[h.kind], h.node, f"{verb} by {h.process.name}{unit}", h))
        return out

    def unknown(self, address: str) -> list[str]:
        """What could not be read about the use of ``address``'s disks and interfaces (tables a recording lacks),
        as phrases; [] when all of it was read, or the device has neither."""
        out = []
        disks = sorted(self._block_by_owner.get(address, ()))
        if disks:
            out += [f"{table} (for {', '.join(disks)})" for table in self._unread_storage]
            bare = [d for d in disks if self._blocks[d].holders is None]
            if bare:
                out.append(f"the holders of {', '.join(bare)}")
        nets = sorted(self._net_by_owner.get(address, ()))
        if nets:
            out += [f"{table} (for {', '.join(nets)})" for table in self._unread_network]
        return out

    def holders(self, address: str) -> list[Holder]:
        """The processes holding ``address`` (those of ``reasons``), in pid order."""
        return list(self._holders.get(address, ()))

    def _net_own(self, ifname: str) -> list[tuple[UseKind, str]]:
        out: list[tuple[UseKind, str]] = []
        addrs = self._addresses.get(ifname)
        if addrs:
            out.append((UseKind.NET_ADDRESS, "has address " + ", ".join(addrs)))
        route = self._routed.get(ifname)
        if route:
            out.append((UseKind.NET_ROUTE, f"in the routing table ({route})"))
        return out

    def _net_reasons(self, address: str, ifname: str) -> list[InUse]:
        out = [InUse(address, kind, ifname, detail) for kind, detail in self._net_own(ifname)]
        seen = {ifname}
        todo = list(self._uppers(ifname))
        while todo:
            upper = todo.pop(0)
            if upper in seen:
                continue
            seen.add(upper)
            for kind, detail in self._net_own(upper):
                verb = "is " if kind is UseKind.NET_ROUTE else ""
                out.append(InUse(address, UseKind.NET_UPPER, ifname, f"under {upper}, which {verb}{detail}"))
            todo += self._uppers(upper)
        return out

    def _uppers(self, ifname: str) -> tuple[str, ...]:
        """The master and upper_* interfaces of ``ifname``: read only for the interfaces of the devices asked
        about (and their uppers), since listing an interface's directory costs as much as the rest of its scan."""
        hit = self._upper_cache.get(ifname)
        if hit is None:
            uppers: list[str] = []
            net = self._nets.get(ifname)
            if net is not None:
                master = link_name(net.path + "/master")
                if master:
                    uppers.append(master)
                uppers += [e[len("upper_") :] for e in list_dir(net.path) if e.startswith("upper_")]
            hit = self._upper_cache[ifname] = tuple(dict.fromkeys(uppers))
        return hit

    def _block_reasons(self, address: str, name: str) -> list[InUse]:
        out: list[InUse] = []
        blk = self._blocks[name]
        for point in self._mounts.get(blk.devnum or "", ()):
            out.append(InUse(address, UseKind.MOUNTED, name, f"mounted on {point}"))
        if name in self._btrfs:
            out.append(InUse(address, UseKind.MOUNTED, name, f"member of mounted btrfs {self._btrfs[name]}"))
        if name in self._swaps:
            out.append(InUse(address, UseKind.SWAP, name, f"active swap ({self._swaps[name]})"))
        if blk.holders:
            out.append(InUse(address, UseKind.HELD, name, "held by " + ", ".join(blk.holders)))
        return out


# --- table readers ------------------------------------------------------------------------------------------
def _scan_nets(host: Host) -> dict[str, _Net]:
    cdir = os.fspath(host.sys_class("net"))
    out: dict[str, _Net] = {}
    for name in list_dir(cdir):
        path = cdir + "/" + name
        out[name] = _Net(name, pci_owner(link_target(path)), path)
    return out


def _scan_addresses(host: Host, routes_v4: list[list[str]], fib_lines: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    # IPv6: /proc/net/if_inet6 "addr ifindex plen scope flags name" (net/ipv6/addrconf.c if6_seq_show).
    for line in read_lines(host.if_inet6):
        f = line.split()
        if len(f) != 6:
            continue
        try:
            scope = int(f[3], 16)
        except ValueError:
            continue
        if scope in (_SCOPE_LINK, _SCOPE_HOST):
            continue
        try:
            out.setdefault(f[5], set()).add(f"{_ipv6_text(f[0])}/{int(f[2], 16)}")
        except ValueError:
            continue
    if host.is_live:
        for ifname, ips in _ifconf_ipv4().items():
            out.setdefault(ifname, set()).update(ips)
    else:
        # A snapshot has no ioctl: attribute each local address of fib_trie to the interface whose
        # directly connected route (gateway 0) covers it, longest prefix first.
        connected: list[tuple[int, int, int, str]] = []
        for f in routes_v4:
            dest, gw, mask = _hex_ipv4(f[1]), _hex_ipv4(f[2]), _hex_ipv4(f[7])
            if dest is None or mask is None or gw != 0 or mask == 0:
                continue
            connected.append((bin(mask).count("1"), dest, mask, f[0]))
        connected.sort(reverse=True)
        for ip in sorted(_fib_local_addresses(fib_lines)):
            value = _ipv4_value(ip)
            if value is None:
                continue
            for _, dest, mask, ifname in connected:
                if value & mask == dest & mask:
                    out.setdefault(ifname, set()).add(ip)
                    break
    return out


def _route_rows(lines: list[str]) -> list[list[str]]:
    """Rows of /proc/net/route's ``lines`` (the main IPv4 table): Iface Destination Gateway Flags ... Mask ..."""
    rows = []
    for line in lines[1:]:
        f = line.split()
        if len(f) >= 8:
            rows.append(f)
    return rows


def _scan_routes(host: Host, routes_v4: list[list[str]]) -> dict[str, str]:
    """Interface -> the first route through it, described (IPv4 main table, then IPv6)."""
    out: dict[str, str] = {}
    for f in routes_v4:
        dest, gw, mask = _hex_ipv4(f[1]), _hex_ipv4(f[2]), _hex_ipv4(f[7])
        if dest is None or mask is None:
            continue
        what = "default" if mask == 0 else f"{_ipv4_text(dest)}/{bin(mask).count('1')}"
        if gw:
            what += f" via {_ipv4_text(gw)}"
        out.setdefault(f[0], what)
    # ipv6_route: dest plen src plen nexthop metric refcnt use flags dev (net/ipv6/route.c ipv6_route_native_seq_show).
    for line in read_lines(host.route_v6):
        f = line.split()
        if len(f) != 10:
            continue
        dest6, dev = f[0], f[9]
        try:
            flags = int(f[8], 16)
            plen = int(f[1], 16)
        except ValueError:
            continue
        # Every interface that is up has fe80::/64, ff00::/8 and the local routes of its own addresses;
        # none of them means the host reaches anything through it.
        if dest6.startswith(("fe8", "fe9", "fea", "feb", "ff")) or flags & (_RTF_LOCAL | _RTF_REJECT):
            continue
        try:
            what = "default" if plen == 0 else f"{_ipv6_text(dest6)}/{plen}"
        except ValueError:
            continue
        nexthop = f[4]
        if nexthop.strip("0"):
            what += f" via {_ipv6_text(nexthop)}"
        out.setdefault(dev, what)
    return out


def _scan_blocks(host: Host) -> dict[str, _Block]:
    out: dict[str, _Block] = {}
    for cdir in (os.fspath(host.sys_class("block")), os.fspath(host.sys_block_dir)):
        for name in list_dir(cdir):
            if name in out:
                continue
            path = cdir + "/" + name
            target = link_target(path)
            devnum = read_str(os.path.join(path, "dev"))  # the block device's major:minor attribute
            holders_dir = os.path.join(path, "holders")
            holders = tuple(list_dir(holders_dir)) if os.path.isdir(holders_dir) else None
            out[name] = _Block(name, pci_owner(target), devnum.strip() if devnum else None, holders)
    return out


def _scan_swaps(host: Host, blocks: dict[str, _Block], lines: list[str]) -> dict[str, str]:
    """Block device name -> swap file name (from /proc/swaps' ``lines``), for swap on a partition or disk (a
    swap *file* sits on a mounted filesystem, which the mount check already reports)."""
    by_devnum = {b.devnum: b.name for b in blocks.values() if b.devnum}
    out: dict[str, str] = {}
    for line in lines[1:]:
        f = line.split()
        if len(f) < 2 or f[1] != "partition":
            continue
        filename = unescape_mount(f[0])
        name: str | None = None
        if host.is_live:
            # The path may be a symlink (/dev/mapper/..., /dev/disk/by-uuid/...): ask the running system.
            try:
                rdev = os.stat(filename).st_rdev
                name = by_devnum.get(f"{os.major(rdev)}:{os.minor(rdev)}")
            except OSError:
                name = None
        if name is None:
            base = PurePosixPath(filename).name
            name = base if base in blocks else None
        if name is not None:
            out[name] = filename
    return out


# A keyboard, as udev's input_id builtin decides it (systemd src/udev/udev-builtin-input_id.c, test_key): the
# input device reports every key from KEY_ESC (1) to KEY_D (31), the low word of capabilities/key minus
# KEY_RESERVED (0).
_KEYBOARD_KEYS = 0xFFFFFFFE


def _is_keyboard(keys: str | None) -> bool:
    """``capabilities/key`` is a bitmap printed as hex longs, most significant first: the last holds 0..63."""
    words = (keys or "").split()
    try:
        low = int(words[-1], 16) if words else 0
    except ValueError:
        return False
    return low & _KEYBOARD_KEYS == _KEYBOARD_KEYS


def _scan_keyboards(host: Host) -> dict[str, tuple[tuple[str, str], ...]]:
    """PCI device -> (input device, detail) of every keyboard whose device path runs through it."""
    cdir = host.sys_class("input")
    out: dict[str, list[tuple[str, str]]] = {}
    for name in list_dir(cdir):
        if not name.startswith("input"):
            continue  # eventN, mouseN, jsN: handlers of an inputN, which is what is looked at
        owner = pci_owner(link_target(cdir / name))
        if owner is None or not _is_keyboard(read_str(cdir / name / "capabilities" / "key")):
            continue
        label = (read_str(cdir / name / "name") or "").strip() or "keyboard"
        out.setdefault(owner, []).append((name, f"keyboard {label!r} behind it: the host's console input"))
    return {k: tuple(v) for k, v in out.items()}


def _scan_consoles(host: Host, inventory: Inventory) -> dict[str, tuple[tuple[str, str], ...]]:
    """Boot VGA device -> (object, detail) of the framebuffers and framebuffer console using it.

    A firmware framebuffer (efifb, vesafb, simpledrm) hangs off a platform device, not the GPU, but it
    lives in the boot VGA device's BAR: the kernel's ``boot_vga`` attribute says which device that is
    (drivers/pci/pci-sysfs.c boot_vga_show uses the same screen_info test)."""
    boot = [d.address for d in inventory.devices.values() if d.boot_vga]
    if not boot:
        return {}
    gdir = host.sys_class("graphics")
    fbs: list[tuple[str, str | None, str]] = []
    for name in list_dir(gdir):
        if not name.startswith("fb"):
            continue
        owner = pci_owner(link_target(gdir / name))
        label = read_str(gdir / name / "name") or "framebuffer"
        fbs.append((name, owner, label.strip()))
    vtdir = host.sys_class("vtconsole")
    fbcon = [
        n
        for n in list_dir(vtdir)
        if read_str(vtdir / n / "bind") == "1" and "frame buffer" in (read_str(vtdir / n / "name") or "")
    ]
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for address in boot:
        items: list[tuple[str, str]] = []
        mine = [fb for fb in fbs if fb[1] in (address, None)]
        for name, owner, label in mine:
            where = "on this device" if owner else "firmware framebuffer in its BAR"
            items.append((name, f"framebuffer {label!r} ({where}) of the boot VGA device"))
        if mine:
            items += [(vt, "the framebuffer console is bound to it") for vt in fbcon]
        if items:
            out[address] = tuple(items)
    return out
