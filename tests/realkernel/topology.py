"""The fixed PCI topologies of the real-kernel guests: ONE place for every guest address.

The topologies boot the same emulated hardware (qemu ``q35``, emulated Intel IOMMU with
``intremap=on,caching-mode=on``); they differ only in the kernel command line:

* ``iommu_on``  -- ``intel_iommu=on iommu=pt``: a real DMAR unit (``/sys/class/iommu/dmar0``),
  real IOMMU groups, vfio-pci can bind.
* ``iommu_off`` -- ``intel_iommu=off``: no ``/sys/class/iommu/*``, no ``/sys/kernel/iommu_groups/*``,
  no ``iommu_group`` link on any device.
* ``iommu_default`` -- no IOMMU parameter at all: Debian's kernel is built with
  ``CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y``, so VT-d comes up by the kernel's default, with translated
  (DMA) default domains instead of ``iommu=pt``'s identity ones. The same groups as ``iommu_on``.

Guest PCI layout (identical in both topologies; bus numbers are assigned by the firmware
depth-first, so they are stable)::

    address        role key          device (vendor:device)            driver
    0000:00:00.0   host_bridge       q35 host bridge (8086:29c0)       -
    0000:00:02.0   e1000e            e1000e NIC (8086:10d3)            e1000e
    0000:00:03.0   virtio_net        virtio-net (1af4:1000)            virtio-pci
    0000:00:04.0   nvme              NVMe (1b36:0010), 64 MiB scratch  nvme
    0000:00:05.0   mf_virtio_net     virtio-net, multifunction=on      virtio-pci
    0000:00:05.1   mf_e1000          e1000 NIC (8086:100e)             e1000
    0000:00:06.0   rp_bridge         pcie-root-port (1b36:000c)        pcieport
    0000:01:00.0   pci_bridge        pcie-pci-bridge (1b36:000e)       -
    0000:02:01.0   bridged_e1000     e1000 NIC behind the PCI bridge   e1000
    0000:02:02.0   bridged_rtl8139   rtl8139 NIC behind the PCI bridge 8139cp
    0000:00:07.0   rp_noacs          pcie-root-port,disable-acs=on     pcieport
    0000:03:00.0   noacs_e1000e      e1000e NIC behind the ACS-less port e1000e
    0000:00:08.0   audio             ich9-intel-hda + hda-output       snd_hda_intel
    0000:00:09.0   usb_xhci          qemu-xhci (1b36:000d) + usb-kbd   xhci_hcd (keyboard: usbhid)
    0000:00:0c.0   display           bochs-display (1234:1111)         bochs-drm (/dev/dri/card0)
    0000:00:1d.0   io_9p             virtio-9p: command in/results out  PROTECTED
    0000:00:1e.0   root_9p           virtio-9p: the guest's root fs     PROTECTED
    0000:00:1f.0   lpc               ICH9 LPC (8086:2918)              lpc_ich
    0000:00:1f.2   sata              ICH9 AHCI (8086:2922)             ahci
    0000:00:1f.3   smbus             ICH9 SMBus (8086:2930)            i801_smbus

The ``sriov`` topology (``intel_iommu=on iommu=pt``) adds, for the SR-IOV tests, QEMU's nvme as an SR-IOV PF
in two placements (``SRIOV_ADDRESSES``; no drive, two VFs each at PF+1 and PF+2 once created, every VF in an
IOMMU group of its own)::

    0000:00:0a.0   sriov_pf          nvme SR-IOV PF on the root complex  nvme
    0000:00:0b.0   sriov_rp          pcie-root-port (ACS)                pcieport
    0000:04:00.0   sriov_pf_rp       nvme SR-IOV PF behind that port     nvme

IOMMU groups in ``iommu_on`` (verified by ``tests/guest/test_smoke.py`` on every run; group
*numbers* are the kernel's and may change with the kernel version, so tests match by membership)::

    single-device groups: 00:00.0, 00:02.0, 00:03.0, 00:04.0, 00:06.0, 00:08.0, 00:09.0, 00:0c.0, 00:1d.0, 00:1e.0
    shared groups (SHARED_GROUPS below):
      {00:05.0, 00:05.1}               multifunction slot without ACS (virtio-net + e1000)
      {01:00.0, 02:01.0, 02:02.0}      pcie-pci-bridge + the two conventional NICs behind it
                                       (the root port 00:06.0 above it keeps its own group)
      {00:07.0, 03:00.0}               ACS-less root port + its device
      {00:1f.0, 00:1f.2, 00:1f.3}      q35's built-in ICH9 functions

Group numbers seen with kernel 6.1.0-56-amd64 (informational only)::

    0: 00:00.0   1: 00:02.0   2: 00:03.0   3: 00:04.0   4: 00:05.0 00:05.1   5: 00:06.0
    6: 00:07.0 03:00.0   7: 00:08.0   8: 00:1d.0   9: 00:1e.0   10: 00:1f.0 00:1f.2 00:1f.3
    11: 01:00.0 02:01.0 02:02.0

With ``iommu=pt`` every group's ``type`` is ``identity``. The HDA codec (``hda-output``) is not
probed under TCG ("Cannot probe codecs"); the audio PCI function still binds ``snd_hda_intel``.
Network devices have no backend (no ``-netdev``): links are down, nothing leaves the guest.

``PROTECTED`` addresses carry the guest's own root filesystem and result channel: a guest test
must never unbind, rebind, override or remove them (the guest would lose its root fs and the run
its results). They are exported to guest tests as ``PCIPASS_GUEST_PROTECTED`` (comma separated).
The whole topology is exported as JSON in ``PCIPASS_GUEST_TOPOLOGY_JSON`` (see ``guest_env``).
"""

