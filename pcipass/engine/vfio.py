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
from typing import NamedTuple

from ..host import Host


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
        fd = os.open(node, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            # drivers/vfio/group.c vfio_group_fops_open: only one open file per group.
            return VfioGroupStatus(group, None, True, "open by another process (a running VM?)")
        return VfioGroupStatus(group, None, False, f"cannot open: {exc.strerror}")
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
