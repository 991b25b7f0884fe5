"""``emit libvirt|kubevirt|harvester``: print hypervisor configuration documents for devices.

By default these commands print the document itself on stdout (libvirt XML, Kubernetes YAML), meant for
``virsh``/``kubectl`` as it is; with ``--format json|yaml`` the result envelope, whose data holds the document's
text, the Kubernetes objects and the devices (pcipass/emit/commands.py makes them). Warnings go to stderr.
"""

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..emit.choices import Managed
from ..errors import UsageError
from . import context
from .context import FormatOption, finish
from .render import Document, dump_yaml

emit_app = typer.Typer(
    name="emit",
    help="Print hypervisor configuration for devices: libvirt <hostdev> XML, KubeVirt patches, Harvester claims.\n\n"
    "The document itself by default; with --format json|yaml the result envelope, whose data holds the "
    "document (text), the Kubernetes objects (documents) and the PCI devices (targets).",
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


def _load_yaml_file(path: str, option: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{option} {path!r}: cannot read it ({exc.strerror or exc})") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option} {path!r}: not YAML or JSON ({str(exc).splitlines()[0]})") from exc


def _view(data: dict[str, Any]) -> Document:
    return Document(data["text"])


def _finish(emitted: Any) -> None:
    """Print what an emitter made: the document itself, or with ``--format json|yaml`` the envelope whose data
    holds its text, the Kubernetes objects (``documents``) and the PCI devices (``targets``)."""
    from ..result import Result, jsonable

    data: dict[str, Any]
    if emitted.xml is not None:
        data = {"text": emitted.xml}
    else:
        # YAML: one document per object, each after a ``#`` line saying what to do with it (fixed text only).
        data = {
            "text": "".join(f"---\n# {m.usage}\n{dump_yaml(m.object)}" for m in emitted.manifests),
            "documents": [m.object for m in emitted.manifests],
        }
    data["targets"] = jsonable(list(emitted.targets))
    finish(Result(context.CURRENT.command, data=data, messages=list(emitted.warnings)), _view)


# --- libvirt ------------------------------------------------------------------------------------------------


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
        typer.Option(
            "--group",
            help="Add the other endpoints of each device's IOMMU group (a GPU's audio function); without a group, "
            "its multifunction siblings.",
        ),
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
    fmt: FormatOption = None,
) -> None:
    """Print <hostdev> XML for PCI devices and mediated devices (--mdev); a <devices> element when there are several."""
    from ..emit import commands

    context.state(fmt)
    _finish(
        commands.libvirt(
            context.CURRENT.host(),
            addresses or [],
            mdevs=mdev or [],
            group=group,
            managed=managed,
            rom_bar=None if rom_bar is None else rom_bar is OnOff.on,
            guest_auto=guest_address is GuestAddressMode.auto,
        )
    )


# --- KubeVirt -----------------------------------------------------------------------------------------------


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
    from ..emit import commands

    context.state(fmt)
    host = context.CURRENT.host()
    addresses = addresses or []
    cr = _load_yaml_file(current, "--current") if current else None
    parts = {"cr": only in (None, KubevirtPart.kubevirt), "vm_patch": only in (None, KubevirtPart.vm)}
    if mdev:
        if addresses or all_vfio or per_device or node is not None:
            raise UsageError(
                "--mdev emits mediated devices: PCI addresses, --all-vfio, --per-device and --node "
                "belong to another run"
            )
        _finish(commands.kubevirt_mdev_patches(host, mdev, saved=from_ or (), vm=vm, current=cr, **parts))
        return
    _finish(
        commands.kubevirt_patches(
            host,
            addresses,
            all_vfio=all_vfio,
            per_device=per_device,
            saved=from_ or (),
            vm=vm,
            node=node,
            current=cr,
            **parts,
        )
    )


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
    from ..emit import commands

    context.state(fmt)
    owners = _load_yaml_file(pcidevices, "--pcidevices") if pcidevices else None
    _finish(
        commands.harvester_claims(
            context.CURRENT.host(), addresses, node=node, user=user, per_device=per_device, pcidevices=owners
        )
    )


context.name_subcommands(emit_app, "emit")


def register(app: typer.Typer) -> None:
    # attach/detach (libvirt_cmds) are registered by cli.app on their own: ``emit`` does not need them.
    emit_app.command("libvirt")(emit_libvirt_cmd)
    emit_app.command("kubevirt")(emit_kubevirt_cmd)
    emit_app.command("harvester")(emit_harvester_cmd)
    app.add_typer(emit_app)
