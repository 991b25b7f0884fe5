"""Passthrough that survives reboot: ``persist``, ``unpersist``, ``apply``, ``verify``."""

from typing import Annotated, Any

import typer

from . import context
from .bind_cmds import AddressesArg, TimeoutOption, on_lock_wait
from .context import ConfigOption, FormatOption, finish
from .render import Block, Table

DriverOption = Annotated[
    str,
    typer.Option(
        "--driver",
        metavar="vfio-pci|auto|NAME|host",
        help="What the entry binds: vfio-pci, auto (the vfio variant driver for the device, else vfio-pci), a vfio "
        "variant driver's name, pci-stub, or host (explicitly back on its host driver).",
    ),
]
GroupOption = Annotated[
    bool, typer.Option("--group", help="Move every endpoint of the device's IOMMU group with it (as enable --group).")
]


def config_file(given: str | None):
    """(host, the desired-state file, its name for messages) of this invocation."""
    from ..config import config_path

    host = context.CURRENT.host()
    if host.archive is not None:
        from ..errors import UsageError

        raise UsageError("--root is a snapshot archive: there is no desired-state file to edit in it")
    return host, *config_path(host, given)


def _fingerprint_text(f: dict[str, Any] | None) -> str | None:
    if not f:
        return None
    text = f"{f['vendor']}:{f['device']}"
    if f.get("class_id"):
        text += f" class {f['class_id']}"
    if f.get("path"):
        text += f" at {f['path']}"
    if f.get("physical_slot"):
        text += f" slot {f['physical_slot']}"
    return text


def persist_view(data: dict[str, Any]) -> list[Block]:
    rows = [
        [e["address"], e["action"], e["driver"], e["group"], _fingerprint_text(e["fingerprint"])]
        for e in data["entries"]
    ]
    return [Table(("ADDRESS", "ENTRY", "DRIVER", "GROUP", "FINGERPRINT"), rows)]


def finish_persist(report, messages: list[str] | None = None) -> None:
    from ..result import Result

    notes = list(messages or [])
    if report.dry_run:
        notes.append(f"dry run: {report.config} not written")
    elif report.changed:
        notes.append(f"wrote {report.config}")
    finish(Result(context.CURRENT.command, data=report, messages=notes, top={"changed": report.changed}), persist_view)


def persist_cmd(
    addresses: AddressesArg,
    group: GroupOption = False,
    driver: DriverOption = "vfio-pci",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what the file would hold; write nothing.")] = False,
    config: ConfigOption = None,
    fmt: FormatOption = None,
) -> None:
    """Declare devices in the desired-state file, with the fingerprint read from the host now.

    Nothing is bound: 'pcipass apply' does that (at every boot after 'pcipass boot install').

    'pcipass enable --persist' binds and records in one step."""
    context.state(fmt)
    from ..persistence.persist import Persister

    host, path, shown = config_file(config)
    p = Persister(host, path, shown)
    finish_persist(p.report(p.add(addresses, driver=driver, group=group), dry_run=dry_run))


def unpersist_cmd(
    addresses: AddressesArg,
    config: ConfigOption = None,
    fmt: FormatOption = None,
) -> None:
    """Remove devices' entries from the desired-state file (their binding now is left as it is)."""
    context.state(fmt)
    from ..persistence.persist import Persister

    host, path, shown = config_file(config)
    p = Persister(host, path, shown)
    finish_persist(p.report(p.remove(addresses)))


def _apply_view(data: dict[str, Any]) -> list[Block]:
    rows = []
    for e in data["entries"]:
        drv = e["driver_before"] or "-"
        if e["driver_after"] != e["driver_before"]:
            drv += f" -> {e['driver_after'] or '-'}"
        declared = e["driver"] + (" (group)" if e["group"] else "")
        rows.append([e["address"], declared, e["outcome"], drv, e["peers"], "; ".join(e["reasons"]) or None])
    if not rows:
        return [f"{data['config']} declares no devices, sriov or mdev entries."]
    title = "Check (nothing was written)" if data["check"] else None
    return [
        Table(("ADDRESS", "DECLARED", "OUTCOME", "DRIVER", "GROUP PEERS", "REASON"), rows, title=title),
        f"changed: {'yes' if data['changed'] else 'no'}",
    ]


