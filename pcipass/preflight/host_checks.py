"""The host checks. Each is a function of :class:`Facts` returning one :class:`Check`; the runner turns a
:class:`files.Unreadable` into a ``skip`` that names the file.

Kernel behaviour cited from the kernel tree: Documentation/admin-guide/kernel-parameters.txt for the
parameters, drivers/iommu/intel/iommu.c ``intel_iommu_setup()``, arch/x86/kernel/pci-dma.c
``iommu_setup()`` and drivers/iommu/amd/init.c ``parse_amd_iommu_options()`` for their option parsing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from .. import kmod, vfioids
from ..kmod import ModState
from . import bootloader, files
from .facts import AMD, ARM, ARM64, INTEL, X86, Facts
from .model import Check, Verdict

P, W, F, S = Verdict.PASS, Verdict.WARN, Verdict.FAIL, Verdict.SKIP

HostCheck = Callable[[Facts], Check]

# Options each handler knows; anything else is logged by the kernel as "Unknown option" and ignored.
INTEL_IOMMU_OPTIONS = ("on", "off", "igfx_off", "forcedac", "strict", "sp_off", "sm_on", "sm_off", "tboot_noforce")
AMD_IOMMU_OPTIONS = (
    "fullflush",
    "force_enable",
    "off",
    "force_isolation",
    "pgtbl_v1",
    "pgtbl_v2",
    "irtcachedis",
    "nohugepages",
    "v2_pgsizes_only",
)

# Kernel log lines about interrupt remapping: drivers/iommu/intel/irq_remapping.c ("DMAR-IR: Enabled IRQ
# remapping in x2apic mode"), drivers/iommu/amd/init.c ("AMD-Vi: Interrupt remapping enabled"), and the
# failure warning of intel_enable_irq_remapping() on older kernels.
_IR_ON = ("Enabled IRQ remapping in", "AMD-Vi: Interrupt remapping enabled")
_IR_OFF = ("Failed to enable irq remapping", "IRQ remapping disabled", "Not enabling interrupt remapping")
# VT-d Extended Capability Register, bit 3: IR, interrupt remapping support (Intel VT-d spec, 11.4.3).
_ECAP_IR = 1 << 3


def _no_cmdline(fx: Facts, check_id: str) -> Check:
    return Check(check_id, S, f"no {fx.shown(fx.host.cmdline)} {fx.here}")


# --- CPU and KVM --------------------------------------------------------------------------------------------


def iommu_vendor(fx: Facts) -> Check:
    vendor, evidence = fx.vendor
    if vendor is None:
        return Check(
            "iommu.vendor",
            S,
            f"unknown ({evidence}); the firmware-table, intel_iommu/amd_iommu and "
            "kernel-config IOMMU checks need it and were not run",
        )
    family = {INTEL: "Intel VT-d", AMD: "AMD-Vi", ARM: "Arm SMMU"}[vendor]
    return Check("iommu.vendor", P, f"{family} ({evidence})")


def cpu_virt(fx: Facts) -> Check:
    flags = fx.cpu_flags
    if flags is None:
        return Check("cpu.virt", S, f"no {fx.shown(fx.host.cpuinfo)} {fx.here}")
    if fx.arch == ARM64:
        # arm64 has no CPU flag for it: KVM needs the kernel entered at EL2, which kvm.dev shows.
        return Check(
            "cpu.virt",
            S,
            f"arm64: {fx.shown(fx.host.cpuinfo)} does not show virtualization support "
            "(KVM needs the kernel started at EL2; see kvm.dev)",
        )
    if fx.arch != X86:
        return Check(
            "cpu.virt", S, f"{fx.shown(fx.host.cpuinfo)} shows neither x86 flags nor an arm64 CPU: cannot tell"
        )
    if "vmx" in flags:
        return Check("cpu.virt", P, "vmx (Intel VT-x)")
    if "svm" in flags:
        return Check("cpu.virt", P, "svm (AMD-V)")
    if "hypervisor" in flags:
        return Check(
            "cpu.virt",
            W,
            "no vmx/svm flag: this host is itself a virtual machine without nested "
            "virtualization; KVM cannot accelerate guests here (vfio binding and emulated guests still "
            "work)",
            "enable nested virtualization on the outer hypervisor",
        )
    return Check(
        "cpu.virt",
        W,
        "no vmx/svm flag: hardware virtualization is off in the firmware or missing; KVM "
        "cannot run guests (vfio binding and emulated guests still work)",
        "enable Intel VT-x / AMD SVM in the firmware setup",
    )


def kvm_dev(fx: Facts) -> Check:
    node = fx.host.kvm_device
    if files.exists(node):
        return Check("kvm.dev", P, f"{fx.shown(node)} present")
    if not files.exists(node.parent):
        return Check("kvm.dev", S, f"no {fx.shown(node.parent)} {fx.here}")
    flags = fx.cpu_flags or set()
    vendor = fx.vendor[0]
    if "vmx" in flags or "svm" in flags:
        module = "kvm_intel" if "vmx" in flags else "kvm_amd"
        return Check(
            "kvm.dev", W, f"{fx.shown(node)} missing although the CPU supports virtualization", f"modprobe {module}"
        )
    if fx.arch == ARM64:
        return Check(
            "kvm.dev",
            W,
            f"{fx.shown(node)} missing",
            "boot the kernel at EL2 (the firmware decides) with "
            "KVM built in (CONFIG_KVM); dmesg | grep -i kvm says why it did not start",
        )
    module = {INTEL: "kvm_intel", AMD: "kvm_amd"}.get(vendor or "", "kvm_intel or kvm_amd")
    return Check("kvm.dev", W, f"{fx.shown(node)} missing", f"enable VT-x/AMD-V (see cpu.virt), then modprobe {module}")


# --- firmware and IOMMU state -------------------------------------------------------------------------------


def _active(fx: Facts) -> bool:
    real_groups = [g for g in fx.groups if g not in fx.noiommu_groups]
    return bool(fx.iommu_units) or bool(real_groups)


def firmware_table(fx: Facts) -> Check:
    vendor = fx.vendor[0]
    table, check_id, feature = (
        ("DMAR", "firmware.dmar", "VT-d") if vendor == INTEL else ("IVRS", "firmware.ivrs", "AMD-Vi (IOMMU)")
    )
    tables = fx.acpi_tables
    if tables is None:
        if _active(fx):
            return Check(
                check_id, P, f"ACPI table list not in this root; the IOMMU is active, so the firmware provides {table}"
            )
        return Check(check_id, S, f"no {fx.shown(fx.host.acpi_tables_dir)} {fx.here}")
    if table in tables:
        return Check(check_id, P, f"ACPI {table} table present")
    return Check(
        check_id,
        F,
        f"no ACPI {table} table: the firmware does not advertise {feature} (disabled in its "
        "setup, or not supported by the platform)",
        f"enable {feature} in the firmware (BIOS/UEFI) setup — often under Chipset, Northbridge or "
        "Virtualization — then reboot",
    )


def _intel_state(fx: Facts) -> tuple[str, list[str]]:
    """intel_iommu= on the command line: (on | off | absent, the unknown options given)."""
    state = "absent"
    unknown: list[str] = []
    for opt in fx.cmdline.options("intel_iommu") if fx.cmdline else []:
        if opt in ("on", "off"):
            state = opt
        elif opt not in INTEL_IOMMU_OPTIONS:
            unknown.append(opt)
    return state, unknown


# Kernel options that turn VT-d on without intel_iommu=on: upstream INTEL_IOMMU_DEFAULT_ON, and Debian's
# INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF (a Debian-only choice: on, except for the integrated graphics).
_INTEL_DEFAULT_ON = ("INTEL_IOMMU_DEFAULT_ON", "INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF")


def _intel_default_on(fx: Facts) -> bool | None:
    """Whether this kernel enables VT-d without a parameter; None when its config is not available."""
    cfg = fx.kconfig_or_none()
    if cfg is None:
        return None
    return any(cfg.get(o) == "y" for o in _INTEL_DEFAULT_ON)


def _intel_default_text(fx: Facts) -> str:
    cfg = fx.kconfig_or_none()
    if cfg is None:
        return "kernel config not available"
    on = [cfg.describe(o) for o in _INTEL_DEFAULT_ON if cfg.get(o) == "y"]
    return ", ".join(on) if on else f"{cfg.describe(_INTEL_DEFAULT_ON[0])}"


def _replace_option(fx: Facts, name: str, drop: tuple[str, ...], first: str | None) -> tuple[list[str], list[str]]:
    """(add, remove) that rewrite ``name=`` without the ``drop`` options, with ``first`` in front."""
    kept = [o for o in (fx.cmdline.options(name) if fx.cmdline else []) if o not in drop and o != first]
    opts = ([first] if first else []) + kept
    present = fx.cmdline is not None and fx.cmdline.has(name)
    return ([f"{name}={','.join(opts)}"] if opts else []), ([name] if present else [])


def iommu_active(fx: Facts) -> Check:
    if not files.exists(fx.host.sys()):
        return Check("iommu.active", S, f"no {fx.shown(fx.host.sys())} {fx.here}")
    units = fx.iommu_units
    real_groups = [g for g in fx.groups if g not in fx.noiommu_groups]
    vendor = fx.vendor[0]
    note = ""
    if vendor == INTEL and fx.cmdline is not None and _intel_state(fx)[0] == "absent":
        note = " (enabled by the kernel's default: no intel_iommu=on on the command line)"
    if units and real_groups:
        return Check("iommu.active", P, f"{', '.join(units)} registered; {len(real_groups)} IOMMU groups{note}")
    if units:
        return Check(
            "iommu.active",
            W,
            f"{', '.join(units)} registered but there are no IOMMU groups: no device is translated by it",
            "look for DMAR/AMD-Vi errors: dmesg | grep -i -e DMAR -e IOMMU -e AMD-Vi",
        )
    if real_groups:
        seen = sorted(fx.device_iommu_units)
        extra = f"; devices name the units {', '.join(seen)}" if seen else ""
        return Check(
            "iommu.active",
            P,
            f"{len(real_groups)} IOMMU groups (this root has no {fx.shown(fx.host.iommu_class_dir)} entries{extra})",
        )
    if fx.noiommu_groups:
        return Check(
            "iommu.active",
            F,
            f"no IOMMU: the only groups are vfio no-IOMMU groups "
            f"({', '.join(fx.noiommu_groups)}), which give no DMA isolation",
            _enable_remedy(fx),
        )
    return Check("iommu.active", F, "no IOMMU: " + _why_off(fx), _enable_remedy(fx))


def _why_off(fx: Facts) -> str:
    base = f"{fx.shown(fx.host.iommu_class_dir)} is empty and there are no IOMMU groups"
    vendor = fx.vendor[0]
    cl = fx.cmdline
    if cl is None:
        return base
    if "off" in cl.options("iommu"):
        return base + "; iommu=off is on the command line"
    if vendor == INTEL:
        state, _ = _intel_state(fx)
        if state == "off":
            return base + "; intel_iommu=off is on the command line"
        if state == "on":
            return base + " although intel_iommu=on is on the command line"
        default_on = _intel_default_on(fx)
        if default_on is False:
            return base + "; not requested (no intel_iommu=on, and this kernel leaves VT-d off by default)"
        return base + "; not requested (no intel_iommu=on on the command line)"
    if vendor == AMD and "off" in cl.options("amd_iommu"):
        return base + "; amd_iommu=off is on the command line"
    return base


def _enable_remedy(fx: Facts) -> str:
    """What turns the IOMMU on here: a command-line edit, the firmware, or the kernel."""
    vendor = fx.vendor[0]
    cl = fx.cmdline
    add: list[str] = []
    remove: list[str] = []
    if cl is not None:
        if "off" in cl.options("iommu"):
            a, r = _replace_option(fx, "iommu", ("off",), None)
            add += a
            remove += r
        state, unknown = _intel_state(fx)
        if vendor == INTEL and (state == "off" or (state == "absent" and _intel_default_on(fx) is not True)):
            a, r = _replace_option(fx, "intel_iommu", ("on", "off", *unknown), "on")
            add += a
            remove += r
        if vendor == AMD and "off" in cl.options("amd_iommu"):
            a, r = _replace_option(fx, "amd_iommu", ("off",), None)
            add += a
            remove += r
    if add or remove:
        return fx.cmdline_remedy(add, remove)
    if cl is None and vendor == INTEL and _intel_default_on(fx) is not True:
        return (
            "unless the kernel command line already has intel_iommu=on (this root has none to tell): "
            + fx.cmdline_remedy(["intel_iommu=on"])
        )
    tables = fx.acpi_tables
    if vendor in (INTEL, AMD) and tables is not None and ("DMAR" if vendor == INTEL else "IVRS") not in tables:
        return "enable VT-d / AMD-Vi (IOMMU) in the firmware setup, then reboot (see firmware.*)"
    cfg = fx.kconfig_or_none()
    option = {INTEL: "INTEL_IOMMU", AMD: "AMD_IOMMU"}.get(vendor or "")
    if cfg is not None and option and not cfg.enabled(option):
        return f"boot a kernel built with CONFIG_{option}=y ({cfg.describe(option)} in {cfg.source})"
    return "the kernel did not enable it: look for the reason with dmesg | grep -i -e DMAR -e IOMMU -e AMD-Vi"


def iommu_domain_type(fx: Facts) -> Check:
    types = {g: t for g, t in fx.groups.items() if g not in fx.noiommu_groups}
    if not types:
        return Check("iommu.domain_type", S, "no IOMMU groups")
    if not any(types.values()):
        return Check(
            "iommu.domain_type",
            S,
            f"the {len(types)} groups have no readable 'type' attribute (kernels before 5.11 do not have it)",
        )
    counts = Counter(t or "unknown" for t in types.values())
    text = ", ".join(f"{t} {n}" for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    meaning = []
    if "identity" in counts:
        meaning.append("identity: host drivers bypass translation (iommu=pt)")
    if "DMA" in counts or "DMA-FQ" in counts:
        meaning.append("DMA/DMA-FQ: host DMA is translated (FQ: with a flush queue)")
    return Check(
        "iommu.domain_type",
        P,
        f"default domain of {len(types)} groups: {text}"
        + (f" — {'; '.join(meaning)}; devices given to VMs get their own domain either way" if meaning else ""),
    )


# --- kernel command line ------------------------------------------------------------------------------------


def cmdline_intel_iommu(fx: Facts) -> Check:
    cid = "cmdline.intel_iommu"
    if fx.cmdline is None:
        return _no_cmdline(fx, cid)
    state, unknown = _intel_state(fx)
    ignored = (
        f"; the kernel ignores the unknown option{'s' if len(unknown) > 1 else ''} "
        f"{', '.join(repr(u) for u in unknown)}"
        if unknown
        else ""
    )
    opts = fx.cmdline.options("intel_iommu")
    if state == "on":
        return Check(cid, P, f"intel_iommu={','.join(opts)}{ignored}")
    if state == "off":
        add, remove = _replace_option(fx, "intel_iommu", ("on", "off"), "on")
        return Check(
            cid, F, f"intel_iommu={','.join(opts)}: VT-d is switched off{ignored}", fx.cmdline_remedy(add, remove)
        )
    default_on = _intel_default_on(fx)
    if default_on:
        return Check(
            cid, P, f"not on the command line; this kernel enables VT-d by default ({_intel_default_text(fx)}){ignored}"
        )
    if default_on is None and _active(fx):
        return Check(
            cid, P, f"not on the command line; the IOMMU is active, so this kernel enables VT-d by default{ignored}"
        )
    why = (
        f"this kernel leaves VT-d off by default ({_intel_default_text(fx)})"
        if default_on is False
        else "the kernel config is not available to tell whether VT-d is on by default, and the IOMMU is off"
    )
    add, remove = _replace_option(fx, "intel_iommu", ("on", "off", *unknown), "on")
    return Check(cid, F, f"no intel_iommu=on: {why}{ignored}", fx.cmdline_remedy(add, remove))


def cmdline_amd_iommu(fx: Facts) -> Check:
    cid = "cmdline.amd_iommu"
    if fx.cmdline is None:
        return _no_cmdline(fx, cid)
    opts = fx.cmdline.options("amd_iommu")
    unknown = [o for o in opts if o not in AMD_IOMMU_OPTIONS]
    if "off" in opts:
        add, remove = _replace_option(fx, "amd_iommu", ("off",) + tuple(unknown), None)
        return Check(
            cid, F, f"amd_iommu={','.join(opts)}: the AMD IOMMU is switched off", fx.cmdline_remedy(add, remove)
        )
    if unknown:
        return Check(
            cid,
            P,
            f"amd_iommu={','.join(opts)}: the kernel ignores {', '.join(repr(u) for u in unknown)} "
            "(there is no amd_iommu=on; the AMD IOMMU is on by default)",
        )
    return Check(cid, P, f"amd_iommu={','.join(opts)}" if opts else "no amd_iommu=off (the AMD IOMMU is on by default)")


def cmdline_iommu_off(fx: Facts) -> Check:
    cid = "cmdline.iommu_off"
    if fx.cmdline is None:
        return _no_cmdline(fx, cid)
    opts = fx.cmdline.options("iommu")
    if "off" in opts:
        add, remove = _replace_option(fx, "iommu", ("off",), None)
        return Check(
            cid, F, f"iommu={','.join(opts)}: iommu=off disables every IOMMU driver", fx.cmdline_remedy(add, remove)
        )
    return Check(cid, P, "no iommu=off")


def cmdline_iommu_pt(fx: Facts) -> Check:
    cid = "cmdline.iommu_pt"
    if fx.cmdline is None:
        return _no_cmdline(fx, cid)
    cl = fx.cmdline
    mode = None
    for opt in cl.options("iommu"):
        if opt in ("pt", "nopt"):
            mode = opt
    # iommu.passthrough= is parsed later than iommu= and wins (drivers/iommu/iommu.c).
    passthrough = cl.flag("iommu.passthrough")
    if passthrough is not None:
        mode = "pt" if passthrough else "nopt"
    good = "host devices use identity mapping (no translation cost); devices given to VMs stay isolated"
    if mode == "pt":
        return Check(cid, P, f"{' '.join(cl.tokens('iommu', 'iommu.passthrough'))}: {good}")
    cfg = fx.kconfig_or_none()
    if mode is None and cfg is not None and cfg.get("IOMMU_DEFAULT_PASSTHROUGH") == "y":
        return Check(
            cid,
            P,
            f"not on the command line; this kernel defaults to passthrough "
            f"(CONFIG_IOMMU_DEFAULT_PASSTHROUGH=y): {good}",
        )
    add, remove = _replace_option(fx, "iommu", ("pt", "nopt", "off"), "pt")  # "off": see cmdline.iommu_off
    if mode == "nopt":
        remove = remove + ["iommu.passthrough"]
        return Check(
            cid,
            W,
            f"{' '.join(cl.tokens('iommu', 'iommu.passthrough'))}: host DMA is translated "
            "(recommended for passthrough hosts: iommu=pt)",
            fx.cmdline_remedy(add, remove),
        )
    return Check(
        cid,
        W,
        "no iommu=pt: every host DMA goes through IOMMU translation (recommended for passthrough hosts: iommu=pt)",
        fx.cmdline_remedy(add, remove),
    )


def cmdline_acs_override(fx: Facts) -> Check:
    cid = "cmdline.acs_override"
    if fx.cmdline is None:
        return _no_cmdline(fx, cid)
    tokens = fx.cmdline.tokens("pcie_acs_override")
    if not tokens:
        return Check(cid, P, "no pcie_acs_override")
    # pcie_acs_override comes from an out-of-tree patch (carried by some distribution kernels).
    return Check(
        cid,
        W,
        f"{' '.join(tokens)}: the kernel pretends devices are isolated (ACS) when they are not, "
        "so IOMMU groups no longer show real isolation: a device given to a VM may reach its neighbours "
        "by peer-to-peer DMA",
        fx.cmdline_remedy((), ("pcie_acs_override",)),
    )


def cmdline_noiommu(fx: Facts) -> Check:
    cid = "cmdline.noiommu"
    param = fx.host.sys_module("vfio") / "parameters" / "enable_unsafe_noiommu_mode"
    live = files.read_text(param, 64)
    cmdline = fx.cmdline
    on_cmdline = cmdline.flag("vfio.enable_unsafe_noiommu_mode") if cmdline else None
    seen = []
    if cmdline and on_cmdline is not None:
        seen.append(" ".join(cmdline.tokens("vfio.enable_unsafe_noiommu_mode")))
    if live is not None:
        seen.append(f"{fx.shown(param)} = {live.strip()}")
    if on_cmdline or (live is not None and live.strip() in ("Y", "1")):
        remedy = []
        if on_cmdline:
            remedy.append(fx.cmdline_remedy((), ("vfio.enable_unsafe_noiommu_mode",)))
        if live is not None and live.strip() in ("Y", "1"):
            remedy.append(f"now: echo N > {fx.shown(param)} (when no device is bound to vfio-pci)")
        return Check(
            cid,
            W,
            f"{'; '.join(seen)}: vfio no-IOMMU mode gives devices to user space with no DMA "
            "isolation (it taints the kernel, and QEMU/libvirt cannot use such groups)",
            "; ".join(remedy),
        )
    if fx.cmdline is None and live is None:
        return _no_cmdline(fx, cid)
    return Check(cid, P, "; ".join(seen) if seen else "vfio.enable_unsafe_noiommu_mode not set")


def cmdline_vfio_ids(fx: Facts) -> Check:
    """vfio-pci's ``ids=`` parameter, from the command line (``vfio-pci.ids=``) or modprobe.d
    (``options vfio-pci ids=...``): both make vfio-pci claim every device with those IDs at load."""
    cid = "cmdline.vfio_ids"
    option = kmod.module_options(fx.host, "vfio_pci").get("ids")
    if option is None and fx.cmdline is None:
        return _no_cmdline(fx, cid)
    if option is None or not option.value:
        return Check(cid, P, "no vfio-pci ids= (command line or modprobe.d)")
    value = option.value
    ids = vfioids.parse(value)
    matched = [d.address for d in fx.inventory.devices.values() if vfioids.claimed(ids, d)]
    shown = ", ".join(matched) if matched else "none now"
    if option.source == kmod.CMDLINE_OPTION:
        remedy = fx.cmdline_remedy((), ("vfio_pci.ids",))
        seen = f"vfio-pci.ids={value}"
    else:
        remedy = f"remove the ids= option at {option.source} and rebuild the initramfs if it carries modprobe.d"
        seen = f"options vfio-pci ids={value} ({option.source})"
    return Check(
        cid,
        W,
        f"{seen}: at load vfio-pci claims EVERY device with these "
        f"IDs, identical devices the host needs included (matching devices: {shown})",
        remedy + " — then bind only the devices you mean, by address (pcipass enable)",
    )


# --- interrupts ---------------------------------------------------------------------------------------------


def _unsafe_interrupts(fx: Facts) -> tuple[bool | None, str]:
    """allow_unsafe_interrupts of vfio_iommu_type1: (value or None when unknown, where it was read).

    The live parameter when the module is loaded; otherwise what the next load will use: the command line or
    an ``options vfio_iommu_type1 allow_unsafe_interrupts=1`` line in modprobe.d, the usual way it is set."""
    param = fx.host.sys_module("vfio_iommu_type1") / "parameters" / "allow_unsafe_interrupts"
    live = files.read_text(param, 64)
    if live is not None:
        return live.strip() in ("Y", "1"), f"{fx.shown(param)} = {live.strip()}"
    option = kmod.module_options(fx.host, "vfio_iommu_type1").get("allow_unsafe_interrupts")
    if option is not None:
        # Bool module parameters take y/Y/1/on/true and n/N/0/off/false; a bare flag means true (kernel/params.c).
        value = option.value is None or option.value.strip().lower() in ("y", "1", "on", "true")
        return (
            value,
            f"allow_unsafe_interrupts{'=' + option.value if option.value is not None else ''} ({option.source})",
        )
    return (
        None,
        "vfio_iommu_type1 is not loaded and neither the command line nor modprobe.d sets allow_unsafe_interrupts",
    )


def irq_remap(fx: Facts) -> Check:
    cid = "irq.remap"
    unsafe, _ = _unsafe_interrupts(fx)
    # intremap=off / nointremap turn interrupt remapping off (kernel-parameters.txt).
    off_tokens = []
    if fx.cmdline is not None:
        if "off" in fx.cmdline.options("intremap"):
            off_tokens += fx.cmdline.tokens("intremap")
        off_tokens += fx.cmdline.tokens("nointremap")
    if off_tokens:
        add, remove = _replace_option(fx, "intremap", ("off",), None)
        return _no_ir(
            fx,
            f"{' '.join(off_tokens)} on the command line switches interrupt remapping off",
            unsafe,
            fx.cmdline_remedy(add, remove + ["nointremap"]),
        )
    cfg = fx.kconfig_or_none()
    if cfg is not None and not cfg.enabled("IRQ_REMAP"):
        return _no_ir(
            fx,
            f"{cfg.describe('IRQ_REMAP')} ({cfg.source}): this kernel cannot remap interrupts",
            unsafe,
            "boot a kernel built with CONFIG_IRQ_REMAP=y (distribution kernels have it)",
        )
    ecaps: dict[str, int] = {}
    for unit in fx.iommu_units:
        text = files.read_text(fx.host.iommu_class_dir / unit / "intel-iommu" / "ecap", 64)
        if text is not None:
            try:
                ecaps[unit] = int(text.strip(), 16)
            except ValueError:
                continue
    if ecaps:
        lacking = [u for u, v in ecaps.items() if not v & _ECAP_IR]
        if not lacking:
            return Check(cid, P, f"supported by {', '.join(ecaps)} (IR bit of the VT-d extended capability register)")
        return _no_ir(
            fx,
            f"{', '.join(lacking)} lack the IR bit of the VT-d extended capability register",
            unsafe,
            "use a platform whose IOMMU supports interrupt remapping",
        )
    log = fx.kernel_log
    if log is None:
        return Check(cid, S, f"no Intel IOMMU capability register and no kernel log {fx.here} to tell")
    verdict = None
    line = ""
    for text in log.lines:
        if any(m in text for m in _IR_ON):
            verdict, line = True, text
        elif any(m in text for m in _IR_OFF):
            verdict, line = False, text
    if verdict is None:
        return Check(cid, S, f"the kernel log ({log.source}) has no interrupt-remapping message (rotated away?)")
    if verdict:
        return Check(cid, P, f"kernel log ({log.source}): {line.strip()}")
    return _no_ir(
        fx,
        f"kernel log ({log.source}): {line.strip()}",
        unsafe,
        "enable interrupt remapping (x2APIC / VT-d / AMD-Vi) in the firmware setup",
    )


def _no_ir(fx: Facts, why: str, unsafe: bool | None, remedy: str) -> Check:
    if unsafe:
        return Check(
            "irq.remap",
            W,
            f"{why}; vfio works only because vfio_iommu_type1.allow_unsafe_interrupts is "
            "set, and a VM can then inject interrupts into the host",
            remedy,
        )
    return Check(
        "irq.remap",
        F,
        f'{why}: vfio_iommu_type1 refuses to attach devices without it ("No interrupt remapping support")',
        remedy,
    )


def vfio_unsafe_interrupts(fx: Facts) -> Check:
    cid = "vfio.unsafe_interrupts"
    value, where = _unsafe_interrupts(fx)
    if value:
        fix = (
            fx.cmdline_remedy((), ("vfio_iommu_type1.allow_unsafe_interrupts",))
            if fx.cmdline and fx.cmdline.has("vfio_iommu_type1.allow_unsafe_interrupts")
            else "remove allow_unsafe_interrupts=1 from the vfio_iommu_type1 options in modprobe.d, then reload "
            "vfio_iommu_type1"
        )
        return Check(
            cid,
            W,
            f"{where}: vfio accepts devices without interrupt remapping, and a VM can then inject "
            "interrupts into the host",
            fix,
        )
    if value is None:
        if fx.cmdline is None:
            return _no_cmdline(fx, cid)
        return Check(cid, P, f"{where} (modprobe.d options are not checked)")
    return Check(cid, P, where)


# --- kernel build, modules, driver_override -----------------------------------------------------------------


def _kconfig_check(check_id: str, option: str, why: str) -> HostCheck:
    def check(fx: Facts) -> Check:
        cfg = fx.kconfig
        if cfg is None:
            kver = fx.host.kernel_release or "<kver>"
            return Check(
                check_id,
                S,
                f"no {fx.shown(fx.host.boot_config(kver))} or {fx.shown(fx.host.proc_config_gz)} {fx.here}",
            )
        if cfg.enabled(option):
            return Check(check_id, P, f"{cfg.describe(option)} ({cfg.source})")
        return Check(
            check_id,
            F,
            f"{cfg.describe(option)} ({cfg.source}): {why}",
            f"boot a kernel built with CONFIG_{option} (distribution kernels have it)",
        )

    return check


kconfig_vfio_pci = _kconfig_check("kconfig.vfio_pci", "VFIO_PCI", "this kernel has no vfio-pci driver")
kconfig_intel_iommu = _kconfig_check("kconfig.intel_iommu", "INTEL_IOMMU", "this kernel has no Intel IOMMU driver")
kconfig_amd_iommu = _kconfig_check("kconfig.amd_iommu", "AMD_IOMMU", "this kernel has no AMD IOMMU driver")
kconfig_irq_remap = _kconfig_check(
    "kconfig.irq_remap",
    "IRQ_REMAP",
    "no interrupt remapping, so vfio refuses devices unless interrupts are allowed unsafe",
)


def _module_check(name: str) -> HostCheck:
    check_id = f"module.{name}"
    shown_name = name.replace("_", "-") if name == "vfio_pci" else name

    def check(fx: Facts) -> Check:
        host = fx.host
        info = kmod.module_info(host, name)
        if info.state is ModState.LOADED:
            if info.blacklisted:
                return Check(
                    check_id,
                    W,
                    f"loaded, but blacklisted ({info.blacklist_source}): it will not load by itself after a reboot",
                    _unblacklist(fx, info, shown_name),
                )
            return Check(check_id, P, "loaded")
        if info.state is ModState.BUILTIN:
            return Check(check_id, P, "built into the kernel")
        if info.state is ModState.AVAILABLE:
            return Check(check_id, P, f"available, not loaded (loaded on demand: modprobe {shown_name})")
        if info.state is ModState.BLACKLISTED:
            if info.load_forbidden and info.blacklist_source == kmod.CMDLINE_MODULE_BLACKLIST:
                return Check(
                    check_id,
                    F,
                    "module_blacklist= on the kernel command line: the kernel refuses to load it",
                    _unblacklist(fx, info, shown_name),
                )
            if info.load_forbidden:
                return Check(
                    check_id,
                    F,
                    f"disabled: 'install {shown_name} {info.install_override}' "
                    f"({info.blacklist_source}) makes modprobe run that instead of loading it",
                    _unblacklist(fx, info, shown_name),
                )
            return Check(
                check_id,
                W,
                f"blacklisted ({info.blacklist_source}): not loaded automatically (by device "
                f"alias, or for vfio-pci.ids= at boot); an explicit modprobe {shown_name} still loads it",
                _unblacklist(fx, info, shown_name),
            )
        index = host.lib_modules("modules.dep")
        if info.state is ModState.UNKNOWN:
            return Check(
                check_id,
                S,
                f"not loaded, and no module index ({fx.shown(index) if index else 'kernel release unknown'}) {fx.here}",
            )
        return Check(
            check_id,
            F,
            f"not built in and not in {fx.shown(index)}",
            f"install the modules of kernel {host.kernel_release}, or boot a kernel built with vfio",
        )

    return check


def _unblacklist(fx: Facts, info: kmod.ModuleInfo, shown_name: str) -> str:
    source = info.blacklist_source or ""
    if source in (kmod.CMDLINE_MODULE_BLACKLIST, kmod.CMDLINE_MODPROBE_BLACKLIST):
        # The parameter rewritten without this module (either spelling): the others it lists stay blacklisted.
        param = "module_blacklist" if source == kmod.CMDLINE_MODULE_BLACKLIST else "modprobe.blacklist"
        return fx.cmdline_remedy(*_replace_option(fx, param, (info.name, info.name.replace("_", "-")), None))
    where, _, line = source.rpartition(":")
    steps = [f"delete line {line} of {where}"]
    initramfs = bootloader.initramfs_command(fx.host)
    if initramfs:
        steps.append(f"run {initramfs} (the initramfs keeps a copy of modprobe.d)")
    steps.append(f"modprobe {shown_name}")
    conf = fx.shown(fx.host.modules_load_dir / (shown_name + ".conf"))
    steps.append(f"to load it at every boot: a line '{shown_name}' in {conf}")
    return "; ".join(steps)


module_vfio = _module_check("vfio")
module_vfio_pci = _module_check("vfio_pci")
module_vfio_iommu_type1 = _module_check("vfio_iommu_type1")


# The first kernel with the PCI driver_override attribute (commit 782a985d7af2, "PCI: Introduce new device
# binding path using pci_dev.driver_override", Linux 3.16).
_DRIVER_OVERRIDE_SINCE = (3, 16)


def _release_version(release: str | None) -> tuple[int, int] | None:
    """(major, minor) of a kernel release (``6.1.0-28-amd64`` → (6, 1)); None when unknown or not one."""
    match = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(match[1]), int(match[2])) if match else None


def kernel_driver_override(fx: Facts) -> Check:
    cid = "kernel.driver_override"
    names = files.list_names(fx.host.pci_devices_dir)
    if not names:
        return Check(cid, S, f"no PCI devices under {fx.shown(fx.host.pci_devices_dir)} {fx.here}")
    for name in names:
        if files.exists(fx.host.pci_device(name) / "driver_override"):
            return Check(cid, P, "the kernel has PCI driver_override (binding by address)")
    version = _release_version(fx.host.kernel_release)
    if version is None or version >= _DRIVER_OVERRIDE_SINCE:
        # Every PCI device of such a kernel has the attribute: the files are missing from a recording, not
        # from the kernel.
        kernel = f"kernel {fx.host.kernel_release}" if version else "the kernel release is unknown"
        return Check(
            cid,
            S,
            f"no PCI device has a driver_override attribute {fx.here}, but {kernel} "
            f"{'has it (3.16 and later)' if version else 'and may have it'}: a recording without the files",
        )
    return Check(
        cid,
        F,
        f"no PCI device has a driver_override attribute: kernel {fx.host.kernel_release} predates "
        "3.16, and vfio-pci can only be bound by ID (new_id), which takes every identical device",
        "boot a kernel ≥ 3.16",
    )


def host_checks(fx: Facts) -> list[tuple[str, HostCheck]]:
    """The host checks for this host's CPU vendor, in report order: (id, function)."""
    vendor = fx.vendor[0]
    out: list[tuple[str, HostCheck]] = [
        ("iommu.vendor", iommu_vendor),
        ("cpu.virt", cpu_virt),
        ("kvm.dev", kvm_dev),
    ]
    if vendor == INTEL:
        out.append(("firmware.dmar", firmware_table))
    elif vendor == AMD:
        out.append(("firmware.ivrs", firmware_table))
    out += [("iommu.active", iommu_active), ("iommu.domain_type", iommu_domain_type)]
    if vendor == INTEL:
        out.append(("cmdline.intel_iommu", cmdline_intel_iommu))
    elif vendor == AMD:
        out.append(("cmdline.amd_iommu", cmdline_amd_iommu))
    out += [
        ("cmdline.iommu_off", cmdline_iommu_off),
        ("cmdline.iommu_pt", cmdline_iommu_pt),
        ("cmdline.acs_override", cmdline_acs_override),
        ("cmdline.noiommu", cmdline_noiommu),
        ("cmdline.vfio_ids", cmdline_vfio_ids),
        ("irq.remap", irq_remap),
        ("vfio.unsafe_interrupts", vfio_unsafe_interrupts),
        ("kconfig.vfio_pci", kconfig_vfio_pci),
    ]
    if vendor == INTEL:
        out.append(("kconfig.intel_iommu", kconfig_intel_iommu))
    elif vendor == AMD:
        out.append(("kconfig.amd_iommu", kconfig_amd_iommu))
    out += [
        ("kconfig.irq_remap", kconfig_irq_remap),
        ("module.vfio", module_vfio),
        ("module.vfio_pci", module_vfio_pci),
        ("module.vfio_iommu_type1", module_vfio_iommu_type1),
        ("kernel.driver_override", kernel_driver_override),
    ]
    return out
