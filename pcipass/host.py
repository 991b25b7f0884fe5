"""The host root: the only code that knows where the kernel's and the system's files live.

Modelled on ghw's context: a ``Host`` is built from a root directory (``/`` for the running system, or an
unpacked snapshot / a fake tree in tests) and every other module asks it for paths. No other module spells
``/sys``, ``/proc``, ``/dev``, ``/etc``, ``/run``, ``/lib/modules`` or ``/boot``.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from .address import PciAddress
from .errors import UsageError
from .sysfs import read_bytes

#: Environment variable that sets the default root.
ROOT_ENV = "PCIPASS_ROOT"
#: Environment variable naming a pci.ids file to use before the usual locations.
PCI_IDS_ENV = "PCIPASS_PCI_IDS"
#: This process's own mount table (not the root's): where a running kernel's sysfs is mounted.
SELF_MOUNTINFO = "/proc/self/mountinfo"

# pci.ids locations: hwdata (Fedora/RHEL/Arch, and a symlink on Debian), the pciutils default (Debian's
# `pci.ids` package), and an older pciutils default.
_PCI_IDS_CANDIDATES = (
    "usr/share/hwdata/pci.ids",
    "usr/share/misc/pci.ids",
    "usr/share/pci.ids",
)


#: The longest kernel release: ``utsname.release`` holds __NEW_UTS_LEN (64) characters (include/uapi/linux/utsname.h).
_RELEASE_MAX = 64


def _release(raw: bytes) -> str | None:
    """The kernel release in an ``osrelease`` file's bytes, or None when they cannot be one: not UTF-8, longer
    than the kernel allows, blanks or control characters inside, or not a single path component (it names
    ``lib/modules/RELEASE`` and ``boot/config-RELEASE``)."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if (
        len(text) > _RELEASE_MAX
        or not text.isprintable()
        or any(c.isspace() for c in text)
        or "/" in text
        or text in (".", "..")
    ):
        return None
    return text


def chosen_root(root: str | None) -> str:
    """The root a run reads: ``root`` (``--root``), else ``$PCIPASS_ROOT`` (an empty value leaves it unset),
    else ``/``. An empty ``root`` is a UsageError."""
    if root == "":
        # Not "/": a script's --root "$SNAPSHOT" with the variable unset must not reach the running system.
        raise UsageError(
            "--root is empty (an unset variable?): give a directory or a snapshot archive, "
            "or leave --root out for this host"
        )
    return root or os.environ.get(ROOT_ENV) or "/"


def _pci_ids_rel() -> list[str]:
    return [name for rel in _PCI_IDS_CANDIDATES for name in (rel, rel + ".gz")]


T = TypeVar("T")


def _captured(accessor: T) -> T:
    """Marks a Host accessor of files the readers read as they are: a snapshot holds them (``captured_files``),
    so a file a new reader needs is captured by marking its accessor, not by a second list in snapshot.py."""
    vars(accessor)["captured"] = True
    return accessor


