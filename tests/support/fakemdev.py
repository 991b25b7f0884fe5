"""Mediated devices on a FakeHost, laid out as the mdev core lays them out, and a fake kernel that creates and
removes them with its semantics (drivers/vfio/mdev/mdev_sysfs.c, mdev_core.c, 6.1).

Layout: ``sys/class/mdev_bus/<parent>`` links the parent's directory (a PCI device's, or a virtual one under
``sys/devices/virtual``); each type is ``<parent>/mdev_supported_types/<type>/`` with ``name``,
``description``, ``device_api``, ``available_instances``, ``create`` and ``devices/``; an instance is
``<parent>/<uuid>/`` (``mdev_type``, ``iommu_group``, ``driver`` links, ``remove``), linked from
``sys/bus/mdev/devices/<uuid>`` and its type's ``devices/``, in an IOMMU group of its own with its
``dev/vfio/<group>`` node.

The kernel's answers modelled: ``create`` with an invalid UUID → EINVAL; a UUID in use → EEXIST; no instance
left (the driver's own count) → ENOSPC (mtty); ``remove`` with anything but ``1`` → EINVAL.
"""

from __future__ import annotations

import errno as E
import os
import shutil
from pathlib import Path

from pcipass.mdev.model import is_uuid
from tests.support.fakehost import FakeHost
from tests.support.fakekernel import FakeKernel

MTTY_TYPES = {"mtty-1": ("Single port serial", 24), "mtty-2": ("Dual port serial", 12)}
#: The first IOMMU group number given to an mdev (clear of the fake hosts' PCI groups).
FIRST_GROUP = 100


def parent_dir(fake: FakeHost, parent: str) -> Path:
    return (fake.root / "sys/class/mdev_bus" / parent).resolve()


def add_parent(fake: FakeHost, parent: str, *, driver: str | None = None) -> Path:
    """An mdev parent: a PCI device of the fake host (its address), else a virtual device ``parent``."""
    if parent in fake.devices:
        path = fake.devices[parent].path
    else:
        path = fake.root / "sys/devices/virtual" / parent / parent
        path.mkdir(parents=True, exist_ok=True)
        if driver:
            ddir = fake.root / "sys/bus/mdev_parent_drivers" / driver  # only its name matters
            ddir.mkdir(parents=True, exist_ok=True)
            fake.symlink(str((path / "driver").relative_to(fake.root)), ddir)
    (path / "mdev_supported_types").mkdir(exist_ok=True)
    fake.symlink(f"sys/class/mdev_bus/{parent}", path)
    (fake.root / "sys/bus/mdev/devices").mkdir(parents=True, exist_ok=True)
    return path


def add_type(
    fake: FakeHost,
    parent: str,
    type_id: str,
    *,
    name: str | None = None,
    available: int | None = 4,
    device_api: str | None = "vfio-pci",
    description: str | None = None,
) -> Path:
    d = parent_dir(fake, parent) / "mdev_supported_types" / type_id
    (d / "devices").mkdir(parents=True, exist_ok=True)
    (d / "create").write_text("")
    for attr, value in (
        ("name", name),
        ("description", description),
        ("device_api", device_api),
        ("available_instances", None if available is None else str(available)),
    ):
        if value is not None:
            (d / attr).write_text(value + "\n")
    return d


def add_mtty(fake: FakeHost) -> None:
    """The kernel's sample ``mtty`` parent with its two types, as measured on Debian's 6.1 kernel."""
    add_parent(fake, "mtty", driver="mtty")
    (fake.root / "sys/bus/mdev/drivers/mtty").mkdir(parents=True, exist_ok=True)  # its mdev driver
    (fake.root / "dev/vfio").mkdir(parents=True, exist_ok=True)  # vfio is loaded before it
    for tid, (name, count) in MTTY_TYPES.items():
        add_type(fake, "mtty", tid, name=name, available=count)


def _next_group(fake: FakeHost) -> int:
    groups = fake.root / "sys/kernel/iommu_groups"
    used = {int(n) for n in os.listdir(groups) if n.isdigit()} if groups.is_dir() else set()
    g = FIRST_GROUP
    while g in used:
        g += 1
    return g


