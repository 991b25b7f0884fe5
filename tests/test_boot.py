"""boot install/remove/status on fake roots (never the real /etc, never systemctl), apply --boot's record, and
the initramfs remedy for host drivers that bind before the unit."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.support import bind_hosts as bh
from tests.support.bind_hosts import _never_the_real_sys, cli, env  # noqa: F401 - fixtures

UNIT = "etc/systemd/system/pcipass-apply.service"
LINK = "etc/systemd/system/sysinit.target.wants/pcipass-apply.service"


@pytest.fixture(autouse=True)
def _no_programs(monkeypatch):
    """The unit names a fixed pcipass, and nothing runs a program (systemctl above all)."""
    import pcipass.persistence.boot as boot

    monkeypatch.setattr(boot, "executable", lambda: ["/usr/bin/pcipass"])

    def never(*a, **kw):
        raise AssertionError("a test ran a program")

    monkeypatch.setattr(boot.subprocess, "run", never)


def test_install_writes_the_unit_and_enables_it(cli, env):
    r = cli("-f", "json", "boot", "install")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["changed"] is True
    assert [(a["path"], a["action"]) for a in doc["data"]] == [
        ("/" + UNIT, "written"),
        ("/" + LINK, "linked"),
        ("systemctl daemon-reload", "skipped"),
    ]
    text = (env.root / UNIT).read_text()
    for line in (
        "Type=oneshot",
        "DefaultDependencies=no",
        "After=systemd-modules-load.service",
        "Before=sysinit.target shutdown.target libvirtd.service virtqemud.service kubelet.service "
        "rke2-server.service rke2-agent.service k3s.service",
        "ConditionPathExists=/etc/pcipass/pcipass.yaml",
        "ExecStart=/usr/bin/pcipass apply --boot --config /etc/pcipass/pcipass.yaml",
        "WantedBy=sysinit.target",
        "RequiresMountsFor=/etc/pcipass /usr/bin",
    ):
        assert line + "\n" in text
    # What systemctl enable makes: an absolute link to the unit's path on the host.
    assert os.readlink(env.root / LINK) == "/etc/systemd/system/pcipass-apply.service"
    again = json.loads(cli("-f", "json", "boot", "install").out)
    assert again["changed"] is False and [a["action"] for a in again["data"]] == ["unchanged", "unchanged"]


def test_install_with_another_config_and_a_stale_unit(cli, env, tmp_path):
    site = tmp_path / "site.yaml"
    assert cli("boot", "install", "--config", str(site)).code == 0
    assert f"--config {site}\n" in (env.root / UNIT).read_text()
    (env.root / UNIT).write_text("[Unit]\n")
    r = cli("boot", "status", "--config", str(site))
    assert r.code == 0 and "not what this pcipass writes" in r.out
    assert "written" in cli("boot", "install", "--config", str(site)).out


def test_remove_and_status(cli, env):
    r = cli("boot", "status")
    assert r.code == 0 and re.search(r"installed +no\n", r.out) and re.search(r"enabled +no\n", r.out)
    assert "no record of an apply at this boot" in r.out
    assert cli("boot", "install").code == 0
    r = cli("boot", "status")
    assert re.search(r"installed +yes\n", r.out) and re.search(r"enabled +yes\n", r.out)
    r = cli("-f", "json", "boot", "remove")
    assert [a["action"] for a in json.loads(r.out)["data"]] == ["removed", "removed", "skipped"]
    assert not os.path.lexists(env.root / LINK) and not (env.root / UNIT).exists()
    assert [a["action"] for a in json.loads(cli("-f", "json", "boot", "remove").out)["data"]] == ["absent", "absent"]


def test_apply_boot_records_the_outcome(cli, env):
    env.fake.write("proc/sys/kernel/random/boot_id", "1111\n")
    assert cli("persist", "00:02.0").code == 0
    assert cli("apply", "--boot").code == 0
    rec = json.loads((env.root / "run/pcipass/boot-apply.json").read_text())
    assert (rec["boot_id"], rec["exit_code"], rec["changed"]) == ("1111", 0, True)
    assert rec["entries"] == [{"section": "devices", "address": bh.E1000E, "outcome": "changed", "reasons": []}]
    r = cli("-f", "json", "boot", "status")
    data = json.loads(r.out)["data"]
    assert data["last_apply_note"] == "this boot" and data["last_apply"]["exit_code"] == 0
    env.fake.write("proc/sys/kernel/random/boot_id", "2222\n")
    assert "recorded at an earlier boot" in cli("boot", "status").out
    # A bad file at boot is recorded too, with its file:line.
    (env.root / "etc/pcipass/pcipass.yaml").write_text("version: 1\nbogus: 1\n")
    assert cli("apply", "--boot").code == 2
    rec = json.loads((env.root / "run/pcipass/boot-apply.json").read_text())
    assert rec["exit_code"] == 2 and rec["error"].startswith("/etc/pcipass/pcipass.yaml:2: bogus: unknown key")
    assert "/etc/pcipass/pcipass.yaml:2: bogus" in cli("boot", "status").out


@pytest.mark.parametrize(
    "program, words",
    [
        ("update-initramfs", "a line 'vfio-pci' in /etc/initramfs-tools/modules; update-initramfs -u -k all"),
        (
            "dracut",
            "'force_drivers+=\" vfio-pci \"' in /etc/dracut.conf.d/pcipass-vfio.conf; dracut -f --regenerate-all",
        ),
        (
            "mkinitcpio",
            "vfio_pci vfio vfio_iommu_type1 in MODULES=() and /etc/modprobe.d/pcipass-vfio.conf in FILES=() "
            "of /etc/mkinitcpio.conf; mkinitcpio -P",
        ),
    ],
)
def test_status_gives_the_initramfs_remedy(cli, env, program, words):
    env.fake.write(f"usr/sbin/{program}", "#!/bin/sh\n")
    assert cli("persist", "00:02.0", "00:04.0").code == 0
    assert cli("apply").code == 0  # the NVMe's host driver is the recorded one now
    data = json.loads(cli("-f", "json", "boot", "status").out)["data"]
    (early,) = data["early_drivers"]  # storage (class 01): its driver is in the initramfs; the NIC's is not
    assert (early["address"], early["driver"], early["builtin"]) == (bh.NVME, "nvme", False)
    assert early["remedy"].startswith(
        "'options vfio-pci ids=1b36:0010' and 'softdep nvme pre: vfio-pci' in /etc/modprobe.d/pcipass-vfio.conf; "
    )
    assert early["remedy"].endswith(words)


def test_status_says_a_builtin_driver_has_no_initramfs_remedy(cli, env):
    env.fake.write(f"lib/modules/{bh.KVER}/modules.builtin", "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko\n")
    assert cli("persist", "00:02.0").code == 0
    (early,) = json.loads(cli("-f", "json", "boot", "status").out)["data"]["early_drivers"]
    assert (early["driver"], early["builtin"], early["remedy"]) == ("e1000e", True, None)


def test_status_says_the_boot_unit_binds_persisted_devices(cli, env):
    assert cli("persist", "00:02.0", "--group", "00:05.0").code == 0
    assert cli("apply").code == 0
    doc = json.loads(cli("-f", "json", "status").out)
    assert {d["address"]: d["boot_by"] for d in doc["data"]} == {bh.E1000E: None, bh.MF0: None, bh.MF1: None}
    assert cli("boot", "install").code == 0  # enabled: the unit applies the file at boot
    r = cli("-f", "json", "status")
    got = {d["address"]: (d["boot_driver"], d["boot_by"], d["boot_where"]) for d in json.loads(r.out)["data"]}
    line = "/etc/pcipass/pcipass.yaml:6"
    assert got[bh.E1000E] == ("vfio-pci", "pcipass", line)
    assert got[bh.MF1] == ("vfio-pci", "pcipass", "/etc/pcipass/pcipass.yaml:" + str(_line_of(env, bh.MF0)))
    assert "until the next boot only" not in r.err


def test_status_does_not_promise_a_boot_binding_the_unit_refuses(cli, env):
    """A different card at a persisted address: the unit refuses the entry at boot (apply's fingerprint check),
    so status must not say pcipass binds it then, neither for the card on vfio now nor for one on its host
    driver."""
    assert cli("persist", "00:02.0", "00:03.0").code == 0
    assert cli("apply").code == 0
    assert cli("boot", "install").code == 0
    d = env.root / "sys/bus/pci/devices" / bh.E1000E
    (d / "vendor").write_text("0x10ec\n")  # another card at 00:02.0, still on vfio-pci from the apply
    r = cli("-f", "json", "status")
    got = {x["address"]: x for x in json.loads(r.out)["data"]}
    drifted, kept = got[bh.E1000E], got[bh.VIRTIO]
    assert (drifted["boot_driver"], drifted["boot_by"]) == (None, "pcipass")
    assert drifted["boot_where"] == "/etc/pcipass/pcipass.yaml:6"
    assert "a different card is at 0000:00:02.0" in drifted["boot_refused"]
    assert (kept["boot_driver"], kept["boot_by"], kept["boot_refused"]) == ("vfio-pci", "pcipass", None)
    assert (
        f"{bh.E1000E}: on vfio-pci until the next boot only: pcipass's boot unit refuses its entry "
        "(/etc/pcipass/pcipass.yaml:6): a different card" in r.err
    )
    assert f"{bh.VIRTIO}: on vfio-pci until the next boot only" not in r.err
    table = cli("status", bh.E1000E).out
    assert "refused (pcipass)" in table
    # Back on its host driver, the drifted card is not announced as taken by vfio-pci at the next boot.
    assert cli("disable", "00:02.0").code == 0
    r = cli("status", bh.E1000E)
    assert "binds it to vfio-pci at the next boot" not in r.err
    assert "pcipass's boot unit refuses its entry" in r.err


def _line_of(env, address: str) -> int:
    text = (env.root / "etc/pcipass/pcipass.yaml").read_text().splitlines()
    return next(i for i, t in enumerate(text, 1) if f"address: '{address}'" in t)
