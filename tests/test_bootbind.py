"""What binds a device at the next boot (pcipass.bootbind): driverctl's saved override, vfio-pci's ids=."""

from pcipass.bootbind import DRIVERCTL, VFIO_IDS, BootBinding, BootConfig
from pcipass.host import Host
from pcipass.inventory import Inventory
from tests.support import bind_hosts as bh
from tests.support.bind_hosts import env  # noqa: F401 - fixture


def _boot(fake):
    host = Host(fake.root)
    inv = Inventory.scan(host)
    return lambda address: BootConfig(host).of(inv.devices[address])


def test_nothing_configured(env):
    assert _boot(env.fake)(bh.E1000E) is None


def test_driverctl_wins_over_ids_and_an_empty_file_is_ignored(env):
    env.fake.write("etc/modprobe.d/vfio.conf", "options vfio_pci ids=8086:10d3,1af4:1000\n")
    env.fake.write(f"etc/driverctl.d/pci-{bh.E1000E}", "e1000e\n")
    env.fake.write(f"etc/driverctl.d/pci-{bh.VIRTIO}", "")  # driverctl load-override skips an empty file
    boot = _boot(env.fake)
    assert boot(bh.E1000E) == BootBinding("e1000e", DRIVERCTL, f"/etc/driverctl.d/pci-{bh.E1000E}")
    assert boot(bh.VIRTIO) == BootBinding("vfio-pci", VFIO_IDS, "/etc/modprobe.d/vfio.conf:1")
    assert boot(bh.NVME) is None


def test_command_line_ids_override_modprobe_d(env):
    """modprobe appends the command line's vfio-pci.ids= after modprobe.d's options: the later one wins."""
    env.fake.write("etc/modprobe.d/vfio.conf", "options vfio-pci ids=8086:10d3\n")
    env.fake.set_cmdline("BOOT_IMAGE=/vmlinuz root=/dev/sda1 vfio-pci.ids=1af4:1000")
    boot = _boot(env.fake)
    assert boot(bh.E1000E) is None
    assert boot(bh.VIRTIO) == BootBinding("vfio-pci", VFIO_IDS, "kernel command line")
