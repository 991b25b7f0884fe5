"""Turning "enable these devices" / "disable these devices" into a plan, from the host as it is now.

The protocol is libvirt's and driverctl's (never ``new_id``, see the domain notes):

enable, per device: ``driver_override`` ← target; ``driver/unbind`` (only if bound); ``drivers_probe``;
wait for the bind; then, once the whole group is done, ``/dev/vfio/<group>`` and the kernel's viability flag.

disable, per device: ``driver/unbind`` (from vfio); ``driver_override`` ← the recorded value (``"\\n"``
clears it: a left-over override keeps the host driver out forever, OFS/opae-sdk#2729); ``drivers_probe``;
then, if the kernel picked another driver than the recorded one, unbind that and bind the recorded one.

Undo steps are attached to each write; the executor runs them in reverse order when a later step fails.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..drivers import PCI_STUB, VFIO_PCI, is_vfio_driver, normalize
from ..errors import ModuleError
from ..host import Host
from ..sysfs import read_str
from .plan import Move, Op, Step, When

# Module name -> the PCI driver name it registers, where they differ beyond "-" vs "_" (driver_override is
# compared with strcmp against the driver's name: drivers/pci/pci-driver.c pci_match_device).
_DRIVER_NAMES = {"vfio_pci": VFIO_PCI, "pci_stub": PCI_STUB}


def override_value(raw: str | None) -> str | None:
    """``driver_override`` as read: "(null)" (or empty) means unset."""
    if raw is None:
        return None
    text = raw.strip()
    return None if text in ("", "(null)") else text


def current_override(host: Host, address: str) -> str | None:
    return override_value(read_str(os.path.join(host.pci_devices_dir, address, "driver_override")))


class Target(NamedTuple):
    driver: str  #: the PCI driver name (what driver_override must say)
    module: str | None  #: module to load first, None when the driver is registered already


class DriverResolver:
    """Driver names, their modules and whether they must be loaded; cached per run."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._cache: dict[str, Target] = {}

    def _registered(self, name: str) -> str | None:
        for cand in dict.fromkeys((name, name.replace("_", "-"), name.replace("-", "_"))):
            if os.path.isdir(os.path.join(self.host.pci_drivers_dir, cand)):
                return cand
        return None

    def resolve(self, name: str) -> Target:
        """The driver called ``name`` (any ``-``/``_`` spelling), loading its module if it is not registered.
        Raises ModuleError when the module cannot be loaded (blacklisted, missing from the module index)."""
        if name in self._cache:
            return self._cache[name]
        found = self._registered(name)
        if found is not None:
            target = Target(found, None)
        else:
            # Only now: kmod (and the kernel command line parser it uses) is not needed when the driver is
            # registered, which is every run once vfio-pci is loaded.
            from .. import kmod
            from ..kmod import ModState

            module = normalize(kmod.driver_module(self.host, name) or name)
            driver = _DRIVER_NAMES.get(module, name)
            info = kmod.module_info(self.host, module)
            if info.state is ModState.BLACKLISTED:
                raise ModuleError(
                    f"module {module} (driver {driver}) is not loaded and is blacklisted "
                    f"({info.blacklist_source}){': install ' + info.install_override if info.install_override else ''}",
                    remedy=f"remove the blacklist entry at {info.blacklist_source} (or load it yourself: "
                    f"modprobe {module}) and retry",
                )
            if info.state is ModState.MISSING:
                raise ModuleError(f"module {module} (driver {driver}) does not exist for kernel "
                                  f"{self.host.kernel_release}",
                                  remedy="install the kernel's modules package (CONFIG_VFIO_PCI=m or =y)")
            if info.state in (ModState.LOADED, ModState.BUILTIN):
                raise ModuleError(
                    f"module {module} is {info.state.value} but registers no PCI driver named {name}",
                    remedy=f"check the driver name: ls {self.host.shown(self.host.pci_drivers_dir)}")
            # AVAILABLE, or UNKNOWN (no module index to look in): plan the load; modprobe judges when it runs.
            target = Target(driver, module)
        self._cache[name] = target
        return target


def module_step(module: str, driver: str) -> Step:
    return Step(Op.LOAD_MODULE, None, None, module, f"load {module}: no PCI driver {driver} is registered")


