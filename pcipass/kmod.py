"""Kernel module state, read like kmod reads it (no libkmod binding: it is not on PyPI as a maintained
package, and the files are simple): loaded, built in, available, blacklisted, missing, or unknown (no index).

Sources, all through the host root:
- loaded: ``/sys/module/<m>/initstate`` (only loadable modules have it) or ``/proc/modules``;
- built in: ``/lib/modules/$(uname -r)/modules.builtin`` — built-in modules never appear in /proc/modules;
- available: ``modules.dep``;
- blacklisted: ``blacklist <m>`` or ``install <m> /bin/false`` (or ``/bin/true``) in modprobe.d(5), and
  ``modprobe.blacklist=`` / ``module_blacklist=`` on the kernel command line.
Names are compared with ``-`` folded to ``_``, as the kernel does.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from enum import Enum

from .cmdline import Cmdline
from .drivers import normalize
from .host import Host
from .sysfs import link_name, list_dir, read_lines, read_str


class ModState(str, Enum):
    LOADED = "loaded"
    BUILTIN = "builtin"
    AVAILABLE = "available"
    BLACKLISTED = "blacklisted"
    MISSING = "missing"
    #: Not loaded, and no readable module index (kernel release unknown, or no /lib/modules/<release>: a
    #: recorded tree, a container) to tell whether it exists.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ModuleInfo:
    """A kernel module's state on the host: loaded, built in, available or missing, and any blacklist."""

    name: str
    state: ModState
    #: True when modprobe.d or the command line blacklists the module (even if it is loaded already).
    blacklisted: bool
    #: Where the blacklist comes from: ``file:line`` or ``kernel command line``.
    blacklist_source: str | None
    #: The ``install`` command modprobe.d runs instead of loading the module, when one is set.
    install_override: str | None

    @property
    def load_forbidden(self) -> bool:
        """True when even an explicit ``modprobe`` cannot load it: ``install <m> /bin/false`` (or ``/bin/true``)
        in modprobe.d, or ``module_blacklist=`` on the command line, which the kernel itself enforces. A plain
        ``blacklist`` only stops loading by alias (modprobe.d(5))."""
        program = (self.install_override or "").split()[:1]
        if program and os.path.basename(program[0]) in ("false", "true"):
            return True
        return self.blacklist_source == CMDLINE_MODULE_BLACKLIST


@dataclass(frozen=True)
class ModuleOption:
    """One option of a module, from modprobe.d or the kernel command line (``vfio_pci.ids=...``)."""

    name: str
    value: str | None  #: None for a bare flag
    source: str  #: ``file:line`` in modprobe.d, or ``kernel command line``


def _module_name(path_or_name: str) -> str:
    base = os.path.basename(path_or_name.strip())
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return normalize(base)


def _conf_files(host: Host) -> list[str]:
    """modprobe.d files in kmod's order: sorted by file name across all directories; for one file name the
    highest-precedence directory wins (modprobe.d(5): /etc over /run over /lib)."""
    chosen: dict[str, str] = {}
    for directory in host.modprobe_dirs:  # lowest precedence first; later ones overwrite
        for name in list_dir(directory):
            if name.endswith(".conf"):
                chosen[name] = os.path.join(directory, name)
    return [chosen[n] for n in sorted(chosen)]


#: ModuleOption.source of a ``<module>.<param>=`` on the kernel command line.
CMDLINE_OPTION = "kernel command line"
CMDLINE_MODULE_BLACKLIST = "kernel command line (module_blacklist=)"
CMDLINE_MODPROBE_BLACKLIST = "kernel command line (modprobe.blacklist=)"


def _cmdline(host: Host) -> Cmdline:
    return Cmdline.parse(read_str(host.cmdline) or "")


def _cmdline_blacklist(host: Host, name: str) -> str | None:
    """Which command-line blacklist names the module: ``module_blacklist=`` (enforced by the kernel,
    kernel/module/main.c) wins over ``modprobe.blacklist=`` (read by modprobe)."""
    cmdline = _cmdline(host)
    for key, source in (
        ("module_blacklist", CMDLINE_MODULE_BLACKLIST),
        ("modprobe.blacklist", CMDLINE_MODPROBE_BLACKLIST),
    ):
        if name in {normalize(v) for v in cmdline.options(key)}:
            return source
    return None


def _blacklist(host: Host, name: str) -> tuple[str | None, str | None]:
    """(source of a blacklist entry, install override) for module ``name``."""
    source: str | None = None
    install: str | None = None
    for path in _conf_files(host):
        for lineno, raw in enumerate(read_lines(path), 1):
            words = raw.split("#", 1)[0].split()
            if len(words) < 2 or normalize(words[1]) != name:
                continue
            if words[0] == "blacklist" and source is None:
                source = f"{host.shown(path)}:{lineno}"
            elif words[0] == "install":
                install = " ".join(words[2:])
                # install <m> /bin/false (or /bin/true) is the documented way to forbid loading entirely.
                if words[2:3] and os.path.basename(words[2]) in ("false", "true") and source is None:
                    source = f"{host.shown(path)}:{lineno}"
    cmdline_source = _cmdline_blacklist(host, name)
    if cmdline_source == CMDLINE_MODULE_BLACKLIST or (source is None and cmdline_source):
        source = cmdline_source
    return source, install


