"""``mdev list``, ``mdev create`` and ``mdev remove``: guards, plan, lock, state, and the report.

A mutating run: preflight (snapshot? root?) → the lock shared with ``enable``/``disable`` → the parent, type
and instance read → guards (no instance left, a UUID in use, a device held open, mdevctl defining the UUID
otherwise) → the plan (the write and its check; ``--dry-run`` stops here) → the record in phase
``creating``/``removing`` → the write (bounded by a timeout: removing a device a process holds blocks in the
kernel until it lets go, drivers/vfio/vfio_main.c vfio_unregister_group_dev) → the check → the record
``created`` or dropped.

The records (``<state_dir>/mdev.json``, on /run like the binding state: the instances vanish at reboot too)
say which instances pcipass made, and each report names the command that undoes it.
"""

from __future__ import annotations

import os
import time
import uuid as uuidlib
from dataclasses import replace
from typing import Any, NamedTuple

from ..engine.guards import not_live_message, preflight
from ..engine.kernel import Kernel, check_timeouts, mutating
from ..engine.state import StateError, now_utc, read_private, save_private_json
from ..engine.vfio import VfioOpeners, group_status
from ..errors import DeviceNotFound, ExitCode, PcipassError, Refused, SysfsError, UsageError, from_oserror
from ..host import Host
from . import mdevctl, read
from .model import MediatedDevice, canonical_uuid, shown

DEFAULT_TIMEOUT = 10.0
DEFAULT_LOCK_WAIT = 30.0
STATE_FILE = "mdev.json"
STATE_VERSION = 1
_POLL = 0.02


class MdevStep(NamedTuple):
    op: str  #: write | verify-present | verify-absent
    path: str  #: as shown on the host
    value: str | None
    note: str

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


class MdevReport(NamedTuple):
    action: str  #: create | remove
    dry_run: bool
    changed: bool
    uuid: str
    parent: str | None
    mdev_type: str | None
    steps: tuple[MdevStep, ...]
    undo: str | None  #: the command that reverses this one
    messages: tuple[str, ...]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK

    def data(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "uuid": self.uuid,
            "parent": self.parent,
            "mdev_type": self.mdev_type,
            "steps": [s.to_dict() for s in self.steps],
            "undo": self.undo,
        }


