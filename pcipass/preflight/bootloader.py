"""Which boot loader sets this host's kernel command line, and the exact edit that changes it.

Read-only: pcipass prints the change and the command to run, it never edits these files.

* grubby (Fedora, RHEL and derivatives): ``grubby --update-kernel=ALL --args=... --remove-args=...`` edits
  every boot entry (BLS entries included, which ``grub2-mkconfig`` alone does not update).
* GRUB with ``/etc/default/grub`` (plus the ``/etc/default/grub.d/*.cfg`` drop-ins grub-mkconfig sources
  after it): the ``GRUB_CMDLINE_LINUX_DEFAULT`` line (``GRUB_CMDLINE_LINUX`` where no ``_DEFAULT`` is set),
  then ``update-grub`` (Debian, Ubuntu) or ``grub2-mkconfig -o <grub.cfg>`` / ``grub-mkconfig -o ...``.
  The output path differs between BIOS and UEFI and between releases: since Fedora 34 / RHEL 9 the ESP's
  ``EFI/<distro>/grub.cfg`` is a stub that loads ``/boot/grub2/grub.cfg`` (Fedora change "Unify the GRUB
  configuration file location"), and overwriting the stub leaves the machine unbootable; older UEFI
  installs keep the whole configuration on the ESP.
* systemd-boot / kernel-install: ``/etc/kernel/cmdline`` (kernel-install(8)), then
  ``kernel-install add <kver> <image>``; Proxmox VE's ``proxmox-boot-tool refresh`` for either loader.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from ..cmdline import Cmdline, normalize_name
from ..host import Host
from . import files

GRUB_DEFAULT = "GRUB_CMDLINE_LINUX_DEFAULT"
GRUB_LINUX = "GRUB_CMDLINE_LINUX"
# Tokens a boot loader adds itself; they never belong in /etc/kernel/cmdline.
_LOADER_TOKENS = ("BOOT_IMAGE", "initrd")


class Kind(str, Enum):
    GRUBBY = "grubby"
    GRUB = "grub"
    KERNEL_CMDLINE = "kernel-cmdline"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class GrubVar:
    """A GRUB_CMDLINE_* assignment in /etc/default/grub (or grub.d), and where it was made."""

    name: str
    value: str
    source: str  #: file:line of the assignment that wins (the last one)


@dataclass(frozen=True)
class BootLoader:
    """The boot loader that sets the kernel command line, and how to change it there."""

    kind: Kind
    description: str
    #: What to run after the edit (None for grubby, which applies the change itself).
    regenerate: str | None = None
    #: GRUB: the winning assignments of GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT.
    grub_vars: tuple[GrubVar, ...] = ()
    #: GRUB: the file to edit when a variable is not assigned anywhere yet.
    grub_file: str | None = None
    #: kernel-install: the file and its current tokens (seeded from the running command line when absent).
    cmdline_file: str | None = None
    cmdline_tokens: tuple[str, ...] = ()
    cmdline_file_exists: bool = False
    #: Tokens of the running command line, to name exactly what grubby should remove.
    running: tuple[str, ...] = ()

    def remedy(self, add: Sequence[str] = (), remove: Sequence[str] = ()) -> str:
        """The exact change: ``add`` tokens (``intel_iommu=on``), ``remove`` parameters by name (any value)."""
        gone = {normalize_name(n) for n in remove}
        if self.kind is Kind.GRUBBY:
            return self._grubby(add, gone)
        if self.kind is Kind.GRUB:
            return self._grub(add, gone)
        if self.kind is Kind.KERNEL_CMDLINE:
            return self._kernel_cmdline(add, gone)
        parts = []
        if gone:
            parts.append("remove " + " ".join(sorted(self._running_tokens(gone)) or sorted(gone)))
        if add:
            parts.append("add " + " ".join(add))
        return (
            " and ".join(parts) + " on the kernel command line in your boot loader's configuration "
            "(no GRUB, grubby or systemd-boot configuration was found), then reboot"
        )

    def _running_tokens(self, names: set[str]) -> list[str]:
        return Cmdline.parse(" ".join(self.running)).tokens(*names) if names else []

    def _grubby(self, add: Sequence[str], gone: set[str]) -> str:
        cmd = "grubby --update-kernel=ALL"
        if add:
            cmd += f' --args="{" ".join(add)}"'
        if gone:
            cmd += f' --remove-args="{" ".join(self._running_tokens(gone) or sorted(gone))}"'
        return f"run: {cmd}; then reboot"

    def _grub(self, add: Sequence[str], gone: set[str]) -> str:
        current = {v.name: v for v in self.grub_vars}
        target = GRUB_DEFAULT if GRUB_DEFAULT in current else GRUB_LINUX
        edits: dict[str | None, list[str]] = {}  # file -> assignments, in order
        already = True
        for name in (GRUB_LINUX, GRUB_DEFAULT):
            var = current.get(name)
            if var is None and name != target:
                continue
            tokens = [p.token for p in Cmdline.parse(var.value).params] if var else []
            kept = [t for t in tokens if normalize_name(t.split("=", 1)[0]) not in gone]
            if name == target:
                kept += [t for t in add if t not in kept]
            if kept != tokens:
                already = False
                where = var.source.rsplit(":", 1)[0] if var else self.grub_file
                edits.setdefault(where, []).append(f'{name}="{" ".join(kept)}"')
        after = f"then run {self.regenerate} and reboot"
        if already:
            return (
                f"the GRUB configuration already has {_change(add, gone)}, but the running kernel was not "
                f"booted with it: {after}"
            )
        return "; ".join(f"in {where} set {' and '.join(lines)}" for where, lines in edits.items()) + f"; {after}"

    def _kernel_cmdline(self, add: Sequence[str], gone: set[str]) -> str:
        tokens = list(self.cmdline_tokens)
        kept = [t for t in tokens if normalize_name(t.split("=", 1)[0]) not in gone]
        kept += [t for t in add if t not in kept]
        after = f"then run {self.regenerate} and reboot"
        if kept == tokens and self.cmdline_file_exists:
            return (
                f"{self.cmdline_file} already has {_change(add, gone)}, but the running kernel was not booted "
                f"with it: {after}"
            )
        verb = "set" if self.cmdline_file_exists else "create"
        return f"{verb} {self.cmdline_file} to: {' '.join(kept)}; {after}"


def _change(add: Sequence[str], gone: set[str]) -> str:
    parts = list(add) + [f"no {name}" for name in sorted(gone) if not any(t.split("=", 1)[0] == name for t in add)]
    return " ".join(parts) if len(parts) == 1 else "this change (" + ", ".join(parts) + ")"


def _os_ids(host: Host) -> set[str]:
    for path in host.os_release_files:
        try:
            text = files.read_text(path, 65536)
        except files.Unreadable:
            continue
        if text is None:
            continue
        ids: set[str] = set()
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("ID", "ID_LIKE"):
                ids.update(value.strip().strip("\"'").lower().split())
        return ids
    return set()


def _grub_assignments(host: Host) -> tuple[list[GrubVar], list[str]]:
    """Winning GRUB_CMDLINE_LINUX[_DEFAULT] assignments across /etc/default/grub and grub.d/*.cfg."""
    paths = [host.default_grub]
    try:
        paths += [host.default_grub_d / n for n in files.list_names(host.default_grub_d) or [] if n.endswith(".cfg")]
    except files.Unreadable:
        pass
    found: dict[str, GrubVar] = {}
    read: list[str] = []
    for path in paths:
        text = files.read_text(path, 1 << 20)
        if text is None:
            continue
        shown = host.shown(path)
        read.append(shown)
        for lineno, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("export "):
                stripped = stripped[len("export ") :].lstrip()
            name, eq, rhs = stripped.partition("=")
            if not eq or name not in (GRUB_LINUX, GRUB_DEFAULT):
                continue
            try:
                value = " ".join(shlex.split(rhs, comments=True))
            except ValueError:
                value = rhs.strip().strip("\"'")
            found[name] = GrubVar(name, value, f"{shown}:{lineno}")
    return [found[n] for n in (GRUB_LINUX, GRUB_DEFAULT) if n in found], read


def _grub_cfg(host: Host, mkconfig: str) -> tuple[str, str]:
    """(grub.cfg path to generate, how it was chosen)."""
    if files.exists(host.efi_dir):
        for esp in host.esp_dirs[:2]:
            try:
                vendors = files.list_names(esp / "EFI") or []
            except files.Unreadable as exc:
                return _grub_cfg_bios(host, mkconfig)[0], f"UEFI; {host.shown(esp)} not readable ({exc.reason})"
            for vendor in vendors:
                cfg = esp / "EFI" / vendor / "grub.cfg"
                try:
                    text = files.read_text(cfg, 1 << 20)
                except files.Unreadable:
                    continue
                if text is None:
                    continue
                if "### BEGIN /etc/grub.d" in text:
                    return host.shown(cfg), "UEFI, configuration on the ESP"
                # A stub that loads the real configuration from /boot: generate that one.
                return _grub_cfg_bios(host, mkconfig)[0], f"UEFI, {host.shown(cfg)} is a stub"
        return _grub_cfg_bios(host, mkconfig)[0], "UEFI"
    return _grub_cfg_bios(host, mkconfig)


def _grub_cfg_bios(host: Host, mkconfig: str) -> tuple[str, str]:
    for cfg in host.grub_cfg_candidates():
        if files.exists(cfg):
            return host.shown(cfg), "BIOS"
    grub2, grub = host.grub_cfg_candidates()
    return host.shown(grub2 if mkconfig == "grub2-mkconfig" else grub), "BIOS"


def _proxmox(host: Host) -> bool:
    return files.exists(host.proxmox_boot_uuids)


def _systemd_boot(host: Host) -> bool:
    return any(files.exists(esp / "loader" / "loader.conf") for esp in host.esp_dirs)


def detect(host: Host, running: Cmdline | None = None) -> BootLoader:
    running_tokens = tuple(p.token for p in running.params) if running else ()
    proxmox = _proxmox(host)
    has_grub = files.exists(host.default_grub)
    grubby = host.find_program("grubby")
    if grubby is not None and not proxmox and (has_grub or files.exists(host.loader_entries_dir)):
        return BootLoader(Kind.GRUBBY, f"grubby ({host.shown(grubby)})", running=running_tokens)
    if has_grub:
        grub_file = host.shown(host.default_grub)
        try:
            grub_vars, read = _grub_assignments(host)
        except files.Unreadable as exc:
            # Still GRUB; the remedy then names the variable without its current value.
            grub_vars, read = [], [f"{host.shown(exc.path)} not readable: {exc.reason}"]
        if proxmox:
            regen, how = "proxmox-boot-tool refresh", "Proxmox VE"
        elif host.find_program("update-grub") is not None or _os_ids(host) & {"debian", "ubuntu"}:
            regen, how = "update-grub", "Debian family"
        else:
            if host.find_program("grub2-mkconfig") is not None:
                mkconfig = "grub2-mkconfig"
            elif host.find_program("grub-mkconfig") is not None:
                mkconfig = "grub-mkconfig"
            else:
                ids = _os_ids(host)
                mkconfig = (
                    "grub2-mkconfig" if ids & {"rhel", "fedora", "centos", "suse", "opensuse"} else "grub-mkconfig"
                )
            cfg, how = _grub_cfg(host, mkconfig)
            regen = f"{mkconfig} -o {cfg}"
        return BootLoader(
            Kind.GRUB,
            f"GRUB ({', '.join(read)}; {how})",
            regenerate=regen,
            grub_vars=tuple(grub_vars),
            grub_file=grub_file,
            running=running_tokens,
        )
    cmdline_file = host.kernel_cmdline_file
    if files.exists(cmdline_file) or proxmox or _systemd_boot(host):
        try:
            text = files.read_text(cmdline_file, 65536)
        except files.Unreadable:
            text = None
        if text is not None:
            lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
            tokens = tuple(p.token for p in Cmdline.parse(" ".join(lines)).params)
        else:
            tokens = tuple(running.without(*_LOADER_TOKENS)) if running else ()
        if proxmox:
            regen = "proxmox-boot-tool refresh"
        else:
            kver = host.kernel_release or "$(uname -r)"
            image = host.lib_modules("vmlinuz")
            if image is None or not files.exists(image):
                image = host.boot_image(kver)
            regen = f"kernel-install add {kver} {host.shown(image)}"
        shown = host.shown(cmdline_file)
        return BootLoader(
            Kind.KERNEL_CMDLINE,
            f"systemd-boot / kernel-install ({shown})",
            regenerate=regen,
            cmdline_file=shown,
            cmdline_tokens=tokens,
            cmdline_file_exists=files.exists(cmdline_file),
            running=running_tokens,
        )
    return BootLoader(
        Kind.UNKNOWN, "unknown (no GRUB, grubby or systemd-boot configuration found)", running=running_tokens
    )


def initramfs_command(host: Host) -> str | None:
    """The command that rebuilds the initramfs (it carries a copy of modprobe.d)."""
    for program, command in (
        ("update-initramfs", "update-initramfs -u -k all"),
        ("dracut", "dracut -f --regenerate-all"),
        ("mkinitcpio", "mkinitcpio -P"),
    ):
        if host.find_program(program) is not None:
            return command
    return None
