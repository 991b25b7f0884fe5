"""Inventory commands: ``list``, ``show``, ``groups``."""

import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..address import PciAddress
from . import context
from .context import FormatOption, finish
from .render import Block, KeyValues, Table

if TYPE_CHECKING:
    from ..model import PciDevice

AddressArg = Annotated[str, typer.Argument(metavar="ADDR", help="PCI address, DDDD:BB:DD.F or BB:DD.F.")]


def _inventory(detail: bool = True):
    from ..inventory import Inventory
    from .startup import take_reading

    return Inventory.scan(context.CURRENT.host(), detail=detail, reading=take_reading())


def summary(dev: "PciDevice") -> dict[str, Any]:
    """The device as ``list`` reports it: ``jsonable(dev)`` without ``model.DETAIL_FIELDS`` (the fields only a
    detail scan reads, which ``list`` does not make).

    Written for PciDevice rather than through jsonable's generic walk, which was a tenth of a large
    ``list --format json`` (bench/); tests/test_inventory.py holds the two equal."""
    row = dict(dev.__dict__)  # the fields, in field order (set in that order by __init__ and build_frozen)
    del row["reset_method"], row["link"]
    row["functions"] = list(dev.functions)
    row["net"] = list(dev.net)
    row["block"] = list(dev.block)
    row["drm"] = list(dev.drm)
    sriov = dev.sriov
    if sriov is not None:
        row["sriov"] = {"totalvfs": sriov.totalvfs, "numvfs": sriov.numvfs, "vfs": list(sriov.vfs)}
    return row


def _no_pci_bus(result) -> bool:
    """Say so when the root has no PCI bus directory at all, rather than print an empty list as if the host had
    no devices: a --root that is not a host's root, or a kernel built without PCI."""
    host = context.CURRENT.host()
    if os.path.isdir(host.pci_devices_dir):
        return False
    result.messages.append(
        f"no PCI bus in {host.root_dir}: it has no {host.relative(host.pci_devices_dir)} "
        "(not a Linux host's root, or a kernel without PCI)"
    )
    return True


def _short_class(dev: dict[str, Any]) -> str | None:
    return dev.get("subclass_name") or dev.get("class_name") or dev.get("class_id")


def _name(dev: dict[str, Any]) -> str:
    parts = [p for p in (dev.get("vendor_name"), dev.get("device_name")) if p]
    return " ".join(parts) if parts else "-"


def _ids(dev: dict[str, Any]) -> str:
    return f"{dev.get('vendor_id') or '????'}:{dev.get('device_id') or '????'}"


_LIST_COLUMNS = ("ADDRESS", "GROUP", "CLASS", "ID", "NAME", "DRIVER", "ROLE")


def _list_row(dev: dict[str, Any]) -> list[Any]:
    driver = dev.get("driver")
    if dev.get("driver_override"):
        driver = f"{driver or '-'} (override {dev['driver_override']})"
    return [
        dev["address"],
        dev.get("iommu_group"),
        _short_class(dev),
        _ids(dev),
        _name(dev),
        driver,
        "bridge" if dev.get("is_bridge") else "endpoint",
    ]


def _list_view(data: list[dict[str, Any]]) -> list[Block]:
    return [Table(_LIST_COLUMNS, [_list_row(d) for d in data])]


def _tree_view(data: list[dict[str, Any]]) -> list[Block]:
    """Rows by IOMMU group, except that a VF is shown right under its PF (``└`` before its address, its own group
    in the GROUP column): a PF's VFs sit in groups of their own, far from it in group order."""
    listed = {d["address"] for bucket in data for d in bucket["devices"]}
    vfs: dict[str, list[list[Any]]] = {}
    for bucket in data:
        for dev in bucket["devices"]:
            if dev.get("physfn") in listed:
                row = _list_row(dev)
                row[0], row[1] = f"\u2514 {dev['address']}", _group_label(bucket)
                vfs.setdefault(dev["physfn"], []).append(row)
    rows: list[list[Any]] = []
    sections: set[int] = set()
    for bucket in data:
        first = True
        for dev in bucket["devices"]:
            if dev.get("physfn") in listed:
                continue
            row = _list_row(dev)
            row[1] = _group_label(bucket) if first else ""
            first = False
            rows.append(row)
            rows += vfs.get(dev["address"], [])
        if not first:
            sections.add(len(rows) - 1)
    return [Table(_LIST_COLUMNS, rows, sections=sections)]


