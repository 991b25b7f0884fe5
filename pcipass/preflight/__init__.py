"""``pcipass check-iommu``: a read-only preflight of everything that stands between a host and PCI passthrough.

Every check has a stable ID, a verdict (pass, warn, fail, skip), what it saw, and a remedy fitted to this host
(boot loader, distribution). It prints remedies; it never edits a boot or module configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..host import Host
from . import files
from .facts import Facts
from .model import Check, Report, Summary, Verdict

__all__ = ["Check", "Report", "Summary", "Verdict", "run"]


def _guarded(fx: Facts, check_id: str, fn) -> Check:
    try:
        return fn(fx)
    except files.Unreadable as exc:
        return Check(check_id, Verdict.SKIP, f"cannot read {fx.shown(exc.path)}: {exc.reason}")


def run(host: Host, devices: Sequence[str] = ()) -> Report:
    """Run every host check, then the device checks for each address (canonical ``dddd:bb:dd.f``)."""
    from .host_checks import host_checks

    fx = Facts(host)
    checks = [_guarded(fx, cid, fn) for cid, fn in host_checks(fx)]
    if devices:
        from .device_checks import DeviceChecks

        dc = DeviceChecks(fx, devices)
        for address in devices:
            try:
                checks.extend(dc.run(address))
            except files.Unreadable as exc:
                checks.append(
                    Check(
                        "device.present",
                        Verdict.SKIP,
                        f"cannot read {fx.shown(exc.path)}: {exc.reason}",
                        device=address,
                    )
                )
    return Report(tuple(checks), _summary(fx, checks))


def _summary(fx: Facts, checks: list[Check]) -> Summary:
    counts = {v.value: sum(1 for c in checks if c.verdict is v) for v in Verdict}
    if counts["fail"]:
        verdict = Verdict.FAIL
    elif counts["warn"]:
        verdict = Verdict.WARN
    else:
        verdict = Verdict.PASS
    try:
        vendor = fx.vendor[0]
    except files.Unreadable:
        vendor = None
    return Summary(
        verdict=verdict,
        counts=counts,
        failed=tuple(c.key for c in checks if c.verdict is Verdict.FAIL),
        warned=tuple(c.key for c in checks if c.verdict is Verdict.WARN),
        skipped=tuple(c.key for c in checks if c.verdict is Verdict.SKIP),
        iommu_vendor=vendor,
        boot_loader=fx.bootloader.description,
        cmdline_remedy=fx.combined_cmdline_remedy(),
    )
