"""KubeVirt: the CR merge patch that has virt-handler create mediated devices and permits them, and a VM snippet.

How KubeVirt uses it (pkg/virt-handler/device-manager, mediated_device.go and device_controller.go):

* ``spec.configuration.mediatedDevicesConfiguration.mediatedDeviceTypes``: type IDs (``nvidia-747``, the
  directory names of ``mdev_supported_types``) virt-handler creates instances of on every node, on the parents
  that offer them; ``nodeMediatedDeviceTypes`` does the same per node (``nodeSelector``), for clusters whose
  nodes have different cards.
* ``permittedHostDevices.mediatedDevices``: ``mdevNameSelector`` is compared with each instance's type name
  (``mdev_type/name``, else the type's directory name) after both have their spaces replaced by ``_``; every
  instance whose type matches is offered under ``resourceName``.

NVIDIA's vGPU types of the newer per-VF interface are not mdevs: the VF itself is the vGPU, permitted as a PCI
device (``pcipass emit kubevirt ADDR``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import Refused, UsageError
from ..mdev.model import Interface, MdevType, is_uuid, shown
from ..pciids import PciIds
from . import names
from .kubevirt import GPU_GATE, HOST_DEVICES_GATE, Permit, cr_document, vm_document

#: The node label KubeVirt's per-node configuration selects on (set by the kubelet to the node's name).
HOSTNAME_LABEL = "kubernetes.io/hostname"


@dataclass(frozen=True)
class MdevPermit(Permit):
    """One ``mediatedDevices`` entry: ``selector`` is the type's name as sysfs spells it."""

    selector_key: ClassVar[str] = "mdevNameSelector"

    @property
    def key(self) -> str:
        """What KubeVirt compares (removeSelectorSpaces): spaces as ``_``, outer blanks dropped."""
        return self.selector.replace(" ", "_").strip()


@dataclass(frozen=True)
class MdevPlan:
    """The types per node, the permits, the VM's requests, the gates and the warnings."""

    types: dict[str, tuple[str, ...]]  #: node ("" for this host, unnamed) → type IDs to create there
    permits: tuple[MdevPermit, ...]
    requests: tuple[tuple[str, bool], ...]  #: (resource, is a display device) per device the VM asks for
    feature_gates: tuple[str, ...]
    warnings: tuple[str, ...]
    keep_config: dict[str, Any]  #: mediatedDevicesConfiguration keys of the current CR kept as they are


def load_types(spec: str) -> tuple[str, list[MdevType]]:
    """``[NODE=]FILE``: a node's ``pcipass mdev types --format json`` output (node name: NODE, else the file's
    name without its extension). Untrusted input: every field is checked."""
    from .devices import load_saved

    node, path_text, data = load_saved(spec, "mdev types")
    names.check_dns_name(node, "node name (from --from; name it: --from NODE=FILE)")
    return node, [_type_from_json(t, f"--from {path_text!r}") for t in data]


