"""Host side of the guest-test protocol: boot each topology once, run its guest pytest, map results.

One :class:`TopologyRun` per topology boots a guest in a background thread (guests of different
topologies run concurrently, up to ``PCIPASS_REALKERNEL_JOBS``, default the CPU count), runs
``<sys.executable> -m pytest <selected guest tests>`` in it as root with the guest plugin
(tests/guest/conftest.py) appending one JSON line per report to ``io/results.jsonl``, and then
answers, per guest test node id, whether it passed, failed (with the guest's own longrepr) or was
skipped. A guest test with no result is a failure, never a silent pass.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

from . import topology as topo
from .provision import REPO, Provisioned, ProvisionError, provision
from .vm import GUEST_IO_MOUNT, GuestRun, run_guest

DEFAULT_TIMEOUT_S = 420


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def in_ci() -> bool:
    return env_flag("CI")


def skip_reason() -> str | None:
    """Why the tier is opted out, or None. Never opted out in CI."""
    if env_flag("PCIPASS_SKIP_REALKERNEL") and not in_ci():
        return "PCIPASS_SKIP_REALKERNEL=1: real-kernel tier opted out (never honoured with CI=true)"
    return None


def guest_timeout_s() -> float:
    try:
        return float(os.environ.get("PCIPASS_REALKERNEL_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def base_nodeid(nodeid: str) -> str:
    """Strip a parametrize suffix: 'f.py::test_x[a-b]' -> 'f.py::test_x'."""
    return nodeid.split("[", 1)[0]


@dataclasses.dataclass
class Outcome:
    status: str  # passed | failed | skipped
    message: str = ""
    cases: int = 0


class TopologyRun:
    def __init__(self, tier: RealKernelTier, topology: str, targets: list[str], expected: set[str]):
        self.tier = tier
        self.topology = topology
        self.targets = targets
        self.expected = expected
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.run: GuestRun | None = None
        self.error: str | None = None  # harness/provisioning error: every item fails with it
        self.records: list[dict] = []
        self.cases: dict[str, list[dict]] = {}  # full guest nodeid -> its reports
        self.by_base: dict[str, list[str]] = {}  # base nodeid -> full nodeids (in order)
        self.collect_errors: dict[str, str] = {}
        self.start_event: dict | None = None
        self.finish_event: dict | None = None
        self.t_queued = time.monotonic()
        self.t_started: float | None = None
        self.t_done: float | None = None
        #: Why the guest was booted a second time (its first died before the test session started), or None.
        self.retried: str | None = None

    # ------------------------------------------------------------------ running

    def script(self, prov: Provisioned | None = None) -> str:
        env = dict(topo.guest_env(self.topology))
        if prov is not None:  # the sample mdev driver for tests/guest/test_mdev.py, or why there is none
            env["PCIPASS_GUEST_MTTY"] = str(prov.mtty or "")
            env["PCIPASS_GUEST_MTTY_ERROR"] = prov.mtty_error or ""
        env["PCIPASS_GUEST_RESULTS"] = f"{GUEST_IO_MOUNT}/results.jsonl"
        env["PYTHONUNBUFFERED"] = "1"
        extra = shlex.split(os.environ.get("PCIPASS_REALKERNEL_GUEST_PYTEST_ARGS", ""))
        lines = ["set -u"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
        lines += [
            f"cd {shlex.quote(str(REPO))} || exit 90",
            f'echo "guest $(uname -r), python {sys.executable}, topology {self.topology}"',
            shlex.join(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-p",
                    "no:cacheprovider",
                    "-v",
                    "--color=no",
                    "-o",
                    "console_output_style=classic",
                    *extra,
                    *self.targets,
                ]
            ),
        ]
        return "\n".join(lines) + "\n"

    def _execute(self) -> None:
        try:
            with self.tier.slots:
                self.t_started = time.monotonic()
                prov = self.tier.provisioned()
                if self.tier.closing:
                    self.error = "pytest session ended before the guest was started"
                    return
                self._boot(prov)
                if self.died_before_session() and not self.tier.closing:
                    # A boot that died before the guest's pytest began (a TCG timing panic under load) says
                    # nothing about the tests: boot once more, and say so. A second death fails the topology.
                    assert self.run is not None
                    self.retried = (
                        f"the first boot died before its test session started "
                        f"({self.run_problem() or 'no session'}; logs in {self.run.run_dir}): booted again"
                    )
                    self._boot(prov)
        except ProvisionError as e:
            self.error = f"real-kernel tier could not provision a guest: {e}"
        except Exception as e:  # noqa: BLE001 - a harness bug: fail loudly, never hang the items
            import traceback

            self.error = f"real-kernel harness error: {e!r}\n{traceback.format_exc()}"
        finally:
            self.t_done = time.monotonic()
            self.done.set()

    def _boot(self, prov: Provisioned) -> None:
        """Boot the guest and read what its session recorded (the results of an earlier boot are dropped)."""
        self.records, self.cases, self.by_base, self.collect_errors = [], {}, {}, {}
        self.start_event = self.finish_event = None
        self.run = run_guest(
            self.topology,
            self.script(prov),
            timeout_s=guest_timeout_s(),
            prov=prov,
            on_start=self.tier.register_process,
            run_name=self.topology,
        )
        self._load_results()

    def died_before_session(self) -> bool:
        """The guest ended, not by the timeout, before its pytest session started (no ``start`` record)."""
        return self.run is not None and not self.run.timed_out and self.start_event is None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._execute, name=f"realkernel-{self.topology}", daemon=True)
        self.thread.start()

    def wait(self) -> TopologyRun:
        # The guest run has its own hard timeout; this is only a backstop.
        if not self.done.wait(guest_timeout_s() + 300):
            self.error = self.error or "real-kernel guest run did not finish (harness thread stuck)"
        return self

    def _load_results(self) -> None:
        assert self.run is not None
        path = self.run.io_dir / "results.jsonl"
        if not path.exists():
            return
        for line in path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of a killed guest
            self.records.append(rec)
            ev = rec.get("event")
            if ev == "start":
                self.start_event = rec
            elif ev == "finish":
                self.finish_event = rec
            elif ev == "collect":
                self.collect_errors[rec["nodeid"]] = rec.get("longrepr", "")
            elif ev == "test":
                nid = rec["nodeid"]
                if nid not in self.cases:
                    self.cases[nid] = []
                    self.by_base.setdefault(base_nodeid(nid), []).append(nid)
                self.cases[nid].append(rec)

    # ------------------------------------------------------------------ verdicts

    def diagnostics(self) -> str:
        if self.run is None:
            return "(no guest was started)"
        return self.run.diagnostics()

    def run_problem(self) -> str | None:
        """Why the guest session as a whole is broken (None when it completed normally)."""
        if self.error:
            return self.error
        if self.run is None:
            return "the guest was never started"
        if self.run.timed_out:
            return f"guest {self.topology} timed out (PCIPASS_REALKERNEL_TIMEOUT={guest_timeout_s():.0f} s)"
        if self.finish_event is None:
            hint = {
                90: f"the repository {REPO} is not visible in the guest "
                "(it must not live under /run, /dev, /proc or /sys)",
                126: f"{sys.executable} is not executable in the guest",
                127: f"{sys.executable} is not visible in the guest (it must not live under /run, /dev, /proc or /sys)",
                None: "stage 2 never recorded an exit status (see the serial console)",
            }.get(self.run.command_rc, f"command exit status {self.run.command_rc}")
            again = " (on a second boot: the first died before its session too)" if self.retried else ""
            return (
                f"guest {self.topology}: the guest pytest session did not finish (crash, panic or kill){again}: {hint}"
            )
        status = self.finish_event.get("exitstatus")
        if status not in (0, 1):
            return f"guest {self.topology}: guest pytest exited with status {status}"
        return None

    def outcome(self, nodeid: str, module: str) -> Outcome:
        full = self.by_base.get(nodeid, [])
        if not full:
            problem = self.run_problem()
            for key in (module, nodeid):
                if key in self.collect_errors:
                    return Outcome("failed", f"guest collection error in {key}:\n{self.collect_errors[key]}")
            if problem:
                where = f"; logs in {self.run.run_dir}" if self.run else ""
                return Outcome(
                    "failed",
                    f"{nodeid}: no result from the guest: {problem.splitlines()[0][:300]}"
                    f" (details in the {self.topology}::guest_session failure{where})",
                )
            return Outcome(
                "failed",
                f"{nodeid}: the guest run completed but never reported this test "
                f"(not collected in the guest?)\n\n{self.diagnostics()}",
            )
        failures: list[str] = []
        skips: list[str] = []
        passed = 0
        for nid in full:
            recs = self.cases[nid]
            bad = [r for r in recs if r["outcome"] == "failed"]
            if bad:
                for r in bad:
                    failures.append(f"--- guest {nid} [{r['when']}] ---\n{r.get('longrepr', '')}")
            elif any(r["outcome"] == "skipped" for r in recs):
                r = next(r for r in recs if r["outcome"] == "skipped")
                reason = r.get("longrepr", "")
                skips.append(f"xfail: {r['xfail']}" if "xfail" in r else reason)
            elif any(r["when"] == "call" and r["outcome"] == "passed" for r in recs):
                passed += 1
            else:
                log = self.run.command_log_tail(20) if self.run else ""
                failures.append(
                    f"--- guest {nid}: started but never finished: {self.run_problem() or 'no call report'}"
                    f" ---\n--- command.log (last 20 lines) ---\n{log}"
                )
        if failures:
            return Outcome("failed", "\n".join(failures), len(full))
        if passed == 0 and skips:
            return Outcome("skipped", f"guest: {skips[0]}", len(full))
        return Outcome("passed", f"{passed} passed, {len(skips)} skipped", len(full))

    def unexpected(self) -> list[str]:
        return sorted(b for b in self.by_base if b not in self.expected)

    def counts(self) -> dict[str, int]:
        c = {"passed": 0, "failed": 0, "skipped": 0, "unfinished": 0}
        for recs in self.cases.values():
            if any(r["outcome"] == "failed" for r in recs):
                c["failed"] += 1
            elif any(r["outcome"] == "skipped" for r in recs):
                c["skipped"] += 1
            elif any(r["when"] == "call" and r["outcome"] == "passed" for r in recs):
                c["passed"] += 1
            else:
                c["unfinished"] += 1
        return c


class RealKernelTier:
    """Per pytest session: the planned topology runs and the shared provisioning."""

    def __init__(self) -> None:
        self.runs: dict[str, TopologyRun] = {}
        self.skip = skip_reason()
        jobs = int(os.environ.get("PCIPASS_REALKERNEL_JOBS", "0") or 0) or (os.cpu_count() or 1)
        self.slots = threading.BoundedSemaphore(max(1, jobs))
        self._prov_lock = threading.Lock()
        self._prov: Provisioned | ProvisionError | None = None
        self._procs: list = []
        self._procs_lock = threading.Lock()
        self.closing = False
        self.provision_s: float | None = None

    def provisioned(self) -> Provisioned:
        with self._prov_lock:
            if self._prov is None:
                t0 = time.monotonic()
                try:
                    self._prov = provision()
                except ProvisionError as e:
                    self._prov = e
                self.provision_s = time.monotonic() - t0
            if isinstance(self._prov, ProvisionError):
                raise self._prov
            return self._prov

    def register_process(self, proc) -> None:
        with self._procs_lock:
            self._procs.append(proc)

    def plan(self, topology: str, targets: list[str], expected: set[str]) -> TopologyRun:
        run = TopologyRun(self, topology, targets, expected)
        self.runs[topology] = run
        return run

    def start_all(self) -> None:
        if self.skip:
            return
        for run in self.runs.values():
            run.start()

    def shutdown(self) -> None:
        """End the guests this session started (by process group id) if still running."""
        self.closing = True
        with self._procs_lock:
            procs = list(self._procs)
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
