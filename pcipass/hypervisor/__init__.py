"""Talking to hypervisors (libvirt through libvirt-python, an optional dependency loaded on first use)."""
