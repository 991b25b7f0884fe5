"""In-use detection: each kind of host user, found from the tables the kernel exposes; and what does not count."""

from __future__ import annotations

import pytest

from pcipass.host import Host
from pcipass.hostuse import HostUse, UseKind
from pcipass.inventory import Inventory
from tests.support import bind_hosts as bh


@pytest.fixture
def f(tmp_path):
    return bh.build(tmp_path / "root")


def scan(f) -> HostUse:
    host = Host(f.root)
    return HostUse.scan(host, Inventory.scan(host))


def kinds(use: HostUse, address: str) -> list[tuple[str, str]]:
    return [(r.kind.value, r.object) for r in use.reasons(address)]


def test_idle_host_has_no_users(f):
    use = scan(f)
    for address in f.devices:
        assert use.reasons(address) == []


def test_ipv4_address_and_routes(f):
    f.write(
        "proc/net/route",
        bh.ROUTE_HEADER
        + bh.route_line("eth1", "10.0.2.0", "0.0.0.0", "255.255.255.0")
        + bh.route_line("eth1", "0.0.0.0", "10.0.2.2", "0.0.0.0"),
    )
    f.write("proc/net/fib_trie", bh.fib_trie_local("10.0.2.15", "127.0.0.1"))
    reasons = scan(f).reasons(bh.VIRTIO)
    assert [(r.kind, r.detail) for r in reasons] == [
        (UseKind.NET_ADDRESS, "has address 10.0.2.15"),
        (UseKind.NET_ROUTE, "in the routing table (10.0.2.0/24)"),
    ]
    assert scan(f).reasons(bh.E1000E) == []


def test_default_route_alone_is_in_use(f):
    f.write("proc/net/route", bh.ROUTE_HEADER + bh.route_line("eth0", "0.0.0.0", "192.168.1.1", "0.0.0.0"))
    (r,) = scan(f).reasons(bh.E1000E)
    assert (r.kind, r.object, r.detail) == (UseKind.NET_ROUTE, "eth0", "in the routing table (default via 192.168.1.1)")


def test_local_address_outside_any_connected_route_is_not_attributed(f):
    """A snapshot has no ioctl: an IPv4 address is tied to an interface only through its connected route."""
    f.write("proc/net/fib_trie", bh.fib_trie_local("10.9.9.9"))
    assert scan(f).reasons(bh.VIRTIO) == []


def test_ipv6_global_counts_link_local_does_not(f):
    f.write(
        "proc/net/if_inet6",
        "fe80000000000000021b21fffe000001 03 40 20 80     eth0\n"
        "fd000000000000000000000000000002 04 40 00 80     eth1\n",
    )
    f.write(
        "proc/net/ipv6_route",
        # fe80::/64 and ff00::/8 on eth0: every interface that is up has them
        "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 "
        "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
        "ff000000000000000000000000000000 08 00000000000000000000000000000000 00 "
        "00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0\n"
        # the local route of eth0's link-local address (RTF_LOCAL)
        "fe80000000000000021b21fffe000001 80 00000000000000000000000000000000 00 "
        "00000000000000000000000000000000 00000000 00000002 00000000 80200001     eth0\n"
        # the unreachable placeholder on lo (RTF_REJECT)
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
        "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 "
        "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth1\n",
    )
    use = scan(f)
    assert use.reasons(bh.E1000E) == []
    assert [(r.kind, r.detail) for r in use.reasons(bh.VIRTIO)] == [
        (UseKind.NET_ADDRESS, "has address fd00::2/64"),
        (UseKind.NET_ROUTE, "in the routing table (fd00::/64)"),
    ]


def test_enslaved_to_a_bond_whose_bridge_has_the_address(f):
    # eth2 -> bond0 -> br0 (master links); br0 carries the management address.
    for name in ("bond0", "br0"):
        (f.root / f"sys/devices/virtual/net/{name}").mkdir(parents=True)
        f.symlink(f"sys/class/net/{name}", f.root / f"sys/devices/virtual/net/{name}")
    f.symlink("sys/class/net/eth2/master", f.root / "sys/devices/virtual/net/bond0")
    f.symlink("sys/class/net/bond0/master", f.root / "sys/devices/virtual/net/br0")
    f.write("proc/net/if_inet6", "20010db8000000000000000000000001 05 40 00 80      br0\n")
    (r,) = scan(f).reasons(bh.MF0)
    assert (r.kind, r.object, r.detail) == (UseKind.NET_UPPER, "eth2", "under br0, which has address 2001:db8::1/64")


def test_vlan_upper_in_routing_table(f):
    (f.root / "sys/devices/virtual/net/eth3.100").mkdir(parents=True)
    f.symlink("sys/class/net/eth3.100", f.root / "sys/devices/virtual/net/eth3.100")
    f.symlink("sys/class/net/eth3/upper_eth3.100", f.root / "sys/devices/virtual/net/eth3.100")
    f.write("proc/net/route", bh.ROUTE_HEADER + bh.route_line("eth3.100", "10.1.0.0", "0.0.0.0", "255.255.0.0"))
    assert kinds(scan(f), bh.MF1) == [("net-upper", "eth3")]