# --- records -------------------------------------------------------------------------------------------------
class MdevStore:
    """pcipass's records of the instances it created: UUID → parent, type, phase, pid, since."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.path = host.state_dir / STATE_FILE

    def load(self) -> dict[str, dict[str, Any]]:
        import json

        raw = read_private(self.host, self.path)
        if raw is None:
            return {}
        try:
            doc = json.loads(raw.decode("utf-8"))
            if doc.get("version") != STATE_VERSION or not isinstance(doc.get("mdevs"), dict):
                raise ValueError(f"unknown version {doc.get('version')!r}")
            return {u: dict(r) for u, r in doc["mdevs"].items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise StateError(
                f"the state file {self.path} is not pcipass mdev state ({exc})",
                path=str(self.path),
                remedy="inspect it: it lists the mediated devices pcipass created",
            ) from exc

    def save(self, records: dict[str, dict[str, Any]]) -> None:
        save_private_json(self.host, self.path, {"version": STATE_VERSION, "mdevs": records})


def _record(parent: str, mdev_type: str, phase: str) -> dict[str, Any]:
    return {"parent": parent, "mdev_type": mdev_type, "phase": phase, "pid": os.getpid(), "since": now_utc()}


# --- reading -------------------------------------------------------------------------------------------------
def _held_by(host: Host, openers: VfioOpeners, uuid: str, group: int | None) -> tuple[str, ...]:
    held = openers.of_device(group, os.path.realpath(host.mdev_device(uuid)))
    if held or group is None:
        return held
    # Nobody this user can see holds it: the kernel may still refuse a second opener (EBUSY, one open file
    # per group: drivers/vfio/group.c vfio_group_fops_open).
    status = group_status(host, group)
    return ("another process (the group is busy)",) if status.busy else ()


def list_devices(host: Host) -> list[MediatedDevice]:
    """Every mediated device, by UUID, with who holds it and who manages it."""
    records = MdevStore(host).load()
    defined = mdevctl.definitions(host)
    openers = VfioOpeners(host)
    out = []
    for u in sorted(read.device_uuids(host)):
        dev = read.device(host, u, created=records, mdevctl=defined)
        out.append(replace(dev, held_by=_held_by(host, openers, u, dev.iommu_group)))
    return out


# --- the write -----------------------------------------------------------------------------------------------
def _run(host: Host, kernel: Kernel, steps: tuple[MdevStep, ...], timeout: float) -> None:
    for step in steps:
        path = host.actual(step.path)
        if step.op == "write":
            assert step.value is not None
            try:
                kernel.write(path, step.value, address=None, timeout=timeout)
            except OSError as exc:  # a Kernel may surface the raw OSError
                raise from_oserror(
                    exc, action="write", path=step.path, remedy="the parent's driver refused: see dmesg"
                ) from exc
            continue
        want = step.op == "verify-present"
        deadline = time.monotonic() + timeout
        while os.path.exists(path) != want:
            if time.monotonic() >= deadline:
                raise SysfsError(
                    f"{step.path} {'did not appear' if want else 'is still there'} after {timeout:g} s",
                    path=step.path,
                    remedy="see dmesg: the parent's driver did not finish",
                )
            time.sleep(_POLL)


def _mutate(
    host: Host, action: str, what: str, body, *, dry_run: bool, kernel: Kernel | None, lock_wait: float, on_lock_wait
) -> MdevReport:
    preflight(host, action=f"mdev {action}", dry_run=dry_run, iommu=False)
    with mutating(
        host, f"mdev {action} {what}", dry_run=dry_run, kernel=kernel, lock_wait=lock_wait, on_lock_wait=on_lock_wait
    ) as (k, _):
        return body(MdevStore(host), k)


def _not_live(host: Host, kernel: Kernel | None) -> list[str]:
    if host.reaches_kernel or kernel is not None:
        return []
    return [not_live_message(host)]


def create(
    host: Host,
    parent: str,
    type_id: str,
    *,
    uuid: str | None = None,
    dry_run: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    kernel: Kernel | None = None,
    lock_wait: float = DEFAULT_LOCK_WAIT,
    on_lock_wait=None,
) -> MdevReport:
    """Create an instance of ``type_id`` on ``parent`` (UUID ``uuid``, else a random one)."""
    check_timeouts(timeout, lock_wait)
    u = canonical_uuid(uuid) if uuid is not None else str(uuidlib.uuid4())

    def body(store: MdevStore, k: Kernel) -> MdevReport:
        name = read.resolve_parent(host, parent)
        mtype = read.core_type(host, name, type_id)
        if mtype is None:
            known = [t.type_id for t in read.types(host, name)]
            raise UsageError(
                f"{shown(name)} has no mediated-device type {shown(type_id)}",
                remedy="its types: " + (", ".join(shown(t) for t in known) or "none"),
            )
        messages = _not_live(host, kernel) if not dry_run else []
        undo = f"pcipass mdev remove {u}"
        existing = host.mdev_device(u)
        if os.path.lexists(existing):
            dev = read.device(host, u)
            if (dev.parent, dev.mdev_type) == (name, type_id):
                return MdevReport(
                    "create",
                    dry_run,
                    False,
                    u,
                    name,
                    type_id,
                    (),
                    undo,
                    tuple(messages + [f"{u} already exists as {type_id} on {shown(name)}"]),
                )
            raise Refused(
                f"{u} is already a {shown(dev.mdev_type or '?')} device on {shown(dev.parent or '?')}",
                remedy=f"choose another --uuid, or 'pcipass mdev remove {u}' first",
            )
        definition = mdevctl.definitions(host).get(u)
        if definition is not None:
            if (definition.parent, definition.mdev_type) != (name, type_id):
                raise Refused(
                    f"mdevctl defines {u} as {shown(definition.mdev_type or '?')} on "
                    f"{shown(definition.parent)} ({definition.path})",
                    remedy=f"'mdevctl start -u {u}' creates it as mdevctl defines it; or choose another --uuid",
                )
            messages.append(
                f"mdevctl defines {u} this way too ({definition.path}): 'mdevctl start -u {u}' is the "
                "same; 'mdevctl list' shows it running either way"
            )
        if mtype.available_instances == 0:
            made = ", ".join(mtype.devices[:4]) + (", ..." if len(mtype.devices) > 4 else "")
            raise Refused(
                f"no instance of {shown(type_id)} left on {shown(name)}: available_instances is 0 "
                f"({len(mtype.devices)} of this type exist{': ' + made if made else ''})",
                remedy="remove an instance of it (or of another type sharing the parent's resources) first",
            )
        base = host.shown(host.mdev_bus_dir / name / read.TYPES_DIR / type_id / "create")
        steps = (
            MdevStep("write", base, u, f"create {type_id} instance {u}"),
            MdevStep("verify-present", host.shown(host.mdev_device(u)), None, "the device appeared"),
        )
        if mtype.available_instances is None:
            messages.append(f"available_instances of {shown(type_id)} is unreadable: the kernel decides")
        if dry_run:
            return MdevReport("create", True, False, u, name, type_id, steps, undo, tuple(messages))
        records = store.load()
        records[u] = _record(name, type_id, "creating")
        store.save(records)
        try:
            _run(host, k, steps, timeout)
        except PcipassError:
            if not os.path.lexists(existing):
                records.pop(u, None)
                store.save(records)
            raise
        records[u] = _record(name, type_id, "created")
        store.save(records)
        return MdevReport("create", False, True, u, name, type_id, steps, undo, tuple(messages))

    return _mutate(
        host,
        "create",
        f"{parent} {type_id}",
        body,
        dry_run=dry_run,
        kernel=kernel,
        lock_wait=lock_wait,
        on_lock_wait=on_lock_wait,
    )


def remove(
    host: Host,
    uuid: str,
    *,
    dry_run: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    kernel: Kernel | None = None,
    lock_wait: float = DEFAULT_LOCK_WAIT,
    on_lock_wait=None,
) -> MdevReport:
    """Remove the mediated device ``uuid``; refused while a process holds it."""
    check_timeouts(timeout, lock_wait)
    u = canonical_uuid(uuid)

    def body(store: MdevStore, k: Kernel) -> MdevReport:
        records = store.load()
        path = host.mdev_device(u)
        if not os.path.lexists(path):
            rec = records.get(u)
            if rec is None:
                raise DeviceNotFound(f"no mediated device {u}", remedy="'pcipass mdev list' shows them")
            if not dry_run:
                records.pop(u)
                store.save(records)
            return MdevReport(
                "remove",
                dry_run,
                False,
                u,
                rec.get("parent"),
                rec.get("mdev_type"),
                (),
                None,
                (f"{u} is already gone (pcipass had created it)",),
            )
        dev = read.device(host, u)
        held = _held_by(host, VfioOpeners(host), u, dev.iommu_group)
        if held:
            raise Refused(
                f"{u} is held open by {', '.join(held)}: removing it would block until it lets go",
                remedy="stop the VM (or the process) using it first",
            )
        messages = _not_live(host, kernel) if not dry_run else []
        definition = mdevctl.definitions(host).get(u)
        if definition is not None and definition.start == "auto":
            messages.append(
                f"mdevctl defines {u} with start=auto ({definition.path}): it is created again when "
                f"its parent registers (at boot); 'mdevctl undefine -u {u}' removes the definition"
            )
        undo = f"pcipass mdev create {dev.parent} {dev.mdev_type} --uuid {u}" if dev.parent and dev.mdev_type else None
        steps = (
            MdevStep("write", host.shown(path / "remove"), "1", f"remove {u}"),
            MdevStep("verify-absent", host.shown(path), None, "the device is gone"),
        )
        if dry_run:
            return MdevReport("remove", True, False, u, dev.parent, dev.mdev_type, steps, undo, tuple(messages))
        before = records.get(u)
        records[u] = _record(dev.parent or "", dev.mdev_type or "", "removing")
        store.save(records)
        try:
            _run(host, k, steps, timeout)
        except PcipassError:
            if os.path.lexists(path) and before is not None:  # still there: the record it had stands
                records[u] = before
            else:
                records.pop(u)
            store.save(records)
            raise
        records.pop(u, None)
        store.save(records)
        return MdevReport("remove", False, True, u, dev.parent, dev.mdev_type, steps, undo, tuple(messages))

    return _mutate(
        host, "remove", u, body, dry_run=dry_run, kernel=kernel, lock_wait=lock_wait, on_lock_wait=on_lock_wait
    )
