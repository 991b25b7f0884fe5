"""Turning "enable these devices" / "disable these devices" into a plan, from the host as it is now:
``plan_enable`` and ``plan_disable`` decide, per IOMMU group, what moves (guards, group viability, what an
interrupted run left), ``StepBuilder`` writes each move's steps.

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
from typing import TYPE_CHECKING, NamedTuple

from ..drivers import PCI_STUB, VFIO_PCI, is_driver_name, is_vfio_driver, normalize
from ..errors import DeviceNotFound, ModuleError, PcipassError, Refused
from ..host import Host
from ..inventory import Inventory
from ..iommu import active as iommu_active
from ..model import PciDevice
from ..pciids import PciIds
from ..sysfs import read_str
from .guards import Refusal, RefusalKind, blocking_peers, describe, device_refusals, in_use_refusals
from .plan import GroupPlan, Move, Op, Plan, Step, When
from .results import DeviceResult, Outcome, Planned, refuse, result_for
from .state import DeviceRecord, Phase
from .vfio import VfioOpeners, status_unless_held

if TYPE_CHECKING:
    from .kernel import Kernel

#: ``--driver auto``: the vfio variant driver for the device's modalias, else vfio-pci.
AUTO = "auto"

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
                raise ModuleError(
                    f"module {module} (driver {driver}) does not exist for kernel {self.host.kernel_release}",
                    remedy="install the kernel's modules package (CONFIG_VFIO_PCI=m or =y)",
                )
            if info.state in (ModState.LOADED, ModState.BUILTIN):
                raise ModuleError(
                    f"module {module} is {info.state.value} but registers no PCI driver named {name}",
                    remedy=f"check the driver name: ls {self.host.shown(self.host.pci_drivers_dir)}",
                )
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

    def attribute(self, address: str, name: str) -> str:
        """A device attribute's path as shown (``/sys/bus/pci/devices/<address>/<name>``)."""
        return f"{self._devices}/{address}/{name}"

    def _override(self, address: str) -> str:
        return self.attribute(address, "driver_override")

    def _unbind(self, address: str) -> str:
        # Through the device's own driver link: whatever driver holds it (the domain note's step 3).
        return f"{self._devices}/{address}/driver/unbind"

    def _bind(self, driver: str) -> str:
        if not is_driver_name(driver):
            # Read from the state file or a driver link of the tree: as a path component it would leave drivers/.
            raise Refused(
                f"{driver!r} is not a driver name; {self._drivers}/{driver}/bind is not written",
                path=f"{self._drivers}/{driver}/bind",
            )
        return f"{self._drivers}/{driver}/bind"

    def _probe(self) -> str:
        return self._drivers_probe

    def enable(self, m: Move) -> list[Step]:
        d, g, t = m.address, m.group, m.target
        assert t is not None
        restore = Step(Op.WRITE, d, self._override(d), m.original_override or "\n", "restore driver_override", group=g)
        steps: list[Step] = []
        if m.override_before != t:
            steps.append(
                Step(Op.WRITE, d, self._override(d), t, f"from now on only {t} may bind {d}", group=g, undo=(restore,))
            )
        if m.driver_before is not None and m.driver_before != t:
            undo = [restore]
            if m.original_driver is not None:
                undo.append(
                    Step(
                        Op.WRITE,
                        d,
                        self._bind(m.original_driver),
                        d,
                        f"give {d} back to {m.original_driver}",
                        group=g,
                        when=When.UNBOUND,
                    )
                )
            steps.append(
                Step(
                    Op.WRITE,
                    d,
                    self._unbind(d),
                    d,
                    f"release {d} from {m.driver_before}",
                    group=g,
                    when=When.BOUND_TO,
                    when_driver=m.driver_before,
                    undo=tuple(undo),
                )
            )
        steps.append(
            Step(
                Op.WRITE,
                d,
                self._probe(),
                d,
                f"let the kernel bind {d} (to {t}, the override)",
                group=g,
                undo=(
                    Step(
                        Op.WRITE,
                        d,
                        self._unbind(d),
                        d,
                        f"release {d} from {t}",
                        group=g,
                        when=When.BOUND_TO,
                        when_driver=t,
                    ),
                ),
            )
        )
        steps.append(Step(Op.WAIT, d, None, t, f"wait until {d} is bound to {t}", group=g))
        return steps

    def verify_group(self, group: int) -> Step:
        return Step(
            Op.VERIFY_GROUP,
            None,
            self.host.shown(self.host.vfio_group_node(group)),
            None,
            f"the VFIO node exists and the kernel reports group {group} viable",
            group=group,
        )

    def disable(self, m: Move, *, recorded: bool) -> list[Step]:
        d, g = m.address, m.group
        cur = m.driver_before
        steps: list[Step] = []
        if is_vfio_driver(cur):
            steps.append(
                Step(
                    Op.WRITE,
                    d,
                    self._unbind(d),
                    d,
                    f"release {d} from {cur}",
                    group=g,
                    when=When.BOUND_TO,
                    when_driver=cur,
                    undo=(
                        Step(Op.WRITE, d, self._bind(cur), d, f"give {d} back to {cur}", group=g, when=When.UNBOUND),
                    ),
                )
            )
        wanted = m.original_override
        if m.override_before != wanted:
            what = f"restore driver_override ({wanted})" if wanted else "clear driver_override"
            steps.append(
                Step(
                    Op.WRITE,
                    d,
                    self._override(d),
                    wanted or "\n",
                    what,
                    group=g,
                    undo=(
                        Step(
                            Op.WRITE,
                            d,
                            self._override(d),
                            m.override_before or "\n",
                            f"set driver_override back to {m.override_before}",
                            group=g,
                        ),
                    ),
                )
            )
        if cur is not None and not is_vfio_driver(cur):
            return steps  # on a host driver already: only the override needed restoring
        orig = m.original_driver
        if recorded and orig is None:
            # It was on no driver before pcipass took it: leave it so rather than let the kernel pick one.
            steps.append(Step(Op.VERIFY_RELEASED, d, None, None, f"{d} is no longer on a vfio driver", group=g))
            return steps
        steps.append(
            Step(
                Op.WRITE,
                d,
                self._probe(),
                d,
                f"let the kernel bind {d} to its host driver",
                group=g,
                undo=(
                    Step(
                        Op.WRITE,
                        d,
                        self._unbind(d),
                        d,
                        f"release {d} from the driver it got",
                        group=g,
                        when=When.BOUND_ELSEWHERE,
                        when_driver=cur,
                    ),
                ),
            )
        )
        if orig is None:
            steps.append(Step(Op.VERIFY_RELEASED, d, None, None, f"{d} is no longer on a vfio driver", group=g))
            return steps
        steps.append(
            Step(
                Op.WRITE,
                d,
                self._unbind(d),
                d,
                f"the kernel picked another driver than {orig}",
                group=g,
                when=When.BOUND_ELSEWHERE,
                when_driver=orig,
            )
        )
        steps.append(
            Step(
                Op.WRITE,
                d,
                self._bind(orig),
                d,
                f"bind {d} to its recorded driver {orig}",
                group=g,
                when=When.UNBOUND,
                undo=(
                    Step(
                        Op.WRITE,
                        d,
                        self._unbind(d),
                        d,
                        f"release {d} from {orig}",
                        group=g,
                        when=When.BOUND_TO,
                        when_driver=orig,
                    ),
                ),
            )
        )
        steps.append(Step(Op.WAIT, d, None, orig, f"wait until {d} is bound to {orig}", group=g))
        return steps