def test_mounted_partition_by_major_minor(f):
    f.write(
        "proc/self/mountinfo",
        "22 1 0:21 / /proc rw - proc proc rw\n40 1 259:1 / /srv/data\\040dir rw,relatime - ext4 /dev/nvme0n1p1 rw\n",
    )
    (r,) = scan(f).reasons(bh.NVME)
    assert (r.kind, r.object, r.detail) == (UseKind.MOUNTED, "nvme0n1p1", "mounted on /srv/data dir")


def test_btrfs_member_counts_as_mounted(f):
    f.write("sys/fs/btrfs/0f1e-uuid/devices/nvme0n1/.keep", "")
    assert kinds(scan(f), bh.NVME) == [("mounted", "nvme0n1")]


def test_swap_partition(f):
    f.write("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1p1  partition\t1048572\t0\t-2\n")
    assert kinds(scan(f), bh.NVME) == [("swap", "nvme0n1p1")]


def test_swap_file_is_not_a_partition_user(f):
    f.write("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/nvme0n1p1\tfile\t1048572\t0\t-2\n")
    assert scan(f).reasons(bh.NVME) == []


def test_held_by_device_mapper(f):
    f.write(f"sys/bus/pci/devices/{bh.NVME}/nvme/nvme0/nvme0n1/nvme0n1p1/holders/dm-0", "")
    (r,) = scan(f).reasons(bh.NVME)
    assert (r.kind, r.object, r.detail) == (UseKind.HELD, "nvme0n1p1", "held by dm-0")


def _gpu(f, boot_vga: bool):
    f.add_device(
        "0000:00:10.0", vendor="1234", device="1111", class_="030000", driver="bochs-drm", group=20, boot_vga=boot_vga
    )
    f.add_drm("0000:00:10.0")


def test_boot_vga_with_firmware_framebuffer_and_fbcon(f):
    _gpu(f, boot_vga=True)
    fb = f.root / "sys/devices/platform/efi-framebuffer.0/graphics/fb0"
    fb.mkdir(parents=True)
    (fb / "name").write_text("EFI VGA\n")
    f.symlink("sys/class/graphics/fb0", fb)
    vt = f.root / "sys/devices/virtual/vtconsole/vtcon1"
    vt.mkdir(parents=True)
    (vt / "bind").write_text("1\n")
    (vt / "name").write_text("(M) frame buffer device\n")
    f.symlink("sys/class/vtconsole/vtcon1", vt)
    reasons = scan(f).reasons("0000:00:10.0")
    assert [(r.kind, r.object) for r in reasons] == [(UseKind.CONSOLE, "fb0"), (UseKind.CONSOLE, "vtcon1")]
    assert "firmware framebuffer" in reasons[0].detail


def test_secondary_gpu_is_not_the_console(f):
    _gpu(f, boot_vga=False)
    fb = f.root / "sys/devices/platform/efi-framebuffer.0/graphics/fb0"
    fb.mkdir(parents=True)
    f.symlink("sys/class/graphics/fb0", fb)
    assert scan(f).reasons("0000:00:10.0") == []


def test_boot_vga_without_any_framebuffer_is_free(f):
    _gpu(f, boot_vga=True)
    assert scan(f).reasons("0000:00:10.0") == []


def _xhci(f) -> str:
    f.add_device("0000:00:14.0", vendor="8086", device="a36d", class_="0c0330", driver="xhci_hcd", group=21)
    return "0000:00:14.0"


def test_keyboard_behind_a_usb_controller(f):
    usb = _xhci(f)
    bh.add_input(f, usb, "input3", "Dell KB216 Wired Keyboard", bh.KEYBOARD_KEYS)
    bh.add_input(f, usb, "input4", "Logitech USB Optical Mouse", bh.MOUSE_KEYS, via="usb1/1-2/1-2:1.0")
    (r,) = scan(f).reasons(usb)
    assert (r.kind, r.object) == (UseKind.KEYBOARD, "input3")
    assert r.detail == "keyboard 'Dell KB216 Wired Keyboard' behind it: the host's console input"


def test_mouse_unreadable_keys_and_a_platform_keyboard_do_not_count(f):
    usb = _xhci(f)
    bh.add_input(f, usb, "input4", "Logitech USB Optical Mouse", bh.MOUSE_KEYS)
    bh.add_input(f, usb, "input5", "odd", "zz")
    # The PS/2 keyboard hangs off a platform device, not a PCI one.
    kbd = f.root / "sys/devices/platform/i8042/serio0/input/input0"
    (kbd / "capabilities").mkdir(parents=True)
    (kbd / "capabilities/key").write_text(bh.KEYBOARD_KEYS + "\n")
    f.symlink("sys/class/input/input0", kbd)
    use = scan(f)
    assert use.reasons(usb) == []
    assert all(r.kind is not UseKind.KEYBOARD for d in ("0000:00:14.0", bh.E1000E) for r in use.reasons(d))


def test_tables_are_read_once_not_per_device(f, monkeypatch):
    """The scale rule: HostUse.scan reads each host table once, lookups read nothing."""
    import pcipass.hostuse as hu

    calls: list[str] = []
    real = hu.read_lines
    monkeypatch.setattr(hu, "read_lines", lambda p: calls.append(str(p)) or real(p))
    use = scan(f)
    n = len(calls)
    assert len(set(calls)) == n  # no table twice
    for address in f.devices:
        use.reasons(address)
    assert len(calls) == n
