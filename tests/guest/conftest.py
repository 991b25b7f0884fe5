"""Guest-side pytest plugin: runs ONLY inside the real-kernel qemu guest booted by tests/realkernel.

Conventions for a guest test module ``tests/guest/test_*.py``:

* it declares the topology (or topologies) it needs with a module-level constant, read by the host
  *statically* (AST, the module is never imported on the host)::

      TOPOLOGY = "iommu_on"                  # or ("iommu_on", "iommu_off")

* it is an ordinary pytest module, run as root in the guest by the same interpreter as the host's
  pytest (the host's venv is visible through the 9p root). Plain ``test_*`` functions and
  ``Test*`` classes; ``parametrize`` is fine (all cases of one function map to one host item).
* it must never touch the ``protected`` addresses (the guest's root fs and result channel).
* prefer in-process library calls (``Inventory.scan(Host("/"))``) to CLI subprocesses: a Python
  start-up costs ~1 s under TCG.

Fixtures: ``topology`` (dict: name, iommu, addresses, protected, shared_groups, single_groups,
free_endpoints -- see tests/realkernel/topology.py), ``addr`` (role key -> address),
``protected`` (set of addresses), ``lspci`` (parsed ``lspci -D -n -vmm -k``), ``sysfs_groups``
(group number -> set of addresses, from /sys/kernel/iommu_groups), ``run_cli`` (runs
``python -m pcipass ...`` and returns the CompletedProcess), ``mtty`` (the sample mdev driver loaded for the
module's tests, any topology).

The reporter below appends one JSON line per test report to ``$PCIPASS_GUEST_RESULTS`` (on the
writable 9p share), flushed at once, so results survive a guest that is killed half way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.guest.kernel import driver as _driver


def _in_guest() -> bool:
    if os.environ.get("PCIPASS_IN_GUEST") != "1":
        return False
    try:
        return "pcipass_guest=1" in Path("/proc/cmdline").read_text().split()
    except OSError:
        return False


if not _in_guest():
    raise pytest.UsageError(
        "tests/guest/ runs only inside the real-kernel qemu guest (it rebinds PCI devices!); "
        "run it through the host tier: pytest -m realkernel tests/realkernel"
    )


# --------------------------------------------------------------------------- result reporter

_RESULTS_PATH = os.environ.get("PCIPASS_GUEST_RESULTS")
_results_file = None


def _emit(record: dict) -> None:
    global _results_file
    if not _RESULTS_PATH:
        return
    if _results_file is None:
        _results_file = open(_RESULTS_PATH, "a", buffering=1)
    _results_file.write(json.dumps(record) + "\n")
    _results_file.flush()
    os.fsync(_results_file.fileno())


def _longrepr_text(report) -> str:
    if report.longrepr is None:
        return ""
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:  # skip: (path, lineno, reason)
        return str(report.longrepr[2])
    try:
        return report.longreprtext
    except Exception:  # noqa: BLE001 - any failure to render the report falls back to its raw form
        return str(report.longrepr)


_protected_at_start: dict[str, str | None] = {}


def pytest_sessionstart(session):
    for a in _protected():
        _protected_at_start[a] = _driver(a)
    _emit(
        {
            "event": "start",
            "time": time.time(),
            "python": sys.executable,
            "topology": os.environ.get("PCIPASS_GUEST_TOPOLOGY"),
            "protected": _protected_at_start,
        }
    )


def pytest_collectreport(report):
    if report.failed:
        _emit({"event": "collect", "nodeid": report.nodeid, "outcome": "failed", "longrepr": _longrepr_text(report)})


def pytest_runtest_logreport(report):
    rec = {
        "event": "test",
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "duration": round(report.duration, 3),
    }
    if report.outcome != "passed":
        rec["longrepr"] = _longrepr_text(report)
    if hasattr(report, "wasxfail"):
        rec["xfail"] = str(report.wasxfail)
    _emit(rec)


def pytest_sessionfinish(session, exitstatus):
    touched = {a: [before, _driver(a)] for a, before in _protected_at_start.items() if _driver(a) != before}
    _emit({"event": "finish", "time": time.time(), "exitstatus": int(exitstatus), "protected_touched": touched})


# --------------------------------------------------------------------------- fixtures


def _topology() -> dict:
    return json.loads(os.environ["PCIPASS_GUEST_TOPOLOGY_JSON"])


def _protected() -> set[str]:
    return {a for a in os.environ.get("PCIPASS_GUEST_PROTECTED", "").split(",") if a}


@pytest.fixture(scope="session")
def topology() -> dict:
    return _topology()


@pytest.fixture(scope="session")
def addr(topology) -> dict[str, str]:
    return topology["addresses"]


@pytest.fixture(scope="session")
def protected() -> set[str]:
    return _protected()


LSPCI_CMD = ["lspci", "-D", "-n", "-vmm", "-k"]


def parse_lspci(text: str) -> dict[str, dict]:
    """``lspci -D -n -vmm -k`` -> address -> {vendor_id, device_id, class_id, revision, driver, modules}.

    (Plain ``lspci -n`` omits the prog-if; the -vmm records always carry it.)
    """
    out: dict[str, dict] = {}
    for record in text.strip().split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in record.splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), []).append(value.strip())
        if "Slot" not in fields:
            continue
        one = {k: v[0] for k, v in fields.items()}
        out[one["Slot"]] = {
            "vendor_id": one["Vendor"].lower(),
            "device_id": one["Device"].lower(),
            "class_id": (one["Class"] + one.get("ProgIf", "00")).lower(),
            "revision": one.get("Rev", "00").lower(),
            "driver": one.get("Driver"),
            "modules": fields.get("Module", []),
        }
    return out


@pytest.fixture
def lspci() -> dict[str, dict]:
    """Fresh ``lspci -D -n -vmm -k`` view (function scope: tests may rebind devices)."""
    p = subprocess.run(LSPCI_CMD, capture_output=True, text=True, check=True)
    return parse_lspci(p.stdout)


def read_sysfs_groups() -> dict[int, set[str]]:
    root = Path("/sys/kernel/iommu_groups")
    if not root.is_dir():
        return {}
    return {int(g.name): {d.name for d in (g / "devices").iterdir()} for g in root.iterdir()}


@pytest.fixture
def sysfs_groups() -> dict[int, set[str]]:
    return read_sysfs_groups()


@pytest.fixture(scope="session")
def run_cli():
    """Run ``python -m pcipass ARGS`` (same interpreter); returns the CompletedProcess (text)."""

    def run(*args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "pcipass", *args], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"pcipass {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    return run


@pytest.fixture(scope="module")
def kernel_config():
    """The guest kernel's build config where distributions install it (/boot/config-$(uname -r)), copied
    from the extracted kernel package (its module tree is named on the command line)."""
    kver = os.uname().release
    target = Path("/boot") / f"config-{kver}"
    modules = next(
        a.split("=", 1)[1] for a in Path("/proc/cmdline").read_text().split() if a.startswith("pcipass_modules=")
    )
    source = Path(modules).parents[2] / "boot" / f"config-{kver}"
    created = not target.exists()
    if created:
        target.parent.mkdir(exist_ok=True)
        shutil.copy(source, target)
    yield target
    if created:
        target.unlink()


@pytest.fixture(scope="module")
def mtty():
    """The sample mdev driver (built by the host tier for this kernel, tests/realkernel/mtty.py) loaded, vfio and
    mdev first (it needs vfio_register_emulated_iommu_dev); yields ``Host("/")``. After the module: every mdev
    removed (whatever a failed test left) and mtty unloaded."""
    ko = os.environ.get("PCIPASS_GUEST_MTTY", "")
    if not ko:
        pytest.fail("the host tier could not build mtty.ko: " + os.environ.get("PCIPASS_GUEST_MTTY_ERROR", "?"))
    subprocess.run(["modprobe", "-a", "vfio", "mdev"], check=True)
    subprocess.run(["insmod", ko], check=True, capture_output=True, text=True)
    from pcipass.host import Host

    host = Host("/")
    yield host
    for link in os.listdir(host.mdev_devices_dir):
        with open(host.mdev_device(link) / "remove", "w") as fh:
            fh.write("1")
    subprocess.run(["rmmod", "mtty"], check=True)
