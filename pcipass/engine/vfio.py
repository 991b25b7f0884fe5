"""The kernel's own viability verdict for a VFIO group: ``VFIO_GROUP_GET_STATUS`` on ``/dev/vfio/<group>``.

include/uapi/linux/vfio.h::

    struct vfio_group_status { __u32 argsz; __u32 flags; };
    #define VFIO_GROUP_FLAGS_VIABLE        (1 << 0)
    #define VFIO_GROUP_FLAGS_CONTAINER_SET (1 << 1)
    #define VFIO_GROUP_GET_STATUS          _IO(VFIO_TYPE, VFIO_BASE + 3)   /* VFIO_TYPE ';', VFIO_BASE 100 */

The group is viable when every device in it is bound to a vfio driver, pci-stub or nothing (bridges
excepted): the same rule QEMU hits as "group N is not viable".
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ..host import Host
from ..sysfs import list_dir

if TYPE_CHECKING:
    from ..inventory import Inventory


def _io(type_: int, nr: int) -> int:
    """``_IO(type, nr)`` of include/uapi/asm-generic/ioctl.h: no data direction, no size."""
    return (type_ << 8) | nr


VFIO_GROUP_GET_STATUS = _io(ord(";"), 100 + 3)
VFIO_GROUP_FLAGS_VIABLE = 1 << 0
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1


class VfioGroupStatus(NamedTuple):
    group: int
    viable: bool | None  #: the kernel's answer; None when it could not be asked (see ``detail``)
    busy: bool  #: the group is open elsewhere (a running VM): the kernel allows one opener
    detail: str | None


def group_status(host: Host, group: int) -> VfioGroupStatus:
    node = host.vfio_group_node(group)
    try:
        st = os.stat(node)
    except OSError:
        return VfioGroupStatus(group, None, False, f"no VFIO node for group {group}")
    if not stat.S_ISCHR(st.st_mode):
        return VfioGroupStatus(group, None, False, "not a VFIO character device (a snapshot or test tree)")
    try:
        # Through Host.open: under another root, a node that is a link out of it is not opened.
        fd = host.open(node, os.O_RDWR | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            # drivers/vfio/group.c vfio_group_fops_open: only one open file per group.
            return VfioGroupStatus(group, None, True, "open by another process (a running VM?)")
        return VfioGroupStatus(group, None, False, f"cannot open: {exc.strerror}")
    if not stat.S_ISCHR(os.fstat(fd).st_mode):
        os.close(fd)
        return VfioGroupStatus(group, None, False, "not a VFIO character device (a snapshot or test tree)")
    try:
        import fcntl

        buf = bytearray(struct.pack("=II", 8, 0))
        fcntl.ioctl(fd, VFIO_GROUP_GET_STATUS, buf, True)
    except OSError as exc:
        return VfioGroupStatus(group, None, False, f"VFIO_GROUP_GET_STATUS failed: {exc.strerror}")
    finally:
        os.close(fd)
    flags = struct.unpack("=II", buf)[1]
    return VfioGroupStatus(group, bool(flags & VFIO_GROUP_FLAGS_VIABLE), False, None)


class VfioOpeners:
    """Which processes have VFIO nodes open (a group's ``/dev/vfio/<group>``, a device's
    ``/dev/vfio/devices/vfioN`` cdev for iommufd users), read once from the ``/proc/<pid>/fd`` links by the
    ``holders`` scan, as fuser(1) finds them. Processes this user may not inspect are not seen."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._by_node: dict[str, list[tuple[int, str]]] | None = None

    def _scan(self) -> dict[str, list[tuple[int, str]]]:
        from ..holders import HolderKind, Watch, scan

        host = self.host
        watch = Watch()
        watch.prefix(host, host.vfio_dev_dir, HolderKind.VFIO)
        out: dict[str, list[tuple[int, str]]] = {}
        for h in scan(host, watch):
            # Keyed by the node as the host knows it (/dev/vfio/N), whichever form the process's link has.
            out.setdefault(host.shown(h.node), []).append((h.process.pid, h.process.name))
        return out

    def holders(self, nodes: list[str]) -> tuple[str, ...]:
        """``comm (pid N)`` of each process holding one of ``nodes`` (paths under the root), in pid order."""
        if self._by_node is None:
            self._by_node = self._scan()
        by_node = self._by_node
        return tuple(name for _, name in sorted({h for n in nodes for h in by_node.get(self.host.shown(n), ())}))

    def of_device(self, group: int | None, device_dir: str | os.PathLike[str]) -> tuple[str, ...]:
        """The holders of a VFIO device that is not a PCI device (a mediated device): its group's node and its
        cdevs (the ``vfio-dev/`` entries of its sysfs directory)."""
        host = self.host
        nodes = [os.fspath(host.vfio_group_node(group))] if group is not None else []
        nodes += [os.fspath(host.vfio_device_node(n)) for n in list_dir(os.path.join(device_dir, "vfio-dev"))]
        return self.holders(nodes)

    def of_group(self, inv: Inventory, group: int) -> tuple[str, ...]:
        """``comm (pid N)`` of each process holding the group or a member's cdev, in pid order."""
        host = self.host
        nodes = [os.fspath(host.vfio_group_node(group))]
        grp = inv.groups.get(group)
        for m in grp.devices if grp else ():
            nodes += [os.fspath(host.vfio_device_node(n)) for n in list_dir(host.pci_device(m.address) / "vfio-dev")]
        return self.holders(nodes)


def status_unless_held(
    openers: VfioOpeners, inv: Inventory, group: int, ask: Callable[[int], VfioGroupStatus]
) -> VfioGroupStatus:
    """The group's status from ``ask`` (``Kernel.vfio_status``), unless a process holds the group: then that
    process, and the group is not opened. Why: VFIO allows one open file per group (drivers/vfio/group.c
    vfio_group_fops_open), so a look at a group a VM holds gets EBUSY and says only "someone", and an open of
    ours at the instant a VM starts would make the VM's own open fail."""
    held = openers.of_group(inv, group)
    if held:
        return VfioGroupStatus(group, None, True, "open by " + ", ".join(held))
    return ask(group)
