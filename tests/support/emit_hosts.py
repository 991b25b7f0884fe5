"""Fake hosts for the emitter tests: a GPU with its audio function, a VF-like NIC pair, hostile names."""

from __future__ import annotations

from tests.support.fakehost import FakeHost

GPU = "0000:3b:00.0"
GPU_AUDIO = "0000:3b:00.1"
GPU_PORT = "0000:3a:00.0"  # the root port above the GPU, in the GPU's group (no ACS)
NIC_A = "0000:5e:00.0"
NIC_B = "0000:5e:00.1"
LONE = "0000:00:19.0"  # on vfio-pci, alone in its group
NO_GROUP = "0000:00:1f.6"

#: pci.ids with names meant to break naive emitters (XML, YAML, shell, Go templates).
HOSTILE_PCI_IDS = (
    "# hostile test data\n"
    "1234  Evil <Corp> & \"Sons\" {{ .Values.x }} 'q'\n"
    '\t5678  Widget </hostdev><hostdev> & "x" ]]> --> {{ template }} ${HOME} `id`\n'
    '\t5679  <<>> && "" {{}}\n'
    "abcd  [<>&] {{\n"
    "\t0001  " + "Very Long Device Name " * 12 + "A\n"
    "\t0002  " + "Very Long Device Name " * 12 + "B\n"
)


def gpu_host(fake: FakeHost) -> FakeHost:
    """IOMMU on. Group 40: the root port (bridge) + GPU (vfio-pci) + its audio (snd_hda_intel). Group 41: two
    identical NICs in one slot (ixgbe). Group 42: a NIC alone on vfio-pci. One device with no group."""
    fake.enable_iommu()
    fake.add_device(GPU_PORT, vendor="8086", device="2030", class_="060400", bridge=True, driver="pcieport", group=40)
    fake.add_device(GPU, vendor="10de", device="1eb8", class_="030200", driver="vfio-pci", group=40)
    fake.add_device(GPU_AUDIO, vendor="10de", device="10f8", class_="040300", driver="snd_hda_intel", group=40)
    fake.add_device(NIC_A, vendor="8086", device="10fb", class_="020000", driver="ixgbe", group=41)
    fake.add_device(NIC_B, vendor="8086", device="10fb", class_="020000", driver="ixgbe", group=41)
    fake.add_device(LONE, vendor="8086", device="15b8", class_="020000", driver="vfio-pci", group=42)
    fake.add_device(NO_GROUP, vendor="8086", device="15b7", class_="020000", driver="e1000e")
    return fake


def hostile_host(fake: FakeHost) -> FakeHost:
    """Devices whose pci.ids names are hostile (see HOSTILE_PCI_IDS), one of them a display controller."""
    fake.enable_iommu()
    fake.add_device("0000:01:00.0", vendor="1234", device="5678", class_="030000", driver="vfio-pci", group=1)
    fake.add_device("0000:01:00.1", vendor="1234", device="5679", class_="040300", driver="vfio-pci", group=1)
    fake.add_device("0000:02:00.0", vendor="abcd", device="0001", class_="120000", driver="vfio-pci", group=2)
    fake.add_device("0000:03:00.0", vendor="abcd", device="0002", class_="120000", driver="vfio-pci", group=3)
    return fake


def yaml_documents(text: str) -> list[dict]:
    """The documents of a multi-document YAML stream (``emit``'s output), empty ones dropped."""
    import yaml

    return [d for d in yaml.safe_load_all(text) if d is not None]
