"""persist/unpersist, apply (check mode, convergence, refusals, exit codes) and verify's drift explanations,
through the real CLI entry point on the fake binding host (tests/bind_hosts.py) with the fake kernel."""

from __future__ import annotations

import json

import pytest

from tests.support import bind_hosts as bh
from tests.support.bind_hosts import _never_the_real_sys, cli, env  # noqa: F401 - fixtures

CONF = "etc/pcipass/pcipass.yaml"


def _json(r) -> dict:
    return json.loads(r.out)


def _conf(env) -> str:
    return (env.root / CONF).read_text()


# --- persist / unpersist ----------------------------------------------------------------------------------------
def test_persist_records_fingerprint_and_group(cli, env):
    r = cli("-f", "json", "persist", "00:02.0", "00:05.0", "--group")
    assert r.code == 0, r.err
    doc = _json(r)
    assert doc["changed"] is True and [e["action"] for e in doc["data"]["entries"]] == ["added", "added"]
    assert "wrote /etc/pcipass/pcipass.yaml" in r.err
    text = _conf(env)
    assert (
        "  - address: '0000:00:05.0'\n    driver: vfio-pci\n    group: true\n    group_peers:\n"
        "      - '0000:00:05.1'\n    fingerprint:\n      vendor: '1af4'\n      device: '1000'\n"
    ) in text
    assert "path: '0000:00/02.0'" in text
    assert env.kernel.writes == []  # persist binds nothing
    again = cli("-f", "json", "persist", "00:02.0", "00:05.0", "--group")
    assert _json(again)["changed"] is False and "wrote" not in again.err


def test_persist_keeps_comments_and_updates_in_place(cli, env):
    assert cli("persist", "00:02.0").code == 0
    text = _conf(env).replace("    driver: vfio-pci\n", "    driver: vfio-pci   # lab NIC\n")
    (env.root / CONF).write_text("# owned by ops\n" + text)
    assert cli("persist", "--driver", "auto", "00:02.0").code == 0
    text = _conf(env)
    assert text.startswith("# owned by ops\n") and "driver: auto       # lab NIC" in text


def test_persist_behind_a_bridge_records_the_path(cli, env):
    assert cli("persist", "--group", bh.BR_E1000).code == 0
    text = _conf(env)
    assert "path: '0000:00/06.0/00.0/01.0'" in text
    assert "group_peers:\n      - '0000:01:00.0'\n      - '0000:02:02.0'\n" in text


@pytest.mark.parametrize(
    "args, code, words",
    [
        (("persist", "00:1f.0"), 1, "no PCI device 0000:00:1f.0"),
        (("persist", "00:06.0"), 5, "not an endpoint"),
        (("persist", "--driver", "e1000e", "00:02.0"), 2, "--driver e1000e"),
        (("persist", "3b:00"), 2, "invalid PCI address"),
        (("persist", "--config", "", "00:02.0"), 2, "--config is empty"),
    ],
)
def test_persist_refusals_write_nothing(cli, env, args, code, words):
    before = env.digest(with_state=True)
    r = cli(*args, "00:03.0") if args[-1] != "3b:00" else cli(*args)
    assert r.code == code and words in r.err, r.err
    assert env.digest(with_state=True) == before


def test_persist_refuses_a_driverctl_device(cli, env):
    env.fake.write(f"etc/driverctl.d/pci-{bh.E1000E}", "vfio-pci\n")
    r = cli("persist", "00:02.0")
    assert r.code == 5 and "two owners" in r.err and f"driverctl unset-override {bh.E1000E}" in r.err
    assert not (env.root / CONF).exists()


def test_persist_dry_run_and_explicit_config(cli, env, tmp_path):
    r = cli("persist", "--dry-run", "00:02.0")
    assert r.code == 0 and "added" in r.out and "not written" in r.err
    assert not (env.root / CONF).exists()
    site = tmp_path / "site.yaml"
    assert cli("persist", "--config", str(site), "00:02.0").code == 0
    assert "0000:00:02.0" in site.read_text() and not (env.root / CONF).exists()


