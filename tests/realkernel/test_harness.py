"""Host-only unit tests of the real-kernel harness (no qemu): collection, verdicts, opt-out, tools."""

from __future__ import annotations

import json
import lzma
import sys
import textwrap
from pathlib import Path

import pytest

from . import provision, runner
from . import topology as topo
from .collect import collect_guest_modules
from .runner import RealKernelTier, TopologyRun, base_nodeid
from .vm import GuestRun


def _write(d: Path, name: str, text: str) -> None:
    (d / name).write_text(textwrap.dedent(text))


def test_ast_collection(tmp_path):
    g = tmp_path / "tests" / "guest"
    g.mkdir(parents=True)
    _write(
        g,
        "test_a.py",
        """
        TOPOLOGY = "iommu_on"
        def test_x(): pass
        async def test_async(): pass
        def helper(): pass
        class TestK:
            def test_m(self): pass
            class TestInner:
                def test_deep(self): pass
        class TestWithInit:
            def __init__(self): pass
            def test_never(self): pass
        class Helper:
            def test_no(self): pass
    """,
    )
    _write(
        g,
        "test_b.py",
        """
        TOPOLOGY: tuple = ("iommu_on", "iommu_off")
        def test_y(): pass
    """,
    )
    _write(g, "test_c.py", "def test_z(): pass\n")
    _write(g, "test_d.py", "TOPOLOGY = 42\n")
    _write(g, "test_e.py", "def broken(:\n")
    _write(g, "conftest.py", "TOPOLOGY = 'x'\ndef test_not_a_test_module(): pass\n")
    mods = {m.module: m for m in collect_guest_modules(g, tmp_path)}
    assert set(mods) == {f"tests/guest/test_{c}.py" for c in "abcde"}
    a = mods["tests/guest/test_a.py"]
    assert a.error is None and a.topologies == ("iommu_on",)
    assert [t.nodeid for t in a.tests] == [
        "tests/guest/test_a.py::test_x",
        "tests/guest/test_a.py::test_async",
        "tests/guest/test_a.py::TestK::test_m",
        "tests/guest/test_a.py::TestK::TestInner::test_deep",
    ]
    assert mods["tests/guest/test_b.py"].topologies == ("iommu_on", "iommu_off")
    assert "no module-level TOPOLOGY" in mods["tests/guest/test_c.py"].error
    assert "must be a string" in mods["tests/guest/test_d.py"].error
    assert "cannot parse" in mods["tests/guest/test_e.py"].error


def test_real_guest_modules_declare_known_topologies():
    mods = collect_guest_modules(provision.REPO / "tests" / "guest", provision.REPO)
    assert mods, "no guest tests found"
    for m in mods:
        assert m.error is None, m.error
        assert set(m.topologies) <= set(topo.TOPOLOGIES), m.module
        assert m.tests, f"{m.module} has no tests"


def _run_with(records: list[dict], expected: set[str], finish: int | None = 1) -> TopologyRun:
    run = TopologyRun(RealKernelTier(), "iommu_on", [], expected)
    d = Path("/nonexistent-run-dir")
    run.run = GuestRun("iommu_on", d, d / "io", d / "serial.log", [], qemu_rc=0)
    if finish is not None:
        records = records + [{"event": "finish", "exitstatus": finish, "protected_touched": {}}]
    for rec in records:
        run.records.append(rec)
        if rec["event"] == "finish":
            run.finish_event = rec
        elif rec["event"] == "collect":
            run.collect_errors[rec["nodeid"]] = rec["longrepr"]
        else:
            nid = rec["nodeid"]
            if nid not in run.cases:
                run.cases[nid] = []
                run.by_base.setdefault(base_nodeid(nid), []).append(nid)
            run.cases[nid].append(rec)
    run.error = None
    return run


def _t(nodeid, when, outcome, longrepr=""):
    return {"event": "test", "nodeid": nodeid, "when": when, "outcome": outcome, "longrepr": longrepr}


M = "tests/guest/test_m.py"


def _passed(nid):
    return [_t(nid, "setup", "passed"), _t(nid, "call", "passed"), _t(nid, "teardown", "passed")]


