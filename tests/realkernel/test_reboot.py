"""Passthrough across a real reboot: systemd as PID 1, /etc on a persistent disk, the boot unit of pcipass.

Boot 1 (the ordinary guest of the ``sriov`` topology, its overlay's upper layer on an ext4 image): ``pcipass
persist`` a device and a two-function group; an mtty instance created and declared with ``pcipass mdev persist``,
mtty set to load at boot (modules-load.d); an ``sriov`` entry for the nvme PF (2 VFs, autoprobe off, on vfio-pci;
written by hand, no command writes one); ``pcipass boot install``, and the units boot 2 needs; power off. Boot 2
(the same image, systemd as PID 1): pcipass-apply.service creates the VFs, binds them and the devices, and creates
the mdev again, before a unit named libvirtd.service (it stands in for the real one: its ``ExecStartPre`` records
the drivers, the VF count and the mdev it finds, and only pcipass-apply's ``Before=`` orders the two), then that
unit records ``status``, ``verify`` and ``boot status`` and powers off. Boot 3 (a copy of boot 1's image, another
device model at the persisted NIC's address): apply refuses that entry at boot, ``verify`` names the drift, the
card stays on its host driver, and the group, the VFs and the mdev are there all the same.

Host-side tests (three qemu boots), marked ``realkernel``; tests/realkernel/README.md says how the guest is
made. systemd in the guest (tests/realkernel/README.md, "systemd as PID 1"): no udevd (stage 2 does the coldplug
before systemd starts, so host drivers are bound when the unit runs, as after a real initramfs), and the masks
boot 1 writes: /.dockerenv removed (else systemd takes itself for a container and ignores the kernel command
line), /usr/lib/tmpfiles.d/tmp.conf (its ``D /tmp``), serial-getty@ttyS0 (it waits for a .device unit that no
udevd makes).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from . import topology as topo
from .provision import REPO, provision
from .runner import guest_timeout_s, skip_reason
from .vm import GUEST_IO_MOUNT, GuestRun, run_guest

pytestmark = pytest.mark.realkernel

TOPOLOGY = "sriov"  # iommu_on's hardware and QEMU's nvme as an SR-IOV PF
NIC = topo.ADDRESSES["e1000e"]
MF0, MF1 = topo.ADDRESSES["mf_virtio_net"], topo.ADDRESSES["mf_e1000"]
PF = topo.SRIOV_ADDRESSES["sriov_pf"]
VF1, VF2 = topo.SRIOV_VFS["sriov_pf"]
MDEV = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1017"
CONFIG = "/etc/pcipass/pcipass.yaml"
UPPER_MB = 96
PY = f"{REPO}/.venv/bin/python"
SYSTEMD_CMDLINE = (
    "pcipass_systemd=1",
    "systemd.unit=pcipass-test.target",
    "systemd.journald.storage=volatile",
    "systemd.show_status=false",
)

# The stand-in for libvirtd: DefaultDependencies=no, nothing orders it after anything, so it runs before
# pcipass-apply.service unless that unit's Before=libvirtd.service holds it back.
_LIBVIRTD = f"""\
[Unit]
Description=Stands in for libvirtd (the pcipass reboot test)
DefaultDependencies=no
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStartPre=/bin/sh {GUEST_IO_MOUNT}/pre.sh
ExecStart=/bin/sh {GUEST_IO_MOUNT}/check.sh
"""
_TARGET = """\
[Unit]
Description=pcipass reboot test
Requires=basic.target
Wants=libvirtd.service
After=basic.target
"""

# What libvirtd's ExecStartPre finds (raw sysfs, not pcipass): "ADDRESS DRIVER" ("-": none, or no such device), the
# PF's VF count, the mdev's type ("-": no such instance).
_PRE = f"""\
exec >{GUEST_IO_MOUNT}/pre.txt 2>&1
for a in {NIC} {MF0} {MF1} {VF1} {VF2}; do
    d=/sys/bus/pci/devices/$a/driver
    if [ -e $d ]; then echo "$a $(basename "$(readlink $d)")"; else echo "$a -"; fi