def add_mdev(
    fake: FakeHost, parent: str, type_id: str, uuid: str, *, driver: str | None = "", group: bool = True
) -> Path:
    """An existing instance (as the kernel leaves it after a write to ``create``), bound to ``driver`` (default:
    the vendor driver, the type's prefix, as mtty's instances are in 6.1; None: unbound)."""
    if driver == "":
        driver = type_id.split("-")[0]
    pdir = parent_dir(fake, parent)
    tdir = pdir / "mdev_supported_types" / type_id
    d = pdir / uuid
    d.mkdir()
    (d / "remove").write_text("")
    fake.symlink(str((d / "mdev_type").relative_to(fake.root)), tdir)
    fake.symlink(str((tdir / "devices" / uuid).relative_to(fake.root)), d)
    fake.symlink(f"sys/bus/mdev/devices/{uuid}", d)
    if driver:
        ddir = fake.root / "sys/bus/mdev/drivers" / driver
        ddir.mkdir(parents=True, exist_ok=True)
        fake.symlink(str((d / "driver").relative_to(fake.root)), ddir)
    if group:
        g = _next_group(fake)
        gdir = fake.root / "sys/kernel/iommu_groups" / str(g)
        (gdir / "devices").mkdir(parents=True)
        fake.symlink(f"sys/kernel/iommu_groups/{g}/devices/{uuid}", d)
        fake.symlink(str((d / "iommu_group").relative_to(fake.root)), gdir)
        fake.write(f"dev/vfio/{g}", "")
    avail = tdir / "available_instances"
    if avail.exists():
        avail.write_text(f"{int(avail.read_text()) - 1}\n")
    return d


def remove_mdev(fake: FakeHost, uuid: str) -> None:
    link = fake.root / "sys/bus/mdev/devices" / uuid
    d = link.resolve()
    tdir = (d / "mdev_type").resolve()
    group = d / "iommu_group"
    if group.is_symlink():
        g = os.path.basename(os.readlink(group))
        shutil.rmtree(fake.root / "sys/kernel/iommu_groups" / g)
        (fake.root / "dev/vfio" / g).unlink(missing_ok=True)
    (tdir / "devices" / uuid).unlink()
    link.unlink()
    shutil.rmtree(d)
    avail = tdir / "available_instances"
    if avail.exists():
        avail.write_text(f"{int(avail.read_text()) + 1}\n")


def hold(fake: FakeHost, node: str, pid: int = 4242, comm: str = "qemu-system-x86") -> None:
    """A process with ``dev/<node>`` open (as /proc/<pid>/fd shows it)."""
    fake.write(f"proc/{pid}/comm", comm + "\n")
    fd = fake.root / f"proc/{pid}/fd"
    fd.mkdir(parents=True, exist_ok=True)
    os.symlink(fake.root / "dev" / node, fd / "17")


class FakeMdevKernel(FakeKernel):
    """FakeKernel plus the mdev core's ``create`` and ``remove`` files."""

    def __init__(self, fake: FakeHost) -> None:
        super().__init__(fake)
        self.instances_left: dict[str, int] = {}  #: type → what the driver has left, when it differs from sysfs

    def _apply(self, rel: str, value: str) -> None:
        parts = rel.split("/")
        if parts[:3] == ["sys", "class", "mdev_bus"] and parts[-1] == "create":
            parent, tid, text = parts[3], parts[5], value.strip()
            if not is_uuid(text):
                raise OSError(E.EINVAL, "Invalid argument")
            if (self.root / "sys/bus/mdev/devices" / text.lower()).exists():
                raise OSError(E.EEXIST, "File exists")
            avail = parent_dir(self.fake, parent) / "mdev_supported_types" / tid / "available_instances"
            left = self.instances_left.get(tid, int(avail.read_text()) if avail.exists() else 1)
            if left <= 0:
                raise OSError(E.ENOSPC, "No space left on device")
            add_mdev(self.fake, parent, tid, text.lower())
            return
        if parts[:4] == ["sys", "bus", "mdev", "devices"] and parts[-1] == "remove":
            if value.strip() != "1":
                raise OSError(E.EINVAL, "Invalid argument")
            remove_mdev(self.fake, parts[4])
            return
        super()._apply(rel, value)


def as_root_with_fake_kernel(monkeypatch, fake: FakeHost) -> FakeMdevKernel:
    """The mdev commands act as root, and their writes go to a fake kernel of ``fake``'s tree, never to /sys."""
    import pcipass.engine.guards as guards
    import pcipass.engine.kernel as engine_kernel

    monkeypatch.setattr(guards, "effective_uid", lambda: 0)
    kernel = FakeMdevKernel(fake)

    def kernel_for(host):
        assert os.path.realpath(host.root) == os.path.realpath(fake.root)
        return kernel

    monkeypatch.setattr(engine_kernel, "SysfsKernel", kernel_for)  # what a mutating run writes through
    return kernel


def mdev_cli(capsys, fake: FakeHost, *args: str, code: int = 0):
    """``pcipass --root FAKE mdev ARGS`` in this process; asserts the exit code."""
    from tests.support.cli import run

    r = run(capsys, "--root", str(fake.root), "mdev", *args)
    assert r.code == code, (r.code, r.out, r.err)
    return r
