"""What each ``emit`` command makes of a host: the devices it chose, the documents, and the warnings.

The CLI (cli/emit_cmds.py) only parses options and hands an ``Emitted`` to the renderer: printed as the
document itself by default (XML, or YAML for Kubernetes), or inside the result envelope with ``--format
json|yaml``.

The host is read with ``Inventory.scan(only=...)``: the named devices, their IOMMU group peers and, with
``group``, their slot siblings, not every device of the host (``--all-vfio`` needs them all).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..address import PciAddress
from ..drivers import is_assignable
from ..errors import UsageError
from ..host import Host
from ..inventory import Inventory
from ..mdev import read
from ..pciids import PciIds
from ..sysfs import read_str
from . import devices, harvester, kubevirt, kubevirt_mdev, libvirt_mdev
from . import libvirt as lv
from .choices import Managed
from .devices import Target
from .names import check_dns_name

#: What to do with each Kubernetes document (fixed text: printed as a YAML comment above it).
KUBEVIRT_CR_USAGE = (
    "KubeVirt CR merge patch: kubectl patch kubevirt kubevirt -n kubevirt --type merge "
    "--patch-file FILE (Harvester: -n harvester-system)"
)
KUBEVIRT_VM_USAGE = "VirtualMachine merge patch: kubectl patch vm NAME --type merge --patch-file FILE"
HARVESTER_USAGE = "PCIDeviceClaim: kubectl apply -f FILE"

#: Function numbers of a PCI slot (a conventional address's function field is 3 bits).
_FUNCTIONS = range(8)


@dataclass(frozen=True)
class Manifest:
    """A Kubernetes object and what to do with it."""

    usage: str
    object: dict[str, Any]


@dataclass(frozen=True)
class Emitted:
    """An emitter's output: the PCI devices it writes about, and either libvirt XML or Kubernetes manifests."""

    targets: tuple[Target, ...]
    xml: str | None = None
    manifests: tuple[Manifest, ...] = ()
    #: Human notes for stderr.
    warnings: tuple[str, ...] = ()


def _slot_functions(addresses: Iterable[str]) -> list[str]:
    out: list[str] = []
    for text in addresses:
        addr = PciAddress.try_parse(text)
        if addr is not None:
            out.extend(str(PciAddress(addr.domain, addr.bus, addr.slot, f)) for f in _FUNCTIONS)
    return out


def scan(
    host: Host, addresses: Sequence[str], *, group: bool = False, all_vfio: bool = False, ids: PciIds | None = None
) -> Inventory:
    """The part of the host an emitter needs: the named devices with their group peers (with ``group``, their
    slot siblings too: ``devices.select``), or every device for ``all_vfio``. Nothing an emitter writes
    needs the detail fields (link, reset methods)."""
    if all_vfio:
        return Inventory.scan(host, ids, detail=False)
    only = list(addresses) + (_slot_functions(addresses) if group else [])
    return Inventory.scan(host, ids, detail=False, only=only)


def group_warnings(inv: Inventory, targets: Sequence[Target]) -> list[str]:
    """Devices whose IOMMU group keeps endpoints outside the list on host drivers (QEMU: group not viable),
    and devices without a group."""
    chosen = {t.address for t in targets}
    out = []
    for t in targets:
        if t.iommu_group is None:
            out.append(f"{t.address} has no IOMMU group: it cannot be assigned (IOMMU off? see 'pcipass check-iommu')")
            continue
        left = [
            p
            for p in inv.peers(t.address)
            if not p.is_bridge and p.address not in chosen and not is_assignable(p.driver, inv.variant_modules)
        ]
        if left:
            names = ", ".join(f"{p.address} ({p.driver})" for p in left)
            out.append(
                f"IOMMU group {t.iommu_group} of {t.address} also holds {names}: QEMU refuses a group that is "
                "not viable; add --group or bind them to vfio-pci"
            )
    return list(dict.fromkeys(out))


def node_name(host: Host, node: str | None) -> str:
    """``node``, checked, else the host's hostname as kubelet registers it (lower-cased)."""
    if node is not None:
        return check_dns_name(node, "node name")
    for path in host.hostname_files:
        text = (read_str(path) or "").strip().lower()
        if text:
            return check_dns_name(text, "node name (from the hostname; give --node)")
    raise UsageError("cannot read this host's hostname: give --node")


def libvirt(
    host: Host,
    addresses: Sequence[str],
    *,
    mdevs: Sequence[str] = (),
    group: bool = False,
    managed: Managed = Managed.auto,
    rom_bar: bool | None = None,
    guest_auto: bool = True,
) -> Emitted:
    """``<hostdev>`` XML for the PCI devices and the mediated devices (``mdevs``, UUIDs); a ``<devices>`` element
    around several."""
    elements = []
    targets: list[Target] = []
    warnings: tuple[str, ...] = ()
    if addresses:
        inv = scan(host, addresses, group=group)
        targets = devices.select(inv, addresses, group=group)
        warnings = inv.warnings + tuple(group_warnings(inv, targets))
        items = lv.hostdevs(targets, managed=managed, rom_bar=rom_bar, guest_auto=guest_auto)
        elements += [lv.hostdev_element(h) for h in items]
    elements += [libvirt_mdev.hostdev_element(h) for h in libvirt_mdev.hostdevs(host, mdevs)]
    return Emitted(tuple(targets), xml=lv.to_xml(lv.wrap(elements)), warnings=warnings)


