"""Reading mediated-device parents, types and instances from sysfs (tolerant: a missing attribute is None)."""

from __future__ import annotations

import os
import re
from collections.abc import Collection

from ..address import PciAddress
from ..errors import DeviceNotFound
from ..host import Host
from ..sysfs import link_name, list_dir, read_int, read_str
from .model import Interface, MdevType, MediatedDevice, is_uuid, shown

TYPES_DIR = "mdev_supported_types"
# NVIDIA's vGPU interface on SR-IOV GPUs lists one "ID : vGPU Name" line per type a VF can take now, after a
# header line; current_vgpu_type holds the ID it has (0: none). Layout as recorded in harvester/pcidevices
# pkg/util/gpuhelper/testdata (an L40S VF).
NVIDIA_DIR = "nvidia"
_VGPU_LINE = re.compile(r"\s*(\d+)\s*:\s*(.*\S)\s*")


def parent_names(host: Host) -> list[str]:
    return list_dir(host.mdev_bus_dir)


def _parent_driver(host: Host, parent: str) -> str | None:
    return link_name(host.mdev_bus_dir / parent / "driver")


def _pci_ids(host: Host, parent: str) -> tuple[str | None, str | None]:
    """A PCI parent's vendor and class IDs (lower-case hex without ``0x``); (None, None) for another parent."""
    if not os.path.isdir(host.pci_device(parent)):
        return None, None
    out = []
    for attr in ("vendor", "class"):
        text = (read_str(host.pci_device(parent) / attr) or "").strip().lower()
        out.append(text[2:] if text.startswith("0x") and len(text) > 2 else None)
    return out[0], out[1]


def _core_types(host: Host, parent: str) -> list[MdevType]:
    base = host.mdev_bus_dir / parent / TYPES_DIR
    driver = _parent_driver(host, parent)
    vendor, klass = _pci_ids(host, parent)
    out = []
    for tid in list_dir(base):
        d = base / tid
        if not os.path.isdir(d):
            continue
        name = read_str(d / "name")
        desc = read_str(d / "description")
        out.append(
            MdevType(
                parent=parent,
                type_id=tid,
                name=name.strip() if name else None,
                description=" ".join(desc.split()) if desc else None,
                device_api=(read_str(d / "device_api") or "").strip() or None,
                available_instances=read_int(d / "available_instances"),
                devices=tuple(sorted(n.lower() for n in list_dir(d / "devices") if is_uuid(n))),
                parent_driver=driver,
                parent_vendor_id=vendor,
                parent_class_id=klass,
            )
        )
    return out


def _nvidia_types(host: Host, address: str) -> list[MdevType]:
    vf = host.pci_device(address) / NVIDIA_DIR
    text = read_str(vf / "creatable_vgpu_types")
    if text is None:
        return []
    current = read_int(vf / "current_vgpu_type")
    driver = link_name(host.pci_device(address) / "driver")
    vendor, klass = _pci_ids(host, address)
    found: dict[str, str] = {}
    for line in text.splitlines():
        m = _VGPU_LINE.fullmatch(line)
        if m:
            found.setdefault(m[1], m[2])
    if current and str(current) not in found:
        found[str(current)] = ""
    return [
        MdevType(
            parent=address,
            type_id=tid,
            name=name or None,
            description=None,
            device_api="vfio-pci",
            available_instances=0 if current else 1,
            devices=(address,) if current == int(tid) else (),
            interface=Interface.NVIDIA_VGPU,
            parent_driver=driver,
            parent_vendor_id=vendor,
            parent_class_id=klass,
        )
        for tid, name in sorted(found.items(), key=lambda kv: int(kv[0]))
    ]


def _nvidia_vfs(host: Host) -> list[str]:
    """PCI devices with NVIDIA's per-VF vGPU directory."""
    return [
        a
        for a in list_dir(host.pci_devices_dir)
        if os.path.isfile(host.pci_device(a) / NVIDIA_DIR / "creatable_vgpu_types")
    ]