done
echo "numvfs $(cat /sys/bus/pci/devices/{PF}/sriov_numvfs)"
t=/sys/bus/mdev/devices/{MDEV}/mdev_type
if [ -e $t ]; then echo "mdev $(basename "$(readlink $t)")"; else echo "mdev -"; fi
"""

_CHECK = f"""\
exec >{GUEST_IO_MOUNT}/check.log 2>&1
cd {shlex.quote(str(REPO))}
systemctl show -p InactiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic -p Result -p ExecMainStatus \
    pcipass-apply.service >{GUEST_IO_MOUNT}/apply-unit.txt
systemctl show -p InactiveExitTimestampMonotonic libvirtd.service >{GUEST_IO_MOUNT}/libvirtd-unit.txt
systemctl show -p ActiveEnterTimestampMonotonic -p Result systemd-modules-load.service \
    >{GUEST_IO_MOUNT}/modules-load-unit.txt
cp /run/pcipass/boot-apply.json {CONFIG} {GUEST_IO_MOUNT}/ || true
journalctl -b -u pcipass-apply.service -u systemd-modules-load.service --no-pager >{GUEST_IO_MOUNT}/journal.txt 2>&1
{PY} -m pcipass -f json status {NIC} {MF0} {MF1} {VF1} {VF2} >{GUEST_IO_MOUNT}/status.json
{PY} -m pcipass -f json verify >{GUEST_IO_MOUNT}/verify.json
{PY} -m pcipass -f json boot status >{GUEST_IO_MOUNT}/boot-status.json
echo 0 >{GUEST_IO_MOUNT}/command.rc
"""


# The PF's entry, by hand: no command writes an sriov entry (docs/sriov.md has the format). QEMU's nvme ids, class
# NVMe, on the root bus.
_SRIOV_ENTRY = f"""\
sriov:
  - address: '{PF}'
    numvfs: 2
    autoprobe: false
    vfio: true
    fingerprint: {{vendor: '1b36', device: '0010', class: '010802', path: '0000:00/{PF.rsplit(":", 1)[1]}'}}
"""


def _mtty_at_boot(ko: Path) -> list[str]:
    """Boot 1's lines that make mtty load at every boot, as an installed module would.

    A virtual mdev parent has no device whose modalias would load its driver (no coldplug does), so a host lists it
    in modules-load.d; systemd-modules-load.service loads it, and pcipass-apply.service is ordered after that unit
    (persistence/boot.py), so the parent has registered its types when apply's mdev section runs: the order this
    test proves. mtty.ko is not in the kernel's module tree (built out of tree, tests/realkernel/mtty.py) and a
    depmod over the tree's ~4000 modules takes minutes under TCG: modprobe.d's ``install`` command loads it by path
    instead (libkmod runs it for ``modprobe mtty`` and for systemd-modules-load alike), with vfio and mdev first,
    which depmod would have named as its dependencies."""
    modprobe, insmod = "$(command -v modprobe)", "$(command -v insmod)"
    return [
        f'echo "install mtty {modprobe} -a vfio mdev && {insmod} {ko}" >/etc/modprobe.d/pcipass-test-mtty.conf',
        "echo mtty >/etc/modules-load.d/pcipass-test-mtty.conf",
        "modprobe mtty",
    ]


def _boot1_script(mtty_ko: Path) -> str:
    units = {"libvirtd.service": _LIBVIRTD, "pcipass-test.target": _TARGET}
    lines = [
        "set -ex",
        f"cd {shlex.quote(str(REPO))}",
        "rm -f /.dockerenv",
        "mkdir -p /etc/tmpfiles.d",
        "ln -sf /dev/null /etc/tmpfiles.d/tmp.conf",
        "ln -sf /dev/null /etc/systemd/system/serial-getty@ttyS0.service",
    ]
    for name, text in units.items():
        lines.append(f"cat >/etc/systemd/system/{name} <<'UNIT'\n{text}UNIT")
    lines += [
        f"{PY} -m pcipass persist {NIC}",
        f"{PY} -m pcipass persist --group {MF0}",
        *_mtty_at_boot(mtty_ko),
        f"{PY} -m pcipass mdev create mtty mtty-2 --uuid {MDEV}",
        f"{PY} -m pcipass mdev persist {MDEV}",
        f"cat >>{CONFIG} <<'YAML'\n{_SRIOV_ENTRY}YAML",
        f"{PY} -m pcipass boot install",
        f"cat {CONFIG} /etc/systemd/system/pcipass-apply.service",
    ]
    return "\n".join(lines) + "\n"


def _systemd_boot(image: Path, name: str, models: dict[str, str] | None = None) -> GuestRun:
    """Boot ``image`` with systemd as PID 1 and the check script in the result channel (the units boot 1 wrote
    run it); stage 2 runs no command.sh in this mode."""
    return run_guest(
        TOPOLOGY,
        "exit 99\n",
        timeout_s=guest_timeout_s(),
        run_name=name,
        extra_cmdline=SYSTEMD_CMDLINE,
        models=models,
        upper_disk=image,
        io_files={"check.sh": _CHECK, "pre.sh": _PRE},
    )


@pytest.fixture(scope="module")
def booted_once(tmp_path_factory) -> Path:
    """An upper-layer image after boot 1 (persist, mdev persist, the sriov entry, boot install, the test's units)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    prov = provision()
    if prov.mtty is None:
        pytest.fail(f"the host tier could not build mtty.ko: {prov.mtty_error}")
    image = tmp_path_factory.mktemp("reboot") / "upper.img"
    with open(image, "wb") as f:
        f.truncate(UPPER_MB << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "pcipass-upper", str(image)], check=True, timeout=60)
    run = run_guest(
        TOPOLOGY,
        _boot1_script(prov.mtty),
        timeout_s=guest_timeout_s(),
        prov=prov,
        run_name="reboot-boot1",
        upper_disk=image,
    )
    assert run.command_rc == 0, run.diagnostics()
    return image


