"""pytest plugin of the real-kernel tier: one host item per guest test, all marked ``realkernel``.

``tests/realkernel/test_guest.py`` is not collected as Python: this plugin replaces it by a
collector that reads ``tests/guest/test_*.py`` statically (see collect.py) and yields, per
topology, a ``guest_session`` item (the boot and the guest pytest session as a whole) and one item
per guest test function::

    tests/realkernel/test_guest.py::iommu_on::guest_session
    tests/realkernel/test_guest.py::iommu_on::test_smoke.py::test_group_layout
    tests/realkernel/test_guest.py::iommu_off::test_smoke.py::test_group_layout

When collection is done, every topology with a selected item is booted ONCE in the background
(topologies in parallel), running only the selected guest tests; each host item then waits for
its topology and passes, fails with the guest's own failure text, or skips as the guest did.

Environment:
  PCIPASS_SKIP_REALKERNEL=1         skip the whole tier (not honoured when CI=true)
  PCIPASS_REALKERNEL_TIMEOUT=S      hard limit per guest (boot + guest tests), default 420
  PCIPASS_REALKERNEL_JOBS=N         guests booted concurrently, default the CPU count
  PCIPASS_REALKERNEL_CACHE=DIR      kernel/initramfs/run-log cache, default <repo>/.cache/realkernel
  PCIPASS_REALKERNEL_KERNEL_PKG=P   pick a cached/downloaded linux-image-* package
  PCIPASS_REALKERNEL_GUEST_PYTEST_ARGS="-x ..."  extra arguments for the guest pytest
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import topology as topo
from .collect import GuestModule, GuestTest, collect_guest_modules
from .provision import REPO
from .runner import RealKernelTier, in_ci

HERE = Path(__file__).resolve().parent
SUITE_FILE = HERE / "test_guest.py"
GUEST_DIR = REPO / "tests" / "guest"
TIER_KEY = pytest.StashKey[RealKernelTier]()


class GuestFailure(Exception):
    """A guest test failed; the message is the guest's own report."""


def pytest_pycollect_makemodule(module_path, parent):
    if Path(module_path).resolve() == SUITE_FILE:
        return GuestSuite.from_parent(parent, path=Path(module_path))
    return None


class GuestSuite(pytest.File):
    def collect(self):
        self.add_marker(pytest.mark.realkernel)
        modules = collect_guest_modules(GUEST_DIR, REPO)
        per_topology: dict[str, list[GuestModule]] = {t: [] for t in topo.TOPOLOGIES}
        broken: list[GuestModule] = []
        for m in modules:
            unknown = [t for t in m.topologies if t not in topo.TOPOLOGIES]
            if m.error or unknown:
                if unknown and not m.error:
                    m.error = f"{m.module}: unknown TOPOLOGY {unknown} (known: {', '.join(topo.TOPOLOGIES)})"
                broken.append(m)
            for t in m.topologies:
                if t in per_topology:
                    per_topology[t].append(m)
        for t, mods in per_topology.items():
            if mods:
                yield TopologyNode.from_parent(self, name=t, topology=t, modules=mods)
        if broken:
            yield BrokenModules.from_parent(self, name="declaration_errors", modules=broken)


class TopologyNode(pytest.Collector):
    def __init__(self, *, topology: str, modules: list[GuestModule], **kw):
        super().__init__(**kw)
        self.topology = topology
        self.modules = modules

    def collect(self):
        yield GuestSessionItem.from_parent(self, name="guest_session", topology=self.topology)
        for m in self.modules:
            name = Path(m.module).relative_to("tests/guest").as_posix()
            yield GuestContainer.from_parent(
                self, name=name, topology=self.topology, module=m.module, tests=[(t.qualname, t) for t in m.tests]
            )


class GuestContainer(pytest.Collector):
    """A guest module or class: children by the next element of their qualname."""

    def __init__(self, *, topology: str, module: str, tests: list[tuple[tuple[str, ...], GuestTest]], **kw):
        super().__init__(**kw)
        self.topology = topology
        self.module = module
        self.tests = tests

    def collect(self):
        order: list[str] = []
        groups: dict[str, list[tuple[tuple[str, ...], GuestTest]]] = {}
        for rest, t in self.tests:
            if len(rest) == 1:
                yield GuestItem.from_parent(self, name=rest[0], topology=self.topology, test=t)
            else:
                if rest[0] not in groups:
                    order.append(rest[0])
                    groups[rest[0]] = []
                groups[rest[0]].append((rest[1:], t))
        for name in order:
            yield GuestContainer.from_parent(
                self, name=name, topology=self.topology, module=self.module, tests=groups[name]
            )


class _TierItem(pytest.Item):
    topology: str

    def tier(self) -> RealKernelTier:
        return self.config.stash[TIER_KEY]

    def setup(self):
        tier = self.tier()
        if tier.skip:
            pytest.skip(tier.skip)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, GuestFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)


class GuestItem(_TierItem):
    def __init__(self, *, topology: str, test: GuestTest, **kw):
        super().__init__(**kw)
        self.topology = topology
        self.test = test

    def runtest(self):
        run = self.tier().runs[self.topology].wait()
        out = run.outcome(self.test.nodeid, self.test.module)
        self.user_properties.append(("guest_cases", out.cases))
        if out.status == "skipped":
            try:  # report the guest test's location, not this line
                raise pytest.skip.Exception(out.message, _use_item_location=True)
            except TypeError:
                pytest.skip(out.message)
        if out.status == "failed":
            raise GuestFailure(f"[guest {self.topology}] {out.message}")

    def reportinfo(self):
        return REPO / self.test.module, self.test.lineno - 1, f"{self.topology}::{'::'.join(self.test.qualname)}"


