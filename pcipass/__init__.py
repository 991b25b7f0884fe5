"""pcipass: safe, scriptable PCI passthrough for Linux hosts."""

__version__ = "0.1.0"

#: Environment variable that sets the default host root (``--root``). Here rather than in host.py, its user,
#: so that the CLI can read it before it imports anything (cli._begin_scan).
ROOT_ENV = "PCIPASS_ROOT"
