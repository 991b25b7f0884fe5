"""The ``sriov`` section: SR-IOV PFs whose VF count is set at every boot, as ``pcipass sriov --numvfs`` sets it."""

from __future__ import annotations

from dataclasses import dataclass

from ..fingerprint import Fingerprint


@dataclass(frozen=True)
class SriovEntry:
    """One entry of ``sriov``: the PF, what must be there, how many VFs it has and how they are bound."""

    address: str  #: the PF, canonical (the schema refuses any other form)
    numvfs: int  #: ``sriov_numvfs``
    autoprobe: bool | None  #: ``sriov_drivers_autoprobe``, set before the VFs are created; None: left as it is
    vfio: bool  #: every VF bound to vfio-pci once they exist (``sriov --vfio``)
    fingerprint: Fingerprint  #: of the PF
    line: int | None  #: where the entry starts in the file, for messages

    def to_node(self) -> dict:
        """The entry as the file holds it (``autoprobe`` and ``vfio`` only when set); quoted as ``devices``'."""
        from ruamel.yaml.scalarstring import SingleQuotedScalarString as Quoted

        node: dict = {"address": Quoted(self.address), "numvfs": self.numvfs}
        if self.autoprobe is not None:
            node["autoprobe"] = self.autoprobe
        if self.vfio:
            node["vfio"] = True
        node["fingerprint"] = {k: Quoted(v) for k, v in self.fingerprint.to_mapping().items()}
        return node


def from_node(item: dict, line: int | None) -> SriovEntry:
    return SriovEntry(
        item["address"],
        item["numvfs"],
        item.get("autoprobe"),
        bool(item.get("vfio", False)),
        Fingerprint.from_mapping(item["fingerprint"]),
        line,
    )