def test_outcomes_pass_fail_skip_and_params():
    recs = (
        _passed(f"{M}::test_ok")
        + [
            _t(f"{M}::test_bad", "setup", "passed"),
            _t(f"{M}::test_bad", "call", "failed", "E assert 1 == 2"),
            _t(f"{M}::test_bad", "teardown", "passed"),
        ]
        + [_t(f"{M}::test_skip", "setup", "skipped", "Skipped: nope"), _t(f"{M}::test_skip", "teardown", "passed")]
        + _passed(f"{M}::test_p[a]")
        + _passed(f"{M}::test_p[0000:00:02.0]")
        + _passed(f"{M}::test_q[a]")
        + [_t(f"{M}::test_q[b]", "setup", "failed", "E fixture boom")]
        + [_t(f"{M}::test_hang", "setup", "passed")]
    )
    run = _run_with(recs, set())
    assert run.outcome(f"{M}::test_ok", M).status == "passed"
    bad = run.outcome(f"{M}::test_bad", M)
    assert bad.status == "failed" and "E assert 1 == 2" in bad.message
    skip = run.outcome(f"{M}::test_skip", M)
    assert skip.status == "skipped" and "nope" in skip.message
    p = run.outcome(f"{M}::test_p", M)
    assert p.status == "passed" and p.cases == 2
    q = run.outcome(f"{M}::test_q", M)
    assert q.status == "failed" and "test_q[b]" in q.message and "[setup]" in q.message
    assert run.outcome(f"{M}::test_hang", M).status == "failed"
    missing = run.outcome(f"{M}::test_missing", M)
    assert missing.status == "failed" and "never reported" in missing.message
    assert run.counts() == {"passed": 4, "failed": 2, "skipped": 1, "unfinished": 1}


def test_no_result_when_guest_broke_is_a_failure():
    run = _run_with(_passed(f"{M}::test_ok"), set(), finish=None)
    out = run.outcome(f"{M}::test_later", M)
    assert out.status == "failed" and "did not finish" in out.message
    assert "did not finish" in run.run_problem()


def test_collection_error_fails_the_module_items():
    run = _run_with([{"event": "collect", "nodeid": M, "longrepr": "ImportError: no pcipass.bind"}], set(), finish=2)
    out = run.outcome(f"{M}::test_x", M)
    assert out.status == "failed" and "ImportError: no pcipass.bind" in out.message
    assert "status 2" in run.run_problem()


def test_unexpected_guest_tests_are_reported():
    run = _run_with(_passed(f"{M}::test_ok") + _passed(f"{M}::test_dynamic[1]"), {f"{M}::test_ok"})
    assert run.unexpected() == [f"{M}::test_dynamic"]


@pytest.mark.parametrize(
    "env, skipped",
    [
        ({}, False),
        ({"PCIPASS_SKIP_REALKERNEL": "1"}, True),
        ({"PCIPASS_SKIP_REALKERNEL": "1", "CI": "true"}, False),
        ({"PCIPASS_SKIP_REALKERNEL": "0"}, False),
        ({"CI": "true"}, False),
    ],
)
def test_opt_out_never_in_ci(monkeypatch, env, skipped):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PCIPASS_SKIP_REALKERNEL", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert (runner.skip_reason() is not None) is skipped


def test_missing_tools_name_the_debian_packages(monkeypatch):
    real = provision._which
    monkeypatch.setattr(provision, "_which", lambda t: None if t in ("qemu-system-x86_64", "lspci") else real(t))
    with pytest.raises(provision.ProvisionError) as e:
        provision.check_tools()
    msg = str(e.value)
    assert "qemu-system-x86" in msg and "pciutils" in msg and "PCIPASS_SKIP_REALKERNEL" in msg


def test_dynamic_busybox_is_rejected(monkeypatch):
    real = provision._which
    monkeypatch.setattr(provision, "_which", lambda t: sys.executable if t == "busybox" else real(t) or "/bin/true")
    if provision._elf_is_static(sys.executable):
        pytest.skip("this python is static")
    with pytest.raises(provision.ProvisionError, match="busybox-static"):
        provision.check_tools()