def _group_label(bucket: dict[str, Any]) -> str:
    return "no group" if bucket["group"] is None else f"{bucket['group']} ({bucket['verdict']})"


def list_cmd(
    device_class: Annotated[
        list[str] | None,
        typer.Option(
            "--class",
            "-c",
            help="Only this class: gpu, nic, storage, nvme, usb, audio, bridge, accel, "
            "... or a hex class code (0300, 0c03). Repeatable.",
        ),
    ] = None,
    vendor: Annotated[str | None, typer.Option("--vendor", help="Vendor id (10de) or part of its name.")] = None,
    driver: Annotated[str | None, typer.Option("--driver", help="Bound driver name, or 'none' for unbound.")] = None,
    group: Annotated[int | None, typer.Option("--group", "-g", help="Only devices of this IOMMU group.")] = None,
    vfio: Annotated[bool, typer.Option("--vfio", help="Only devices on vfio-pci or a vfio variant driver.")] = False,
    tree: Annotated[bool, typer.Option("--tree", help="Group the rows by IOMMU group.")] = False,
    fmt: FormatOption = None,
) -> None:
    """List PCI devices with their drivers, IOMMU groups and names."""
    context.state(fmt)
    from ..result import Records, Result
    from ..select import filter_devices

    inv = _inventory(detail=False)
    devices = filter_devices(
        inv.devices.values(),
        classes=device_class or (),
        vendor=vendor,
        driver=driver,
        group=group,
        vfio=vfio,
        variant_modules=inv.variant_modules,
    )
    # Devices as ``list`` reports them (``summary``): every field but the details its scan skipped.
    if not tree:
        result = Result("list", data=Records(devices, summary), messages=list(inv.warnings))
        _no_pci_bus(result)
        finish(result, _list_view)
        return
    buckets: dict[int | None, list[Any]] = {}
    for dev in devices:
        buckets.setdefault(dev.iommu_group, []).append(summary(dev))
    data = []
    for gnum in sorted(buckets, key=lambda g: (g is None, g or 0)):
        verdict = inv.groups[gnum].verdict.value if gnum is not None and gnum in inv.groups else "none"
        data.append({"group": gnum, "verdict": verdict, "devices": buckets[gnum]})
    result = Result("list", data=data, messages=list(inv.warnings))
    _no_pci_bus(result)
    finish(result, _tree_view)


