"""``emit libvirt|kubevirt|harvester``: print hypervisor configuration documents for devices.

These commands print a document (XML, YAML or JSON) on stdout, not the result envelope: the output is meant
for ``virsh``/``kubectl`` as it is. Warnings go to stderr; errors are PcipassErrors like everywhere else (with
``--format json|yaml`` given explicitly, main() prints the error envelope).
"""

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..emit.choices import Managed
from ..errors import UsageError
from . import context
from .context import FormatOption
from .render import Format, dump_json, dump_yaml, warn, write_stdout

emit_app = typer.Typer(
    name="emit",
    help="Print hypervisor configuration for devices: libvirt <hostdev> XML, KubeVirt patches, Harvester claims.",
    no_args_is_help=True,
)

AddressesArg = Annotated[list[str], typer.Argument(metavar="ADDR...", help="PCI addresses, DDDD:BB:DD.F or BB:DD.F.")]
OptionalAddressesArg = Annotated[
    list[str] | None,
    typer.Argument(metavar="ADDR...", help="PCI addresses, DDDD:BB:DD.F or BB:DD.F.", show_default=False),
]
NodeOption = Annotated[
    str | None,
    typer.Option(
        "--node", help="Kubernetes node name of this host (default: the host's hostname).", show_default=False
    ),
]
PerDeviceOption = Annotated[
    bool,
    typer.Option(
        "--per-device",
        help="A resource name per device (node + address) instead of one per device "
        "model, so a VM gets exactly that device.",
    ),
]


class OnOff(str, Enum):
    on = "on"
    off = "off"


class GuestAddressMode(str, Enum):
    auto = "auto"
    none = "none"


class KubevirtPart(str, Enum):
    kubevirt = "kubevirt"
    vm = "vm"


def _inventory():
    from ..inventory import Inventory

    return Inventory.scan(context.CURRENT.host())


def _document_format(fmt: Format | None) -> Format:
    """JSON or YAML (the default, also when the global format is the table)."""
    st = context.state(fmt)
    return Format.json if st.fmt is Format.json else Format.yaml


def write_documents(docs: list[tuple[str, dict[str, Any]]], fmt: Format) -> None:
    """YAML: one document per object, each after a ``#`` line saying what to do with it (fixed text only).
    JSON: the object itself, or a ``v1`` ``List`` of them when there are several."""
    if fmt is Format.json:
        objs = [d for _, d in docs]
        write_stdout(
            dump_json(objs[0] if len(objs) == 1 else {"apiVersion": "v1", "kind": "List", "items": objs}, records=False)
        )
        return
    write_stdout("".join(f"---\n# {usage}\n{dump_yaml(doc)}" for usage, doc in docs))


def _load_yaml_file(path: str, option: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{option} {path!r}: cannot read it ({exc.strerror or exc})") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option} {path!r}: not YAML or JSON ({str(exc).splitlines()[0]})") from exc


def _host_node_name(node: str | None) -> str:
    from ..emit.names import check_dns_name
    from ..sysfs import read_str

    if node is not None:
        return check_dns_name(node, "node name")
    host = context.CURRENT.host()
    # kubelet registers the node under the lower-cased hostname unless told otherwise.
    for path in host.hostname_files:
        text = (read_str(path) or "").strip().lower()
        if text:
            return check_dns_name(text, "node name (from the hostname; give --node)")
    raise UsageError("cannot read this host's hostname: give --node")


# --- libvirt ------------------------------------------------------------------------------------------------


def _group_warnings(inv, targets) -> list[str]:
    """Devices whose IOMMU group keeps endpoints outside the list on host drivers (QEMU: group not viable)."""
    from ..drivers import is_assignable

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


MdevUuidOption = Annotated[
    list[str] | None,
    typer.Option(
        "--mdev",
        metavar="UUID",
        help="A mediated device to assign too (repeatable): a <hostdev type='mdev'> for it.",
        show_default=False,
    ),
]


