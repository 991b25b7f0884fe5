"""The kernel command-line parser: lib/cmdline.c next_arg() semantics."""

import pytest

from pcipass.cmdline import Cmdline


def _kv(text):
    return [(p.key, p.value) for p in Cmdline.parse(text).params]


def test_plain_flags_and_values():
    assert _kv("BOOT_IMAGE=/vmlinuz-6.1 root=UUID=ab-cd ro quiet") == [
        ("BOOT_IMAGE", "/vmlinuz-6.1"),
        ("root", "UUID=ab-cd"),
        ("ro", None),
        ("quiet", None),
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('dyndbg="file x.c +p" quiet', [("dyndbg", "file x.c +p"), ("quiet", None)]),  # quoted value
        ('"dyndbg=file x.c +p" quiet', [("dyndbg", "file x.c +p"), ("quiet", None)]),  # whole parameter quoted
        ('"quiet"', [("quiet", None)]),
        ('a=b"c d" e', [("a", 'b"c d"'), ("e", None)]),  # inner quotes are kept, spaces inside them too
        ("empty= x", [("empty", ""), ("x", None)]),
        ("=a=b", [("=a", "b")]),  # next_arg() ignores an '=' in the first position
        ("  \tspaced \n  out  ", [("spaced", None), ("out", None)]),
        ("", []),
    ],
)
def test_quotes_and_edges(text, expected):
    assert _kv(text) == expected


def test_double_dash_ends_kernel_parameters():
    cl = Cmdline.parse("quiet intel_iommu=on -- --firecracker-init iommu=off")
    assert [p.key for p in cl.params] == ["quiet", "intel_iommu"]
    assert cl.init_args == ("--firecracker-init", "iommu=off")
    assert not cl.has("iommu")
    # "--" with a value is an ordinary (unknown) parameter, not the separator
    assert Cmdline.parse("--=x quiet").has("quiet")


def test_dashes_equal_underscores_in_names():
    cl = Cmdline.parse("vfio-pci.ids=10de:1eb8 intel-iommu=on")
    assert cl.value("vfio_pci.ids") == "10de:1eb8"
    assert cl.value("vfio-pci.ids") == "10de:1eb8"
    assert cl.options("intel_iommu") == ["on"]
    assert cl.tokens("vfio_pci.ids") == ["vfio-pci.ids=10de:1eb8"]


def test_repeated_keys_last_wins_and_options_accumulate():
    cl = Cmdline.parse(
        "iommu.passthrough=1 intel_iommu=off iommu.passthrough=0 intel_iommu=on,sm_on intel_iommu=igfx_off"
    )
    assert cl.value("iommu.passthrough") == "0"
    assert cl.flag("iommu.passthrough") is False
    assert cl.options("intel_iommu") == ["off", "on", "sm_on", "igfx_off"]
    assert [p.value for p in cl.all("intel_iommu")] == ["off", "on,sm_on", "igfx_off"]
    assert cl.options("iommu") == []
    assert Cmdline.parse("iommu=pt,,nopt").options("iommu") == ["pt", "nopt"]


@pytest.mark.parametrize(
    "token, expected",
    [
        ("vfio.enable_unsafe_noiommu_mode", True),  # a bare bool parameter means true
        ("vfio.enable_unsafe_noiommu_mode=1", True),
        ("vfio.enable_unsafe_noiommu_mode=Y", True),
        ("vfio.enable_unsafe_noiommu_mode=on", True),
        ("vfio.enable_unsafe_noiommu_mode=0", False),
        ("vfio.enable_unsafe_noiommu_mode=N", False),
        ("vfio.enable_unsafe_noiommu_mode=maybe", None),  # rejected by kstrtobool
        ("quiet", None),
    ],
)
def test_flags(token, expected):
    assert Cmdline.parse(token).flag("vfio.enable_unsafe_noiommu_mode") is expected


def test_without_keeps_order_and_drops_named():
    cl = Cmdline.parse("BOOT_IMAGE=/v root=/dev/sda1 intel_iommu=off ro intel-iommu=igfx_off")
    assert cl.without("intel_iommu", "BOOT_IMAGE") == ["root=/dev/sda1", "ro"]
