"""The plan: every change ``enable``/``disable`` makes, computed before anything is written.

A plan is data (immutable tuples): ``--dry-run`` prints it, the executor runs it, tests compare it with golden
files. Each write carries the steps that undo it; a step may be conditional on the device's driver at the
moment it runs (``when``), which is how "bind the recorded driver if the kernel picked another" and the
rollback of a half-done step are expressed without guessing at plan time.

The classes are ``NamedTuple``s rather than frozen dataclasses, a trick kept because it pays natively too:
every ``enable`` and ``disable`` process imports this module, and a frozen dataclass compiles its generated
methods at import, so the dataclass version of this module costs about twice the import time, and a plan
takes over twice as long to build (bench/plan_classes.py measures both, bench/PLAN_CLASSES.md has the
figures); the emulated guest of the real-kernel tier stretches the difference many times over
(bench/profile_binding.py). A NamedTuple is just as immutable; what it adds (it is a tuple: indexable,
iterable, equal to a plain tuple of its values) no code here relies on.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple


class Op(str, Enum):
    LOAD_MODULE = "load-module"  #: modprobe a driver's module (value: the module)
    WRITE = "write"  #: write ``value`` to the attribute ``path``
    WAIT = "wait"  #: wait until the device is bound to ``value`` (uevents, else polling)
    VERIFY_GROUP = "verify-group"  #: /dev/vfio/<group> exists and the kernel says the group is viable
    VERIFY_RELEASED = "verify-released"  #: the device is no longer on a vfio driver
    VERIFY_VFS = "verify-vfs"  #: the SR-IOV PF ``address`` has ``value`` VFs, each a device in sysfs


class When(str, Enum):
    """Run-time condition of a step, on the device's driver when the step runs; false → the step is skipped."""

    ALWAYS = "always"
    BOUND_TO = "bound-to"  #: bound to ``when_driver``
    BOUND_ELSEWHERE = "bound-elsewhere"  #: bound to a driver other than ``when_driver`` (any, when None)
    UNBOUND = "unbound"  #: no driver bound


class Step(NamedTuple):
    op: Op
    address: str | None  #: the device the step concerns (None: host-wide, e.g. a module load)
    path: str | None  #: the attribute written, as seen on the host (its sys/bus/pci/... path)
    value: str | None
    note: str  #: why, in words
    group: int | None = None
    when: When = When.ALWAYS
    when_driver: str | None = None
    undo: tuple[Step, ...] = ()

    @property
    def condition(self) -> str | None:
        if self.when is When.ALWAYS:
            return None
        if self.when is When.BOUND_TO:
            return f"if bound to {self.when_driver}"
        if self.when is When.UNBOUND:
            return "if no driver is bound"
        if self.when_driver is None:
            return "if a driver is bound"
        return f"if bound to another driver than {self.when_driver}"

    def to_dict(self) -> dict[str, Any]:
        """The step as shown to users and golden files (the undo steps are the executor's business)."""
        return {
            "op": self.op.value,
            "address": self.address,
            "group": self.group,
            "path": self.path,
            "value": self.value,
            "condition": self.condition,
            "note": self.note,
        }


class Move(NamedTuple):
    """One device a plan changes."""

    address: str
    group: int | None
    requested: bool  #: named by the user (False: a group peer moved by ``--group``)
    driver_before: str | None
    override_before: str | None
    original_driver: str | None  #: what the device was on before pcipass first touched it
    original_override: str | None
    target: str | None  #: the driver the device ends on (None: whatever the kernel picks)


class GroupPlan(NamedTuple):
    """The all-or-nothing unit: the moves of one IOMMU group and their steps."""

    group: int | None
    moves: tuple[Move, ...]
    steps: tuple[Step, ...]
    modules: tuple[str, ...] = ()  #: modules this group needs (loaded by the plan's module steps)


class Plan(NamedTuple):
    action: str  #: enable | disable | sriov
    modules: tuple[Step, ...] = ()  #: module loads, run before any group
    groups: tuple[GroupPlan, ...] = ()

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.modules + tuple(s for g in self.groups for s in g.steps)
