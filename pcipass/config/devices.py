"""The ``devices`` section: PCI functions bound at every boot."""

from __future__ import annotations

from dataclasses import dataclass

from ..drivers import VFIO_PCI
from ..fingerprint import Fingerprint

#: ``driver: host``: the device belongs on its host driver (``apply`` disables it).
HOST = "host"


@dataclass(frozen=True)
class DeviceEntry:
    """One entry of ``devices``: where, what must be there, and what it is bound to."""

    address: str  #: canonical (the schema refuses any other form)
    driver: str  #: vfio-pci | auto | a vfio variant driver | pci-stub | host
    group: bool  #: move the whole IOMMU group (enable --group)
    fingerprint: Fingerprint
    group_peers: tuple[str, ...] | None = None  #: the group's other functions when persisted (None: not recorded)
    line: int | None = None  #: where the entry starts in the file, for messages

    def to_node(self) -> dict:
        """The entry as the file holds it (``group`` only when set). Addresses and the fingerprint's values are
        quoted: a YAML 1.1 reader (PyYAML, yq) takes ``0000:00:02.0`` for a base-60 float and ``8086`` for an
        integer."""
        from ruamel.yaml.scalarstring import SingleQuotedScalarString as Quoted

        node: dict = {"address": Quoted(self.address), "driver": self.driver}
        if self.group:
            node["group"] = True
        if self.group_peers is not None:
            node["group_peers"] = [Quoted(a) for a in self.group_peers]
        node["fingerprint"] = {k: Quoted(v) for k, v in self.fingerprint.to_mapping().items()}
        return node


def from_node(item: dict, line: int | None) -> DeviceEntry:
    peers = item.get("group_peers")
    return DeviceEntry(
        item["address"],
        item.get("driver", VFIO_PCI),
        bool(item.get("group", False)),
        Fingerprint.from_mapping(item["fingerprint"]),
        tuple(str(a) for a in peers) if peers is not None else None,
        line,
    )
