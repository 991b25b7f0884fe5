"""``pcipass snapshot``: capture what pcipass reads into a tar archive that ``--root`` reads back.

A support bundle: the PCI part of sysfs (device attributes and links, drivers, slots, IOMMU groups and
units, the class objects behind devices), module state, the firmware tables' presence, the procfs files
the preflight and the guards read, module indexes, modprobe/boot-loader configuration and pcipass's own
state. The kernel log of a live host (``/dev/kmsg``, which cannot be archived) is stored as the log file the
preflight reads on snapshots. Only what pcipass reads is captured, never BARs: reading ``resourceN``/``rom``
performs device I/O, and ``vpd`` can hang on broken devices (kernel bugzilla 196023), so those are skipped by name.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from .host import Host
from .sysfs import MAX_TABLE, list_dir, read_bytes, read_kmsg

# Attributes never read: BARs/ROM (device I/O), vpd (may block), and write-only triggers. ``uevent`` is read
# (its show() only prints the device's identity, and the inventory reads it first).
_SKIP_ATTRS = {"rom", "vpd", "remove", "rescan", "reset", "reset_subordinate", "bind", "unbind", "new_id", "remove_id"}
#: The names an archive may have: tarfile reads any back, but the compression is chosen by the name.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".txz")
_MODULES = (
    "vfio",
    "vfio_pci",
    "vfio_pci_core",
    "vfio_iommu_type1",
    "kvm",
    "kvm_intel",
    "kvm_amd",
    "pci_stub",
    "vfio_virqfd",
)


_BOOT_TOOLS = (
    "grubby",
    "update-grub",
    "grub2-mkconfig",
    "grub-mkconfig",
    "update-initramfs",
    "dracut",
    "mkinitcpio",
    "proxmox-boot-tool",
    "kernel-install",
    "bootctl",
)


def _add_kernel_log(c: _Collector, host: Host) -> None:
    try:
        lines = read_kmsg(os.fspath(host.kmsg_device))
    except OSError:
        return  # not root, or no /dev/kmsg: the snapshot simply has no kernel log
    if lines:
        c.add_bytes(host.kmsg_log, ("\n".join(lines) + "\n").encode())


def _skip_attr(name: str) -> bool:
    return name in _SKIP_ATTRS or (name.startswith("resource") and name != "resource")


class _Collector:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.root = host.root_dir
        self.seen: set[str] = set()
        self.entries: list[tuple[str, tarfile.TarInfo, bytes | None]] = []
        self.mtime = int(time.time())

    def _arc(self, path: str) -> str:
        return self.host.archive_name(path)

    def _dirs_for(self, arc: str) -> None:
        parent = os.path.dirname(arc)
        chain = []
        while parent and parent not in self.seen:
            chain.append(parent)
            parent = os.path.dirname(parent)
        for d in reversed(chain):
            self._dir_entry(d)

    def _dir_entry(self, arc: str) -> None:
        self.seen.add(arc)
        info = tarfile.TarInfo(arc)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.mtime = self.mtime
        self.entries.append((arc, info, None))

    def add_dir(self, path: str | os.PathLike[str]) -> None:
        arc = self._arc(os.fspath(path))
        if arc in self.seen:
            return
        self._dirs_for(arc)
        self._dir_entry(arc)

    def add(self, path: str | os.PathLike[str], placeholder_devices: bool = False) -> None:
        """Add one file or symlink (not recursing); unreadable files are skipped, links kept as links."""
        path = os.fspath(path)
        arc = self._arc(path)
        if arc in self.seen or arc.startswith(".."):
            return
        try:
            st = os.lstat(path)
        except OSError:
            return
        info = tarfile.TarInfo(arc)
        info.mtime = self.mtime
        data: bytes | None = None
        if stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
            if os.path.isabs(info.linkname):
                # Absolute links would point outside the snapshot when read back; make them relative.
                info.linkname = os.path.relpath(self.root + info.linkname, os.path.dirname(path))
        elif stat.S_ISDIR(st.st_mode):
            self.add_dir(path)
            return
        elif stat.S_ISREG(st.st_mode):
            data = read_bytes(path, MAX_TABLE)
            if data is None:
                return
            info.size = len(data)
            info.mode = st.st_mode & 0o644 or 0o444
        elif placeholder_devices and (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            # Device nodes cannot be carried safely; an empty file keeps "it exists" answerable.
            data = b""
            info.size = 0
            info.mode = 0o600
        else:
            return
        self._dirs_for(arc)
        self.seen.add(arc)
        self.entries.append((arc, info, data))

    def add_tree_level(self, directory: str | os.PathLike[str]) -> None:
        """A directory's files and links (depth 1); subdirectories only as empty directories."""
        directory = os.fspath(directory)
        self.add_dir(directory)
        for name in list_dir(directory):
            if _skip_attr(name):
                continue
            full = os.path.join(directory, name)
            if os.path.isdir(full) and not os.path.islink(full):
                self.add_dir(full)
            else:
                self.add(full)

    def add_bytes(self, path: str | os.PathLike[str], data: bytes) -> None:
        """Add synthesized content at ``path`` (for sources that cannot be archived as they are)."""
        arc = self._arc(os.fspath(path))
        if arc in self.seen:
            return
        info = tarfile.TarInfo(arc)
        info.mtime = self.mtime
        info.size = len(data)
        info.mode = 0o600
        self._dirs_for(arc)
        self.seen.add(arc)
        self.entries.append((arc, info, data))

    def add_glob_files(self, directory: str | os.PathLike[str], suffix: str = "") -> None:
        for name in list_dir(directory):
            if name.endswith(suffix):
                self.add(os.path.join(directory, name))

    def write(self, out: Path) -> int:
        mode: Literal["w:xz", "w:gz"] = "w:xz" if out.name.endswith((".xz", ".txz")) else "w:gz"
        self.entries.sort(key=lambda e: e[0])
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        # A new file of our own (O_EXCL, O_NOFOLLOW): never through a link someone left under that name.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode=mode) as tar:
                for _arc, info, data in self.entries:
                    tar.addfile(info, io.BytesIO(data) if data is not None else None)
            # rename(2): a link named ``out`` is replaced itself, its target is never written.
            os.replace(tmp, out)
        except BaseException:
            # No half-written archive left behind (a full disk, an interrupted run).
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return len(self.entries)


