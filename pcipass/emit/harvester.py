"""Harvester: ``PCIDeviceClaim`` objects (``devices.harvesterhci.io/v1beta1``) for devices of one node.

A claim is what Harvester's "Enable Passthrough" creates (harvester-ui-extension, enable-pci-passthrough):
named like the PCIDevice it claims, owned by it (``ownerReferences[0]``: the claim controller finds the
device through it, ``getPCIDeviceForClaim``), with ``spec.address``/``spec.nodeName`` from the device's
status. The validating webhook looks the PCIDevice up by the claim's name and refuses a device without an
IOMMU group (harvester/pcidevices ``pkg/webhook/pcideviceclaim.go``). An owner reference needs the
PCIDevice's ``uid``, which only the cluster knows: given ``kubectl get pcidevices -o json`` output, the
claims carry it (and each device is checked against the cluster's view of it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import Refused, UsageError
from . import names
from .devices import Target

API_VERSION = "devices.harvesterhci.io/v1beta1"


def _owner_index(pcidevices: dict[str, Any] | None) -> dict[str, dict[str, Any]] | None:
    """name → PCIDevice from a ``kubectl get pcidevices -o json`` list (None: not given)."""
    if pcidevices is None:
        return None
    items = pcidevices.get("items") if isinstance(pcidevices, dict) else None
    if not isinstance(items, list):
        raise UsageError("--pcidevices: not a list of PCIDevice objects (save 'kubectl get pcidevices -o json')")
    out = {}
    for item in items:
        meta = item.get("metadata") if isinstance(item, dict) else None
        if isinstance(meta, dict) and item.get("kind") == "PCIDevice" and isinstance(meta.get("name"), str):
            out[meta["name"]] = item
    return out


def _owner_reference(name: str, t: Target, node: str, index: dict[str, dict[str, Any]]) -> dict[str, str]:
    pd = index.get(name)
    if pd is None:
        raise UsageError(
            f"{t.address}: the cluster has no PCIDevice {name!r} (is the node name {node!r} right?)", address=t.address
        )
    status = pd.get("status")
    status = status if isinstance(status, dict) else {}
    seen = (status.get("address"), status.get("nodeName"), status.get("vendorId"), status.get("deviceId"))
    if seen != (t.address, node, t.vendor_id, t.device_id):
        raise Refused(
            f"{t.address}: PCIDevice {name!r} describes {seen[2]}:{seen[3]} at {seen[0]} on {seen[1]}, this host has "
            f"{t.vendor_id}:{t.device_id}: the hardware or the inventory changed; refusing to claim the wrong device",
            address=t.address,
        )
    uid = pd["metadata"].get("uid")
    if not isinstance(uid, str) or not uid:
        raise UsageError(f"--pcidevices: PCIDevice {name!r} has no metadata.uid")
    return {"apiVersion": API_VERSION, "kind": "PCIDevice", "name": name, "uid": uid}


def claims(
    targets: Sequence[Target],
    node: str,
    *,
    user: str | None = None,
    per_device: bool = False,
    pcidevices: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One claim per device. ``per_device`` sets ``disableResourcePooling`` (Harvester ≥ 1.9: the device gets
    its own resource name; an older CRD rejects the field)."""
    if not targets:
        raise UsageError("no device to emit")
    names.check_dns_name(node, "node name")
    index = _owner_index(pcidevices)
    out = []
    for t in targets:
        if t.iommu_group is None:
            raise Refused(
                f"{t.address} has no IOMMU group: Harvester refuses the claim (IOMMU off or unsupported; "
                "see 'pcipass check-iommu')",
                address=t.address,
            )
        name = names.harvester_device_name(node, t.address)
        metadata: dict[str, Any] = {"name": name}
        if index is not None:
            metadata["ownerReferences"] = [_owner_reference(name, t, node, index)]
        spec: dict[str, Any] = {"address": t.address, "nodeName": node}
        if user is not None:
            spec["userName"] = user
        if per_device:
            spec["disableResourcePooling"] = True
        out.append({"apiVersion": API_VERSION, "kind": "PCIDeviceClaim", "metadata": metadata, "spec": spec})
    return out
