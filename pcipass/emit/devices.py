"""The devices an emitter writes about: picked from this host's inventory or from saved inventories.

A ``Target`` is the little an emitter needs about one device, whether it comes from a live scan (a
``PciDevice``) or from another node's ``pcipass list --format json`` output (untrusted input: every field
is checked before use).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..address import PciAddress
from ..drivers import is_vfio_driver
from ..errors import Refused, UsageError
from ..inventory import Inventory
from ..model import PciDevice
from ..result import ENVELOPE_VERSION

_HEX4 = re.compile(r"^[0-9a-f]{4}$")
_HEX6 = re.compile(r"^[0-9a-f]{6}$")


@dataclass(frozen=True)
class Target:
    """A device an emitter writes configuration for: its address, ids, names and class."""

    address: str
    vendor_id: str | None
    device_id: str | None
    vendor_name: str | None
    device_name: str | None
    class_id: str | None
    driver: str | None
    vfio: bool  #: on vfio-pci or a vfio variant driver
    iommu_group: int | None
    is_bridge: bool
    node: str | None = None  #: the node it was seen on (None: this host, node unnamed)

    @property
    def pci(self) -> PciAddress:
        return PciAddress.parse(self.address)

    @property
    def is_display(self) -> bool:
        """PCI base class 03 (VGA, XGA, 3D and other display controllers)."""
        return bool(self.class_id and self.class_id.startswith("03"))

    def with_node(self, node: str) -> Target:
        return replace(self, node=node)


def from_device(dev: PciDevice, variant_modules: frozenset[str] = frozenset()) -> Target:
    return Target(
        address=dev.address,
        vendor_id=dev.vendor_id,
        device_id=dev.device_id,
        vendor_name=dev.vendor_name,
        device_name=dev.device_name,
        class_id=dev.class_id,
        driver=dev.driver,
        vfio=is_vfio_driver(dev.driver, variant_modules),
        iommu_group=dev.iommu_group,
        is_bridge=dev.is_bridge,
    )


def _endpoint(dev: PciDevice) -> PciDevice:
    if dev.is_bridge:
        raise Refused(
            f"{dev.address} is a bridge: a device with a bridge header cannot be passed through "
            "(libvirt: 'Non-endpoint PCI devices cannot be assigned')",
            address=dev.address,
        )
    return dev


def _companions(inv: Inventory, dev: PciDevice) -> list[PciDevice]:
    """The other devices of ``dev``'s IOMMU group; without a group (IOMMU off, a recording without groups), its
    multifunction siblings, which share a group whenever the IOMMU is on and the card lacks ACS between its
    functions (a GPU and its audio function)."""
    if dev.iommu_group is not None:
        return inv.peers(dev.address)
    return [inv.devices[f] for f in dev.functions if f in inv.devices]


def select(inv: Inventory, addresses: Sequence[str], *, all_vfio: bool = False, group: bool = False) -> list[Target]:
    """The named devices (and, with ``group``, the other endpoints of their IOMMU groups, ``_companions``), or
    every device on a vfio driver; sorted by address, each once. Bridges named explicitly are refused."""
    if not addresses and not all_vfio:
        raise UsageError("name at least one PCI address (or use --all-vfio)")
    chosen: dict[str, PciDevice] = {}
    for text in addresses:
        dev = _endpoint(inv.device(PciAddress.parse(text)))
        chosen[dev.address] = dev
        if group:
            for peer in _companions(inv, dev):
                if not peer.is_bridge:
                    chosen[peer.address] = peer
    if all_vfio:
        for dev in inv.devices.values():
            if not dev.is_bridge and is_vfio_driver(dev.driver, inv.variant_modules):
                chosen[dev.address] = dev
    ordered = sorted(chosen.values(), key=lambda d: PciAddress.parse(d.address))
    return [from_device(d, inv.variant_modules) for d in ordered]


# --- saved inventories (pcipass list --format json) ---------------------------------------------------------


def _field(dev: dict[str, Any], key: str, kind: type, where: str, pattern: re.Pattern[str] | None = None) -> Any:
    value = dev.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UsageError(f"{where}: {key!r} must be a {kind.__name__}, not {value!r}")
    if pattern is not None and not (isinstance(value, str) and pattern.match(value)):
        raise UsageError(f"{where}: bad {key} {value!r}")
    return value


def _target_from_json(dev: Any, where: str) -> Target:
    if not isinstance(dev, dict):
        raise UsageError(f"{where}: a device must be an object")
    address = dev.get("address")
    if not isinstance(address, str):
        raise UsageError(f"{where}: a device has no address")
    where = f"{where}: {address!r}"
    driver = _field(dev, "driver", str, where)
    return Target(
        address=str(PciAddress.parse(address)),
        vendor_id=_field(dev, "vendor_id", str, where, _HEX4),
        device_id=_field(dev, "device_id", str, where, _HEX4),
        vendor_name=_field(dev, "vendor_name", str, where),
        device_name=_field(dev, "device_name", str, where),
        class_id=_field(dev, "class_id", str, where, _HEX6),
        driver=driver,
        vfio=is_vfio_driver(driver),
        iommu_group=_field(dev, "iommu_group", int, where),
        is_bridge=bool(_field(dev, "is_bridge", bool, where)),
    )


def load_saved(spec: str, command: str) -> tuple[str, str, list[Any]]:
    """Read ``[NODE=]FILE``, the JSON output of ``pcipass COMMAND --format json`` on one node: (node, file, the
    envelope's data). The node name is ``NODE`` when given, else the file name without its extension
    (``node1.json`` → ``node1``)."""
    node, eq, path_text = spec.partition("=")
    if not eq:
        node, path_text = "", spec
    path = Path(path_text)
    node = node or path.stem
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--from {path_text!r}: cannot read it ({exc.strerror or exc})") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"--from {path_text!r}: not JSON ({exc})") from exc
    if not (
        isinstance(env, dict)
        and env.get("pcipass") == ENVELOPE_VERSION
        and env.get("command") == command
        and isinstance(env.get("data"), list)
    ):
        raise UsageError(f"--from {path_text!r}: not the output of 'pcipass {command} --format json'")
    return node, path_text, env["data"]


def load_inventory(spec: str) -> tuple[str, list[Target]]:
    """A node's ``pcipass list --format json`` output (``load_saved``) as targets."""
    node, path_text, data = load_saved(spec, "list")
    if any(isinstance(d, dict) and "devices" in d for d in data):
        raise UsageError(f"--from {path_text!r}: this is 'list --tree' output; save 'pcipass list --format json'")
    return node, [_target_from_json(d, f"--from {path_text!r}").with_node(node) for d in data]


def select_saved(
    inventories: Iterable[tuple[str, list[Target]]], addresses: Sequence[str], *, all_vfio: bool = False
) -> list[Target]:
    """From several nodes' inventories: the named addresses on every node that has them (refused on a node
    where they are bridges), or every device on a vfio driver; sorted by node then address."""
    if not addresses and not all_vfio:
        raise UsageError("name at least one PCI address (or use --all-vfio)")
    wanted = {str(PciAddress.parse(a)) for a in addresses}
    found: set[str] = set()
    out: dict[tuple[str, str], Target] = {}
    for node, targets in inventories:
        for t in targets:
            if t.address in wanted:
                found.add(t.address)
                if t.is_bridge:
                    raise Refused(f"{t.address} on {node} is a bridge: it cannot be passed through", address=t.address)
                out[(node, t.address)] = t
            elif all_vfio and t.vfio and not t.is_bridge:
                out[(node, t.address)] = t
    missing = sorted(wanted - found, key=PciAddress.parse)
    if missing:
        raise UsageError(f"no node has PCI device {', '.join(missing)}")
    return [out[k] for k in sorted(out, key=lambda k: (k[0], PciAddress.parse(k[1])))]