def test_unpersist(cli, env):
    assert cli("persist", "00:02.0", "00:03.0").code == 0
    r = cli("-f", "json", "unpersist", "00:02.0", "00:09.0")
    assert [e["action"] for e in _json(r)["data"]["entries"]] == ["removed", "absent"]
    assert "0000:00:02.0" not in _conf(env) and "0000:00:03.0" in _conf(env)
    assert _json(cli("-f", "json", "unpersist", "00:02.0"))["changed"] is False


def test_enable_and_disable_persist(cli, env):
    r = cli("enable", "--persist", "--group", "00:05.0")
    assert r.code == 0 and "pcipass.yaml is edited: 0000:00:05.0 added" in r.err
    assert env.driver(bh.MF1) == "vfio-pci" and "group: true" in _conf(env)
    r = cli("disable", "--persist", "00:05.0", "00:05.1")
    assert r.code == 0 and "0000:00:05.0 removed" in r.err
    assert "0000:00:05.0" not in _conf(env) and env.driver(bh.MF0) == "virtio-pci"


def test_enable_persist_refused_records_nothing(cli, env):
    env.fake.write("proc/self/mountinfo", "30 1 259:1 / / rw - ext4 /dev/nvme0n1p1 rw\n")
    r = cli("enable", "--persist", "00:04.0")
    assert r.code == 5 and not (env.root / CONF).exists()
    env.fake.write(f"etc/driverctl.d/pci-{bh.E1000E}", "vfio-pci\n")
    r = cli("enable", "--persist", "00:02.0")
    assert r.code == 5 and "two owners" in r.err and env.kernel.writes == []


# --- apply --------------------------------------------------------------------------------------------------------
def test_apply_check_then_apply_then_converged(cli, env):
    assert cli("persist", "--group", "00:02.0", "00:05.0").code == 0
    before = env.digest(with_state=True)
    r = cli("-f", "json", "apply", "--check")
    assert r.code == 0, r.err
    doc = _json(r)
    assert doc["changed"] is True and doc["data"]["check"] is True
    assert [(e["address"], e["outcome"], e["peers"]) for e in doc["data"]["entries"]] == [
        (bh.E1000E, "changed", []),
        (bh.MF0, "changed", [bh.MF1]),
    ]
    assert env.digest(with_state=True) == before and env.kernel.writes == []

    r = cli("-f", "json", "apply")
    assert r.code == 0 and _json(r)["changed"] is True
    assert [env.driver(a) for a in (bh.E1000E, bh.MF0, bh.MF1)] == ["vfio-pci"] * 3

    writes = len(env.kernel.writes)
    r = cli("-f", "json", "apply")
    assert r.code == 0 and _json(r)["changed"] is False
    assert {e["outcome"] for e in _json(r)["data"]["entries"]} == {"unchanged"}
    assert len(env.kernel.writes) == writes
    r = cli("apply", "--check")
    assert r.code == 0 and "changed: no" in r.out


def test_apply_host_entry_disables(cli, env):
    assert cli("enable", "00:03.0").code == 0
    assert cli("persist", "--driver", "host", "00:03.0").code == 0
    r = cli("-f", "json", "apply")
    assert r.code == 0 and _json(r)["data"]["entries"][0]["outcome"] == "changed"
    assert env.driver(bh.VIRTIO) == "virtio-pci"


def _set_ids(env, address: str, vendor: str, device: str) -> None:
    """Another card at ``address``: the fake tree's ids change (its uevent is not written by the fake host)."""
    d = env.root / "sys/bus/pci/devices" / address
    (d / "vendor").write_text(f"0x{vendor}\n")
    (d / "device").write_text(f"0x{device}\n")


def test_apply_refuses_a_different_card(cli, env):
    assert cli("persist", "00:02.0", "00:03.0").code == 0
    _set_ids(env, bh.E1000E, "10ec", "8139")
    r = cli("-f", "json", "apply")
    assert r.code == 3, r.err  # one converged, one refused
    entries = {e["address"]: e for e in _json(r)["data"]["entries"]}
    assert entries[bh.E1000E]["outcome"] == "refused" and entries[bh.E1000E]["drift"] == "different-card"
    assert "vendor 8086 recorded, 10ec found" in entries[bh.E1000E]["reasons"][0]
    assert "/etc/pcipass/pcipass.yaml:6: a different card" in r.err
    assert env.driver(bh.E1000E) == "e1000e" and env.driver(bh.VIRTIO) == "vfio-pci"
    assert cli("apply", "--force").code == 0  # the drifted entry no longer fails the run; still not bound
    assert env.driver(bh.E1000E) == "e1000e"
    assert cli("unpersist", "00:03.0").code == 0
    assert cli("apply").code == 5


