"""Reading every PCI device and IOMMU group of a host (``Inventory.scan``): scan.py puts the inventory together
from one device's fields (reader.py) and the host-wide tables (tables.py), in two processes on a large host
(parallel.py)."""

from .scan import Inventory, Reading

__all__ = ["Inventory", "Reading"]