def _real(path: Path) -> str | None:
    try:
        return os.path.realpath(path)
    except OSError:
        return None


def _device_dirs(host: Host) -> Iterator[str]:
    for name in list_dir(host.pci_devices_dir):
        real = _real(host.pci_devices_dir / name)
        if real and os.path.isdir(real):
            yield real


def capture(host: Host, out: Path) -> int:
    """Write the snapshot of ``host`` to ``out`` (gzip, or xz for ``.xz``); return the number of entries."""
    c = _Collector(host)
    # PCI devices: the bus links, each device's attributes and links, and its own subdirectories' names.
    c.add_tree_level(host.pci_devices_dir)
    for device_dir in _device_dirs(host):
        c.add_tree_level(device_dir)
    for drv in list_dir(host.pci_drivers_dir):
        c.add_tree_level(host.pci_driver(drv))
    for slot in list_dir(host.pci_slots_dir):
        c.add(host.pci_slots_dir / slot / "address")
    # IOMMU groups and units.
    for group in list_dir(host.iommu_groups_dir):
        gdir = host.iommu_groups_dir / group
        c.add(gdir / "type")
        c.add(gdir / "reserved_regions")
        c.add_tree_level(gdir / "devices")
    c.add_tree_level(host.iommu_class_dir)
    for unit in list_dir(host.iommu_class_dir):
        real = _real(host.iommu_class_dir / unit)
        if real:
            c.add_tree_level(real)
            c.add_tree_level(os.path.join(real, "intel-iommu"))
            c.add_tree_level(os.path.join(real, "amd-iommu"))
    # Host objects behind devices: network interfaces, disks and partitions, DRM cards, framebuffers, input
    # devices (keyboards: their capabilities).
    for cls in ("net", "block", "drm", "graphics", "input"):
        cdir = host.sys_class(cls)
        c.add_tree_level(cdir)
        for name in list_dir(cdir):
            real = _real(cdir / name)
            if real and os.path.isdir(real):
                c.add_tree_level(real)
                for sub in ("holders", "slaves", "device", "capabilities"):
                    if os.path.isdir(os.path.join(real, sub)) and not os.path.islink(os.path.join(real, sub)):
                        c.add_tree_level(os.path.join(real, sub))
    # Modules: which are live, and the parameters the preflight reads.
    for mod in list_dir(host.sys_module()):
        c.add(host.sys_module(mod) / "initstate")
    for mod in _MODULES:
        c.add_tree_level(host.sys_module(mod) / "parameters")
        c.add_tree_level(host.sys_module(mod) / "holders")
    # Firmware: ACPI DMAR/IVRS tables and EFI boot. The tables directory itself is kept so that "no DMAR
    # table" stays a finding on the snapshot; a table only root can read is kept as an empty placeholder.
    if host.acpi_tables_dir.is_dir():
        c.add_dir(host.acpi_tables_dir)
        for table in ("DMAR", "IVRS"):
            path = host.acpi_tables_dir / table
            c.add(path)
            if path.exists() and read_bytes(path, 1, head=True) is None:
                c.add_bytes(path, b"")
    if host.efi_dir.is_dir():
        c.add_dir(host.efi_dir)
    # The files the readers read as they are (procfs, boot and module configuration): Host's accessors marked
    # as captured.
    for p in host.captured_files():
        c.add(p)
    # Device nodes pcipass checks for existence; /dev itself is kept so that a missing node stays a finding.
    if host.dev().is_dir():
        c.add_dir(host.dev())
    c.add(host.kvm_device, placeholder_devices=True)
    for node in list_dir(host.vfio_dev_dir):
        c.add(host.vfio_dev_dir / node, placeholder_devices=True)
    # Module indexes, modprobe and boot configuration, kernel config, pcipass state.
    for name in ("modules.builtin", "modules.dep", "modules.alias"):
        index = host.lib_modules(name)
        if index is not None:
            c.add(index)
    for directory in host.modprobe_dirs:
        c.add_glob_files(directory, ".conf")
    c.add_glob_files(host.modules_load_dir, ".conf")
    c.add_glob_files(host.driverctl_dir, "")  # overrides driverctl applies at boot (bootbind)
    c.add_glob_files(host.default_grub_d, ".cfg")
    for esp in host.esp_dirs:
        c.add(esp / "loader" / "loader.conf")
        for vendor in list_dir(esp / "EFI"):
            c.add(esp / "EFI" / vendor / "grub.cfg")
    if host.loader_entries_dir.is_dir():
        c.add_dir(host.loader_entries_dir)
    # Boot and initramfs tools: only their presence matters (it decides which remedy is printed).
    for tool in _BOOT_TOOLS:
        program = host.find_program(tool)
        if program is not None:
            c.add_bytes(program, b"")
    if not host.kmsg_log.exists():
        _add_kernel_log(c, host)
    config = host.kernel_config()
    if config is not None:
        c.add(config)
    c.add_tree_level(host.state_dir)
    return c.write(out)
