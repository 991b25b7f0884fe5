"""Kubernetes-facing names: vendor prefixes, resource names within every limit, Harvester object names."""

from __future__ import annotations

import pytest

from pcipass.emit import names
from pcipass.errors import UsageError


@pytest.mark.parametrize(
    "vendor,expected",
    [
        ("NVIDIA Corporation", "nvidia.com"),
        ("Advanced Micro Devices, Inc. [AMD/ATI]", "amd.com"),
        ("Intel Corporation", "intel.com"),
        ("Hewlett-Packard Company", "hewlettpackard.com"),
        ("Mellanox Technologies", "mellanox.com"),
        ("[/] Odd Vendor", "odd.com"),  # empty brackets: the first word instead
        ("<<>> {{ }}", "pci-1234.com"),  # nothing usable: the vendor ID
        (None, "pci-1234.com"),
        ("", "pci-1234.com"),
    ],
)
def test_vendor_prefix(vendor, expected):
    assert names.vendor_prefix(vendor, "1234") == expected


@pytest.mark.parametrize(
    "device,expected",
    [
        ("TU104GL [Tesla T4]", "TU104GL_Tesla_T4"),  # the example in KubeVirt's own documentation
        ("GA107GL [A2 / A16]", "GA107GL_A2_A16"),
        ("Ethernet Connection (2) I219-V", "Ethernet_Connection_2_I219_V"),
        ('</hostdev> & "x" {{ y }}\n', "hostdev_x_y"),
        ("<<>>", "1eb8"),
        (None, "1eb8"),
    ],
)
def test_device_part(device, expected):
    assert names.device_part(device, "1EB8") == expected


def test_resource_names_are_valid_and_fit_the_socket_path():
    for prefix in ("nvidia.com", names.vendor_prefix("X" * 300, "abcd")):
        for part in ("A", "B" * 63, "C" * 500):
            res = names.resource_name(prefix, part)
            assert names.is_extended_resource_name(res), res
            assert len(names.kubevirt_socket_path(res)) < names.SUN_PATH_MAX
    # the socket path is the binding limit: 107 characters at most, reached by a long name
    longest = names.resource_name("nvidia.com", "N" * 500)
    assert len(names.kubevirt_socket_path(longest)) == names.SUN_PATH_MAX - 1


def test_kubevirt_socket_path_is_what_virt_handler_creates():
    assert (
        names.kubevirt_socket_path("nvidia.com/TU104GL_Tesla_T4")
        == "/var/lib/kubelet/device-plugins/kubevirt-nvidia.com-TU104GL_Tesla_T4.sock"
    )


def test_shortened_names_are_deterministic_and_distinct():
    a1 = names.resource_name("intel.com", "Very_Long_Device_Name_" * 10 + "A")
    a2 = names.resource_name("intel.com", "Very_Long_Device_Name_" * 10 + "A")
    b = names.resource_name("intel.com", "Very_Long_Device_Name_" * 10 + "B")
    assert a1 == a2 and a1 != b
    assert names.resource_name("intel.com", "Short") == "intel.com/Short"


@pytest.mark.parametrize(
    "bad",
    [
        "nvidia.com",
        "/x",
        "Nvidia.com/x",
        "nvidia.com/-x",
        "nvidia.com/x-",
        "kubernetes.io/x",
        "a.kubernetes.io/x",
        "nvidia.com/" + "x" * 64,
        "nvidia.com/a b",
        "nvidia.com/a\nb",
        "nvidia..com/x",
    ],
)
def test_invalid_extended_resource_names_are_rejected(bad):
    assert not names.is_extended_resource_name(bad)


def test_harvester_device_name():
    assert names.harvester_device_name("node1", "0000:08:00.0") == "node1-000008000"
    assert names.harvester_device_name("harvester-node", "08:00.2") == "harvester-node-000008002"
    with pytest.raises(UsageError):
        names.harvester_device_name("n" * 250, "0000:08:00.0")


def test_per_device_resource_name():
    assert (
        names.per_device_resource_name("mellanox.com", "harvester-node", "0000:08:00.2")
        == "mellanox.com/harvester-node-000008002"
    )
    long = names.per_device_resource_name("mellanox.com", "rack12-" + "n" * 100, "0000:08:00.2")
    assert names.is_extended_resource_name(long) and len(names.kubevirt_socket_path(long)) < names.SUN_PATH_MAX


@pytest.mark.parametrize("bad", ["Node1", "node_1", "-node", "node.", "", "n" * 254, "a b", "x\ny"])
def test_check_dns_name_rejects(bad):
    with pytest.raises(UsageError, match="invalid node name"):
        names.check_dns_name(bad, "node name")


def test_check_dns_name_accepts():
    assert names.check_dns_name("worker-1.rack-2.example.com", "node name") == "worker-1.rack-2.example.com"