class GuestSessionItem(_TierItem):
    """The boot and the guest pytest session as a whole (provisioning, timeout, crash, stray tests)."""

    def __init__(self, *, topology: str, **kw):
        super().__init__(**kw)
        self.topology = topology

    def runtest(self):
        run = self.tier().runs[self.topology].wait()
        problems = []
        p = run.run_problem()
        if p:
            problems.append(p)
        if run.collect_errors:
            problems.append(
                "guest collection errors:\n" + "\n".join(f"--- {k}\n{v}" for k, v in run.collect_errors.items())
            )
        if run.finish_event and run.finish_event.get("protected_touched"):
            problems.append(
                f"a guest test changed the driver of a PROTECTED device: {run.finish_event['protected_touched']}"
            )
        stray = run.unexpected()
        if stray:
            problems.append(
                "the guest ran tests the host did not collect (the AST collector missed them): " + ", ".join(stray)
            )
        if problems:
            raise GuestFailure("\n\n".join(problems) + "\n\n" + run.diagnostics())

    def reportinfo(self):
        return self.path, None, f"{self.topology}::guest_session"


class BrokenModules(pytest.Collector):
    def __init__(self, *, modules: list[GuestModule], **kw):
        super().__init__(**kw)
        self.modules = modules

    def collect(self):
        for m in self.modules:
            yield BrokenModuleItem.from_parent(self, name=Path(m.module).name, error=m.error or "")


class BrokenModuleItem(pytest.Item):
    def __init__(self, *, error: str, **kw):
        super().__init__(**kw)
        self.error = error

    def runtest(self):
        raise GuestFailure(f"guest test module not runnable: {self.error}")

    def repr_failure(self, excinfo, style=None):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, None, self.name


# --------------------------------------------------------------------------- session hooks


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Run the guest items last: the guests boot in the background from the end of collection, so the
    host's own tests run meanwhile instead of the main thread waiting for a guest."""
    tier_items = [i for i in items if isinstance(i, _TierItem)]
    if tier_items:
        items[:] = [i for i in items if not isinstance(i, _TierItem)] + tier_items


def pytest_collection_finish(session):
    tier = RealKernelTier()
    session.config.stash[TIER_KEY] = tier
    selected: dict[str, list] = {}
    for item in session.items:
        if isinstance(item, _TierItem):
            selected.setdefault(item.topology, []).append(item)
    if not selected:
        return
    all_tests: dict[str, dict[str, list[GuestTest]]] = {}
    for m in collect_guest_modules(GUEST_DIR, REPO):
        for t in m.topologies:
            all_tests.setdefault(t, {})[m.module] = m.tests
    for t, items in selected.items():
        chosen = [i.test for i in items if isinstance(i, GuestItem)]
        targets: list[str] = []
        by_module: dict[str, list[GuestTest]] = {}
        for g in chosen:
            by_module.setdefault(g.module, []).append(g)
        for module, tests in by_module.items():
            if len(tests) == len(all_tests.get(t, {}).get(module, [])):
                targets.append(module)  # whole module: also runs tests the AST missed (flagged)
            else:
                targets.extend(g.nodeid for g in tests)
        expected = {g.nodeid for g in chosen}
        if not targets:  # only guest_session selected: boot and run the smoke module
            targets = [m for m in all_tests.get(t, {}) if m.endswith("test_smoke.py")][:1]
            expected = {g.nodeid for g in all_tests.get(t, {}).get(targets[0], [])} if targets else set()
        tier.plan(t, targets, expected)
    if session.config.option.collectonly:
        return
    tier.start_all()


def pytest_sessionfinish(session, exitstatus):
    tier = session.config.stash.get(TIER_KEY, None)
    if tier is not None:
        tier.shutdown()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tier = config.stash.get(TIER_KEY, None)
    if tier is None or not tier.runs or not (tier.skip or any(r.thread for r in tier.runs.values())):
        return
    tr = terminalreporter
    tr.section("real-kernel tier")
    if tier.skip:
        tr.write_line(f"skipped: {tier.skip}")
        return
    if in_ci():
        tr.write_line("CI=true: the tier ran (PCIPASS_SKIP_REALKERNEL is not honoured in CI)")
    if tier.provision_s is not None:
        tr.write_line(f"provisioning: {tier.provision_s:.1f} s")
    for t, run in tier.runs.items():
        if not run.done.is_set():
            tr.write_line(f"{t}: not finished")
            continue
        c = run.counts()
        wall = f"{run.run.wall_s:.1f} s" if run.run else "-"
        boot = f"{run.run.boot_to_command_s:.1f} s" if run.run and run.run.boot_to_command_s else "?"
        waited = (run.t_started - run.t_queued) if run.t_started else 0.0
        total = (run.t_done - run.t_queued) if run.t_done else 0.0
        tr.write_line(
            f"{t}: {total:.1f} s from collection to results, qemu {wall} (boot+drivers {boot} guest uptime), "
            f"{len(run.cases)} guest test cases: "
            f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
            + (f", {c['unfinished']} unfinished" if c["unfinished"] else "")
            + (f"; queued {waited:.1f} s" if waited > 1 else "")
            + (f"; PROBLEM: {run.run_problem().splitlines()[0]}" if run.run_problem() else "")
        )
        if run.retried:
            tr.write_line(f"    retried: {run.retried}")
        if run.run:
            tr.write_line(f"    logs: {run.run.run_dir}")
