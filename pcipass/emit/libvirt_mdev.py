"""libvirt ``<hostdev type='mdev'>`` elements for mediated devices, as element trees in a fixed order.

Output shape (libvirt's formatdomain "Host device assignment", mediated devices; domaincommon.rng
``hostdevsubsysmdev``, the same in libvirt 9.0 and 11.3)::

    <hostdev mode="subsystem" type="mdev" model="vfio-pci">
      <source><address uuid="83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"/></source>
    </hostdev>

``model`` is the device's API as the mdev type states it (``device_api``: vfio-pci, vfio-ccw or vfio-ap). No
``managed`` attribute: libvirt does not create or remove the mdev of a hostdev, the instance must exist
(``pcipass mdev create``) before the VM starts.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import DeviceNotFound, UsageError
from ..host import Host
from ..mdev import read
from ..mdev.model import canonical_uuid, shown

#: The models domaincommon.rng allows for a mediated hostdev.
MODELS = ("vfio-pci", "vfio-ccw", "vfio-ap")


@dataclass(frozen=True)
class MdevHostdev:
    """One libvirt ``<hostdev mode='subsystem' type='mdev'>``: the instance's UUID and its device API."""

    uuid: str
    model: str


def hostdevs(host: Host, uuids: Sequence[str]) -> list[MdevHostdev]:
    """The hostdevs of existing mediated devices, in the order given (each once)."""
    out = []
    for u in dict.fromkeys(canonical_uuid(x) for x in uuids):
        if not host.mdev_device(u).exists():
            raise DeviceNotFound(
                f"no mediated device {u}", remedy="'pcipass mdev list' shows them; 'pcipass mdev create' makes one"
            )
        api = read.device(host, u).device_api
        if api not in MODELS:
            raise UsageError(
                f"{u}: its type's device_api is {shown(api) if api else 'unreadable'}; libvirt "
                f"assigns {', '.join(MODELS)} mediated devices"
            )
        out.append(MdevHostdev(u, api))
    return out


def hostdev_element(h: MdevHostdev) -> ET.Element:
    el = ET.Element("hostdev", {"mode": "subsystem", "type": "mdev", "model": h.model})
    src = ET.SubElement(el, "source")
    ET.SubElement(src, "address", {"uuid": h.uuid})
    return el