def apply_cmd(
    check: Annotated[
        bool, typer.Option("--check", help="Say what would change and write nothing (Ansible's check mode).")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Entries whose device no longer matches its fingerprint "
            "are still never bound, but do not fail the run.",
        ),
    ] = False,
    config: ConfigOption = None,
    timeout: TimeoutOption = 10.0,
    boot: Annotated[
        bool,
        typer.Option(
            "--boot", help="Record how the run ended, for 'pcipass boot status' (what pcipass-apply.service runs)."
        ),
    ] = False,
    fmt: FormatOption = None,
) -> None:
    """Converge the host to the desired-state file: check each entry's fingerprint, then bind through enable's engine.

    The sriov section's VF counts are set first, the mdev section's instances created after the bindings.

    Per entry: changed, unchanged, refused or failed, with the reason; JSON carries a top-level "changed".

    Exit 0 when converged, 3 partly, 5 refused, 1 failed."""
    context.state(fmt)
    from .. import engine
    from ..config import load
    from ..errors import PcipassError
    from ..persistence.apply import apply
    from ..result import Result

    host, path, shown = config_file(config)
    try:
        report = apply(
            host,
            load(path, shown, keep=not check, host=host),
            check=check,
            force=force,
            timeout=timeout,
            lock_wait=engine.DEFAULT_LOCK_WAIT,
            on_lock_wait=on_lock_wait,
        )
    except PcipassError as err:
        if boot:
            _record(host, {"exit_code": int(err.exit_code), "changed": False, "entries": [], "error": err.message})
        raise
    if boot:
        _record(
            host,
            {
                "exit_code": int(report.exit_code),
                "changed": report.changed,
                "entries": [
                    {"section": e.section, "address": e.address, "outcome": e.outcome.value, "reasons": list(e.reasons)}
                    for e in report.entries
                ],
            },
        )
    data = {"config": report.config, "check": report.check, "changed": report.changed, "entries": report.entries}
    finish(
        Result(
            "apply",
            data=data,
            errors=list(report.errors),
            exit_code=report.exit_code,
            messages=list(report.messages),
            top={"changed": report.changed},
        ),
        _apply_view,
    )


def _record(host, outcome: dict[str, Any]) -> None:
    from ..engine.state import now_utc
    from ..persistence import boot

    boot.record(host, {"finished": now_utc(), **outcome})


def _verify_view(data: list[dict[str, Any]]) -> list[Block]:
    if not data:
        return ["The desired-state file declares no devices, sriov or mdev entries."]
    rows = [
        [v["address"], v["drift"], v["driver"], v["declared"], v["moved_to"], "; ".join(v["reasons"]) or None]
        for v in data
    ]
    return [Table(("ADDRESS", "VERDICT", "DRIVER NOW", "DECLARED", "MATCH ELSEWHERE", "WHAT CHANGED"), rows)]


def verify_cmd(
    config: ConfigOption = None,
    fmt: FormatOption = None,
) -> None:
    """Compare every entry's fingerprint with the hardware; say what changed. Exit 0 all match, 1 any drift.

    The sriov and mdev sections too: a VF count that differs, an mdev instance that is missing.

    Drift: the device is missing, a different card is at the address, or the same card is at another address.

    Also: the IOMMU group's members changed, or driverctl also manages the device."""
    context.state(fmt)
    from ..config import load
    from ..errors import ExitCode
    from ..persistence.apply import verify
    from ..persistence.drift import Drift
    from ..result import Result

    host, path, shown = config_file(config)
    results = verify(host, load(path, shown))
    drifted = [r for r in results if r.drift is not Drift.MATCH]
    finish(
        Result(
            "verify",
            data=list(results),
            exit_code=ExitCode.FAILED if drifted else ExitCode.OK,
            top={"drift": bool(drifted)},
        ),
        _verify_view,
    )


def register(app: typer.Typer) -> None:
    app.command("persist")(persist_cmd)
    app.command("unpersist")(unpersist_cmd)
    app.command("apply")(apply_cmd)
    app.command("verify")(verify_cmd)