def scan_for(host: Host, addresses: list[str]) -> Inventory:
    """What the guards and the plan need about ``addresses``, without reading the whole host: the devices,
    every member of their IOMMU groups (group viability, ``--group``, interrupted peers), and the VFs of an
    SR-IOV PF among them (unbinding a PF destroys its VFs: the in-use guard checks their drivers): that is
    ``Inventory.scan(only=...)``.

    Names from pci.ids are not needed to bind (refusals name devices by address, ids and driver), and
    looking up a large vendor block (Intel's) costs milliseconds per device; neither are the link and reset
    details (``detail=False``)."""
    return Inventory.scan(host, ids=PciIds(None), detail=False, only=addresses)


class Context:
    """One planning run: the host, the kernel, the state file's records, the devices read, and the modules
    the plan must load."""

    def __init__(self, host: Host, kernel: Kernel, records: dict[str, DeviceRecord], addresses: list[str]) -> None:
        self.host = host
        self.kernel = kernel
        self.records = records
        self.inv = scan_for(host, addresses)
        self.resolver = DriverResolver(host)
        self.steps = StepBuilder(host)
        self.module_steps: dict[str, Step] = {}

    def need(self, name: str) -> tuple[str, str | None]:
        """(driver name, module to load or None); registers the module step."""
        target = self.resolver.resolve(name)
        if target.module is not None and target.module not in self.module_steps:
            self.module_steps[target.module] = module_step(target.module, target.driver)
        return target.driver, target.module

    def target_name(self, dev: PciDevice, driver: str) -> str:
        if driver == AUTO:
            from .. import kmod

            return kmod.vfio_variant_for(self.host, dev.modalias) or VFIO_PCI
        return driver