def module_options(host: Host, name: str) -> dict[str, ModuleOption]:
    """Parameters set for a module: ``options <m> k=v ...`` lines of modprobe.d, then ``<m>.k=v`` on the
    kernel command line, which modprobe appends after the configuration (and the kernel applies to built-in
    modules), so a later setting of the same parameter wins."""
    name = normalize(name)
    out: dict[str, ModuleOption] = {}
    for path in _conf_files(host):
        for lineno, raw in enumerate(read_lines(path), 1):
            words = raw.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "options" and normalize(words[1]) == name:
                for word in words[2:]:
                    key, eq, value = word.partition("=")
                    out[normalize(key)] = ModuleOption(
                        normalize(key), value if eq else None, f"{host.shown(path)}:{lineno}"
                    )
    for param in _cmdline(host).params:
        module, dot, key = param.name.partition(".")
        if dot and module == name and key:
            out[key] = ModuleOption(key, param.value, CMDLINE_OPTION)
    return out


def _modules_file_entry(host: Host, filename: str, name: str) -> list[str] | None:
    """The line of module ``name`` in ``modules.dep`` / ``modules.builtin`` (``path: dependency paths``): its
    dependencies (none for modules.builtin), or None when the module is not listed."""
    path = host.lib_modules(filename)
    if path is None:
        return None
    for line in read_lines(path):
        entry, _, deps = line.partition(":")
        if entry and _module_name(entry) == name:
            return deps.split()
    return None


def is_vfio_variant(host: Host, name: str) -> bool:
    """Whether a module is a vfio variant driver: one built on vfio_pci_core (a holder of the loaded module, or
    depending on it in modules.dep), as every variant is (drivers/vfio/pci/)."""
    name = normalize(name)
    if name in list_dir(host.sys_module("vfio_pci_core") / "holders"):
        return True
    deps = _modules_file_entry(host, "modules.dep", name)
    return deps is not None and any(_module_name(d) == "vfio_pci_core" for d in deps)


def has_module_index(host: Host) -> bool:
    """Whether the running kernel's ``modules.dep`` can be read."""
    path = host.lib_modules("modules.dep")
    return path is not None and os.access(path, os.R_OK)


def is_loaded(host: Host, name: str) -> bool:
    name = normalize(name)
    if read_str(host.sys_module(name) / "initstate") == "live":
        return True
    return any(line.split(" ", 1)[0] == name for line in read_lines(host.proc_modules))


def is_builtin(host: Host, name: str) -> bool:
    return _modules_file_entry(host, "modules.builtin", normalize(name)) is not None


def module_info(host: Host, name: str) -> ModuleInfo:
    name = normalize(name)
    source, install = _blacklist(host, name)
    blacklisted = source is not None
    if is_loaded(host, name):
        state = ModState.LOADED
    elif is_builtin(host, name):
        state = ModState.BUILTIN
    elif blacklisted:
        state = ModState.BLACKLISTED
    elif not has_module_index(host):
        state = ModState.UNKNOWN
    elif _modules_file_entry(host, "modules.dep", name) is not None:
        state = ModState.AVAILABLE
    else:
        state = ModState.MISSING
    return ModuleInfo(name, state, blacklisted, source, install)


def vfio_variant_for(host: Host, modalias: str | None) -> str | None:
    """The vfio variant driver module for a device, from ``alias vfio_pci:...`` lines of modules.alias.

    Variant drivers (mlx5_vfio_pci, hisi_acc_vfio_pci, nvgrace_gpu_vfio_pci...) declare their devices with
    ``MODULE_DEVICE_TABLE`` entries flagged ``PCI_DRIVER_OVERRIDE_DEVICE_VFIO``, which modpost writes as
    ``vfio_pci:`` aliases (kernel commit cc6711b0bf36, "PCI / VFIO: Add 'override_only' support for VFIO
    PCI sub system"). Among several matches the most specific (fewest wildcards) wins, as libvirt and
    NVIDIA's vfio-manage choose.
    """
    if not modalias or not modalias.startswith("pci:"):
        return None
    path = host.lib_modules("modules.alias")
    if path is None:
        return None
    target = "vfio_" + modalias
    best: tuple[int, str] | None = None
    for line in read_lines(path):
        words = line.split()
        if len(words) != 3 or words[0] != "alias" or not words[1].startswith("vfio_pci:"):
            continue
        if fnmatch.fnmatchcase(target, words[1]):
            score = words[1].count("*")
            if best is None or score < best[0]:
                best = (score, normalize(words[2]))
    return best[1] if best else None


def driver_module(host: Host, driver_name: str) -> str | None:
    """The module providing a PCI driver: the driver's ``module`` link, else its name with ``_``."""
    if not driver_name:
        return None
    return link_name(host.pci_driver(driver_name) / "module") or normalize(driver_name)
