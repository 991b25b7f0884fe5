"""KubeVirt: the KubeVirt CR merge patch that permits PCI devices, and a VM snippet that requests them.

How KubeVirt uses ``spec.configuration.permittedHostDevices.pciHostDevices`` (virt-handler
``device-manager``): every entry without ``externalResourceProvider`` goes into a map keyed by the
lower-cased ``pciVendorSelector``, so of two entries with one selector only the last survives (the
duplicate-entry bug seen in Harvester, harvester/harvester#10008). Each resulting resource gets one
device plugin that offers *every* device with that vendor:device ID bound to ``vfio-pci``, so identical
devices on a node share one resource and a VM gets any of them. A name per device is only possible through
an external device plugin (``externalResourceProvider: true``): Harvester's plugin serves exactly such names
for claims with ``disableResourcePooling`` (``<vendor>.com/<node>-<address digits>``).

So: in the default (pooled) mode every selector appears once; in ``per_device`` mode every entry is
external and entries of one selector differ by resource name; a selector is never served by both
KubeVirt's plugin and an external one (both would hand out the same devices). The lists are complete
(a JSON merge patch replaces lists): pass the current CR to keep its other entries and feature gates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..drivers import VFIO_PCI
from ..errors import Refused, UsageError
from . import names
from .devices import Target

API_VERSION = "kubevirt.io/v1"
HOST_DEVICES_GATE = "HostDevices"
#: ``gpus[]`` in a VMI is admitted only with this gate (virt-api ``validateGPUsWithPassthroughEnabled``).
GPU_GATE = "GPU"


@dataclass(frozen=True)
class Permit:
    """One ``pciHostDevices`` entry."""

    #: The entry's selector key (a subclass permits mediated devices).
    selector_key: ClassVar[str] = "pciVendorSelector"

    selector: str  #: ``VVVV:DDDD``, upper-case as in KubeVirt's documentation
    resource: str
    external: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {self.selector_key: self.selector, "resourceName": self.resource}
        if self.external:
            out["externalResourceProvider"] = True
        return out


@dataclass(frozen=True)
class Assignment:
    """A device and the KubeVirt resource name it is permitted (and requested) under."""

    target: Target
    resource: str


@dataclass(frozen=True)
class Plan:
    """What the KubeVirt emitters write: permitted host devices, the VM's requests, feature gates, warnings."""

    permits: tuple[Permit, ...]
    assignments: tuple[Assignment, ...]
    feature_gates: tuple[str, ...]
    warnings: tuple[str, ...]


def _selector(t: Target) -> str:
    if not (t.vendor_id and t.device_id):
        raise UsageError(
            f"{t.address}: vendor or device ID unreadable, cannot name a KubeVirt selector", address=t.address
        )
    return f"{t.vendor_id}:{t.device_id}".upper()


def _where(t: Target) -> str:
    return f"{t.address} on {t.node}" if t.node else t.address


def _pooled_names(targets: Sequence[Target]) -> dict[str, str]:
    """selector → resource name; two selectors that would share a name get their IDs appended."""
    first: dict[str, Target] = {}
    for t in targets:
        first.setdefault(_selector(t), t)
    base = {
        sel: names.resource_name(
            names.vendor_prefix(t.vendor_name, t.vendor_id or ""), names.device_part(t.device_name, t.device_id or "")
        )
        for sel, t in first.items()
    }
    clashes = {r for r, n in Counter(base.values()).items() if n > 1}
    out = {}
    for sel, res in base.items():
        if res in clashes:
            t = first[sel]
            prefix, _, part = res.partition("/")
            res = names.resource_name(prefix, f"{part}_{t.vendor_id}_{t.device_id}")
        out[sel] = res
    return out