def _saved_targets(specs: Sequence[str], addresses: Sequence[str], all_vfio: bool) -> list[Target]:
    inventories = [devices.load_inventory(s) for s in specs]
    nodes = [n for n, _ in inventories]
    _unique_nodes(nodes)
    for n in nodes:
        check_dns_name(n, "node name (from --from; name it: --from NODE=FILE)")
    return devices.select_saved(inventories, addresses, all_vfio=all_vfio)


def _manifests(cr_doc: dict[str, Any], vm_doc: dict[str, Any], cr: bool, vm_patch: bool) -> tuple[Manifest, ...]:
    docs = []
    if cr:
        docs.append(Manifest(KUBEVIRT_CR_USAGE, cr_doc))
    if vm_patch:
        docs.append(Manifest(KUBEVIRT_VM_USAGE, vm_doc))
    return tuple(docs)


def _unique_nodes(nodes: Sequence[str]) -> None:
    dupes = sorted({n for n in nodes if nodes.count(n) > 1})
    if dupes:
        raise UsageError(f"--from: node {', '.join(dupes)} given twice (name them: --from NODE=FILE)")


def kubevirt_patches(
    host: Host,
    addresses: Sequence[str],
    *,
    all_vfio: bool = False,
    per_device: bool = False,
    saved: Sequence[str] = (),
    vm: str | None = None,
    node: str | None = None,
    current: dict[str, Any] | None = None,
    cr: bool = True,
    vm_patch: bool = True,
) -> Emitted:
    """The KubeVirt CR merge patch permitting the devices (``cr``) and a VM merge patch requesting them
    (``vm_patch``), for this host's devices or, with ``saved`` (``[NODE=]FILE`` specs), for several nodes'."""
    read_warnings: tuple[str, ...] = ()
    if saved:
        if node is not None:
            raise UsageError("--node names this host; with --from the node names come from the inventories")
        targets = _saved_targets(saved, addresses, all_vfio)
    else:
        inv = scan(host, addresses, all_vfio=all_vfio)
        read_warnings = inv.warnings
        targets = devices.select(inv, addresses, all_vfio=all_vfio)
        if per_device or node is not None:
            name = node_name(host, node)
            targets = [t.with_node(name) for t in targets]
    if not targets:
        raise UsageError("no device selected (--all-vfio found no device on a vfio driver)")
    plan = kubevirt.plan(targets, per_device=per_device, current=current)
    docs = _manifests(kubevirt.cr_patch(plan), kubevirt.vm_patch(plan, vm), cr, vm_patch)
    return Emitted(tuple(targets), manifests=docs, warnings=read_warnings + plan.warnings)


def kubevirt_mdev_patches(
    host: Host,
    wanted: Sequence[str],
    *,
    saved: Sequence[str] = (),
    vm: str | None = None,
    current: dict[str, Any] | None = None,
    cr: bool = True,
    vm_patch: bool = True,
) -> Emitted:
    """The same patches for mediated devices: ``wanted`` type IDs or instance UUIDs, of this host's types or, with
    ``saved``, of several nodes' ('pcipass mdev types --format json' output)."""
    if saved:
        loaded = [kubevirt_mdev.load_types(s) for s in saved]
        _unique_nodes([n for n, _ in loaded])
        types = dict(loaded)
    else:
        types = {"": read.types(host)}
    plan = kubevirt_mdev.plan(types, wanted, ids=PciIds.load(host.find_pci_ids()), current=current)
    docs = _manifests(kubevirt_mdev.cr_patch(plan), kubevirt_mdev.vm_patch(plan, vm), cr, vm_patch)
    return Emitted((), manifests=docs, warnings=plan.warnings)


def harvester_claims(
    host: Host,
    addresses: Sequence[str],
    *,
    node: str | None = None,
    user: str | None = None,
    per_device: bool = False,
    pcidevices: dict[str, Any] | None = None,
) -> Emitted:
    """Harvester ``PCIDeviceClaim`` objects for the devices."""
    inv = scan(host, addresses)
    targets = devices.select(inv, addresses)
    claims = harvester.claims(targets, node_name(host, node), user=user, per_device=per_device, pcidevices=pcidevices)
    warnings = inv.warnings
    if pcidevices is None:
        warnings += (
            "the claims have no owner reference: Harvester's controller finds the PCIDevice through it; "
            "pass --pcidevices with 'kubectl get pcidevices -o json' output",
        )
    return Emitted(tuple(targets), manifests=tuple(Manifest(HARVESTER_USAGE, c) for c in claims), warnings=warnings)
