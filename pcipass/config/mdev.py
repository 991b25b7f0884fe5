"""The ``mdev`` section: mediated devices created at every boot, after the devices are bound."""

from __future__ import annotations

from dataclasses import dataclass

from ..fingerprint import Fingerprint


@dataclass(frozen=True)
class MdevEntry:
    """One entry of ``mdev``: the instance's UUID, its parent and type, and a PCI parent's fingerprint."""

    uuid: str  #: lower case (the schema refuses any other form)
    parent: str  #: as /sys/class/mdev_bus names it
    type: str  #: the type's ID
    fingerprint: Fingerprint | None  #: a PCI parent's; None for a virtual parent (or not recorded)
    line: int | None  #: where the entry starts in the file, for messages (None: unknown)

    def to_node(self) -> dict:
        """The entry as the file holds it; strings quoted as in ``devices`` (YAML 1.1 readers)."""
        from ruamel.yaml.scalarstring import SingleQuotedScalarString as Quoted

        node: dict = {"uuid": Quoted(self.uuid), "parent": Quoted(self.parent), "type": Quoted(self.type)}
        if self.fingerprint is not None:
            node["fingerprint"] = {k: Quoted(v) for k, v in self.fingerprint.to_mapping().items()}
        return node


def from_node(item: dict, line: int | None) -> MdevEntry:
    fp = item.get("fingerprint")
    return MdevEntry(item["uuid"], item["parent"], item["type"], Fingerprint.from_mapping(fp) if fp else None, line)