def _current_lists(current: dict[str, Any] | None) -> tuple[list[Permit], list[str]]:
    """The pciHostDevices entries and feature gates of a KubeVirt CR (or of a ``List`` holding just it, as
    ``kubectl get kubevirt -A -o yaml`` prints)."""
    if current is None:
        return [], []
    if (
        isinstance(current, dict)
        and current.get("kind") == "List"
        and isinstance(current.get("items"), list)
        and len(current["items"]) == 1
    ):
        current = current["items"][0]
    if not isinstance(current, dict) or current.get("kind") != "KubeVirt":
        raise UsageError("--current: not one KubeVirt object (save it with 'kubectl get kubevirt -A -o yaml')")
    config = (current.get("spec") or {}).get("configuration") or {}
    entries = ((config.get("permittedHostDevices") or {}).get("pciHostDevices")) or []
    gates = ((config.get("developerConfiguration") or {}).get("featureGates")) or []
    permits = []
    if not isinstance(entries, list):
        raise UsageError(f"--current: malformed pciHostDevices {entries!r}")
    for e in entries:
        sel, res = (e.get("pciVendorSelector"), e.get("resourceName")) if isinstance(e, dict) else (None, None)
        if not (isinstance(sel, str) and isinstance(res, str)):
            raise UsageError(f"--current: malformed pciHostDevices entry {e!r}")
        permits.append(Permit(sel.upper(), res, bool(e.get("externalResourceProvider"))))
    if not (isinstance(gates, list) and all(isinstance(g, str) for g in gates)):
        raise UsageError(f"--current: malformed featureGates {gates!r}")
    return permits, list(gates)


def _merge(existing: list[Permit], wanted: list[Permit], warnings: list[str]) -> list[Permit]:
    """``existing`` entries kept (duplicates dropped), ``wanted`` added; refused when one selector would be
    served both by KubeVirt's plugin and by an external one."""
    out: dict[tuple[str, str], Permit] = {}
    pooled: dict[str, Permit] = {}
    for p in [*existing, *wanted]:
        if (p.selector, p.resource) in out:
            continue
        if not p.external:
            if p.selector in pooled:
                warnings.append(
                    f"the current CR lists {p.selector} twice ({pooled[p.selector].resource} and "
                    f"{p.resource}); KubeVirt only uses the last: keeping {pooled[p.selector].resource}"
                )
                continue
            pooled[p.selector] = p
        out[(p.selector, p.resource)] = p
    for p in out.values():
        if p.external and p.selector in pooled:
            raise Refused(
                f"{p.selector} would be served by KubeVirt's device plugin ({pooled[p.selector].resource}) and by "
                f"an external one ({p.resource}): both would hand out the same devices. Drop one of them."
            )
    return sorted(out.values(), key=lambda p: (p.selector, p.resource))


