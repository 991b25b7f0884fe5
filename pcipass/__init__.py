"""pcipass: safe, scriptable PCI passthrough for Linux hosts."""

__version__ = "0.1.0"