def test_vmlinux_extraction(tmp_path):
    elf = b"\x7fELF" + bytes(range(256)) * 64
    fake = b"MZ" + b"\0" * 100 + b"\xfd7zXZ\x00garbage" + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"\0" * 50
    (tmp_path / "vmlinuz").write_bytes(fake)
    assert provision._extract_vmlinux(tmp_path / "vmlinuz", tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == elf
    (tmp_path / "nothing").write_bytes(b"MZ" + b"\0" * 100)
    assert not provision._extract_vmlinux(tmp_path / "nothing", tmp_path / "out")


def test_topology_is_self_consistent():
    addrs = set(topo.ADDRESSES.values())
    assert len(addrs) == len(topo.ADDRESSES)
    assert set(topo.PROTECTED) <= addrs
    assert not set(topo.PROTECTED) & set(topo.FREE_ENDPOINTS)
    shared = [a for m in topo.SHARED_GROUPS.values() for a in m]
    assert len(shared) == len(set(shared))
    assert not set(shared) & set(topo.SINGLE_GROUPS)
    assert set(shared) | set(topo.SINGLE_GROUPS) == addrs  # every device's group is documented
    args = " ".join(topo.qemu_device_args("/x/nvme.img", "/", "/x/io"))
    for a in topo.PROTECTED:  # the 9p devices sit at their fixed slots
        assert f"addr={a.split(':')[2]}" in args
    env = topo.guest_env("iommu_on")
    assert env["PCIPASS_GUEST_PROTECTED"].split(",") == list(topo.PROTECTED)


def test_guest_dir_is_not_collected_on_the_host(request):
    assert "PCIPASS_IN_GUEST" not in __import__("os").environ
    import tests.conftest as top

    assert "guest" in top.collect_ignore


def test_run_dir_pruning_survives_a_concurrent_prune(tmp_path, monkeypatch):
    """Two topologies prune the same runs directory in parallel threads: a directory removed by the other
    thread between listing and stat() must be skipped, not fail the topology."""
    import os
    import time as _time
    from pathlib import Path

    from tests.realkernel import vm

    runs = tmp_path / "runs"
    runs.mkdir()
    old = _time.time() - 7200
    for i in range(vm.KEEP_RUNS + 3):
        d = runs / f"old-{i}"
        d.mkdir()
        os.utime(d, (old + i, old + i))
    vanishing = runs / "old-0"
    real_stat = Path.stat
    calls = {"n": 0}

    def stat_after_other_prune(self, *a, **k):
        if self == vanishing:
            calls["n"] += 1
            if calls["n"] == 2 and os.path.isdir(self):  # listed as a directory, gone by the time it is dated
                import shutil

                shutil.rmtree(self)
        return real_stat(self, *a, **k)

    monkeypatch.setattr(Path, "stat", stat_after_other_prune)
    d = vm._new_run_dir(tmp_path, "iommu_on")
    assert d.is_dir()
    left = sorted(p.name for p in runs.iterdir())
    assert d.name in left and len(left) <= vm.KEEP_RUNS + 1


def test_run_dir_pruning_skips_a_run_listed_then_removed(tmp_path, monkeypatch):
    from pathlib import Path

    from tests.realkernel import vm

    runs = tmp_path / "runs"
    runs.mkdir()
    real_iterdir = Path.iterdir

    def iterdir_with_a_ghost(self):
        entries = list(real_iterdir(self))
        return iter(entries + [self / "removed-by-the-other-thread"] if self == runs else entries)

    monkeypatch.setattr(Path, "iterdir", iterdir_with_a_ghost)
    assert vm._new_run_dir(tmp_path, "iommu_off").is_dir()


def test_guests_boot_without_the_io_apic_timer_check():
    assert "no_timer_check" in topo._COMMON_CMDLINE.split()


def _fake_boots(monkeypatch, tmp_path, sessions: list[list[dict] | None]) -> list[Path]:
    """runner.run_guest replaced by boots recording ``sessions`` in turn (None: died before the session)."""
    dirs: list[Path] = []

    def fake_run_guest(topology, script, **_kw):
        d = tmp_path / f"run{len(dirs)}"
        (d / "io").mkdir(parents=True)
        records = sessions[len(dirs)]
        if records is not None:
            lines = [{"event": "start"}, *records, {"event": "finish", "exitstatus": 0, "protected_touched": {}}]
            (d / "io" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        dirs.append(d)
        return GuestRun(topology, d, d / "io", d / "serial.log", [], qemu_rc=0, command_rc=None)

    monkeypatch.setattr(runner, "run_guest", fake_run_guest)
    return dirs


def _executed(monkeypatch) -> TopologyRun:
    tier = RealKernelTier()
    monkeypatch.setattr(tier, "provisioned", lambda: provision.Provisioned.__new__(provision.Provisioned))
    monkeypatch.setattr(TopologyRun, "script", lambda self, prov=None: "true\n")
    run = TopologyRun(tier, "iommu_on", [], {f"{M}::test_ok"})
    run._execute()
    return run


def test_a_guest_dying_before_its_session_is_booted_once_more(monkeypatch, tmp_path):
    dirs = _fake_boots(monkeypatch, tmp_path, [None, _passed(f"{M}::test_ok")])
    run = _executed(monkeypatch)
    assert len(dirs) == 2 and run.run_problem() is None
    assert run.outcome(f"{M}::test_ok", M).status == "passed"
    assert run.retried and "died before its test session started" in run.retried and str(dirs[0]) in run.retried


def test_a_second_death_before_the_session_fails_the_topology(monkeypatch, tmp_path):
    dirs = _fake_boots(monkeypatch, tmp_path, [None, None])
    run = _executed(monkeypatch)
    assert len(dirs) == 2 and run.retried
    assert "second boot" in run.run_problem()
    assert run.outcome(f"{M}::test_ok", M).status == "failed"


def test_a_session_that_started_is_never_booted_again(monkeypatch, tmp_path):
    bad = [_t(f"{M}::test_ok", "setup", "passed"), _t(f"{M}::test_ok", "call", "failed", "E boom")]
    dirs = _fake_boots(monkeypatch, tmp_path, [bad, _passed(f"{M}::test_ok")])
    run = _executed(monkeypatch)
    assert len(dirs) == 1 and run.retried is None
    assert run.outcome(f"{M}::test_ok", M).status == "failed"
