"""``check-iommu``: the preflight."""

from typing import Annotated, Any

import typer

from . import context
from .context import FormatOption, finish
from .render import Block, Table


def _view(data: dict[str, Any]) -> list[Block]:
    rows = []
    for c in data["checks"]:
        check = f"{c['id']} {c['device']}" if c.get("device") else c["id"]
        rows.append([check, c["verdict"], c["detail"], c["remedy"]])
    s = data["summary"]
    counts = s["counts"]
    lines = [
        f"{s['verdict']}: {counts['pass']} passed, {counts['warn']} warned, {counts['fail']} failed, "
        f"{counts['skip']} skipped",
        f"boot loader: {s['boot_loader']}",
    ]
    if s["cmdline_remedy"]:
        lines.append(f"all kernel command-line changes in one edit: {s['cmdline_remedy']}")
    return [Table(("CHECK", "VERDICT", "DETAIL", "REMEDY"), rows), "\n".join(lines)]


def check_iommu_cmd(
    device: Annotated[
        list[str] | None,
        typer.Option(
            "--device",
            "-d",
            metavar="ADDR",
            help="Also check this device (endpoint, group, peers, reset, boot VGA, host use). Repeatable.",
        ),
    ] = None,
    fmt: FormatOption = None,
) -> None:
    """Check everything that stands between this host and PCI passthrough; print a fitting remedy for each problem.

    Read-only. Exit 0 when nothing fails (warnings allowed), 1 when a check fails."""
    context.state(fmt)
    from ..address import PciAddress
    from ..errors import ExitCode
    from ..preflight import Verdict, run
    from ..result import Result, jsonable

    addresses = list(dict.fromkeys(str(PciAddress.parse(a)) for a in device or ()))
    report = run(context.CURRENT.host(), addresses)
    result = Result("check-iommu", data=jsonable(report))
    by_reason: dict[str, list[str]] = {}
    for c in report.checks:
        if c.verdict is Verdict.SKIP:
            by_reason.setdefault(c.detail, []).append(c.key)
    if by_reason:
        count = sum(len(keys) for keys in by_reason.values())
        result.messages.append(
            f"skipped {count} check{'s' if count > 1 else ''}: "
            + "; ".join(f"{', '.join(keys)} ({reason})" for reason, keys in by_reason.items())
        )
    if report.failed:
        result.exit_code = ExitCode.FAILED
    finish(result, _view)


def register(app: typer.Typer) -> None:
    app.command("check-iommu")(check_iommu_cmd)
