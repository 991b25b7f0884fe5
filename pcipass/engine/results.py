"""What ``enable`` and ``disable`` report: each device's outcome (``DeviceResult``), what planning hands the run
(``Planned``), and the exit code the outcomes add up to (``exit_code``)."""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple

from ..address import PciAddress
from ..errors import ExitCode, PcipassError, Refused
from ..model import PciDevice
from .guards import Refusal, RefusalKind
from .plan import Plan


class Outcome(str, Enum):
    """What happened to a device."""

    DONE = "done"
    UNCHANGED = "unchanged"
    PLANNED = "planned"  #: --dry-run: would be done
    REFUSED = "refused"
    FAILED = "failed"


# The report classes are NamedTuples, not dataclasses: see plan.py (import cost, bench/PLAN_CLASSES.md).
class DeviceResult(NamedTuple):
    """One device's outcome."""

    address: str
    group: int | None
    requested: bool  #: named by the user (False: a group peer moved by --group)
    outcome: Outcome
    driver_before: str | None
    driver_after: str | None
    target: str | None
    rolled_back: bool | None = None  #: after a failure: every change undone (None: nothing was written)
    reasons: tuple[str, ...] = ()
    error: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return self._asdict() | {"outcome": self.outcome.value, "reasons": list(self.reasons)}


def canonical(addresses: list[str]) -> list[str]:
    return list(dict.fromkeys(str(PciAddress.parse(a)) for a in addresses))


def exit_code(results: list[DeviceResult]) -> ExitCode:
    good = [r for r in results if r.outcome in (Outcome.DONE, Outcome.UNCHANGED, Outcome.PLANNED)]
    bad = [r for r in results if r.outcome in (Outcome.REFUSED, Outcome.FAILED)]
    if not bad:
        return ExitCode.OK
    if good:
        return ExitCode.PARTIAL
    if any(r.outcome is Outcome.FAILED for r in bad):
        return ExitCode.FAILED
    return ExitCode.REFUSED


class Planned(NamedTuple):
    """What planning hands the run: the plan, the outcomes already known (refused, failed, unchanged), and
    what to say."""

    plan: Plan
    results: dict[str, DeviceResult]
    errors: list[PcipassError]
    messages: list[str]
    drop_records: list[str]  #: stale records found by planning (device already back on its driver)


def result_for(
    dev: PciDevice,
    outcome: Outcome,
    *,
    requested: bool = True,
    target: str | None = None,
    reasons: tuple[str, ...] = (),
    error: PcipassError | None = None,
) -> DeviceResult:
    """The outcome of a device nothing was written to (its driver is what it was)."""
    return DeviceResult(
        address=dev.address,
        group=dev.iommu_group,
        requested=requested,
        outcome=outcome,
        driver_before=dev.driver,
        driver_after=dev.driver,
        target=target,
        reasons=reasons,
        error=error.to_dict() if error else None,
    )


def refuse(
    results: dict[str, DeviceResult], errors: list[PcipassError], devs: list[PciDevice], refusals: list[Refusal]
) -> None:
    """Record ``devs`` as refused for ``refusals``, with one error saying why and what to do."""
    reasons = tuple(r.message for r in refusals)
    for dev in devs:
        results[dev.address] = result_for(dev, Outcome.REFUSED, reasons=reasons)
    overridable = all(r.overridable for r in refusals)
    remedy = None
    if overridable:
        stop = list(dict.fromkeys(r.remedy for r in refusals if r.remedy))
        first = f"stop what holds it ({'; '.join(stop)})" if stop else "stop using it on the host"
        remedy = f"{first} first, or pass --force if you are sure"
    elif any(r.kind is RefusalKind.GROUP_NOT_VIABLE for r in refusals):
        remedy = "name every endpoint of the group, or pass --group to move them all"
    errors.append(Refused("; ".join(reasons), address=devs[0].address if len(devs) == 1 else None, remedy=remedy))
