"""``mdev types|list|create|remove``: mediated devices (vGPU slices and other mdev instances)."""

from typing import Annotated, Any

import typer

from . import context
from .context import FormatOption, finish
from .render import Block, KeyValues, Table, warn

mdev_app = typer.Typer(
    name="mdev",
    help="Mediated devices (vGPU slices and other mdev instances): list the types parents offer, list, create and "
    "remove instances.",
    no_args_is_help=True,
)

UuidArg = Annotated[str, typer.Argument(metavar="UUID", help="The mediated device's UUID.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the plan and write nothing.")]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, metavar="S", help="Abandon the kernel write after S seconds.")
]


def _types_view(data: list[dict[str, Any]]) -> list[Block]:
    if not data:
        return [
            "No mediated-device parent: no driver registers mdev types on this host (NVIDIA vGPU manager, i915 "
            "GVT-g, the sample mtty module...)."
        ]
    rows = []
    for t in data:
        parent = t["parent"] if t["interface"] == "mdev" else f"{t['parent']} (nvidia vGPU)"
        rows.append(
            [
                parent,
                t["type_id"],
                t["name"],
                t["device_api"],
                t["available_instances"],
                len(t["devices"]),
                t["description"],
            ]
        )
    return [Table(("PARENT", "TYPE", "NAME", "API", "AVAILABLE", "CREATED", "DESCRIPTION"), rows)]


def types_cmd(
    parent: Annotated[
        str | None,
        typer.Argument(
            metavar="PARENT",
            show_default=False,
            help="Only this parent (a PCI address, or a device name as in /sys/class/mdev_bus).",
        ),
    ] = None,
    fmt: FormatOption = None,
) -> None:
    """The mediated-device types each parent offers: name, description, device API, instances left and made.

    NVIDIA's SR-IOV vGPU layout (a VF's nvidia/creatable_vgpu_types and current_vgpu_type) is listed the same way."""
    context.state(fmt)
    from ..mdev import read
    from ..result import Result

    finish(Result("mdev types", data=read.types(context.CURRENT.host(), parent)), _types_view)


def _managed(d: dict[str, Any]) -> str | None:
    who = []
    if d["created_by_pcipass"]:
        who.append("pcipass")
    if d["mdevctl"]:
        who.append(f"mdevctl ({d['mdevctl']})")
    return ", ".join(who) or None


def _list_view(data: list[dict[str, Any]]) -> list[Block]:
    if not data:
        return ["No mediated device exists ('pcipass mdev types' lists what can be created)."]
    rows = [
        [
            d["uuid"],
            d["parent"],
            d["mdev_type"],
            d["type_name"],
            d["iommu_group"],
            d["driver"],
            ", ".join(d["held_by"]) or "no",
            _managed(d),
        ]
        for d in data
    ]
    return [Table(("UUID", "PARENT", "TYPE", "NAME", "GROUP", "DRIVER", "HELD BY", "MANAGED BY"), rows)]


def list_cmd(fmt: FormatOption = None) -> None:
    """Existing mediated devices: parent, type, IOMMU group, driver, the processes holding them, who made them."""
    context.state(fmt)
    from ..mdev import ops
    from ..result import Result

    finish(Result("mdev list", data=ops.list_devices(context.CURRENT.host())), _list_view)


def _report_view(data: dict[str, Any]) -> list[Block]:
    pairs = [
        ("uuid", data["uuid"]),
        ("parent", data["parent"]),
        ("type", data["mdev_type"]),
        ("changed", data["changed"]),
        ("undo", data["undo"]),
    ]
    blocks: list[Block] = [KeyValues(pairs, title=f"mdev {data['action']}")]
    if data["steps"]:
        title = "Plan (dry run: nothing was written)" if data["dry_run"] else "Steps"
        blocks.append(
            Table(
                ("#", "STEP", "PATH", "VALUE", "NOTE"),
                [[i, s["op"], s["path"], s["value"], s["note"]] for i, s in enumerate(data["steps"], 1)],
                title=title,
            )
        )
    return blocks


def _finish_report(report) -> None:
    from ..result import Result

    finish(Result(f"mdev {report.action}", data=report.data(), messages=list(report.messages)), _report_view)


def create_cmd(
    parent: Annotated[str, typer.Argument(metavar="PARENT", help="The parent device (see 'pcipass mdev types').")],
    type_id: Annotated[str, typer.Argument(metavar="TYPE", help="The type's ID, e.g. nvidia-747 or mtty-2.")],
    uuid: Annotated[
        str | None,
        typer.Option(
            "--uuid", metavar="UUID", show_default=False, help="The new device's UUID (default: a random one)."
        ),
    ] = None,
    dry_run: DryRunOption = False,
    timeout: TimeoutOption = 10.0,
    fmt: FormatOption = None,
) -> None:
    """Create a mediated device of TYPE on PARENT. Refused (exit 5) when no instance of the type is left."""
    context.state(fmt)
    from ..mdev import ops

    _finish_report(
        ops.create(
            context.CURRENT.host(), parent, type_id, uuid=uuid, dry_run=dry_run, timeout=timeout, on_lock_wait=warn
        )
    )


def remove_cmd(
    uuid: UuidArg, dry_run: DryRunOption = False, timeout: TimeoutOption = 10.0, fmt: FormatOption = None
) -> None:
    """Remove a mediated device. Refused (exit 5) while a process (a VM) holds it open."""
    context.state(fmt)
    from ..mdev import ops

    _finish_report(ops.remove(context.CURRENT.host(), uuid, dry_run=dry_run, timeout=timeout, on_lock_wait=warn))


context.name_subcommands(mdev_app, "mdev")


def register(app: typer.Typer) -> None:
    mdev_app.command("types")(types_cmd)
    mdev_app.command("list")(list_cmd)
    mdev_app.command("create")(create_cmd)
    mdev_app.command("remove")(remove_cmd)
    app.add_typer(mdev_app)