def _copy(image: Path, name: str) -> Path:
    out = image.with_name(name)
    subprocess.run(["cp", "--sparse=always", str(image), str(out)], check=True, timeout=120)
    return out


def _read(run: GuestRun, name: str) -> str:
    p = run.io_dir / name
    assert p.exists(), f"{name} missing\n{run.diagnostics()}"
    return p.read_text()


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _pre(run: GuestRun) -> dict[str, str]:
    """What libvirtd's ExecStartPre found: address -> driver, ``numvfs``, ``mdev`` (its type)."""
    return dict(line.split(" ", 1) for line in _read(run, "pre.txt").splitlines())


def _line_of(run: GuestRun, text: str) -> str:
    """``CONFIG:N`` of the first line of the file (as boot 2 had it) that holds ``text``."""
    lines = _read(run, "pcipass.yaml").splitlines()
    return f"{CONFIG}:{next(i for i, line in enumerate(lines, 1) if text in line)}"


@pytest.fixture(scope="module")
def second_boots(booted_once) -> dict[str, GuestRun]:
    """Boot 2 (same hardware) and boot 3 (another card at the NIC's address), each from its own copy of boot 1's
    image: independent, so booted side by side unless PCIPASS_REALKERNEL_JOBS=1."""
    from concurrent.futures import ThreadPoolExecutor

    plans = {"same": ("boot2.img", None), "changed": ("boot3.img", {"e1000e": "rtl8139"})}
    jobs = int(os.environ.get("PCIPASS_REALKERNEL_JOBS") or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, min(2, jobs))) as pool:
        futures = {
            k: pool.submit(_systemd_boot, _copy(booted_once, img), f"reboot-{k}", models)
            for k, (img, models) in plans.items()
        }
        return {k: f.result() for k, f in futures.items()}