def _satisfied(dev: PciDevice, target: str, requested_driver: str) -> bool:
    if dev.driver is None:
        return False
    if requested_driver == AUTO and is_vfio_driver(dev.driver):
        return True
    return normalize(dev.driver) == normalize(target)


def _originals(ctx: Context, dev: PciDevice) -> tuple[str | None, str | None]:
    rec = ctx.records.get(dev.address)
    if rec is not None and rec.known:
        return rec.original_driver, rec.original_override
    return dev.driver, dev.driver_override


def _lookup(
    inv: Inventory, address: str, results: dict[str, DeviceResult], errors: list[PcipassError]
) -> PciDevice | None:
    """The device at ``address``, or None after recording it as failed (no such device)."""
    try:
        return inv.device(address)
    except DeviceNotFound as err:
        results[address] = DeviceResult(
            address=address,
            group=None,
            requested=True,
            outcome=Outcome.FAILED,
            driver_before=None,
            driver_after=None,
            target=None,
            reasons=(err.message,),
            error=err.to_dict(),
        )
        errors.append(err)
        return None


def plan_enable(ctx: Context, addrs: list[str], *, driver: str, move_group: bool, force: bool) -> Planned:
    from ..hostuse import HostUse

    inv = ctx.inv
    use = HostUse.scan(ctx.host, inv)
    iommu = iommu_active(ctx.host)
    results: dict[str, DeviceResult] = {}
    errors: list[PcipassError] = []
    messages: list[str] = []
    by_group: dict[int, list[PciDevice]] = {}
    for a in addrs:
        dev = _lookup(inv, a, results, errors)
        if dev is None:
            continue
        refusals = device_refusals(dev, iommu=iommu)
        if refusals:
            refuse(results, errors, [dev], refusals)
            continue
        assert dev.iommu_group is not None
        by_group.setdefault(dev.iommu_group, []).append(dev)

    # Devices an interrupted enable (kill -9) left half-done: enabling any device of their group completes
    # them too, through the ordinary steps (those already done are skipped or harmless).
    inflight = {a for a, r in ctx.records.items() if r.phase is Phase.ENABLING and a in inv.devices}
    groups: list[GroupPlan] = []
    for g in sorted(by_group):
        req = by_group[g]
        names = {d.address: ctx.target_name(d, driver) for d in req}
        todo = [d for d in req if d.address in inflight or not _satisfied(d, names[d.address], driver)]
        req_set = {d.address for d in req}
        resume = [
            inv.devices[m.address]
            for m in inv.groups[g].endpoints
            if m.address in inflight and m.address not in req_set
        ]
        for d in resume:
            names[d.address] = ctx.records[d.address].target or ctx.target_name(d, driver)
        blockers = blocking_peers(inv, g, req_set | {d.address for d in resume})
        if not todo and not resume and not (move_group and blockers):
            note: tuple[str, ...] = ()
            if blockers:
                note = (f"group {g} is not viable yet: {', '.join(describe(p) for p in blockers)}",)
            for d in req:
                results[d.address] = result_for(d, Outcome.UNCHANGED, target=d.driver, reasons=note)
            continue
        if blockers and not move_group:
            them = "it" if len(blockers) == 1 else "them"
            msg = (
                f"IOMMU group {g} would not be viable: {', '.join(describe(p) for p in blockers)} would stay "
                f"on the host; enable {them} too, or pass --group"
            )
            refuse(results, errors, req, [Refusal(req[0].address, RefusalKind.GROUP_NOT_VIABLE, msg)])
            continue
        peers = blockers if move_group else []
        for p in peers:
            names[p.address] = ctx.target_name(p, driver)
        moving = todo + resume + peers
        in_use = [r for d in moving for r in in_use_refusals(use, d, inv)]
        if in_use and not force:
            refuse(results, errors, req, in_use)
            continue
        messages += [f"--force: going ahead although {r.message}" for r in in_use]
        try:
            targets = {d.address: ctx.need(names[d.address]) for d in moving}
        except ModuleError as err:
            for d in req:
                results[d.address] = result_for(d, Outcome.FAILED, reasons=(err.message,), error=err)
            errors.append(err)
            continue
        moves = []
        for d in moving:
            orig, orig_ovr = _originals(ctx, d)
            moves.append(
                Move(
                    address=d.address,
                    group=g,
                    requested=d.address in req_set,
                    driver_before=d.driver,
                    override_before=d.driver_override,
                    original_driver=orig,
                    original_override=orig_ovr,
                    target=targets[d.address][0],
                )
            )
        steps = [s for m in moves for s in ctx.steps.enable(m)]
        if all(is_vfio_driver(m.target) for m in moves):
            steps.append(ctx.steps.verify_group(g))
        modules = tuple(sorted({t[1] for t in targets.values() if t[1]}))
        groups.append(GroupPlan(g, tuple(moves), tuple(steps), modules))
        moved = {d.address for d in moving}
        for d in req:
            if d.address not in moved:
                results[d.address] = result_for(d, Outcome.UNCHANGED, target=d.driver)
    plan = Plan("enable", tuple(ctx.module_steps[m] for m in sorted(ctx.module_steps)), tuple(groups))
    return Planned(plan=plan, results=results, errors=errors, messages=messages, drop_records=[])