def types(host: Host, parent: str | None = None) -> list[MdevType]:
    """Every type of every parent (or of ``parent``), parents in name order; DeviceNotFound for a parent that
    offers no type."""
    parents = parent_names(host)
    vfs = _nvidia_vfs(host)
    if parent is not None:
        if parent not in parents and parent not in vfs:
            canonical = _canonical_parent(parent, parents + vfs)
            if canonical is None:
                raise DeviceNotFound(
                    f"{shown(parent)} is not a mediated-device parent", remedy=_parents_remedy(parents + vfs)
                )
            parent = canonical
        parents = [p for p in parents if p == parent]
        vfs = [v for v in vfs if v == parent]
    out = [t for p in parents for t in _core_types(host, p)]
    out += [t for v in vfs for t in _nvidia_types(host, v)]
    return sorted(out, key=lambda t: (t.parent, t.interface.value, _type_key(t.type_id)))


def _type_key(tid: str) -> tuple[int, str]:
    return (int(tid), "") if tid.isdigit() else (-1, tid)


def _canonical_parent(name: str, known: Collection[str]) -> str | None:
    """A PCI parent named without its domain (``08:01.7``) or in upper case, as it is listed."""
    try:
        addr = str(PciAddress.parse(name))
    except Exception:  # noqa: BLE001 - not an address: no other spelling to try
        return None
    return addr if addr in known else None


def _parents_remedy(known: list[str]) -> str:
    if not known:
        return (
            "no device registers mediated-device types: load the parent's vendor driver (NVIDIA vGPU manager, "
            "i915 with GVT-g, the sample mtty module) and check /sys/class/mdev_bus"
        )
    return "mediated-device parents here: " + ", ".join(shown(p) for p in known)


def resolve_parent(host: Host, name: str) -> str:
    """The mdev_bus name of parent ``name`` (a PCI address may be given without its domain)."""
    parents = parent_names(host)
    if name in parents:
        return name
    canonical = _canonical_parent(name, parents)
    if canonical is None:
        raise DeviceNotFound(
            f"{shown(name)} is not a mediated-device parent (not in /sys/class/mdev_bus)",
            remedy=_parents_remedy(parents),
        )
    return canonical


def core_type(host: Host, parent: str, type_id: str) -> MdevType | None:
    return next((t for t in _core_types(host, parent) if t.type_id == type_id), None)


def device_uuids(host: Host) -> list[str]:
    return [n.lower() for n in list_dir(host.mdev_devices_dir) if is_uuid(n)]


def device(
    host: Host, uuid: str, *, held_by: tuple[str, ...] = (), created: Collection[str] = (), mdevctl: dict | None = None
) -> MediatedDevice:
    path = host.mdev_device(uuid)
    # The device's own directory, under its parent's (/sys/devices/.../<parent>/<uuid>): its links are relative
    # to that directory, not to the /sys/bus/mdev/devices entry.
    real = os.path.realpath(path)
    parent = os.path.basename(os.path.dirname(real)) if os.path.isdir(real) else None
    tid = link_name(path / "mdev_type")
    type_dir = os.path.realpath(os.path.join(real, "mdev_type")) if tid else None
    name = read_str(os.path.join(type_dir, "name")) if type_dir else None
    api = read_str(os.path.join(type_dir, "device_api")) if type_dir else None
    group = link_name(path / "iommu_group")
    definition = (mdevctl or {}).get(uuid)
    return MediatedDevice(
        uuid=uuid,
        parent=parent,
        mdev_type=tid,
        type_name=name.strip() if name else None,
        device_api=api.strip() if api else None,
        iommu_group=int(group) if group and group.isdigit() else None,
        driver=link_name(path / "driver"),
        held_by=held_by,
        created_by_pcipass=uuid in created,
        mdevctl=(definition.start or "defined") if definition else None,
    )