def _text(obj: dict, key: str, where: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise UsageError(f"{where}: bad {key} {value!r}")
    return value


def _type_from_json(t: Any, where: str) -> MdevType:
    if not isinstance(t, dict):
        raise UsageError(f"{where}: a type is not an object: {t!r}")
    devices = t.get("devices", [])
    if not (isinstance(devices, list) and all(isinstance(d, str) for d in devices)):
        raise UsageError(f"{where}: bad devices {devices!r}")
    try:
        interface = Interface(t.get("interface", Interface.MDEV.value))
    except ValueError as exc:
        raise UsageError(f"{where}: bad interface {t.get('interface')!r}") from exc
    return MdevType(
        parent=_text(t, "parent", where, required=True) or "",
        type_id=_text(t, "type_id", where, required=True) or "",
        name=_text(t, "name", where),
        description=None,
        device_api=_text(t, "device_api", where),
        available_instances=None,
        devices=tuple(devices),
        interface=interface,
        parent_driver=_text(t, "parent_driver", where),
        parent_vendor_id=_text(t, "parent_vendor_id", where),
        parent_class_id=_text(t, "parent_class_id", where),
    )


def _selector(t: MdevType) -> str:
    # KubeVirt's getMdevTypeName: the name attribute, else the type directory's name.
    return t.name or t.type_id


def _resource(t: MdevType, ids: PciIds) -> str:
    if t.parent_vendor_id:
        prefix = names.vendor_prefix(ids.vendor_name(t.parent_vendor_id), t.parent_vendor_id)
    else:  # a virtual parent (mtty): its driver, else the type ID's driver prefix
        driver = t.parent_driver or t.type_id.split("-")[0]
        prefix = names.vendor_prefix(driver, driver)
    return names.resource_name(prefix, names.device_part(_selector(t), t.type_id))


def _pick(nodes: dict[str, list[MdevType]], wanted: Sequence[str]) -> dict[str, list[MdevType]]:
    """Per node, the types ``wanted`` names (a type ID, or the UUID of an instance of it), one per type ID."""
    out: dict[str, list[MdevType]] = {n: [] for n in nodes}
    for w in wanted:
        key = w.lower() if is_uuid(w) else w
        found = False
        for node, types in nodes.items():
            for t in types:
                if t.type_id == key or key in t.devices:
                    found = True
                    if t.interface is Interface.NVIDIA_VGPU:
                        raise UsageError(
                            f"{shown(w)}: an NVIDIA vGPU type of {t.parent}'s per-VF interface; that VF "
                            f"is the vGPU, permitted as a PCI device: pcipass emit kubevirt {t.parent}"
                        )
                    if all(x.type_id != t.type_id for x in out[node]):
                        out[node].append(t)
        if not found:
            where = "on this host" if list(nodes) == [""] else "on any node given"
            raise UsageError(
                f"--mdev {shown(w)}: no such mediated-device type or instance {where} (see 'pcipass mdev types')"
            )
    return out


def _current(current: dict[str, Any] | None) -> tuple[list[MdevPermit], list[str], dict[str, Any]]:
    if current is None:
        return [], [], {}
    if current.get("kind") == "List" and isinstance(current.get("items"), list) and len(current["items"]) == 1:
        current = current["items"][0]
    if not isinstance(current, dict) or current.get("kind") != "KubeVirt":
        raise UsageError("--current: not one KubeVirt object (save it with 'kubectl get kubevirt -A -o yaml')")
    config = (current.get("spec") or {}).get("configuration") or {}
    entries = (config.get("permittedHostDevices") or {}).get("mediatedDevices") or []
    gates = (config.get("developerConfiguration") or {}).get("featureGates") or []
    mdc = config.get("mediatedDevicesConfiguration") or {}
    if not (
        isinstance(entries, list)
        and isinstance(gates, list)
        and all(isinstance(g, str) for g in gates)
        and isinstance(mdc, dict)
    ):
        raise UsageError("--current: malformed mediatedDevices, featureGates or mediatedDevicesConfiguration")
    permits = []
    for e in entries:
        sel, res = (e.get("mdevNameSelector"), e.get("resourceName")) if isinstance(e, dict) else (None, None)
        if not (isinstance(sel, str) and isinstance(res, str)):
            raise UsageError(f"--current: malformed mediatedDevices entry {e!r}")
        permits.append(MdevPermit(sel, res, bool(e.get("externalResourceProvider"))))
    # Deprecated spelling: kept as it is (KubeVirt reads both).
    return permits, list(gates), dict(mdc)


def plan(
    nodes: dict[str, list[MdevType]], wanted: Sequence[str], *, ids: PciIds, current: dict[str, Any] | None = None
) -> MdevPlan:
    """``nodes``: each node's types ("" names this host when no node is named)."""
    if not wanted:
        raise UsageError("no mediated-device type selected")
    picked = _pick(nodes, wanted)
    existing, gates, keep = _current(current)
    warnings: list[str] = []
    by_key: dict[str, MdevPermit] = {p.key: p for p in existing}
    requests: list[tuple[str, bool]] = []
    for node in picked:
        for t in picked[node]:
            permit = MdevPermit(_selector(t), _resource(t, ids))
            known = by_key.get(permit.key)
            if known is None:
                by_key[permit.key] = permit
            elif known.external:
                raise Refused(
                    f"{permit.selector} is served by an external device plugin ({known.resource}) in the "
                    "current CR; KubeVirt's own would hand out the same devices"
                )
            display = bool(t.parent_class_id and t.parent_class_id.startswith("03"))
            entry = (by_key[permit.key].resource, display)
            if entry not in requests:
                requests.append(entry)
    type_sets = {n: tuple(t.type_id for t in ts) for n, ts in picked.items()}
    for node, ts in type_sets.items():
        if not ts:
            warnings.append(f"node {node} offers none of the selected types: nothing is created there")
    if len(set(type_sets.values())) > 1:
        warnings.append(
            "the nodes offer different types: one nodeMediatedDeviceTypes entry per node, selected by "
            f"its {HOSTNAME_LABEL} label"
        )
    warnings.append(
        "virt-handler creates the instances of these types itself, on every parent that offers them: "
        "do not also create them with 'pcipass mdev create' or mdevctl on those nodes"
    )
    if current is None:
        warnings.append(
            "a merge patch replaces whole lists: this one sets mediatedDevices and featureGates to "
            "exactly what it holds; pass --current with the live KubeVirt CR to keep its other entries"
        )
    new_gates = [HOST_DEVICES_GATE] + ([GPU_GATE] if any(d for _, d in requests) else [])
    gates += [g for g in new_gates if g not in gates]
    permits = tuple(sorted(by_key.values(), key=lambda p: (p.key, p.resource)))
    return MdevPlan(type_sets, permits, tuple(requests), tuple(gates), tuple(warnings), keep)


def _config(p: MdevPlan) -> dict[str, Any]:
    """mediatedDevicesConfiguration: the current CR's (``keep_config``) with the selected types added, for every
    node alike when they all get the same ones, else per node (a node's current entry replaced)."""
    out = dict(p.keep_config)
    sets = {n: ts for n, ts in p.types.items() if ts}
    if len(set(p.types.values())) <= 1:
        old = [t for t in out.get("mediatedDeviceTypes") or [] if isinstance(t, str)]
        out["mediatedDeviceTypes"] = list(dict.fromkeys(old + list(next(iter(p.types.values()), ()))))
    else:
        kept = [
            e
            for e in out.get("nodeMediatedDeviceTypes") or []
            if not (isinstance(e, dict) and (e.get("nodeSelector") or {}).get(HOSTNAME_LABEL) in sets)
        ]
        out["nodeMediatedDeviceTypes"] = kept + [
            {"nodeSelector": {HOSTNAME_LABEL: n}, "mediatedDeviceTypes": list(ts)} for n, ts in sorted(sets.items())
        ]
    return out


def cr_patch(p: MdevPlan) -> dict[str, Any]:
    """The merge patch for ``kubectl patch kubevirt kubevirt -n kubevirt --type merge --patch-file``."""
    return cr_document(
        p.feature_gates,
        {
            "mediatedDevicesConfiguration": _config(p),
            "permittedHostDevices": {"mediatedDevices": [x.to_dict() for x in p.permits]},
        },
    )


def vm_patch(p: MdevPlan, vm_name: str | None = None) -> dict[str, Any]:
    """A VirtualMachine merge patch requesting one instance of each selected type: vGPUs (a display parent)
    under ``gpus``, the others under ``hostDevices``."""
    return vm_document(list(p.requests), vm_name, ("vgpu", "mdev"))
