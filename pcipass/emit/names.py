"""Kubernetes-facing names for PCI devices: resource names, node names, Harvester object names.

Every name made here is valid by construction (pci.ids names are untrusted text: ``<``, quotes, braces
and newlines are dropped, never escaped into a name) and deterministic (same input, same name; when a
name must be shortened, a hash of the full name keeps it unique).

Rules followed:

* Extended resource names are qualified names (k8s.io/apimachinery ``IsQualifiedName``): a DNS-1123
  subdomain prefix, ``/``, and a name of at most 63 characters matching
  ``([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]``; the ``kubernetes.io`` namespace is reserved.
* KubeVirt serves each permitted PCI resource from a device-plugin socket named after it
  (``pkg/virt-handler/device-manager``: ``SocketPath(strings.Replace(resourceName, "/", "-", -1))`` with
  ``SocketPath`` = ``<DevicePluginPath>/kubevirt-<name>.sock``). A Unix socket path must fit
  ``sun_path`` (108 bytes including the terminating NUL), so the whole path is kept under 108 characters.
* The vendor part follows Harvester's PCIDevice ``resourceName`` rule (harvester/pcidevices
  ``pkg/apis/devices.harvesterhci.io/v1beta1/pcidevice.go``, ``resourceName``): the bracketed short name
  when pci.ids has one (``[AMD/ATI]`` → ``amd``), else the first word (the first with any letter or digit),
  letters and digits only, lower-cased, plus ``.com``.
"""

from __future__ import annotations

import hashlib
import re

from ..address import PciAddress
from ..errors import UsageError

#: kubelet's device-plugin directory (k8s.io/kubelet ``DevicePluginPath``), as KubeVirt joins it into
#: socket paths on the *cluster node*. Used only to compute name lengths; pcipass never opens it.
KUBELET_DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins/"
#: ``sizeof(struct sockaddr_un.sun_path)`` on Linux, the terminating NUL included.
SUN_PATH_MAX = 108

_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_NON_ALNUM = re.compile(r"[^A-Za-z0-9]+")
_BRACKETED = re.compile(r"\[([^\]]+)\]")
_VENDOR_LABEL_MAX = 24


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _shorten(text: str, limit: int, sep: str) -> str:
    """``text`` if it fits ``limit``, else a prefix of it plus ``sep`` and a hash of the whole text."""
    if len(text) <= limit:
        return text
    head = text[: max(limit - len(sep) - 8, 1)].rstrip("-_.")
    return f"{head}{sep}{_digest(text)}"


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS_SUBDOMAIN.match(value))


def is_extended_resource_name(value: str) -> bool:
    """True when Kubernetes accepts ``value`` as an extended resource name (and quota ``requests.`` form)."""
    prefix, slash, name = value.partition("/")
    if not slash or not is_dns_subdomain(prefix) or not is_dns_subdomain("requests." + prefix):
        return False
    if prefix == "kubernetes.io" or prefix.endswith(".kubernetes.io"):
        return False
    return len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def kubevirt_socket_path(resource: str) -> str:
    """The device-plugin socket path KubeVirt's virt-handler creates for ``resource``."""
    return f"{KUBELET_DEVICE_PLUGIN_DIR}kubevirt-{resource.replace('/', '-')}.sock"


def _name_budget(prefix: str) -> int:
    """Longest name part after ``prefix/`` that keeps the socket path under ``SUN_PATH_MAX``."""
    fixed = len(kubevirt_socket_path(prefix + "/"))
    return min(63, SUN_PATH_MAX - 1 - fixed)


def vendor_prefix(vendor_name: str | None, vendor_id: str) -> str:
    """``nvidia.com`` from ``NVIDIA Corporation``; ``pci-10de.com`` when pci.ids has no usable name."""
    base = ""
    if vendor_name:
        bracket = _BRACKETED.search(vendor_name)
        if bracket:
            base = _NON_ALNUM.sub("", bracket.group(1).split("/")[0])
        if not base:
            words = (_NON_ALNUM.sub("", w) for w in vendor_name.split())
            base = next((w for w in words if w), "")
    label = base.lower() or f"pci-{vendor_id.lower()}"
    return _shorten(label, _VENDOR_LABEL_MAX, "-") + ".com"


def device_part(device_name: str | None, device_id: str) -> str:
    """``TU104GL_Tesla_T4`` from ``TU104GL [Tesla T4]``: every run of other characters becomes ``_``."""
    part = _NON_ALNUM.sub("_", device_name or "").strip("_")
    return part or device_id.lower()


def resource_name(prefix: str, part: str) -> str:
    """``prefix/part``, the part shortened (with a hash) to keep every Kubernetes and socket limit."""
    return f"{prefix}/{_shorten(part, _name_budget(prefix), '_')}"


def harvester_device_name(node: str, address: str) -> str:
    """The PCIDevice (and PCIDeviceClaim) object name Harvester derives: ``<node>-<address digits>``.

    harvester/pcidevices ``PCIDeviceNameForHostname``: the address with ``:`` and ``.`` removed, appended
    to the node name (``node1`` + ``0000:08:00.0`` → ``node1-000008000``); the claim validator looks the
    PCIDevice up by the claim's own name (``pkg/webhook/pcideviceclaim.go``), so both names are this one.
    """
    digits = str(PciAddress.parse(address)).replace(":", "").replace(".", "")
    name = f"{node}-{digits}"
    if not is_dns_subdomain(name):
        raise UsageError(f"node name {node!r} gives the invalid object name {name!r}")
    return name


def per_device_resource_name(prefix: str, node: str, address: str) -> str:
    """A resource name for one device: ``<vendor>.com/<node>-<address digits>``, as Harvester names a
    device whose claim sets ``disableResourcePooling`` (``{vendorPrefix}/{pd.Name}``)."""
    return resource_name(prefix, harvester_device_name(node, address))


def check_dns_name(value: str, what: str) -> str:
    """``value`` if it is a DNS-1123 subdomain (node and object names); UsageError naming it otherwise."""
    if not is_dns_subdomain(value):
        raise UsageError(
            f"invalid {what} {value!r}: use lower-case letters, digits, '-' and '.' (at most 253 characters)"
        )
    return value