def plan_disable(ctx: Context, addrs: list[str]) -> Planned:
    inv = ctx.inv
    results: dict[str, DeviceResult] = {}
    errors: list[PcipassError] = []
    drop: list[str] = []
    by_group: dict[int | None, list[PciDevice]] = {}
    for a in addrs:
        if a not in inv.devices and a in ctx.records:
            # Gone (hot-unplugged, removed) with pcipass's record of it: nothing to give back, the record goes.
            results[a] = DeviceResult(
                a,
                ctx.records[a].group,
                True,
                Outcome.UNCHANGED,
                None,
                None,
                None,
                reasons=("no such device any more: disable clears pcipass's record of it",),
            )
            drop.append(a)
            continue
        dev = _lookup(inv, a, results, errors)
        if dev is not None:
            by_group.setdefault(dev.iommu_group, []).append(dev)

    groups: list[GroupPlan] = []
    openers = VfioOpeners(ctx.host)
    for g in sorted(by_group, key=lambda k: (k is None, k or 0)):
        devs = by_group[g]
        moves: list[tuple[Move, list[Step]]] = []
        modules: set[str] = set()
        failed: PcipassError | None = None
        for d in devs:
            rec = ctx.records.get(d.address)
            known = rec is not None and rec.known
            if rec is not None and known:
                orig, orig_ovr = rec.original_driver, rec.original_override
            else:
                orig = None
                orig_ovr = None if is_vfio_driver(d.driver_override) else d.driver_override
            move = Move(
                address=d.address,
                group=g,
                requested=True,
                driver_before=d.driver,
                override_before=d.driver_override,
                original_driver=orig,
                original_override=orig_ovr,
                target=orig if known else None,
            )
            if rec is None and not is_vfio_driver(d.driver) and d.driver_override == orig_ovr:
                results[d.address] = result_for(d, Outcome.UNCHANGED, target=d.driver)
                continue
            steps = ctx.steps.disable(move, recorded=known)
            if not steps:
                note: tuple[str, ...] = ()
                if known and d.driver != orig:
                    note = (f"on {d.driver or 'no driver'}, not the recorded {orig or 'no driver'}: left as is",)
                results[d.address] = result_for(d, Outcome.UNCHANGED, target=d.driver, reasons=note)
                drop.append(d.address)
                continue
            if known and orig is not None and (is_vfio_driver(d.driver) or d.driver is None):
                try:
                    module = ctx.need(orig)[1]
                except ModuleError as err:
                    failed = err
                    break
                if module:
                    modules.add(module)
            moves.append((move, steps))
        if failed is not None:
            for d in devs:
                results[d.address] = result_for(d, Outcome.FAILED, reasons=(failed.message,), error=failed)
            errors.append(failed)
            continue
        if not moves:
            continue
        if g is not None and any(is_vfio_driver(m.driver_before) for m, _ in moves):
            st = status_unless_held(openers, inv, g, ctx.kernel.vfio_status)
            if st.busy:
                msg = f"IOMMU group {g} is {st.detail}: unbinding would block until it lets go"
                refuse(
                    results,
                    errors,
                    [inv.devices[m.address] for m, _ in moves],
                    [Refusal(moves[0][0].address, RefusalKind.GROUP_OPEN, msg)],
                )
                continue
        groups.append(
            GroupPlan(
                g, tuple(m for m, _ in moves), tuple(s for _, steps in moves for s in steps), tuple(sorted(modules))
            )
        )
    plan = Plan("disable", tuple(ctx.module_steps[m] for m in sorted(ctx.module_steps)), tuple(groups))
    # The host driver comes back now; a saved driverctl override takes the device again at the next boot.
    notes = []
    for a in addrs:
        saved = ctx.host.driverctl_saved(a) if a in inv.devices else None
        if saved and is_vfio_driver(saved[0], inv.variant_modules):
            notes.append(
                f"{a}: driverctl binds it to {saved[0]} again at the next boot ({ctx.host.shown(saved[1])});"
                f" 'driverctl unset-override {a}' removes that"
            )
    return Planned(plan=plan, results=results, errors=errors, messages=notes, drop_records=drop)