class StepBuilder:
    def __init__(self, host: Host) -> None:
        self.host = host
        # The shown directories once; each step's path is then one string concatenation (relpath and
        # pathlib per step were a tenth of a run under emulation).
        self._devices = host.shown(host.pci_devices_dir)
        self._drivers = host.shown(host.pci_drivers_dir)
        self._drivers_probe = host.shown(host.pci_drivers_probe)

    def _override(self, address: str) -> str:
        return f"{self._devices}/{address}/driver_override"

    def _unbind(self, address: str) -> str:
        # Through the device's own driver link: whatever driver holds it (the domain note's step 3).
        return f"{self._devices}/{address}/driver/unbind"

    def _bind(self, driver: str) -> str:
        return f"{self._drivers}/{driver}/bind"

    def _probe(self) -> str:
        return self._drivers_probe

    def enable(self, m: Move) -> list[Step]:
        d, g, t = m.address, m.group, m.target
        assert t is not None
        restore = Step(Op.WRITE, d, self._override(d), m.original_override or "\n",
                       "restore driver_override", group=g)
        steps: list[Step] = []
        if m.override_before != t:
            steps.append(Step(Op.WRITE, d, self._override(d), t, f"from now on only {t} may bind {d}",
                              group=g, undo=(restore,)))
        if m.driver_before is not None and m.driver_before != t:
            undo = [restore]
            if m.original_driver is not None:
                undo.append(Step(Op.WRITE, d, self._bind(m.original_driver), d,
                                 f"give {d} back to {m.original_driver}", group=g, when=When.UNBOUND))
            steps.append(Step(Op.WRITE, d, self._unbind(d), d, f"release {d} from {m.driver_before}", group=g,
                              when=When.BOUND_TO, when_driver=m.driver_before, undo=tuple(undo)))
        steps.append(Step(Op.WRITE, d, self._probe(), d, f"let the kernel bind {d} (to {t}, the override)",
                          group=g, undo=(Step(Op.WRITE, d, self._unbind(d), d, f"release {d} from {t}", group=g,
                                              when=When.BOUND_TO, when_driver=t),)))
        steps.append(Step(Op.WAIT, d, None, t, f"wait until {d} is bound to {t}", group=g))
        return steps

    def verify_group(self, group: int) -> Step:
        return Step(Op.VERIFY_GROUP, None, self.host.shown(self.host.vfio_group_node(group)), None,
                    f"the VFIO node exists and the kernel reports group {group} viable", group=group)

    def disable(self, m: Move, *, recorded: bool) -> list[Step]:
        d, g = m.address, m.group
        cur = m.driver_before
        steps: list[Step] = []
        if is_vfio_driver(cur):
            steps.append(Step(Op.WRITE, d, self._unbind(d), d, f"release {d} from {cur}", group=g,
                              when=When.BOUND_TO, when_driver=cur,
                              undo=(Step(Op.WRITE, d, self._bind(cur), d, f"give {d} back to {cur}", group=g,
                                         when=When.UNBOUND),)))
        wanted = m.original_override
        if m.override_before != wanted:
            what = f"restore driver_override ({wanted})" if wanted else "clear driver_override"
            steps.append(Step(Op.WRITE, d, self._override(d), wanted or "\n", what, group=g,
                              undo=(Step(Op.WRITE, d, self._override(d), m.override_before or "\n",
                                         f"set driver_override back to {m.override_before}", group=g),)))
        if cur is not None and not is_vfio_driver(cur):
            return steps  # on a host driver already: only the override needed restoring
        orig = m.original_driver
        if recorded and orig is None:
            # It was on no driver before pcipass took it: leave it so rather than let the kernel pick one.
            steps.append(Step(Op.VERIFY_RELEASED, d, None, None, f"{d} is no longer on a vfio driver", group=g))
            return steps
        steps.append(Step(Op.WRITE, d, self._probe(), d, f"let the kernel bind {d} to its host driver", group=g,
                          undo=(Step(Op.WRITE, d, self._unbind(d), d, f"release {d} from the driver it got",
                                     group=g, when=When.BOUND_ELSEWHERE, when_driver=cur),)))
        if orig is None:
            steps.append(Step(Op.VERIFY_RELEASED, d, None, None, f"{d} is no longer on a vfio driver", group=g))
            return steps
        steps.append(Step(Op.WRITE, d, self._unbind(d), d, f"the kernel picked another driver than {orig}",
                          group=g, when=When.BOUND_ELSEWHERE, when_driver=orig))
        steps.append(Step(Op.WRITE, d, self._bind(orig), d, f"bind {d} to its recorded driver {orig}", group=g,
                          when=When.UNBOUND,
                          undo=(Step(Op.WRITE, d, self._unbind(d), d, f"release {d} from {orig}", group=g,
                                     when=When.BOUND_TO, when_driver=orig),)))
        steps.append(Step(Op.WAIT, d, None, orig, f"wait until {d} is bound to {orig}", group=g))
        return steps