from __future__ import annotations

import json

# role key -> full PCI address (the fixed, documented layout above)
ADDRESSES: dict[str, str] = {
    "host_bridge": "0000:00:00.0",
    "e1000e": "0000:00:02.0",
    "virtio_net": "0000:00:03.0",
    "nvme": "0000:00:04.0",
    "mf_virtio_net": "0000:00:05.0",
    "mf_e1000": "0000:00:05.1",
    "rp_bridge": "0000:00:06.0",
    "pci_bridge": "0000:01:00.0",
    "bridged_e1000": "0000:02:01.0",
    "bridged_rtl8139": "0000:02:02.0",
    "rp_noacs": "0000:00:07.0",
    "noacs_e1000e": "0000:03:00.0",
    "audio": "0000:00:08.0",
    "usb_xhci": "0000:00:09.0",
    "display": "0000:00:0c.0",
    "io_9p": "0000:00:1d.0",
    "root_9p": "0000:00:1e.0",
    "lpc": "0000:00:1f.0",
    "sata": "0000:00:1f.2",
    "smbus": "0000:00:1f.3",
}

# The SR-IOV PFs of the ``sriov`` topology (see above).
SRIOV_ADDRESSES: dict[str, str] = {
    "sriov_pf": "0000:00:0a.0",
    "sriov_rp": "0000:00:0b.0",
    "sriov_pf_rp": "0000:04:00.0",
}

# The VFs of those PFs once created (QEMU's nvme: VF n at the PF's routing ID + n, offset 1 and stride 1).
SRIOV_VFS: dict[str, tuple[str, str]] = {
    "sriov_pf": ("0000:00:0a.1", "0000:00:0a.2"),
    "sriov_pf_rp": ("0000:04:00.1", "0000:04:00.2"),
}

# Devices a guest test must never touch (root fs + result channel).
PROTECTED: tuple[str, ...] = (ADDRESSES["io_9p"], ADDRESSES["root_9p"])

# Expected multi-device IOMMU groups in iommu_on (membership, not group numbers).
SHARED_GROUPS: dict[str, tuple[str, ...]] = {
    "multifunction": (ADDRESSES["mf_virtio_net"], ADDRESSES["mf_e1000"]),
    "pci_bridge": (ADDRESSES["pci_bridge"], ADDRESSES["bridged_e1000"], ADDRESSES["bridged_rtl8139"]),
    "noacs_port": (ADDRESSES["rp_noacs"], ADDRESSES["noacs_e1000e"]),
    "ich9": (ADDRESSES["lpc"], ADDRESSES["sata"], ADDRESSES["smbus"]),
}