def plan(targets: Sequence[Target], *, per_device: bool = False, current: dict[str, Any] | None = None) -> Plan:
    if not targets:
        raise UsageError("no device to emit")
    warnings: list[str] = []
    existing, gates = _current_lists(current)
    if per_device:
        missing = [t.address for t in targets if not t.node]
        if missing:
            raise UsageError("--per-device names include the node name: give --node (or --from NODE=FILE)")
        resources = [
            names.per_device_resource_name(
                names.vendor_prefix(t.vendor_name, t.vendor_id or ""), t.node or "", t.address
            )
            for t in targets
        ]
        wanted = [Permit(_selector(t), r, external=True) for t, r in zip(targets, resources)]
        nodes = sorted({t.node or "" for t in targets})
        if len(nodes) > 1:
            warnings.append(
                f"the VM snippet names devices of {len(nodes)} nodes ({', '.join(nodes)}); a VM runs on "
                "one node: keep only that node's entries"
            )
    else:
        # A selector the cluster already permits keeps its resource name: VMs may already request it.
        known = {p.selector: p.resource for p in existing if not p.external}
        pooled = {**_pooled_names(targets), **known}
        resources = [pooled[_selector(t)] for t in targets]
        wanted = [Permit(s, pooled[s]) for s in sorted({_selector(t) for t in targets})]
        for t in targets:
            if t.driver != VFIO_PCI:
                warnings.append(
                    f"{_where(t)} is on {t.driver or 'no driver'}: KubeVirt's device plugin only offers "
                    f"devices bound to {VFIO_PCI} (bind it first: pcipass enable)"
                )
        per_node = Counter((t.node, r) for t, r in zip(targets, resources))
        for (node, res), n in sorted(per_node.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
            if n > 1:
                warnings.append(
                    f"{n} identical devices{' on ' + node if node else ''} share {res}: KubeVirt gives a VM any of "
                    "them; --per-device names each one (served by an external device plugin, e.g. Harvester's "
                    "with disableResourcePooling)"
                )
    permits = _merge(existing, wanted, warnings)
    new_gates = [HOST_DEVICES_GATE] + ([GPU_GATE] if any(t.is_display for t in targets) else [])
    gates += [g for g in new_gates if g not in gates]
    if current is None:
        warnings.append(
            "a merge patch replaces whole lists: this one sets pciHostDevices and featureGates to "
            "exactly what it holds; pass --current with the live KubeVirt CR to keep its other entries"
        )
    assignments = tuple(Assignment(t, r) for t, r in zip(targets, resources))
    return Plan(tuple(permits), assignments, tuple(gates), tuple(warnings))


def cr_patch(p: Plan) -> dict[str, Any]:
    """The merge patch for ``kubectl patch kubevirt kubevirt -n kubevirt --type merge --patch-file``."""
    return cr_document(p.feature_gates, {"permittedHostDevices": {"pciHostDevices": [x.to_dict() for x in p.permits]}})


def cr_document(feature_gates: tuple[str, ...], configuration: dict[str, Any]) -> dict[str, Any]:
    """A KubeVirt CR merge patch setting the feature gates and ``configuration``'s keys (in their order)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "KubeVirt",
        "spec": {"configuration": {"developerConfiguration": {"featureGates": list(feature_gates)}, **configuration}},
    }


def vm_requests(p: Plan) -> list[tuple[str, bool]]:
    """(resource, is display) per device a VM asks for: for each resource, as many as the node with the most
    such devices has; in the order resources first appear."""
    per_node = Counter((a.target.node, a.resource) for a in p.assignments)
    counts: dict[str, int] = {}
    display: dict[str, bool] = {}
    for a in p.assignments:
        counts[a.resource] = max(counts.get(a.resource, 0), per_node[(a.target.node, a.resource)])
        display[a.resource] = display.get(a.resource, False) or a.target.is_display
    return [(res, display[res]) for res in counts for _ in range(counts[res])]


def vm_patch(p: Plan, vm_name: str | None = None) -> dict[str, Any]:
    """A VirtualMachine merge patch (``kubectl patch vm NAME --type merge --patch-file``) requesting the
    devices: display controllers under ``gpus``, the rest under ``hostDevices``. ``deviceName`` is always
    written (KubeVirt before v1.6 requires it)."""
    return vm_document(vm_requests(p), vm_name, ("gpu", "hostdevice"))


def vm_document(requests: list[tuple[str, bool]], vm_name: str | None, stems: tuple[str, str]) -> dict[str, Any]:
    """The VirtualMachine merge patch for (resource, is display) requests: display devices under ``gpus``, the
    rest under ``hostDevices``, named ``<stem>N`` (``stems``: for gpus, for hostDevices)."""
    gpus: list[dict[str, str]] = []
    hostdevs: list[dict[str, str]] = []
    for res, is_display in requests:
        bucket, stem = (gpus, stems[0]) if is_display else (hostdevs, stems[1])
        bucket.append({"name": f"{stem}{len(bucket) + 1}", "deviceName": res})
    devices: dict[str, Any] = {}
    if gpus:
        devices["gpus"] = gpus
    if hostdevs:
        devices["hostDevices"] = hostdevs
    out: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "VirtualMachine"}
    if vm_name is not None:
        out["metadata"] = {"name": names.check_dns_name(vm_name, "VM name")}
    out["spec"] = {"template": {"spec": {"domain": {"devices": devices}}}}
    return out
