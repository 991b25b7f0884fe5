"""The preflight's data: one :class:`Check` per finding, and the :class:`Report` with its summary."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(str, Enum):
    PASS = "pass"
    WARN = "warn"  #: works, but something is unsafe, slow or surprising
    FAIL = "fail"  #: stands between this host (or device) and passthrough
    SKIP = "skip"  #: could not be checked here; ``detail`` says why


@dataclass(frozen=True)
class Check:
    """One preflight check: its verdict, what was seen, and what to do about it."""

    id: str  #: stable identifier, e.g. ``iommu.active`` (documented in docs/check-iommu.md)
    verdict: Verdict
    detail: str  #: what was seen
    remedy: str | None = None  #: what to do about it, fitted to this host
    device: str | None = None  #: the PCI address, for ``device.*`` checks

    @property
    def key(self) -> str:
        """``id``, or ``id@address`` for a device check: unique within a report."""
        return f"{self.id}@{self.device}" if self.device else self.id


@dataclass(frozen=True)
class Summary:
    """The preflight's overall verdict and counts."""

    verdict: Verdict  #: fail if any check failed, else warn if any warned, else pass
    counts: dict[str, int]  #: checks per verdict (pass, warn, fail, skip)
    failed: tuple[str, ...]  #: keys of the failed checks
    warned: tuple[str, ...]
    skipped: tuple[str, ...]
    iommu_vendor: str | None  #: intel (VT-d), amd (AMD-Vi), arm (Arm SMMU), or None when unknown
    boot_loader: str  #: the detected boot loader
    #: Every kernel command-line change the checks ask for, as one edit (None when none is needed).
    cmdline_remedy: str | None


@dataclass(frozen=True)
class Report:
    """Every preflight check and their summary."""

    checks: tuple[Check, ...]
    summary: Summary

    @property
    def failed(self) -> bool:
        return self.summary.verdict is Verdict.FAIL
