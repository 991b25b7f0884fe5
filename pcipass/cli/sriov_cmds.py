"""``pcipass sriov``: an SR-IOV PF's VFs, and setting their count."""

from typing import Annotated, Any

import typer

from ..errors import UsageError
from . import context
from .bind_cmds import DryRunOption, TimeoutOption, devices_table, on_lock_wait, steps_table
from .context import FormatOption, finish
from .render import Block, KeyValues, Table


def _yes_no(v: bool | None) -> str | None:
    return None if v is None else ("1 (drivers probe new VFs)" if v else "0 (new VFs get no host driver)")


def _bit(v: bool | None) -> str | None:
    return None if v is None else str(int(v))


def _show_view(data: dict[str, Any]) -> list[Block]:
    pairs = [
        ("pf", data["address"]),
        ("ids", f"{data['vendor_id']}:{data['device_id']}" if data["vendor_id"] else None),
        ("driver", data["driver"]),
        ("vfs", f"{data['sriov_numvfs']} of {data['sriov_totalvfs']}"),
        ("drivers autoprobe", _yes_no(data["sriov_drivers_autoprobe"])),
        ("vf device id", data["sriov_vf_device"]),
        ("pf guard", data["pf_guard"] or "none: no VF is on a host driver"),
    ]
    blocks: list[Block] = [KeyValues(pairs)]
    if data["vfs"]:
        rows = [
            [
                f"virtfn{v['virtfn']}",
                v["address"],
                v["driver"],
                v["driver_override"],
                v["iommu_group"],
                "; ".join(v["vfio_users"] + v["host_use"]) or None,
            ]
            for v in data["vfs"]
        ]
        blocks.append(Table(("VF", "ADDRESS", "DRIVER", "OVERRIDE", "GROUP", "USED BY"), rows))
    return blocks


def _change_view(data: dict[str, Any]) -> list[Block]:
    def change(before: Any, after: Any) -> str:
        return f"{before}" if before == after else f"{before} -> {after}"

    pairs = [
        ("pf", data["address"]),
        ("outcome", data["outcome"]),
        ("vfs", change(data["numvfs_before"], data["numvfs_after"])),
        ("drivers autoprobe", change(_bit(data["autoprobe_before"]), _bit(data["autoprobe_after"]))),
        ("vf addresses", data["vfs"]),
    ]
    blocks: list[Block] = [KeyValues(pairs)]
    if data["dry_run"] and data["steps"]:
        blocks.append(steps_table(data["steps"], "Plan (dry run: nothing was written)", status=False))
    elif data["steps"] and (data["rollback"] or data["outcome"] == "failed"):
        blocks.append(steps_table(data["steps"], "Steps", status=True))
        if data["rollback"]:
            blocks.append(steps_table(data["rollback"], "Rollback (in reverse order)", status=True))
    binding = data["binding"]
    if binding:
        blocks.append(devices_table(binding))
        if binding["dry_run"] and binding["steps"]:
            blocks.append(steps_table(binding["steps"], "Binding plan (dry run)", status=False))
    return blocks


def sriov_cmd(
    address: Annotated[str, typer.Argument(metavar="ADDR", help="The SR-IOV physical function (PF).")],
    numvfs: Annotated[
        int | None,
        typer.Option(
            "--numvfs",
            min=0,
            metavar="N",
            help="Give the PF N VFs (0 removes them). A change from one non-zero count to another goes through 0.",
        ),
    ] = None,
    no_autoprobe: Annotated[
        bool, typer.Option("--no-autoprobe", help="Set sriov_drivers_autoprobe to 0 first: new VFs get no host driver.")
    ] = False,
    vfio: Annotated[
        bool, typer.Option("--vfio", help="Bind the PF's VFs to vfio-pci afterwards (as enable does).")
    ] = False,
    dry_run: DryRunOption = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Remove VFs although the host uses them (an interface "
            "with an address, a mounted disk). Never a VF whose VFIO group is "
            "open.",
        ),
    ] = False,
    timeout: TimeoutOption = 10.0,
    fmt: FormatOption = None,
) -> None:
    """Show an SR-IOV PF and its VFs, or set its VF count: planned, guarded, rolled back on failure.

    Without --numvfs: the VF counts, sriov_drivers_autoprobe, each VF's driver, group and users, the PF guard.

    A change that removes VFs is refused (exit 5) while one is held: its VFIO group open, or used by the host."""
    context.state(fmt)
    from ..result import Result

    host = context.CURRENT.host()
    if numvfs is None:
        if no_autoprobe or vfio or dry_run or force:
            raise UsageError("--no-autoprobe, --vfio, --dry-run and --force go with --numvfs")
        from ..engine.sriov import show

        finish(Result("sriov", data=show(host, address)), _show_view)
        return
    from .. import engine

    report = engine.set_numvfs(
        host,
        address,
        numvfs,
        autoprobe=False if no_autoprobe else None,
        vfio=vfio,
        force=force,
        dry_run=dry_run,
        timeout=timeout,
        lock_wait=engine.DEFAULT_LOCK_WAIT,
        on_lock_wait=on_lock_wait,
    )
    finish(
        Result(
            "sriov",
            data=report.data(),
            errors=list(report.errors),
            exit_code=report.exit_code,
            messages=list(report.messages),
        ),
        _change_view,
    )


def register(app: typer.Typer) -> None:
    app.command("sriov")(sriov_cmd)
