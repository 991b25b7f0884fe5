"""The running kernel's build configuration: ``/boot/config-$(uname -r)`` (what distributions install) or
``/proc/config.gz`` (``CONFIG_IKCONFIG_PROC``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import sysfs
from ..host import Host
from . import files


@dataclass(frozen=True)
class KernelConfig:
    """A kernel build configuration (``/boot/config-*`` or ``/proc/config.gz``), parsed."""

    source: str  #: the file it was read from, as the user knows it (e.g. /boot/config-6.1.0-18-amd64)
    values: dict[str, str] = field(default_factory=dict)  #: CONFIG_X -> y / m / value; "not set" absent

    @classmethod
    def parse(cls, text: str, source: str) -> KernelConfig:
        values: dict[str, str] = {}
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("CONFIG_") or "=" not in line:
                continue  # comments, including "# CONFIG_X is not set"
            key, _, value = line.partition("=")
            values[key] = value.strip('"')
        return cls(source, values)

    def get(self, name: str) -> str | None:
        """``y``, ``m`` or the option's value; None when not set."""
        return self.values.get(name if name.startswith("CONFIG_") else "CONFIG_" + name)

    def enabled(self, name: str) -> bool:
        return self.get(name) in ("y", "m")

    def describe(self, name: str) -> str:
        key = name if name.startswith("CONFIG_") else "CONFIG_" + name
        value = self.get(key)
        return f"{key}={value}" if value is not None else f"{key} is not set"


def load(host: Host) -> KernelConfig | None:
    """The kernel config, or None when neither file exists. Raises files.Unreadable when one exists but
    cannot be read and the other is not there to fall back on."""
    unreadable: files.Unreadable | None = None
    boot = host.kernel_config()
    if boot is not None:
        try:
            text = files.read_text(boot)
        except files.Unreadable as exc:
            unreadable, text = exc, None
        if text is not None:
            return KernelConfig.parse(text, host.shown(boot))
    try:
        data = files.read_bytes(host.proc_config_gz)
    except files.Unreadable:
        if unreadable is not None:
            raise unreadable from None
        raise
    if data is not None:
        raw = sysfs.gunzip(data)
        if raw is None:
            raise files.Unreadable(host.proc_config_gz, "not a gzip file, or larger than a kernel config can be")
        text = raw.decode("utf-8", "replace")
        return KernelConfig.parse(text, host.shown(host.proc_config_gz))
    if unreadable is not None:
        raise unreadable
    return None
