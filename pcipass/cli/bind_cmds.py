"""Binding commands: ``enable``, ``disable``, ``status``."""

from typing import Annotated, Any

import typer

from . import context
from .context import ConfigOption, FormatOption, finish
from .render import Block, Table, warn

AddressesArg = Annotated[list[str], typer.Argument(metavar="ADDR...", help="PCI addresses, DDDD:BB:DD.F or BB:DD.F.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the plan and write nothing.")]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=0.1,
        metavar="S",
        help="Abandon a bind/unbind write, or a wait for the kernel, after S seconds.",
    ),
]


def devices_table(data: dict[str, Any]) -> Table:
    rows = []
    for d in data["devices"]:
        drv = d["driver_before"] or "-"
        if d["driver_after"] != d["driver_before"]:
            drv += f" -> {d['driver_after'] or '-'}"
        note = list(d["reasons"])
        if d["rolled_back"] is True:
            note.insert(0, "rolled back")
        elif d["rolled_back"] is False:
            note.insert(0, "NOT fully rolled back")
        if not d["requested"]:
            note.insert(0, "group peer")
        rows.append([d["address"], d["group"], d["outcome"], drv, d["target"], "; ".join(note) or None])
    return Table(("ADDRESS", "GROUP", "OUTCOME", "DRIVER", "TARGET", "NOTE"), rows)


def steps_table(steps: list[dict[str, Any]], title: str, status: bool) -> Table:
    cols = ["#", "DEVICE", "STEP", "PATH", "VALUE", "CONDITION"] + (["STATUS"] if status else [])
    rows = []
    for i, s in enumerate(steps, 1):
        row = [
            i,
            s["address"] or (f"group {s['group']}" if s["group"] is not None else "host"),
            s["op"],
            s["path"],
            s["value"],
            s["condition"],
        ]
        if status:
            row.append(s["status"] + (f" ({s['detail']})" if s["detail"] else ""))
        rows.append(row)
    return Table(cols, rows, title=title)


def _bind_view(data: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = [devices_table(data)]
    if data["dry_run"]:
        if data["steps"]:
            blocks.append(steps_table(data["steps"], "Plan (dry run: nothing was written)", status=False))
        else:
            blocks.append("Plan: nothing to do.")
    elif data["rollback"]:
        blocks.append(steps_table(data["steps"], "Steps", status=True))
        blocks.append(steps_table(data["rollback"], "Rollback (in reverse order)", status=True))
    return blocks


def _finish_report(report, persisted=None) -> None:
    from ..result import Result

    data, messages = report.data(), list(report.messages)
    if persisted is not None:
        data["persist"] = persisted
        done = [f"{e.address} {e.action}" for e in persisted.entries if e.action not in ("unchanged", "absent")]
        if done:
            verb = "would be" if persisted.dry_run else "is"
            messages.append(f"{persisted.config} {verb} edited: {', '.join(done)}")
    finish(
        Result(report.action, data=data, errors=list(report.errors), exit_code=report.exit_code, messages=messages),
        _bind_view,
    )


PersistOption = Annotated[
    bool,
    typer.Option(
        "--persist",
        help="Also record the change in the desired-state file "
        "(as persist/unpersist), for the devices it succeeded for.",
    ),
]


def _persister(config: str | None):
    from ..persistence.persist import Persister
    from .persist_cmds import config_file

    return lambda: Persister(*config_file(config))


def _succeeded(report) -> list[str]:
    return [d.address for d in report.devices if d.requested and d.outcome.value in ("done", "unchanged", "planned")]


def on_lock_wait(message: str) -> None:
    warn(message)


def enable_cmd(
    addresses: AddressesArg,
    group: Annotated[
        bool,
        typer.Option(
            "--group", help="Move every endpoint of each device's IOMMU group (bridges stay on their driver)."
        ),
    ] = False,
    driver: Annotated[
        str,
        typer.Option(
            "--driver",
            metavar="vfio-pci|auto|NAME",
            help="Driver to bind: vfio-pci, auto (the vfio variant driver matching "
            "the device in modules.alias, else vfio-pci), a vfio variant driver's "
            "name, or pci-stub.",
        ),
    ] = "vfio-pci",
    dry_run: DryRunOption = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Proceed although the device (or a group peer) is in "
            "use by the host. Overrides the in-use guards only.",
        ),
    ] = False,
    timeout: TimeoutOption = 10.0,
    persist: PersistOption = False,
    config: ConfigOption = None,
    fmt: FormatOption = None,
) -> None:
    """Bind devices to vfio-pci, safely: planned, guarded, verified by the kernel, rolled back on failure."""
    context.state(fmt)
    from .. import engine

    if persist:  # the entries are checked before anything is bound: a refusal leaves devices and file as they were
        new = _persister(config)
        new().add(addresses, driver=driver, group=group)
    report = engine.enable(
        context.CURRENT.host(),
        addresses,
        driver=driver,
        move_group=group,
        force=force,
        dry_run=dry_run,
        timeout=timeout,
        lock_wait=engine.DEFAULT_LOCK_WAIT,
        on_lock_wait=on_lock_wait,
    )
    persisted = None
    if persist:
        p = new()
        ok = _succeeded(report)
        persisted = p.report(p.add(ok, driver=driver, group=group) if ok else [], dry_run=dry_run)
    _finish_report(report, persisted)


