from pcipass.host import Host
from pcipass.kmod import (
    CMDLINE_MODPROBE_BLACKLIST,
    CMDLINE_MODULE_BLACKLIST,
    ModState,
    driver_module,
    module_info,
    module_options,
    vfio_variant_for,
)

KVER = "6.1.0-test-amd64"


def _modules(fake, builtin=(), dep=(), alias=()):
    fake.write(f"lib/modules/{KVER}/modules.builtin", "".join(f"kernel/{p}\n" for p in builtin))
    fake.write(f"lib/modules/{KVER}/modules.dep", "".join(f"kernel/{p}:\n" for p in dep))
    fake.write(f"lib/modules/{KVER}/modules.alias", "".join(f"alias {a} {m}\n" for a, m in alias))


def test_states(fake):
    _modules(
        fake,
        builtin=["drivers/vfio/vfio.ko"],
        dep=["drivers/vfio/pci/vfio-pci.ko.xz", "drivers/vfio/vfio_iommu_type1.ko"],
    )
    fake.write("sys/module/kvm/initstate", "live\n")
    fake.write("proc/modules", "e1000e 286720 0 - Live 0x0000000000000000\n")
    host = Host(fake.root)
    assert module_info(host, "vfio").state is ModState.BUILTIN
    assert module_info(host, "vfio-pci").state is ModState.AVAILABLE
    assert module_info(host, "vfio_pci").name == "vfio_pci"
    assert module_info(host, "kvm").state is ModState.LOADED
    assert module_info(host, "e1000e").state is ModState.LOADED
    assert module_info(host, "nouveau").state is ModState.MISSING


def test_no_module_index_is_unknown_not_missing(fake):
    """A recorded tree or a container without /lib/modules/<release>: whether a module exists cannot be told."""
    fake.write("proc/modules", "e1000e 286720 0 - Live 0x0000000000000000\n")
    host = Host(fake.root)
    assert module_info(host, "vfio_pci").state is ModState.UNKNOWN
    assert module_info(host, "e1000e").state is ModState.LOADED
    (fake.root / "proc/sys/kernel/osrelease").unlink()  # release unknown: no directory to look in at all
    assert module_info(Host(fake.root), "vfio_pci").state is ModState.UNKNOWN


def test_blacklist_sources(fake):
    _modules(fake, dep=["drivers/vfio/pci/vfio-pci.ko", "drivers/gpu/nouveau.ko", "drivers/x/foo.ko"])
    fake.write("etc/modprobe.d/pass.conf", "# comment\nblacklist vfio-pci  # no\n")
    fake.write("lib/modprobe.d/gpu.conf", "install nouveau /bin/false\n")
    host = Host(fake.root)
    info = module_info(host, "vfio_pci")
    assert info.state is ModState.BLACKLISTED
    assert info.blacklist_source == "/etc/modprobe.d/pass.conf:2"
    nouveau = module_info(host, "nouveau")
    assert nouveau.state is ModState.BLACKLISTED and nouveau.install_override == "/bin/false"
    assert module_info(host, "foo").state is ModState.AVAILABLE
    fake.write("proc/cmdline", 'quiet "modprobe.blacklist=foo,bar" -- module_blacklist=nouveau\n')
    info = module_info(Host(fake.root), "foo")
    assert info.blacklisted and info.blacklist_source == CMDLINE_MODPROBE_BLACKLIST and not info.load_forbidden
    # After "--" the words go to init, not the kernel: nouveau stays forbidden only by its install line.
    nouveau = module_info(Host(fake.root), "nouveau")
    assert nouveau.load_forbidden and nouveau.blacklist_source == "/lib/modprobe.d/gpu.conf:1"
    fake.write("proc/cmdline", "quiet module_blacklist=foo\n")
    info = module_info(Host(fake.root), "foo")
    assert info.load_forbidden and info.blacklist_source == CMDLINE_MODULE_BLACKLIST


def test_etc_overrides_lib_same_file_name(fake):
    _modules(fake, dep=["drivers/vfio/pci/vfio-pci.ko"])
    fake.write("lib/modprobe.d/vfio.conf", "blacklist vfio_pci\n")
    fake.write("etc/modprobe.d/vfio.conf", "# emptied by the admin\n")
    assert module_info(Host(fake.root), "vfio_pci").state is ModState.AVAILABLE


def test_loaded_but_blacklisted_keeps_flag(fake):
    _modules(fake)
    fake.write("sys/module/vfio_pci/initstate", "live\n")
    fake.write("etc/modprobe.d/x.conf", "blacklist vfio_pci\n")
    info = module_info(Host(fake.root), "vfio_pci")
    assert info.state is ModState.LOADED and info.blacklisted


def test_vfio_variant_most_specific_wins(fake):
    _modules(
        fake,
        alias=[
            ("vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*", "mlx5_vfio_pci"),
            ("vfio_pci:v000015B3d*sv*sd*bc*sc*i*", "generic_vfio_pci"),
            ("pci:v000015B3d0000101Esv*sd*bc*sc*i*", "mlx5_core"),
        ],
    )
    host = Host(fake.root)
    alias = "pci:v000015B3d0000101Esv000015B3sd00000001bc02sc00i00"
    assert vfio_variant_for(host, alias) == "mlx5_vfio_pci"
    assert vfio_variant_for(host, "pci:v000015B3d00001017sv0sd0bc02sc00i00") == "generic_vfio_pci"
    assert vfio_variant_for(host, "pci:v00008086d000010D3sv0sd0bc02sc00i00") is None
    assert vfio_variant_for(host, None) is None


def test_driver_module(fake):
    fake.add_driver("vfio-pci")
    fake.add_driver("pcieport", module="")
    host = Host(fake.root)
    assert driver_module(host, "vfio-pci") == "vfio_pci"
    assert driver_module(host, "pcieport") == "pcieport"


def test_module_options_modprobe_d_then_cmdline(fake):
    _modules(fake)
    fake.write("etc/modprobe.d/a.conf", "options vfio_iommu_type1 allow_unsafe_interrupts=1 flag\n")
    fake.write("etc/modprobe.d/b.conf", "options vfio-pci ids=10de:1eb8,10de:10f8 disable_vga=1  # gpu\n")
    host = Host(fake.root)
    opts = module_options(host, "vfio_iommu_type1")
    assert (
        opts["allow_unsafe_interrupts"].value == "1"
        and opts["allow_unsafe_interrupts"].source == "/etc/modprobe.d/a.conf:1"
    )
    assert opts["flag"].value is None
    assert module_options(host, "vfio_pci")["ids"].value == "10de:1eb8,10de:10f8"
    fake.write("proc/cmdline", "quiet vfio-pci.ids=8086:10d3\n")
    ids = module_options(Host(fake.root), "vfio-pci")["ids"]
    assert ids.value == "8086:10d3" and ids.source == "kernel command line"
    assert module_options(host, "e1000e") == {}