class Host:
    """Paths of one host, resolved under ``root``."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        root_path = Path(root)
        #: The archive this host was unpacked from (``pcipass snapshot`` output), else None.
        self.archive: Path | None = None
        if root_path.is_file():
            self.archive = root_path
            from .archive import unpack_root

            root_path = unpack_root(root_path)
        elif not root_path.is_dir():
            raise UsageError(f"--root {str(root)!r} is not a directory or a snapshot archive")
        self.root = root_path

    @classmethod
    def from_env(cls, root: str | None = None) -> Host:
        """The host under ``chosen_root(root)``."""
        return cls(chosen_root(root))

    def __repr__(self) -> str:
        return f"Host({str(self.root)!r})"

    def shown(self, path: str | os.PathLike[str]) -> str:
        """A path under the root as the user knows it on that host (``/sys/...``, not ``<root>/sys/...``); a
        path outside the root as it is."""
        rel = os.path.relpath(path, self.root)
        if rel == ".":
            return "/"
        if rel == ".." or rel.startswith("../"):
            return os.fspath(path)
        return "/" + rel

    def actual(self, shown: str) -> str:
        """Inverse of ``shown``: where a path as the host knows it (``/sys/...``, a plan step's path) is under
        the root. A ``str``: the executor makes one per write, and pathlib's joins cost about as much as the
        write itself under emulation."""
        return os.path.join(self.root_dir, shown.lstrip("/"))

    @cached_property
    def root_dir(self) -> str:
        """The root, as text (for messages and ``actual``)."""
        return os.fspath(self.root)

    def relative(self, path: str | os.PathLike[str]) -> str:
        """A path under the root relative to it (``sys/bus/pci/devices``)."""
        return os.path.relpath(path, self.root)

    @cached_property
    def reaches_kernel(self) -> bool:
        """True when writes under this root reach a running kernel: the live root, or a root whose ``sys`` is a
        mounted sysfs (a container with its host's / at /host, a bind mount). The live system's safety checks
        (no mutation without an active IOMMU) apply to it; only fake trees and snapshots escape them."""
        if self.is_live:
            return True
        target = os.path.realpath(self.sys())
        try:
            with open(SELF_MOUNTINFO, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    # "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPEROPTIONS"
                    left, _, right = line.partition(" - ")
                    fields = left.split()
                    if right.split()[:1] == ["sysfs"] and len(fields) >= 5 and unescape_mount(fields[4]) == target:
                        return True
        except OSError:
            # Cannot tell: a root whose sys is a real sysfs would be missed, so say yes when it holds a
            # kernel-made directory no test tree or snapshot has.
            return os.path.isdir(os.path.join(target, "kernel", "mm"))
        return False

    @cached_property
    def beneath(self) -> str | None:
        """The directory every write must resolve beneath (``beneath.open_beneath``), None for the running
        system: there the kernel's own sysfs links are followed as they are."""
        return None if self.is_live else os.fspath(self.root)

    def open(self, path: str | os.PathLike[str], flags: int, mode: int = 0o600, *, make_dirs: int | None = None) -> int:
        """``os.open`` of a path under the root for writing (or for locking): beneath a root that is not the
        running system's, resolved without leaving it (OSError EXDEV otherwise, see beneath.py); ``make_dirs``
        (a mode) makes the missing directories on the way (and the last one, for ``O_DIRECTORY``)."""
        if self.beneath is not None:
            from .beneath import open_beneath

            return open_beneath(self.beneath, os.fspath(path), flags, mode, make_dirs=make_dirs)
        if make_dirs is not None:
            os.makedirs(path if flags & os.O_DIRECTORY else os.path.dirname(path), make_dirs, exist_ok=True)
        return os.open(path, flags | os.O_CLOEXEC, mode)

    @cached_property
    def is_live(self) -> bool:
        """True when the root is the running system's ``/`` (mutations then reach real hardware)."""
        try:
            return self.root.resolve() == Path("/").resolve()
        except OSError:
            return False

    def captured_files(self) -> list[Path]:
        """The files of every accessor marked ``@_captured`` (an accessor may give several)."""
        out: list[Path] = []
        for name, member in vars(Host).items():
            if getattr(member.fget if isinstance(member, property) else member, "captured", False):
                value = getattr(self, name)
                value = value() if callable(value) else value
                out.extend(value if isinstance(value, tuple) else (value,))
        return out

    # --- top-level trees -------------------------------------------------------------------------------
    def sys(self, *parts: str) -> Path:
        return self.root.joinpath("sys", *parts)

    def proc(self, *parts: str) -> Path:
        return self.root.joinpath("proc", *parts)

    def dev(self, *parts: str) -> Path:
        return self.root.joinpath("dev", *parts)

    def etc(self, *parts: str) -> Path:
        return self.root.joinpath("etc", *parts)

    @property
    def driverctl_dir(self) -> Path:
        return self.etc("driverctl.d")

    def driverctl_override(self, address: str) -> Path:
        """driverctl's saved override for a PCI device (its udev rule applies it when the device appears)."""
        return self.driverctl_dir / f"pci-{address}"

    def driverctl_saved(self, address: str) -> tuple[str, Path] | None:
        """The driver driverctl gives the device at boot, and the file that says so; None when there is none
        (driverctl's load-override applies only a non-empty file)."""
        path = self.driverctl_override(address)
        # read_bytes: bounded and never blocking (a FIFO or a GiB file there in a --root tree); a driver name is
        # far shorter than 256 bytes.
        raw = read_bytes(path, 256, head=True)
        saved = raw.decode("utf-8", "replace").strip() if raw is not None else ""
        return (saved, path) if saved else None

    @property
    def pcipass_config(self) -> Path:
        """pcipass's desired-state file (``pcipass apply``, ``persist``, the boot unit)."""
        return self.etc("pcipass", "pcipass.yaml")

    @property
    def modprobe_conf_dir(self) -> Path:
        """The administrator's modprobe.d (``/etc/modprobe.d``), where a remedy puts its options."""
        return self.etc("modprobe.d")

    @property
    def initramfs_tools_modules(self) -> Path:
        """initramfs-tools' list of modules to include (Debian, Ubuntu)."""
        return self.etc("initramfs-tools", "modules")

    @property
    def dracut_conf_dir(self) -> Path:
        return self.etc("dracut.conf.d")

    @property
    def mkinitcpio_conf(self) -> Path:
        return self.etc("mkinitcpio.conf")

    @property
    def systemd_system_dir(self) -> Path:
        """The administrator's systemd units (``/etc/systemd/system``): where ``boot install`` writes its unit."""
        return self.etc("systemd", "system")

    @property
    def systemd_running(self) -> bool:
        """systemd is this host's init (sd_booted(3): ``/run/systemd/system`` exists); live root only."""
        return self.is_live and self.run("systemd", "system").is_dir()

    @property
    def boot_id(self) -> Path:
        """A random id the kernel makes at each boot (``/proc/sys/kernel/random/boot_id``)."""
        return self.proc("sys", "kernel", "random", "boot_id")

    def run(self, *parts: str) -> Path:
        return self.root.joinpath("run", *parts)

    def boot(self, *parts: str) -> Path:
        return self.root.joinpath("boot", *parts)

    def usr(self, *parts: str) -> Path:
        return self.root.joinpath("usr", *parts)

    # --- PCI ------------------------------------------------------------------------------------------
    # Cached (the root never changes): the binding engine asks for these at every read and write.
    @cached_property
    def pci_devices_dir(self) -> Path:
        return self.sys("bus", "pci", "devices")

    @cached_property
    def pci_drivers_dir(self) -> Path:
        return self.sys("bus", "pci", "drivers")

    @property
    def pci_slots_dir(self) -> Path:
        return self.sys("bus", "pci", "slots")

    @cached_property
    def pci_drivers_probe(self) -> Path:
        return self.sys("bus", "pci", "drivers_probe")

    def pci_device(self, address: PciAddress | str) -> Path:
        return self.pci_devices_dir / str(address)

    def pci_driver(self, name: str) -> Path:
        return self.pci_drivers_dir / name

    def sys_class(self, name: str) -> Path:
        return self.sys("class", name)

    @property
    def iommu_groups_dir(self) -> Path:
        return self.sys("kernel", "iommu_groups")

    @property
    def iommu_class_dir(self) -> Path:
        return self.sys("class", "iommu")

    def sys_module(self, name: str = "") -> Path:
        return self.sys("module", name) if name else self.sys("module")

    @property
    def acpi_tables_dir(self) -> Path:
        return self.sys("firmware", "acpi", "tables")

    @property
    def efi_dir(self) -> Path:
        return self.sys("firmware", "efi")

    # --- mediated devices (Documentation/driver-api/vfio-mediated-device.rst) -------------------------------
    @property
    def mdev_bus_dir(self) -> Path:
        """One link per registered mdev parent (PCI or not), named by the parent's device name."""
        return self.sys("class", "mdev_bus")

    @property
    def mdev_devices_dir(self) -> Path:
        """One link per existing mediated device, named by its UUID."""
        return self.sys("bus", "mdev", "devices")

    def mdev_device(self, uuid: str) -> Path:
        return self.mdev_devices_dir / uuid

    @property
    def mdevctl_dir(self) -> Path:
        """mdevctl's definitions: ``<parent>/<uuid>`` JSON files (mdevctl(8), "config_base")."""
        return self.etc("mdevctl.d")

    def vfio_group_node(self, group: int) -> Path:
        return self.dev("vfio", str(group))

    def vfio_device_node(self, name: str) -> Path:
        """A device's VFIO cdev (``vfioN`` of its ``vfio-dev/`` directory): what iommufd users open."""
        return self.dev("vfio", "devices", name)

    # --- /proc ----------------------------------------------------------------------------------------
    def nvidia_gpu_information(self, address: str) -> Path:
        """The NVIDIA driver's description of one GPU (its "Device Minor" names its /dev/nvidiaN)."""
        return self.proc("driver", "nvidia", "gpus", address, "information")

    @property
    @_captured
    def cmdline(self) -> Path:
        return self.proc("cmdline")

    @property
    @_captured
    def cpuinfo(self) -> Path:
        return self.proc("cpuinfo")

    @property
    @_captured
    def proc_modules(self) -> Path:
        return self.proc("modules")

    @cached_property
    def _ns_pid(self) -> str | None:
        """Whose namespaces the mount and network views are read through: None for ``self`` (this system, a
        snapshot, a test tree); PID 1 for a root that reaches a running kernel but is not this system's / (a
        container's /host/proc), where ``self`` would be the container's own mounts and network, and PID 1 is
        the host's init."""
        return "1" if self.reaches_kernel and not self.is_live else None

    def _net(self, name: str) -> Path:
        return self.proc(self._ns_pid, "net", name) if self._ns_pid else self.proc("net", name)

    def archive_name(self, path: str | os.PathLike[str]) -> str:
        """A path's name inside a snapshot: relative to the root, with PID 1's mount and network views under the
        names every reader uses (``proc/self/mountinfo``, ``proc/net/...``)."""
        rel = os.path.relpath(path, self.root)
        if self._ns_pid:
            prefix = f"proc/{self._ns_pid}/"
            if rel.startswith(prefix + "net/"):
                return "proc/" + rel[len(prefix) :]
            if rel == prefix + "mountinfo":
                return "proc/self/mountinfo"
        return rel

    @property
    @_captured
    def mountinfo(self) -> Path:
        return self.proc(self._ns_pid or "self", "mountinfo")

    @property
    @_captured
    def swaps(self) -> Path:
        return self.proc("swaps")

    @property
    @_captured
    def route_v4(self) -> Path:
        return self._net("route")

    @property
    @_captured
    def route_v6(self) -> Path:
        return self._net("ipv6_route")

    @property
    @_captured
    def if_inet6(self) -> Path:
        return self._net("if_inet6")

    @property
    @_captured
    def fib_trie(self) -> Path:
        """IPv4 FIB as a trie: the only procfs view of local IPv4 addresses (``/32 host LOCAL`` leaves)."""
        return self._net("fib_trie")

    @property
    def btrfs_fs_dir(self) -> Path:
        """One directory per mounted btrfs filesystem, with ``devices/`` naming its block devices."""
        return self.sys("fs", "btrfs")

    @property
    @_captured
    def proc_config_gz(self) -> Path:
        return self.proc("config.gz")

    @property
    @_captured
    def osrelease(self) -> Path:
        return self.proc("sys", "kernel", "osrelease")

    def proc_fd_dir(self, pid: str) -> Path:
        """A process's open files (``fd/N`` links), as fuser(1) reads them."""
        return self.proc(pid, "fd")

    def proc_comm(self, pid: str) -> Path:
        return self.proc(pid, "comm")

    @property
    def kvm_device(self) -> Path:
        return self.dev("kvm")

    def dri_node(self, name: str) -> Path:
        """A DRM minor's node (``cardN``, ``renderDN``) in ``/dev/dri``."""
        return self.dev("dri", name)

    def drm_debugfs(self, minor: str) -> Path:
        """DRM's debugfs directory of one minor (``/sys/kernel/debug/dri/<index>``: 0 for ``card0``, 128 for
        ``renderD128``; in newer kernels a link to the device's directory, named by its PCI address). Its
        ``clients`` lists every open file of the DRM device (drivers/gpu/drm/drm_debugfs.c drm_clients_info).
        Root only, and only where debugfs is mounted."""
        return self.sys("kernel", "debug", "dri", minor)

    def nvidia_node(self, name: str) -> Path:
        """One of the NVIDIA driver's nodes in ``/dev`` (``nvidiaN``, ``nvidiactl``, ``nvidia-uvm``, ...)."""
        return self.dev(name)

    @property
    def vfio_dev_dir(self) -> Path:
        """``/dev/vfio``: one node per VFIO group (``vfio_group_node``), ``devices/`` for iommufd users."""
        return self.dev("vfio")

    @property
    def hostname_files(self) -> tuple[Path, ...]:
        """Where the host's name is, in order: the kernel's (live), then ``/etc/hostname`` (a snapshot)."""
        return self.proc("sys", "kernel", "hostname"), self.etc("hostname")

    @property
    def sys_block_dir(self) -> Path:
        """``/sys/block``: the pre-2.6.25 layout kept as a compatibility directory; snapshots may have only it."""
        return self.sys("block")

    @property
    def kmsg_device(self) -> Path:
        """The kernel's live log (readable by root, or by anyone when ``kernel.dmesg_restrict`` is 0)."""
        return self.dev("kmsg")

    @property
    @_captured
    def kmsg_log(self) -> Path:
        """Where a persisted kernel log may be found (for snapshots and hosts without dmesg access)."""
        return self.root.joinpath("var", "log", "kern.log")

    # --- kernel release, modules, boot ------------------------------------------------------------------
    @cached_property
    def kernel_release(self) -> str | None:
        """``uname -r`` of the host: from procfs under the root, else (live only) from uname. None when unknown,
        and when ``osrelease`` is no release (``_release``): the name becomes a path component."""
        raw = read_bytes(self.osrelease, _RELEASE_MAX * 4)
        if raw is not None and raw.strip():
            return _release(raw)
        if self.is_live:
            return os.uname().release
        # A snapshot without osrelease: use the only module tree if there is exactly one.
        try:
            trees = [p.name for p in self.root.joinpath("lib", "modules").iterdir() if p.is_dir()]
        except OSError:
            return None
        return trees[0] if len(trees) == 1 else None

    def lib_modules(self, *parts: str) -> Path | None:
        kver = self.kernel_release
        if kver is None:
            return None
        base = self.root.joinpath("lib", "modules", kver)
        if not base.exists():
            # usrmerge: /lib is a symlink to /usr/lib, but a snapshot may only hold usr/lib/modules.
            alt = self.root.joinpath("usr", "lib", "modules", kver)
            if alt.exists():
                base = alt
        return base.joinpath(*parts)

    def kernel_config(self) -> Path | None:
        kver = self.kernel_release
        return self.boot_config(kver) if kver else None

    def boot_config(self, kver: str) -> Path:
        """The configuration of kernel ``kver`` as distributions install it beside the image."""
        return self.boot(f"config-{kver}")

    def boot_image(self, kver: str) -> Path:
        """The image of kernel ``kver`` in /boot."""
        return self.boot(f"vmlinuz-{kver}")

    @property
    def modprobe_dirs(self) -> tuple[Path, ...]:
        """modprobe.d directories, lowest precedence first (modprobe.d(5): /etc > /run > /lib)."""
        return (
            self.root.joinpath("lib", "modprobe.d"),
            self.root.joinpath("usr", "lib", "modprobe.d"),
            self.run("modprobe.d"),
            self.etc("modprobe.d"),
        )

    @property
    def modules_load_dir(self) -> Path:
        return self.etc("modules-load.d")

    @property
    @_captured
    def default_grub(self) -> Path:
        return self.etc("default", "grub")

    @property
    @_captured
    def kernel_cmdline_file(self) -> Path:
        return self.etc("kernel", "cmdline")

    @property
    def default_grub_d(self) -> Path:
        """Drop-ins sourced after /etc/default/grub by grub-mkconfig (Debian/Ubuntu cloud images use it)."""
        return self.etc("default", "grub.d")

    @property
    @_captured
    def os_release_files(self) -> tuple[Path, ...]:
        # os-release(5): /etc/os-release, falling back to /usr/lib/os-release.
        return (self.etc("os-release"), self.usr("lib", "os-release"))

    @property
    @_captured
    def proxmox_boot_uuids(self) -> Path:
        """proxmox-boot-tool's list of the ESPs it keeps in sync (its presence: a Proxmox-managed boot)."""
        return self.etc("kernel", "proxmox-boot-uuids")

    @property
    def loader_entries_dir(self) -> Path:
        """Boot Loader Specification entries (grubby and systemd-boot hosts)."""
        return self.boot("loader", "entries")

    @property
    def esp_dirs(self) -> tuple[Path, ...]:
        """Where an EFI system partition is usually mounted: /boot/efi, /efi, /boot (systemd-boot)."""
        return (self.boot("efi"), self.root.joinpath("efi"), self.boot())

    @_captured
    def grub_cfg_candidates(self) -> tuple[Path, ...]:
        """The GRUB configuration files a BIOS or a UEFI (shim/grub2) boot reads, most common first."""
        return (self.boot("grub2", "grub.cfg"), self.boot("grub", "grub.cfg"))

    def find_program(self, name: str) -> Path | None:
        """An executable of the host (under the root), searched in the usual sbin/bin directories."""
        for rel in ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin"):
            path = self.root.joinpath(rel, name)
            if path.is_file():
                return path
        return None

    def executable(self, name: str) -> str | None:
        """A system tool of the running system (live root only: a tool under another root cannot act on
        this kernel): $PATH, then the sbin directories a non-login root shell may lack."""
        if not self.is_live:
            return None
        import shutil

        path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
        return shutil.which(name, path=path)

    @property
    def state_dir(self) -> Path:
        """Root-only runtime state of pcipass (cleared at reboot, as the bindings are)."""
        return self.run("pcipass")

    # --- pci.ids ------------------------------------------------------------------------------------------
    def pci_ids_candidates(self) -> list[Path]:
        """Where to look for pci.ids: under the root first (a snapshot may carry its own), then the running
        system: $PCIPASS_PCI_IDS, then the distribution locations (plain or ``.gz``)."""
        out: list[Path] = []
        if not self.is_live:
            out += [self.root / rel for rel in _pci_ids_rel()]
        env = os.environ.get(PCI_IDS_ENV)
        if env:
            out.append(Path(env))
        out += [Path("/") / rel for rel in _pci_ids_rel()]
        return out

    def find_pci_ids(self) -> Path | None:
        for cand in self.pci_ids_candidates():
            if cand.is_file():
                return cand
        return None


def unescape_mount(text: str) -> str:
    """procfs mount tables escape space, tab, newline and backslash as ``\\ooo`` (fs/proc_namespace.c mangle)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), text)
