"""``mdev types|list|create|remove|persist|unpersist|apply``: mediated devices (vGPU slices and other mdev
instances), now and declared in the desired-state file."""

from typing import Annotated, Any

import typer

from . import context
from .context import FormatOption, finish
from .render import Block, KeyValues, Table, warn

mdev_app = typer.Typer(
    name="mdev",
    help="Mediated devices (vGPU slices and other mdev instances): list the types parents offer, list, create and "
    "remove instances.",
)

UuidArg = Annotated[str, typer.Argument(metavar="UUID", help="The mediated device's UUID.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the plan and write nothing.")]
UuidsArg = Annotated[list[str], typer.Argument(metavar="UUID...", help="Mediated devices' UUIDs.")]
ConfigFileOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="The desired-state file (default: /etc/pcipass/pcipass.yaml under the root).",
        show_default=False,
    ),
]
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


def _persist_view(data: list[dict[str, Any]]) -> list[Block]:
    return [
        Table(("UUID", "PARENT", "TYPE", "CHANGE"), [[d["uuid"], d["parent"], d["type"], d["change"]] for d in data])
    ]


def persist_cmd(uuids: UuidsArg, config: ConfigFileOption = None, fmt: FormatOption = None) -> None:
    """Declare existing mediated devices in the desired-state file, with a PCI parent's fingerprint.

    'pcipass mdev apply' creates them again after a reboot."""
    context.state(fmt)
    from ..config import Editor, config_path
    from ..mdev import declared, mdevctl
    from ..result import Result

    host = context.CURRENT.host()
    path, shown = config_path(host, config)
    editor = Editor(path, shown)
    defined = mdevctl.definitions(host)
    rows, messages = [], []
    for u in uuids:
        entry = declared.entry_for(host, u)
        change = editor.upsert("mdev", entry.to_node())
        rows.append({"uuid": entry.uuid, "parent": entry.parent, "type": entry.type, "change": change})
        if entry.uuid in defined:
            messages.append(
                f"mdevctl defines {entry.uuid} too ({defined[entry.uuid].path}): 'mdev apply' leaves it to "
                "mdevctl; keep one of the two"
            )
    editor.save()
    finish(Result("mdev persist", data=rows, messages=messages), _persist_view)


def unpersist_cmd(uuids: UuidsArg, config: ConfigFileOption = None, fmt: FormatOption = None) -> None:
    """Drop mediated devices from the desired-state file (the instances stay until removed or rebooted)."""
    context.state(fmt)
    from ..config import Editor, config_path
    from ..mdev.model import canonical_uuid
    from ..result import Result

    path, shown = config_path(context.CURRENT.host(), config)
    editor = Editor(path, shown)
    rows = []
    for u in dict.fromkeys(canonical_uuid(x) for x in uuids):
        entry = editor.find("mdev", u)
        removed = editor.remove("mdev", u)
        rows.append(
            {
                "uuid": u,
                "parent": entry.get("parent") if entry else None,
                "type": entry.get("type") if entry else None,
                "change": "removed" if removed else "not declared",
            }
        )
    editor.save()
    finish(Result("mdev unpersist", data=rows), _persist_view)


def _apply_view(data: list[dict[str, Any]]) -> list[Block]:
    if not data:
        return ["The desired-state file declares no mediated device."]
    rows = [[d["uuid"], d["parent"], d["type"], d["state"], d["outcome"], d["detail"]] for d in data]
    return [Table(("UUID", "PARENT", "TYPE", "FOUND", "OUTCOME", "DETAIL"), rows)]


def apply_cmd(
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Say what would be created and write nothing; exit 1 when the host is not as declared."
        ),
    ] = False,
    config: ConfigFileOption = None,
    timeout: TimeoutOption = 10.0,
    fmt: FormatOption = None,
) -> None:
    """Create the mediated devices the desired-state file declares and the host lacks.

    Run it after the devices are bound: a parent offers its types only once its driver is bound."""
    context.state(fmt)
    from ..config import config_path, load
    from ..mdev import declared
    from ..result import Result

    host = context.CURRENT.host()
    desired = load(*config_path(host, config), missing_ok=True)
    results = declared.apply(host, desired.section("mdev"), check_only=check, timeout=timeout, on_lock_wait=warn)
    finish(
        Result("mdev apply", data=list(results), exit_code=declared.exit_code(results, check_only=check)),
        _apply_view,
    )


def register(app: typer.Typer) -> None:
    mdev_app.command("types")(types_cmd)
    mdev_app.command("list")(list_cmd)
    mdev_app.command("create")(create_cmd)
    mdev_app.command("remove")(remove_cmd)
    mdev_app.command("persist")(persist_cmd)
    mdev_app.command("unpersist")(unpersist_cmd)
    mdev_app.command("apply")(apply_cmd)
    app.add_typer(mdev_app)