def emit_libvirt_cmd(
    addresses: OptionalAddressesArg = None,
    mdev: MdevUuidOption = None,
    group: Annotated[
        bool,
        typer.Option("--group", help="Add the other endpoints of each device's IOMMU group (a GPU's audio function)."),
    ] = False,
    managed: Annotated[
        Managed,
        typer.Option(
            "--managed",
            case_sensitive=False,
            help="yes: libvirt moves the device to vfio at VM "
            "start and gives it back at stop; no: it is already on vfio-pci; auto: no when it is on "
            "a vfio driver now, else yes.",
        ),
    ] = Managed.auto,
    guest_address: Annotated[
        GuestAddressMode,
        typer.Option(
            "--guest-address",
            help="auto: one guest slot per host slot (functions kept "
            "together, multifunction on); none: libvirt chooses.",
        ),
    ] = GuestAddressMode.auto,
    rom_bar: Annotated[
        OnOff | None,
        typer.Option(
            "--rom-bar",
            help="Expose the device's option ROM BAR (on) or hide it (off); default: libvirt's.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print <hostdev> XML for PCI devices and mediated devices (--mdev); a <devices> element when there are several."""
    from ..emit import devices, libvirt_mdev
    from ..emit import libvirt as lv

    context.state()
    elements = []
    if addresses:
        inv = _inventory()
        targets = devices.select(inv, addresses, group=group)
        for msg in _group_warnings(inv, targets):
            warn(msg)
        items = lv.hostdevs(
            targets,
            managed=managed,
            rom_bar=None if rom_bar is None else rom_bar is OnOff.on,
            guest_auto=guest_address is GuestAddressMode.auto,
        )
        elements += [lv.hostdev_element(h) for h in items]
    elements += [libvirt_mdev.hostdev_element(h) for h in libvirt_mdev.hostdevs(context.CURRENT.host(), mdev or [])]
    write_stdout(lv.to_xml(lv.wrap(elements)))


# --- KubeVirt -----------------------------------------------------------------------------------------------


def _saved_targets(specs: list[str], addresses: list[str], all_vfio: bool):
    from ..emit import devices

    inventories = [devices.load_inventory(s) for s in specs]
    nodes = [n for n, _ in inventories]
    dupes = sorted({n for n in nodes if nodes.count(n) > 1})
    if dupes:
        raise UsageError(f"--from: node {', '.join(dupes)} given twice (name them: --from NODE=FILE)")
    from ..emit.names import check_dns_name

    for n in nodes:
        check_dns_name(n, "node name (from --from; name it: --from NODE=FILE)")
    return devices.select_saved(inventories, addresses, all_vfio=all_vfio)


def emit_kubevirt_cmd(
    addresses: OptionalAddressesArg = None,
    all_vfio: Annotated[bool, typer.Option("--all-vfio", help="Every device on a vfio driver.")] = False,
    per_device: PerDeviceOption = False,
    from_: Annotated[
        list[str] | None,
        typer.Option(
            "--from",
            metavar="[NODE=]FILE",
            help="A node's 'pcipass list --format json' output (node name: "
            "NODE, else the file name). Repeatable: the permitted list covers every node.",
            show_default=False,
        ),
    ] = None,
    vm: Annotated[
        str | None, typer.Option("--vm", help="Name of the VirtualMachine the snippet patches.", show_default=False)
    ] = None,
    node: NodeOption = None,
    current: Annotated[
        str | None,
        typer.Option(
            "--current",
            metavar="FILE",
            help="The live KubeVirt CR ('kubectl get kubevirt -A -o yaml'): "
            "its other pciHostDevices entries and feature gates are kept in the patch.",
            show_default=False,
        ),
    ] = None,
    only: Annotated[
        KubevirtPart | None,
        typer.Option("--only", help="Print only the KubeVirt CR patch or only the VM snippet.", show_default=False),
    ] = None,
    mdev: Annotated[
        list[str] | None,
        typer.Option(
            "--mdev",
            metavar="TYPE|UUID",
            help="Mediated devices instead of PCI devices (repeatable): a "
            "type ID (mtty-2, nvidia-747) or an instance's UUID; KubeVirt creates instances of the types "
            "and permits them. With --from, the files are 'pcipass mdev types --format json' output.",
            show_default=False,
        ),
    ] = None,
    fmt: FormatOption = None,
) -> None:
    """Print the KubeVirt CR merge patch permitting the devices (and the HostDevices gate), and a VM snippet."""
    from ..emit import devices, kubevirt

    doc_fmt = _document_format(fmt)
    addresses = addresses or []
    cr = _load_yaml_file(current, "--current") if current else None
    if mdev:
        if addresses or all_vfio or per_device or node is not None:
            raise UsageError(
                "--mdev emits mediated devices: PCI addresses, --all-vfio, --per-device and --node "
                "belong to another run"
            )
        _write_kubevirt(_kubevirt_mdev_docs(mdev, from_ or [], vm, cr), only, doc_fmt)
        return
    if from_:
        if node is not None:
            raise UsageError("--node names this host; with --from the node names come from the inventories")
        targets = _saved_targets(from_, addresses, all_vfio)
    else:
        targets = devices.select(_inventory(), addresses, all_vfio=all_vfio)
        if per_device or node is not None:
            name = _host_node_name(node)
            targets = [t.with_node(name) for t in targets]
    if not targets:
        raise UsageError("no device selected (--all-vfio found no device on a vfio driver)")
    plan = kubevirt.plan(targets, per_device=per_device, current=cr)
    _write_kubevirt((plan.warnings, kubevirt.cr_patch(plan), kubevirt.vm_patch(plan, vm)), only, doc_fmt)


def _kubevirt_mdev_docs(mdev: list[str], from_: list[str], vm: str | None, cr: Any):
    from ..emit import kubevirt_mdev
    from ..mdev import read
    from ..pciids import PciIds

    host = context.CURRENT.host()
    if from_:
        loaded = [kubevirt_mdev.load_types(s) for s in from_]
        nodes = [n for n, _ in loaded]
        dupes = sorted({n for n in nodes if nodes.count(n) > 1})
        if dupes:
            raise UsageError(f"--from: node {', '.join(dupes)} given twice (name them: --from NODE=FILE)")
        types = dict(loaded)
    else:
        types = {"": read.types(host)}
    plan = kubevirt_mdev.plan(types, mdev, ids=PciIds.load(host.find_pci_ids()), current=cr)
    return plan.warnings, kubevirt_mdev.cr_patch(plan), kubevirt_mdev.vm_patch(plan, vm)


def _write_kubevirt(docs_of, only: KubevirtPart | None, doc_fmt: Format) -> None:
    warnings, cr_doc, vm_doc = docs_of
    for msg in warnings:
        warn(msg)
    docs = []
    if only in (None, KubevirtPart.kubevirt):
        docs.append(
            (
                "KubeVirt CR merge patch: kubectl patch kubevirt kubevirt -n kubevirt --type merge --patch-file "
                "FILE (Harvester: -n harvester-system)",
                cr_doc,
            )
        )
    if only in (None, KubevirtPart.vm):
        docs.append(("VirtualMachine merge patch: kubectl patch vm NAME --type merge --patch-file FILE", vm_doc))
    write_documents(docs, doc_fmt)


# --- Harvester ----------------------------------------------------------------------------------------------


def emit_harvester_cmd(
    addresses: AddressesArg,
    node: NodeOption = None,
    user: Annotated[str | None, typer.Option("--user", help="spec.userName of the claims.", show_default=False)] = None,
    per_device: PerDeviceOption = False,
    pcidevices: Annotated[
        str | None,
        typer.Option(
            "--pcidevices",
            metavar="FILE",
            help="'kubectl get pcidevices -o json' output: the claims get "
            "their owner reference (which Harvester's controller needs) and each device is checked against "
            "the cluster's record of it.",
            show_default=False,
        ),
    ] = None,
    fmt: FormatOption = None,
) -> None:
    """Print Harvester PCIDeviceClaim objects for the devices (kubectl apply -f)."""
    from ..emit import devices, harvester

    doc_fmt = _document_format(fmt)
    targets = devices.select(_inventory(), addresses)
    name = _host_node_name(node)
    owners = _load_yaml_file(pcidevices, "--pcidevices") if pcidevices else None
    claims = harvester.claims(targets, name, user=user, per_device=per_device, pcidevices=owners)
    if owners is None:
        warn(
            "the claims have no owner reference: Harvester's controller finds the PCIDevice through it; "
            "pass --pcidevices with 'kubectl get pcidevices -o json' output"
        )
    write_documents([("PCIDeviceClaim: kubectl apply -f FILE", c) for c in claims], doc_fmt)


context.name_subcommands(emit_app, "emit")


def register(app: typer.Typer) -> None:
    # attach/detach (libvirt_cmds) are registered by cli.app on their own: ``emit`` does not need them.
    emit_app.command("libvirt")(emit_libvirt_cmd)
    emit_app.command("kubevirt")(emit_kubevirt_cmd)
    emit_app.command("harvester")(emit_harvester_cmd)
    app.add_typer(emit_app)
