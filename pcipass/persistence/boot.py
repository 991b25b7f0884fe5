"""``boot install/remove/status``: the systemd unit that runs ``pcipass apply`` early at every boot.

``pcipass-apply.service`` is a oneshot without default dependencies, ordered after systemd-modules-load (the
modules in modules-load.d, vfio-pci among them if listed, are loaded) and before sysinit.target and every
consumer that must find its devices bound (libvirt's daemons, kubelet, RKE2, K3s). ``WantedBy=sysinit.target``:
enabling it is the symlink ``/etc/systemd/system/sysinit.target.wants/pcipass-apply.service``, which is all that
``systemctl enable`` does for an ``[Install]`` section like this one, so ``boot install`` makes the link itself
and works the same under ``--root`` (an image being built, a test tree). On the running system it then asks
systemd to reload (``systemctl daemon-reload``) when systemd is the init.

``apply --boot`` (what the unit runs) records how the run ended in ``/run/pcipass/boot-apply.json``, which
``boot status`` reads: /run is emptied at every boot, so a record there is this boot's.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import PcipassError, from_oserror
from ..host import Host

UNIT = "pcipass-apply.service"
TARGET = "sysinit.target"
#: Units that must find the devices bound: libvirt (monolithic and modular daemons), Kubernetes' kubelet, RKE2
#: (Harvester's distribution, server and agent) and K3s.
CONSUMERS = (
    "libvirtd.service",
    "virtqemud.service",
    "kubelet.service",
    "rke2-server.service",
    "rke2-agent.service",
    "k3s.service",
)
RECORD = "boot-apply.json"


def executable() -> list[str]:
    """How the unit starts pcipass: the console script beside this interpreter, else ``python -m pcipass``."""
    script = Path(sys.executable).parent / "pcipass"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "pcipass"]


def unit_text(config: str, command: list[str]) -> str:
    """The unit, for the desired-state file ``config`` (as the host knows the path) and the pcipass ``command``."""
    exec_start = shlex.join([*command, "apply", "--boot", "--config", config])
    mounts = " ".join(sorted({os.path.dirname(command[0]), os.path.dirname(config)}))
    return f"""\
# Written by 'pcipass boot install' (pcipass {__version__}); 'pcipass boot remove' removes it.
[Unit]
Description=Bind PCI devices for passthrough (pcipass apply)
Documentation=man:pcipass(1)
DefaultDependencies=no
After=systemd-modules-load.service
Before={TARGET} shutdown.target {" ".join(CONSUMERS)}
Conflicts=shutdown.target
RequiresMountsFor={mounts}
ConditionPathExists={config}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={exec_start}