# Addresses that are alone in their group in iommu_on.
SINGLE_GROUPS: tuple[str, ...] = tuple(
    ADDRESSES[k]
    for k in (
        "host_bridge",
        "e1000e",
        "virtio_net",
        "nvme",
        "rp_bridge",
        "audio",
        "usb_xhci",
        "display",
        "io_9p",
        "root_9p",
    )
)

# Endpoints that are safe for guest tests to bind to vfio-pci and back (own group, not protected).
FREE_ENDPOINTS: tuple[str, ...] = (ADDRESSES["e1000e"], ADDRESSES["virtio_net"], ADDRESSES["nvme"], ADDRESSES["audio"])

# no_timer_check: under TCG on a loaded machine the IO-APIC timer check (check_timer() in
# arch/x86/kernel/apic/io_apic.c) sometimes sees no tick in time and panics with "timer doesn't work through
# Interrupt-remapped IO-APIC"; the parameter skips that check (timer_irq_works() returns at once).
_COMMON_CMDLINE = "console=ttyS0 panic=-1 oops=panic mitigations=off loglevel=4 8250.nr_uarts=1 no_timer_check"

TOPOLOGIES: dict[str, dict] = {
    "iommu_on": {
        "cmdline": "intel_iommu=on iommu=pt",
        "memory_mb": 2048,  # headroom for a nested qemu + libvirtd in later tests
        "iommu": True,
    },
    "iommu_off": {
        "cmdline": "intel_iommu=off",
        "memory_mb": 1024,
        "iommu": False,
    },
    "iommu_default": {
        "cmdline": "",
        "memory_mb": 1024,
        "iommu": True,
    },
    "sriov": {
        "cmdline": "intel_iommu=on iommu=pt",
        "memory_mb": 1024,
        "iommu": True,
        "sriov": True,  # the SR-IOV PFs of SRIOV_ADDRESSES too
    },
}

IO_TAG = "pcipass-io"
ROOT_TAG = "pcipass-root"


def _slot(addr: str) -> str:
    """'0000:00:05.1' -> '05.1' (qemu's addr= for a device on a given bus)."""
    return addr.split(":")[2]


def _sriov_pf(n: int, bus: str, slot: str) -> list[str]:
    """QEMU's nvme as an SR-IOV PF with two VFs; the constraints QEMU enforces (subsys= required, both
    *_flexible set, vq_flexible >= 2 * max_vfs, vi_flexible >= max_vfs) are in shared/notes/real-kernel-testing.md."""
    return [
        "-device",
        f"nvme-subsys,id=sriovsub{n}",
        "-device",
        f"nvme,serial=pcipass-sriov{n},subsys=sriovsub{n},sriov_max_vfs=2,sriov_vq_flexible=4,"
        f"sriov_vi_flexible=2,bus={bus},addr={slot}",
    ]


def addresses(topology: str) -> dict[str, str]:
    """Role key -> address of every device of ``topology``."""
    return ADDRESSES | (SRIOV_ADDRESSES if TOPOLOGIES[topology].get("sriov") else {})


#: Where the reboot tests' persistent disk (the overlay's upper layer, /dev/vda) sits: protected like the 9p pair.
UPPER_DISK = "0000:00:1c.0"


