"""What a driver name means for passthrough.

Driver names in ``/sys/bus/pci/drivers`` may use ``-`` where the module uses ``_`` (``vfio-pci`` vs
``vfio_pci``); compare normalized names. vfio *variant* drivers (``mlx5_vfio_pci``, ``hisi_acc_vfio_pci``,
``nvgrace_gpu_vfio_pci``, ``virtio_vfio_pci``...) are built on ``vfio_pci_core``; they name themselves
``*_vfio_pci`` by convention, and the module holders of ``vfio_pci_core`` catch the ones that do not.
"""

from __future__ import annotations

from typing import TypeGuard

VFIO_PCI = "vfio-pci"
PCI_STUB = "pci-stub"


def normalize(name: str) -> str:
    return name.replace("-", "_")


def is_vfio_driver(name: str | None, variant_modules: frozenset[str] = frozenset()) -> TypeGuard[str]:
    if not name:
        return False
    n = normalize(name)
    return n == "vfio_pci" or n.endswith("_vfio_pci") or n in variant_modules


def is_assignable(name: str | None, variant_modules: frozenset[str] = frozenset()) -> bool:
    """True when a device on this driver does not stop its group from being assigned to a VM:
    unbound, pci-stub, vfio-pci or a vfio variant (the rule in the kernel's Documentation/driver-api/vfio.rst)."""
    return name is None or normalize(name) == "pci_stub" or is_vfio_driver(name, variant_modules)


def is_driver_name(name: object) -> bool:
    """True when ``name`` can be a driver's name, which pcipass makes a path component
    (``/sys/bus/pci/drivers/<name>/bind``): a non-empty string without ``/`` or NUL, not ``.`` or ``..``. A name
    read back from the state file or from a tree's ``driver`` link that fails this is damage, never a path."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name