def test_apply_refuses_a_missing_device_and_two_owners(cli, env):
    assert cli("persist", "00:02.0").code == 0
    env.fake.write(f"etc/driverctl.d/pci-{bh.E1000E}", "vfio-pci\n")
    r = cli("apply", "--force")
    assert r.code == 5 and "two owners" in r.err  # --force does not settle a second owner
    (env.root / f"etc/driverctl.d/pci-{bh.E1000E}").unlink()
    text = _conf(env).replace("0000:00:02.0", "0000:00:1e.0")
    (env.root / CONF).write_text(text)
    r = cli("-f", "json", "apply")
    assert r.code == 5 and _json(r)["data"]["entries"][0]["drift"] == "missing"


def test_apply_in_use_guard_and_failure_exit_codes(cli, env):
    assert cli("persist", "00:04.0").code == 0
    env.fake.write("proc/self/mountinfo", "30 1 259:1 / / rw - ext4 /dev/nvme0n1p1 rw\n")
    r = cli("-f", "json", "apply")
    assert r.code == 5 and _json(r)["data"]["entries"][0]["outcome"] == "refused"
    assert "mounted" in r.err and env.driver(bh.NVME) == "nvme"
    assert cli("unpersist", "00:04.0").code == 0
    assert cli("persist", "00:02.0").code == 0
    env.kernel.fail[1] = 16  # EBUSY on the unbind
    r = cli("-f", "json", "apply")
    assert r.code == 1 and _json(r)["data"]["entries"][0]["outcome"] == "failed"
    assert env.driver(bh.E1000E) == "e1000e"


def test_apply_bad_file_writes_nothing(cli, env):
    env.fake.write(
        CONF, "version: 1\ndevices:\n  - address: 00:02.0\n    fingerprint: {vendor: '8086', device: '10d3'}\n"
    )
    before = env.digest(with_state=True)
    r = cli("apply")
    assert r.code == 2 and "/etc/pcipass/pcipass.yaml:3: devices[0].address:" in r.err
    assert env.digest(with_state=True) == before
    r = cli("-f", "json", "apply")
    assert _json(r)["errors"][0]["line"] == 3
    r = cli("apply", "--config", str(env.root / "nope.yaml"))
    assert r.code == 2 and "no such file" in r.err


def test_apply_unknown_driver_in_file_fails_that_entry(cli, env):
    assert cli("persist", "00:02.0", "00:03.0").code == 0
    (env.root / CONF).write_text(_conf(env).replace("driver: vfio-pci", "driver: e1000e", 1))
    r = cli("-f", "json", "apply")
    assert r.code == 3
    entries = _json(r)["data"]["entries"]
    assert entries[0]["outcome"] == "failed" and "pcipass.yaml:6: driver: --driver e1000e" in entries[0]["reasons"][0]


# --- verify -------------------------------------------------------------------------------------------------------
def test_verify_match_and_every_kind_of_drift(cli, env):
    assert cli("persist", "00:02.0", "00:03.0", "00:05.0").code == 0
    r = cli("verify")
    assert r.code == 0 and r.out.count(" match ") == 3
    text = _conf(env)
    # The recorded 00:02.0 entry moved to an address where nothing is: the same card is found by its path.
    text = text.replace("0000:00:02.0", "0000:00:1e.0", 1)
    (env.root / CONF).write_text(text)
    _set_ids(env, bh.VIRTIO, "10ec", "8139")  # a different card at 00:03.0
    env.fake.set_group(bh.UNBOUND, 4)  # 00:05.0's group grew
    r = cli("-f", "json", "verify")
    assert r.code == 1 and _json(r)["drift"] is True
    got = {v["address"]: v for v in _json(r)["data"]}
    moved = got["0000:00:1e.0"]
    assert moved["drift"] == "missing" and moved["moved_to"] == [bh.E1000E]
    assert "the same card (ids and position 0000:00/02.0) is now at 0000:00:02.0" in moved["reasons"][0]
    diff = got[bh.VIRTIO]
    assert diff["drift"] == "different-card" and "vendor 1af4 recorded, 10ec found" in diff["reasons"][0]
    assert "the cards with the recorded ids (0000:00:05.0) have entries of their own" in diff["reasons"][0]
    grp = got[bh.MF0]
    assert grp["drift"] == "group-changed" and "now also 0000:00:09.0" in grp["reasons"][0]
    r = cli("verify")
    assert "different-card" in r.out and "group-changed" in r.out


