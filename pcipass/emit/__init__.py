"""Emitters: what a hypervisor needs to be told about devices, built as data (never printed here).

``libvirt`` builds ``<hostdev>`` element trees; ``kubevirt`` builds the KubeVirt CR merge patch and a VM
snippet; ``harvester`` builds ``PCIDeviceClaim`` objects; ``names`` derives the Kubernetes-facing names.
``devices`` picks the devices to emit from an inventory (or from saved inventories of many nodes).
"""