def _show_view(data: dict[str, Any]) -> list[Block]:
    dev = data["device"]
    sriov = dev.get("sriov")
    link = dev.get("link") or {}
    speed = None
    if link.get("current_link_speed"):
        speed = f"{link['current_link_speed']} x{link.get('current_link_width')}"
        if link.get("max_link_speed"):
            speed += f" (max {link['max_link_speed']} x{link.get('max_link_width')})"
    pairs = [
        ("address", dev["address"]),
        ("name", _name(dev)),
        (
            "ids",
            f"{_ids(dev)} subsystem {dev.get('subsystem_vendor_id') or '????'}:"
            f"{dev.get('subsystem_device_id') or '????'}",
        ),
        (
            "subsystem",
            " ".join(x for x in (dev.get("subsystem_vendor_name"), dev.get("subsystem_device_name")) if x) or None,
        ),
        (
            "class",
            f"{dev.get('class_id') or '??????'} "
            + " / ".join(x for x in (dev.get("class_name"), dev.get("subclass_name"), dev.get("prog_if_name")) if x),
        ),
        ("revision", dev.get("revision")),
        ("role", "bridge" if dev.get("is_bridge") else "endpoint"),
        ("driver", dev.get("driver")),
        ("driver_override", dev.get("driver_override")),
        ("module", dev.get("module")),
        ("iommu_group", dev.get("iommu_group")),
        ("numa_node", dev.get("numa_node")),
        ("physical_slot", dev.get("physical_slot")),
        ("parent_bridge", dev.get("parent_bridge")),
        ("functions", dev.get("functions")),
        ("boot_vga", dev.get("boot_vga")),
        ("reset_method", dev.get("reset_method")),
        ("link", speed),
        ("network interfaces", dev.get("net")),
        ("block devices", dev.get("block")),
        ("drm cards", dev.get("drm")),
    ]
    if dev.get("physfn"):
        pairs.append(("sr-iov pf", dev["physfn"]))
    if sriov:
        pairs.append(("sr-iov vfs", f"{sriov.get('numvfs')} of {sriov.get('totalvfs')}"))
        if sriov.get("vfs"):
            pairs.append(("sr-iov vf addresses", sriov["vfs"]))
    blocks: list[Block] = [KeyValues(pairs)]
    group = data.get("iommu_group")
    if group is None:
        blocks.append("IOMMU group: none (the IOMMU is off or this device is not behind one)")
    else:
        rows = [[m["address"], m["role"], m["driver"], _ids(m), m.get("name")] for m in group["devices"]]
        title = f"IOMMU group {group['group']}: {group['verdict']}"
        blocks.append(Table(("ADDRESS", "ROLE", "DRIVER", "ID", "NAME"), rows, title=title))
    if data.get("holders"):
        rows = [[h["pid"], h["command"], h["unit"], h["kind"], h["node"]] for h in data["holders"]]
        blocks.append(
            Table(
                ("PID", "COMMAND", "UNIT", "KIND", "NODE"),
                rows,
                title="Held by processes (unbinding its driver waits for them or pulls it away)",
            )
        )
    return blocks


def show_cmd(address: AddressArg, fmt: FormatOption = None) -> None:
    """Everything about one device, with its IOMMU group peers and their roles, and the processes holding it.

    Holders: processes with its DRM (/dev/dri/cardN, renderDN) or NVIDIA (/dev/nvidia*) nodes open.

    Also those mapping its /sys resource files; each with pid, command and systemd unit."""
    context.state(fmt)
    from ..holders import device_watch, scan
    from ..result import Result

    addr = PciAddress.parse(address)
    inv = _inventory()
    dev = inv.device(addr)
    group = inv.group_of(dev.address)
    host = context.CURRENT.host()
    holders = [
        {
            "pid": h.process.pid,
            "command": h.process.command,
            "unit": h.process.unit,
            "kind": h.kind.value,
            "node": h.node,
        }
        for h in scan(host, device_watch(host, inv, [dev.address]))
    ]
    finish(
        Result(
            "show",
            data={"device": dev, "iommu_group": group, "holders": holders},
            messages=list(inv.warnings),
        ),
        _show_view,
    )


def _groups_view(data: list[dict[str, Any]]) -> list[Block]:
    rows: list[list[Any]] = []
    sections: set[int] = set()
    for g in data:
        for i, m in enumerate(g["devices"] or [{}]):
            rows.append(
                [
                    g["group"] if i == 0 else "",
                    g["verdict"] if i == 0 else "",
                    m.get("address"),
                    m.get("role"),
                    m.get("driver"),
                    _ids(m) if m else None,
                    m.get("name"),
                ]
            )
        sections.add(len(rows) - 1)
    return [Table(("GROUP", "VERDICT", "ADDRESS", "ROLE", "DRIVER", "ID", "NAME"), rows, sections=sections)]


def groups_cmd(fmt: FormatOption = None) -> None:
    """Every IOMMU group with its members, their drivers, and whether it can be assigned to a VM."""
    context.state(fmt)
    from ..result import Result

    inv = _inventory(detail=False)
    result = Result("groups", data=list(inv.groups.values()), messages=list(inv.warnings))
    if not inv.groups and not _no_pci_bus(result):
        result.messages.append("no IOMMU groups: the IOMMU is off or unsupported (see 'pcipass check-iommu')")
    finish(result, _groups_view)


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
    app.command("show")(show_cmd)
    app.command("groups")(groups_cmd)