def qemu_device_args(
    nvme_image: str,
    root_path: str,
    io_path: str,
    topology: str = "iommu_on",
    *,
    models: dict[str, str] | None = None,
    upper_disk: str | None = None,
) -> list[str]:
    """qemu arguments for the fixed hardware of ``topology`` (everything but machine/kernel/serial). ``models``:
    another qemu device model at a role's address (the reboot tests' changed hardware, e.g.
    ``{"e1000e": "rtl8139"}``); ``upper_disk``: an image attached as virtio-blk at UPPER_DISK."""
    a = ADDRESSES
    m = models or {}
    args = [
        # The IOMMU must be created before any PCI device.
        "-device",
        "intel-iommu,intremap=on,caching-mode=on",
        # Protected: the guest's root fs (host / read-only) and the writable result channel.
        "-fsdev",
        f"local,id=fsroot,path={root_path},security_model=none,readonly=on,multidevs=remap",
        "-device",
        f"virtio-9p-pci,fsdev=fsroot,mount_tag={ROOT_TAG},bus=pcie.0,addr={_slot(a['root_9p'])}",
        "-fsdev",
        f"local,id=fsio,path={io_path},security_model=none,multidevs=remap",
        "-device",
        f"virtio-9p-pci,fsdev=fsio,mount_tag={IO_TAG},bus=pcie.0,addr={_slot(a['io_9p'])}",
        # Endpoints in their own groups.
        "-device",
        f"{m.get('e1000e', 'e1000e')},bus=pcie.0,addr={_slot(a['e1000e'])}",
        "-device",
        f"virtio-net-pci,bus=pcie.0,addr={_slot(a['virtio_net'])}",
        "-drive",
        f"if=none,id=nvmedisk,file={nvme_image},format=raw",
        "-device",
        f"nvme,drive=nvmedisk,serial=pcipass-nvme0,bus=pcie.0,addr={_slot(a['nvme'])}",
        # One slot, two functions, no ACS: one group.
        "-device",
        f"virtio-net-pci,bus=pcie.0,addr={_slot(a['mf_virtio_net'])},multifunction=on",
        "-device",
        f"e1000,bus=pcie.0,addr={_slot(a['mf_e1000'])}",
        # Root port (ACS) -> PCIe-to-PCI bridge -> two conventional NICs: bridge + NICs one group.
        "-device",
        f"pcie-root-port,id=rp1,chassis=1,bus=pcie.0,addr={_slot(a['rp_bridge'])}",
        "-device",
        "pcie-pci-bridge,id=ppb,bus=rp1,addr=00.0",
        "-device",
        f"e1000,bus=ppb,addr={_slot(a['bridged_e1000'])}",
        "-device",
        f"rtl8139,bus=ppb,addr={_slot(a['bridged_rtl8139'])}",
        # Root port without ACS: port + its device one group.
        "-device",
        f"pcie-root-port,id=rp2,chassis=2,disable-acs=on,bus=pcie.0,addr={_slot(a['rp_noacs'])}",
        "-device",
        "e1000e,bus=rp2,addr=00.0",
        # An audio function.
        "-audiodev",
        "none,id=snd0",
        "-device",
        f"ich9-intel-hda,id=hda,bus=pcie.0,addr={_slot(a['audio'])}",
        "-device",
        "hda-output,bus=hda.0,audiodev=snd0",
        # A USB controller with a keyboard behind it: in use by the host (its console input).
        "-device",
        f"qemu-xhci,id=xhci,bus=pcie.0,addr={_slot(a['usb_xhci'])}",
        "-device",
        "usb-kbd,bus=xhci.0",
        # A display device with a DRM driver (bochs-drm: /dev/dri/card0): processes holding a GPU's nodes.
        "-device",
        f"bochs-display,bus=pcie.0,addr={_slot(a['display'])}",
    ]
    if TOPOLOGIES[topology].get("sriov"):
        s = SRIOV_ADDRESSES
        args += _sriov_pf(0, "pcie.0", _slot(s["sriov_pf"]))
        args += ["-device", f"pcie-root-port,id=rp3,chassis=3,bus=pcie.0,addr={_slot(s['sriov_rp'])}"]
        args += _sriov_pf(1, "rp3", "00.0")
    if upper_disk is not None:
        args += [
            "-drive",
            f"if=none,id=upper,file={upper_disk},format=raw",
            "-device",
            f"virtio-blk-pci,drive=upper,bus=pcie.0,addr={_slot(UPPER_DISK)}",
        ]
    return args


def guest_env(topology: str) -> dict[str, str]:
    """Environment variables describing the topology to guest tests."""
    spec = TOPOLOGIES[topology]
    info = {
        "name": topology,
        "iommu": spec["iommu"],
        "addresses": addresses(topology),
        "protected": list(PROTECTED),
        "shared_groups": {k: list(v) for k, v in SHARED_GROUPS.items()},
        "single_groups": list(SINGLE_GROUPS),
        "free_endpoints": list(FREE_ENDPOINTS),
    }
    return {
        "PCIPASS_IN_GUEST": "1",
        "PCIPASS_GUEST_TOPOLOGY": topology,
        "PCIPASS_GUEST_PROTECTED": ",".join(PROTECTED),
        "PCIPASS_GUEST_TOPOLOGY_JSON": json.dumps(info, sort_keys=True),
    }