def test_boot_unit_binds_before_libvirtd(second_boots):
    run = second_boots["same"]
    assert run.command_rc == 0, run.diagnostics()
    # libvirtd's ExecStartPre saw every device on vfio-pci, the VFs created and bound, the mdev there: the unit ran
    # first, bound the group peer too, and brought back the VF count and the instance from the file.
    assert _pre(run) == {
        **{a: "vfio-pci" for a in (NIC, MF0, MF1, VF1, VF2)},
        "numvfs": "2",
        "mdev": "mtty-2",
    }
    apply_unit, libvirtd = _props(_read(run, "apply-unit.txt")), _props(_read(run, "libvirtd-unit.txt"))
    assert (apply_unit["Result"], apply_unit["ExecMainStatus"]) == ("success", "0")
    assert 0 < int(apply_unit["ActiveEnterTimestampMonotonic"]) <= int(libvirtd["InactiveExitTimestampMonotonic"])
    # mtty came from modules-load.d, loaded before the unit started (its After=systemd-modules-load.service)
    modules_load = _props(_read(run, "modules-load-unit.txt"))
    assert modules_load["Result"] == "success"
    assert 0 < int(modules_load["ActiveEnterTimestampMonotonic"]) <= int(apply_unit["InactiveExitTimestampMonotonic"])
    record = json.loads(_read(run, "boot-apply.json"))
    assert (record["exit_code"], record["changed"]) == (0, True)
    assert [(e["section"], e["address"], e["outcome"]) for e in record["entries"]] == [
        ("sriov", PF, "changed"),
        ("devices", NIC, "changed"),
        ("devices", MF0, "changed"),
        ("mdev", MDEV, "changed"),
    ]
    status = {d["address"]: d for d in json.loads(_read(run, "status.json"))["data"]}
    assert {a: (d["driver"], d["vfio_viable"]) for a, d in status.items()} == {
        a: ("vfio-pci", True) for a in (NIC, MF0, MF1, VF1, VF2)
    }
    assert {d["phase"] for d in status.values()} == {"enabled"}
    # bound by the boot unit through the engine: recorded (the VFs came up on no driver: autoprobe off)
    assert {a: d["recorded_driver"] for a, d in status.items()} == {
        NIC: "e1000e",
        MF0: "virtio-pci",
        MF1: "e1000",
        VF1: None,
        VF2: None,
    }
    # ... and status says what binds them at the next boot: pcipass's unit, from the file's entries (the VFs: the
    # sriov entry that creates them).
    assert {a: (d["boot_driver"], d["boot_by"]) for a, d in status.items()} == {
        a: ("vfio-pci", "pcipass") for a in (NIC, MF0, MF1, VF1, VF2)
    }
    assert status[MF1]["boot_where"] == status[MF0]["boot_where"] != status[NIC]["boot_where"]
    assert status[NIC]["boot_where"] == f"{CONFIG}:6"  # the entry's line
    assert status[VF1]["boot_where"] == status[VF2]["boot_where"] == _line_of(run, f"address: '{PF}'")
    verify = json.loads(_read(run, "verify.json"))
    assert verify["drift"] is False
    assert [(v["section"], v["address"], v["drift"]) for v in verify["data"]] == [
        ("sriov", PF, "match"),
        ("devices", NIC, "match"),
        ("devices", MF0, "match"),
        ("mdev", MDEV, "match"),
    ]
    boot = json.loads(_read(run, "boot-status.json"))["data"]
    assert (boot["installed"], boot["current"], boot["enabled"], boot["last_apply_note"]) == (
        True,
        True,
        True,
        "this boot",
    )


def test_changed_hardware_is_refused_at_boot(second_boots):
    run = second_boots["changed"]
    assert run.command_rc == 0, run.diagnostics()
    assert _pre(run) == {
        NIC: "8139cp",
        **{a: "vfio-pci" for a in (MF0, MF1, VF1, VF2)},
        "numvfs": "2",
        "mdev": "mtty-2",
    }
    record = json.loads(_read(run, "boot-apply.json"))
    assert record["exit_code"] == 3  # the group, the VFs and the mdev converged, the NIC's entry was refused
    (nic,) = [e for e in record["entries"] if e["address"] == NIC]
    assert nic["outcome"] == "refused" and "a different card is at 0000:00:02.0" in nic["reasons"][0]
    assert "vendor 8086 recorded, 10ec found" in nic["reasons"][0]
    assert {e["address"]: e["outcome"] for e in record["entries"] if e["address"] != NIC} == {
        PF: "changed",
        MF0: "changed",
        MDEV: "changed",
    }
    assert _props(_read(run, "apply-unit.txt"))["Result"] == "exit-code"
    assert "refused" in _read(run, "journal.txt")
    verify = json.loads(_read(run, "verify.json"))
    drift = {v["address"]: v["drift"] for v in verify["data"]}
    assert verify["drift"] is True and drift == {PF: "match", NIC: "different-card", MF0: "match", MDEV: "match"}
    status = {d["address"]: d for d in json.loads(_read(run, "status.json"))["data"]}
    assert status[NIC]["driver"] == "8139cp" and status[NIC]["phase"] is None