[Install]
WantedBy={TARGET}
"""


def unit_path(host: Host) -> Path:
    return host.systemd_system_dir / UNIT


def wants_link(host: Host) -> Path:
    return host.systemd_system_dir / f"{TARGET}.wants" / UNIT


def enabled_config(host: Host) -> Path | None:
    """The desired-state file the enabled unit applies at boot (its ``--config``, under the root); None when the
    unit is not enabled."""
    if not os.path.islink(wants_link(host)):
        return None
    try:
        text = unit_path(host).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            words = shlex.split(line[len("ExecStart=") :])
            if "--config" in words[:-1]:
                return Path(host.actual(words[words.index("--config") + 1]))
    return host.pcipass_config


@dataclass(frozen=True)
class BootAction:
    """One thing ``boot install``/``remove`` did (or found already done)."""

    path: str  #: as the host knows it
    action: str  #: written | unchanged | linked | removed | absent | reloaded | skipped
    detail: str | None = None


def _reload(host: Host) -> BootAction:
    if not host.systemd_running:
        return BootAction(
            "systemctl daemon-reload",
            "skipped",
            "systemd is not running on this root: it reads the unit at its next start",
        )
    systemctl = host.executable("systemctl")
    if systemctl is None:
        return BootAction("systemctl daemon-reload", "skipped", "systemctl not found")
    done = subprocess.run([systemctl, "daemon-reload"], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        return BootAction("systemctl daemon-reload", "skipped", (done.stderr.strip() or f"exit {done.returncode}"))
    return BootAction("systemctl daemon-reload", "reloaded")


def install(host: Host, config: str, command: list[str] | None = None) -> list[BootAction]:
    """Write the unit and enable it (the ``sysinit.target.wants`` link), both idempotent."""
    from ..config.edit import open_dir, write_atomically

    path, link = unit_path(host), wants_link(host)
    text = unit_text(config, command or executable())
    out = []
    try:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
    except OSError:
        current = None
    if current == text:
        out.append(BootAction(host.shown(path), "unchanged"))
    else:
        write_atomically(path, host.shown(path), text, host=host)
        out.append(BootAction(host.shown(path), "written"))
    target = host.shown(path)  # systemctl enable links to the unit's path on the host
    try:
        dfd = open_dir(host, link.parent)  # beneath the root: the link is made relative to it
        try:
            try:
                current_target = os.readlink(link.name, dir_fd=dfd)
            except OSError:
                current_target = None
            if current_target == target:
                out.append(BootAction(host.shown(link), "unchanged"))
            else:
                if current_target is not None or os.path.lexists(link):
                    os.unlink(link.name, dir_fd=dfd)
                os.symlink(target, link.name, dir_fd=dfd)
                out.append(BootAction(host.shown(link), "linked", f"-> {target} (what 'systemctl enable' makes)"))
        finally:
            os.close(dfd)
    except OSError as exc:
        raise from_oserror(exc, action="link", path=host.shown(link), remedy="run as root") from exc
    if any(a.action != "unchanged" for a in out):
        out.append(_reload(host))
    return out


def remove(host: Host) -> list[BootAction]:
    """Remove the link and the unit (idempotent)."""
    out = []
    from ..config.edit import open_dir

    for p in (wants_link(host), unit_path(host)):
        if not os.path.lexists(p):
            out.append(BootAction(host.shown(p), "absent"))
            continue
        try:
            dfd = open_dir(host, p.parent)
            try:
                os.unlink(p.name, dir_fd=dfd)
            finally:
                os.close(dfd)
            out.append(BootAction(host.shown(p), "removed"))
        except OSError as exc:
            raise from_oserror(exc, action="remove", path=host.shown(p), remedy="run as root") from exc
    if any(a.action == "removed" for a in out):
        out.append(_reload(host))
    return out


def record(host: Host, outcome: dict[str, Any]) -> None:
    """Keep how this boot's ``apply --boot`` ended, for ``boot status``."""
    from ..config.edit import write_atomically
    from ..sysfs import read_str

    data = {"boot_id": read_str(host.boot_id), **outcome}
    path = host.state_dir / RECORD
    write_atomically(path, host.shown(path), json.dumps(data, indent=1) + "\n", mode=0o644, host=host)


def last_record(host: Host) -> tuple[dict[str, Any] | None, str]:
    """This boot's record and a sentence about it (no record, another boot's, unreadable)."""
    from ..sysfs import read_str

    path = host.state_dir / RECORD
    try:
        data = json.loads(path.read_bytes()[: 1 << 20])
    except FileNotFoundError:
        return None, "no record of an apply at this boot (the unit did not run, or has not finished yet)"
    except (OSError, ValueError) as exc:
        return None, f"{host.shown(path)} is unreadable: {exc}"
    if not isinstance(data, dict):
        return None, f"{host.shown(path)} is not a record"
    boot_id = read_str(host.boot_id)
    if boot_id and data.get("boot_id") not in (None, boot_id):
        return data, "recorded at an earlier boot (/run kept across boots?)"
    return data, "this boot"


@dataclass(frozen=True)
class BootStatus:
    """Is the unit installed and enabled, and how did this boot's apply end."""

    unit: str
    installed: bool
    current: bool | None  #: the unit is what ``boot install`` would write now (None: not installed)
    enabled: bool
    last_apply: dict[str, Any] | None
    last_apply_note: str
    early_drivers: tuple[Any, ...]  #: initramfs.EarlyDriver of persisted devices


def status(host: Host, config: str, early: tuple[Any, ...] = ()) -> BootStatus:
    path = unit_path(host)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise PcipassError(f"cannot read {host.shown(path)}: {exc}") from exc
    link = wants_link(host)
    data, note = last_record(host)
    current = None if text is None else text == unit_text(config, executable())
    return BootStatus(host.shown(path), text is not None, current, os.path.islink(link), data, note, early)