def test_verify_empty_and_missing_file(cli, env):
    r = cli("verify")
    assert r.code == 2 and "no such file" in r.err
    env.fake.write(CONF, "version: 1\n")
    r = cli("verify")
    assert r.code == 0 and "declares no devices" in r.out


# --- the validated content kept beside the file, and the converged fast path -------------------------------------
def test_a_validated_file_is_read_without_yaml_or_schema_libraries(cli, env):
    import subprocess
    import sys

    assert cli("persist", "00:02.0").code == 0
    kept = env.root / "etc/pcipass/.pcipass.yaml.checked"
    assert kept.is_file()
    code = (
        "import sys; from pathlib import Path; from pcipass.config import load; "
        f"d = load(Path({str(env.root / CONF)!r}), 'f'); "
        "print(d.devices[0].address, sorted(m for m in ('ruamel', 'jsonschema') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split(None, 1) == [bh.E1000E, "[]\n"]
    # Edited by hand: validated again, and an error still names its line.
    (env.root / CONF).write_text(_conf(env).replace("driver: vfio-pci", "driver: vfio-pci\n    colour: red"))
    r = cli("verify")
    assert r.code == 2 and "pcipass.yaml:8: devices[0].colour: unknown key" in r.err
    # A .checked that is not pcipass's is ignored.
    (env.root / CONF).write_text(_conf(env).replace("\n    colour: red", ""))
    assert cli("persist", "00:02.0").code == 0
    kept.write_text('{"key": "x", "sections": {"devices": [[1, {"bogus": 1}]]}}')
    assert cli("verify").code == 0


def test_apply_check_keeps_nothing_apply_does(cli, env):
    env.fake.write(CONF, "version: 1\n")
    kept = env.root / "etc/pcipass/.pcipass.yaml.checked"
    assert cli("apply", "--check").code == 0 and not kept.exists()
    assert cli("verify").code == 0 and not kept.exists()
    assert cli("apply").code == 0 and kept.exists()


def test_converged_apply_does_not_call_the_engine(cli, env, monkeypatch):
    import pcipass.engine as engine

    assert cli("persist", "--group", "00:05.0", "00:02.0").code == 0
    assert cli("apply").code == 0
    called = []
    real = engine.enable
    monkeypatch.setattr(engine, "enable", lambda *a, **kw: called.append(a) or real(*a, **kw))
    r = cli("-f", "json", "apply")
    assert r.code == 0 and _json(r)["changed"] is False and called == []
    # An interrupted run's record: the engine is asked (it completes such devices).
    state = env.root / "run/pcipass/state.json"
    import json as _j

    doc = _j.loads(state.read_text())
    doc["devices"][bh.E1000E]["phase"] = "enabling"
    state.write_text(_j.dumps(doc))
    assert cli("apply").code == 0 and len(called) == 1


def test_no_write_leaves_a_hostile_root(cli, env, tmp_path):
    """A --root whose /etc/pcipass or /etc/systemd/system is a link out of it: persist and boot install refuse,
    and nothing is written outside (Host.open resolves beneath the root)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (env.root / "etc/pcipass").symlink_to(outside)
    r = cli("persist", "00:02.0")
    assert r.code != 0 and list(outside.iterdir()) == []
    (env.root / "etc/systemd").mkdir(parents=True)
    (env.root / "etc/systemd/system").symlink_to(outside)
    r = cli("boot", "install")
    assert r.code != 0 and list(outside.iterdir()) == []
