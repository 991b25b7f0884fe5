"""Per-device checks (check-iommu --device)."""

import os

from pcipass.host import Host
from pcipass.preflight import run
from tests.support.preflight_hosts import checks, intel_host

GPU, AUDIO, PORT = "0000:01:00.0", "0000:01:00.1", "0000:00:01.0"


def _gpu_host(fake):
    intel_host(fake)
    fake.add_device(PORT, vendor="8086", device="1901", class_="060400", bridge=True, driver="pcieport", group=2)
    fake.add_device(
        GPU, vendor="10de", device="1eb8", class_="030000", parent=PORT, driver="nvidia", group=3, boot_vga=False
    )
    fake.add_device(
        AUDIO,
        vendor="10de",
        device="10f8",
        class_="040300",
        parent=PORT,
        driver="snd_hda_intel",
        group=3,
        reset_method=None,
    )
    return fake


def _dev(fake, address):
    return {c.id: c for c in run(Host(fake.root), [address]).checks if c.device == address}


def test_all_device_checks_and_their_order(fake):
    _gpu_host(fake)
    c = _dev(fake, GPU)
    assert list(c) == [
        "device.present",
        "device.endpoint",
        "device.group",
        "device.group_peers",
        "device.reset",
        "device.boot_vga",
        "device.in_use",
    ]
    assert c["device.present"].detail == "NVIDIA Corporation TU104GL [Tesla T4] [10de:1eb8], driver nvidia"
    assert c["device.endpoint"].verdict.value == "pass"
    assert c["device.group"].detail == "IOMMU group 3"
    assert c["device.group_peers"].verdict.value == "warn"
    assert c["device.group_peers"].detail.startswith(
        "group 3 also holds endpoints on host drivers: 0000:01:00.1 (snd_hda_intel)"
    )
    assert c["device.reset"].detail == "reset methods: flr, bus"
    assert c["device.boot_vga"].detail == "not the boot VGA device"
    assert c["device.in_use"].verdict.value == "pass"


def test_peers_on_vfio_or_bridges_do_not_block(fake):
    _gpu_host(fake)
    fake.unbind(AUDIO)
    fake.bind(AUDIO, "vfio-pci")
    c = _dev(fake, GPU)["device.group_peers"]
    assert (
        c.verdict.value == "pass" and c.detail == "group 3 also holds 0000:01:00.1 (vfio-pci): none blocks assignment"
    )
    assert _dev(fake, "0000:00:02.0")["device.group_peers"].detail == "alone in group 1"


def test_bridge_is_not_assignable(fake):
    _gpu_host(fake)
    c = _dev(fake, PORT)["device.endpoint"]
    assert c.verdict.value == "fail" and "header type 1" in c.detail


def test_no_group(fake):
    _gpu_host(fake)
    fake.add_device("0000:00:05.0")
    c = _dev(fake, "0000:00:05.0")
    assert c["device.group"].verdict.value == "fail"
    assert c["device.group_peers"].verdict.value == "skip"


def test_reset(fake):
    _gpu_host(fake)
    c = _dev(fake, AUDIO)["device.reset"]  # no reset_method attribute, but the older 'reset' one
    assert (c.verdict.value, c.detail) == ("pass", "resettable (this kernel does not list the methods)")
    os.unlink(fake.devices[AUDIO].path / "reset")
    assert _dev(fake, AUDIO)["device.reset"].verdict.value == "warn"
    fake.devices[GPU].path.joinpath("reset_method").write_text("\n")
    assert _dev(fake, GPU)["device.reset"].verdict.value == "warn"


def test_boot_vga_and_console_in_use(fake):
    _gpu_host(fake)
    fake.devices[GPU].path.joinpath("boot_vga").write_text("1\n")
    c = _dev(fake, GPU)
    assert c["device.boot_vga"].verdict.value == "warn"
    assert "initcall_blacklist=sysfb_init" in c["device.boot_vga"].remedy
    assert c["device.in_use"].verdict.value == "pass"  # no framebuffer on it
    fake.write("sys/devices/platform/efi-framebuffer.0/graphics/fb0/name", "EFI VGA\n")
    fake.symlink("sys/class/graphics/fb0", fake.path("sys/devices/platform/efi-framebuffer.0/graphics/fb0"))
    c = _dev(fake, GPU)["device.in_use"]
    assert c.verdict.value == "fail" and "framebuffer 'EFI VGA'" in c.detail
    assert "boot the host's console from another GPU" in c.remedy


def test_in_use_network(fake):
    intel_host(fake)
    fake.add_net("0000:00:02.0", "eno1")
    fake.write(
        "proc/net/route",
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eno1\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
    )
    c = _dev(fake, "0000:00:02.0")["device.in_use"]
    assert c.verdict.value == "fail" and c.detail.startswith("in use by the host: eno1: in the routing table")
    assert c.remedy == "route through another interface — or pick another device"


def test_in_use_skips_without_procfs(tmp_path):
    from tests.support.fakehost import FakeHost

    fake = FakeHost(tmp_path / "r")
    fake.add_device("0000:00:02.0", group=1)
    import shutil

    shutil.rmtree(fake.path("proc"))
    c = _dev(fake, "0000:00:02.0")["device.in_use"]
    assert c.verdict.value == "skip" and c.detail.startswith("no /proc in this root")


def test_missing_device_fails(fake):
    intel_host(fake)
    c = checks(fake, ["0000:99:00.0"])
    assert c["device.present@0000:99:00.0"].verdict.value == "fail"
    assert run(Host(fake.root), ["0000:99:00.0"]).summary.failed == ("device.present@0000:99:00.0",)


def test_the_documented_checks_are_the_checks_run(tmp_path):
    """pcipass/preflight/registry.py (the table in docs/check-iommu.md) lists exactly the checks the preflight
    runs, in report order: on an Intel host, on an AMD host (each gets its vendor's checks), and for a device."""
    from pcipass.preflight.registry import CHECKS
    from tests.support.fakehost import FakeHost
    from tests.support.preflight_hosts import amd_host

    def documented(vendor: str) -> list[str]:
        return [i for c in CHECKS if c.vendor in (None, vendor) for i in c.ids]

    intel = _gpu_host(FakeHost(tmp_path / "intel"))
    amd = amd_host(FakeHost(tmp_path / "amd"))
    assert [c.id for c in run(Host(intel.root), [GPU]).checks] == documented("intel")
    assert [c.id for c in run(Host(amd.root)).checks] == [i for i in documented("amd") if not i.startswith("device.")]