def disable_cmd(
    addresses: AddressesArg,
    dry_run: DryRunOption = False,
    timeout: TimeoutOption = 10.0,
    persist: PersistOption = False,
    config: ConfigOption = None,
    fmt: FormatOption = None,
) -> None:
    """Return devices to their host driver (the one recorded by enable, else the kernel's choice)."""
    context.state(fmt)
    from .. import engine

    if persist:
        new = _persister(config)
        new()  # the file must be valid to be edited: checked before anything is unbound
    report = engine.disable(
        context.CURRENT.host(),
        addresses,
        dry_run=dry_run,
        timeout=timeout,
        lock_wait=engine.DEFAULT_LOCK_WAIT,
        on_lock_wait=on_lock_wait,
    )
    persisted = None
    if persist:
        p = new()
        persisted = p.report(p.remove(_succeeded(report)), dry_run=dry_run)
    _finish_report(report, persisted)


def _viable(d: dict[str, Any]) -> str | None:
    if d["vfio_viable"] is None:
        return d["vfio_detail"]
    said = f"{'viable' if d['vfio_viable'] else 'NOT viable'} ({d['viable_from']})"
    return f"{said}: {d['vfio_detail']}" if d["vfio_detail"] else said


def _status_view(data: list[dict[str, Any]]) -> list[Block]:
    rows = []
    for d in data:
        phase = d["phase"]
        if d["interrupted"]:
            phase = f"{phase} (INTERRUPTED)"
        recorded = d["recorded_driver"]
        if d["recorded_known"] is False or d["phase"] == "unknown":
            recorded = "unknown"
        elif d["recorded_known"] and recorded is None:
            recorded = "none"
        at_boot = f"{d['boot_driver']} ({d['boot_by']})" if d["boot_driver"] else None
        if d["boot_refused"]:
            at_boot = f"refused ({d['boot_by']})"
        rows.append(
            [
                d["address"],
                d["group"],
                d["driver"],
                d["driver_override"],
                recorded,
                phase,
                d["group_verdict"],
                _viable(d),
                at_boot,
            ]
        )
    if not rows:
        return [
            "No device is on a vfio driver, has a driver_override, is bound to one at boot, or is recorded by pcipass."
        ]
    return [
        Table(
            ("ADDRESS", "GROUP", "DRIVER", "OVERRIDE", "RECORDED DRIVER", "PHASE", "VERDICT", "VFIO GROUP", "AT BOOT"),
            rows,
        )
    ]


def status_cmd(
    addresses: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ADDR...",
            show_default=False,
            help="Devices to show (default: every device pcipass or vfio holds, now or at boot).",
        ),
    ] = None,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="Ask the kernel whether each VFIO group is viable (VFIO_GROUP_GET_STATUS): opens /dev/vfio/N of "
            "groups no process holds, for an instant.",
        ),
    ] = False,
    fmt: FormatOption = None,
) -> None:
    """Current driver, override, the driver pcipass recorded, VFIO group viability, and boot binding.

    Passive: reads sysfs, /proc and pcipass's state; opens nothing under /dev/vfio (VFIO allows one opener).

    Viability from sysfs, by the kernel's rule: every endpoint on vfio-pci, a vfio variant, pci-stub or none.

    A group a process holds is never opened: the process is named. --probe asks the kernel instead.

    Boot binding: a saved driverctl override, vfio-pci's ids=, or none (a runtime vfio binding ends with the boot)."""
    context.state(fmt)
    from .. import engine
    from ..result import Result, jsonable

    report = engine.status(context.CURRENT.host(), addresses or None, probe=probe)
    finish(
        Result(
            "status", data=jsonable(list(report.devices)), errors=list(report.errors), messages=list(report.messages)
        ),
        _status_view,
    )


def register(app: typer.Typer) -> None:
    app.command("enable")(enable_cmd)
    app.command("disable")(disable_cmd)
    app.command("status")(status_cmd)
