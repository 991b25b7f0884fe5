"""Boot one real-kernel guest (qemu q35, TCG, emulated Intel IOMMU), run a shell script in it.

Usable by hand for debugging (prints the command's output, keeps the run directory)::

    .venv/bin/python -m tests.realkernel.vm iommu_on 'lspci -nnk; ls /sys/kernel/iommu_groups'

The guest: the host's ``/`` read-only over virtio-9p under a tmpfs overlay (so the project's
virtualenv and the host's tools are there, and nothing written reaches the host), the extracted
kernel's modules bind-mounted at ``/lib/modules/<kver>``, a writable 9p share (the run's ``io/``
directory) mounted at ``/run/pcipass-io`` carrying ``command.sh`` in and ``command.log`` /
``command.rc`` / anything else out. The serial console goes to ``serial.log`` in the run directory.
qemu runs under ``timeout`` with ``-no-reboot`` and the kernel with ``panic=-1``: a panic, a hang
or a stage-2 failure all end qemu, and the caller gets a :class:`GuestRun` whatever happened.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import topology as topo
from .provision import STAGE2_SCRIPT, Provisioned, provision

GUEST_IO_MOUNT = "/run/pcipass-io"
NVME_IMAGE_MB = 64
KEEP_RUNS = 8


@dataclasses.dataclass
class GuestRun:
    topology: str
    run_dir: Path
    io_dir: Path
    serial_log: Path
    qemu_cmd: list[str]
    qemu_rc: int | None = None
    timed_out: bool = False
    command_rc: int | None = None
    boot_to_command_s: float | None = None
    wall_s: float = 0.0
    qemu_stderr: str = ""

    def serial_tail(self, lines: int = 40) -> str:
        return _tail(self.serial_log, lines)

    def command_log_tail(self, lines: int = 60) -> str:
        return _tail(self.io_dir / "command.log", lines)

    def diagnostics(self, lines: int = 40) -> str:
        """A human-readable account of how the guest ended (for failure messages)."""
        state = (
            f"TIMED OUT after {self.wall_s:.0f} s (qemu killed)"
            if self.timed_out
            else f"qemu exit status {self.qemu_rc}, command exit status {self.command_rc}"
        )
        parts = [f"guest {self.topology}: {state}; run directory {self.run_dir}"]
        if self.qemu_stderr.strip():
            parts.append("--- qemu stderr ---\n" + "\n".join(self.qemu_stderr.strip().splitlines()[-lines:]))
        log = self.command_log_tail(lines)
        if log:
            parts.append(f"--- command.log (last {lines} lines) ---\n{log}")
        parts.append(f"--- serial console (last {lines} lines) ---\n{self.serial_tail(lines) or '(empty)'}")
        return "\n".join(parts)


def _tail(path: Path, lines: int) -> str:
    try:
        data = path.read_bytes()[-200_000:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _new_run_dir(cache: Path, name: str) -> Path:
    runs = cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = runs / f"{stamp}-{os.getpid()}-{name}"
    n = 0
    while d.exists():
        n += 1
        d = runs / f"{stamp}-{os.getpid()}-{name}-{n}"
    d.mkdir()
    # prune old runs: keep the newest KEEP_RUNS, and anything younger than an hour (a concurrent
    # pytest session in the same tree may still be using it). The topologies of one session start in
    # parallel threads that prune the same directory: a run another thread just removed is skipped, not
    # an error (it was a FileNotFoundError from stat() that failed a whole topology now and then).
    dated = [(m, p) for p in runs.iterdir() if (m := _mtime(p)) is not None]
    dated.sort(key=lambda item: item[0])
    for mtime, p in dated[:-KEEP_RUNS]:
        if p != d and time.time() - mtime > 3600:
            shutil.rmtree(p, ignore_errors=True)
    return d


def _mtime(path: Path) -> float | None:
    """Modification time of a run directory, None when it is not one (any more)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime if stat.S_ISDIR(st.st_mode) else None


def build_qemu_cmd(
    prov: Provisioned,
    topology: str,
    run_dir: Path,
    timeout_s: float,
    extra_cmdline: tuple[str, ...] = (),
    *,
    models: dict[str, str] | None = None,
    upper_disk: Path | None = None,
) -> list[str]:
    spec = topo.TOPOLOGIES[topology]
    io_dir = run_dir / "io"
    nvme = run_dir / "nvme.img"
    cmdline = " ".join(
        [
            topo._COMMON_CMDLINE,
            spec["cmdline"],
            "pcipass_guest=1",
            f"pcipass_stage2={STAGE2_SCRIPT}",
            f"pcipass_modules={prov.kernel.modules_dir}",
            f"pcipass_root_tag={topo.ROOT_TAG}",
            f"pcipass_io_tag={topo.IO_TAG}",
            *extra_cmdline,
        ]
    )
    if upper_disk is not None:
        from .provision import upper_disk_modules

        cmdline += f" pcipass_upper=/dev/vda pcipass_upper_modules={','.join(upper_disk_modules(prov.kernel))}"
    qemu = [
        prov.tools["qemu-system-x86_64"],
        "-name",
        f"pcipass-{topology}",
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
        str(spec["memory_mb"]),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-serial",
        f"file:{run_dir / 'serial.log'}",
        "-kernel",
        str(prov.kernel.boot_image),
        "-initrd",
        str(prov.initramfs),
        "-append",
        cmdline,
        *topo.qemu_device_args(
            nvme_image=str(nvme),
            root_path="/",
            io_path=str(io_dir),
            topology=topology,
            models=models,
            upper_disk=str(upper_disk) if upper_disk else None,
        ),
    ]
    return [prov.tools["timeout"], "--signal=TERM", "--kill-after=10", f"{int(timeout_s)}", *qemu]


def run_guest(
    topology: str,
    script: str,
    *,
    timeout_s: float = 300.0,
    prov: Provisioned | None = None,
    run_name: str | None = None,
    extra_cmdline: tuple[str, ...] = (),
    on_start: Callable[[subprocess.Popen], None] | None = None,
    models: dict[str, str] | None = None,
    upper_disk: Path | None = None,
    io_files: dict[str, str] | None = None,
) -> GuestRun:
    """Boot ``topology``, run ``script`` (sh) as root in the guest, power off. Never raises on guest failure.

    ``upper_disk``: an ext4 image that holds the overlay's upper layer (what the guest writes survives to the
    next boot with the same image); ``models``: other device models at the topology's addresses (see
    ``topology.qemu_device_args``). With ``pcipass_systemd=1`` in ``extra_cmdline`` the guest runs systemd as
    PID 1 instead of ``script`` (the units written at an earlier boot decide what runs and end the VM);
    ``io_files`` are put in the result channel beside ``command.sh``."""
    prov = prov or provision()
    run_dir = _new_run_dir(prov.cache, run_name or topology)
    io_dir = run_dir / "io"
    io_dir.mkdir()
    (io_dir / "command.sh").write_text(script)
    for name, text in (io_files or {}).items():
        (io_dir / name).write_text(text)
    with open(run_dir / "nvme.img", "wb") as f:
        f.truncate(NVME_IMAGE_MB * 1024 * 1024)
    cmd = build_qemu_cmd(prov, topology, run_dir, timeout_s, extra_cmdline, models=models, upper_disk=upper_disk)
    (run_dir / "qemu-cmd.txt").write_text(shlex.join(cmd) + "\n")
    run = GuestRun(topology, run_dir, io_dir, run_dir / "serial.log", cmd)
    t0 = time.monotonic()
    stderr_path = run_dir / "qemu-stderr.log"
    with open(stderr_path, "wb") as err:
        # Own session: the caller can end exactly this timeout+qemu process group.
        p = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT, start_new_session=True
        )
        if on_start is not None:
            on_start(p)
        try:
            run.qemu_rc = p.wait(timeout=timeout_s + 30)
        except subprocess.TimeoutExpired:  # timeout(1) itself did not end it: belt and braces
            os.killpg(p.pid, signal.SIGKILL)
            run.qemu_rc = p.wait()
            run.timed_out = True
    run.qemu_stderr = _tail(stderr_path, 50)
    run.timed_out = run.timed_out or run.qemu_rc in (124, 137, -signal.SIGKILL)
    run.wall_s = time.monotonic() - t0
    (run_dir / "nvme.img").unlink(missing_ok=True)
    rc_file = io_dir / "command.rc"
    if rc_file.exists():
        try:
            run.command_rc = int(rc_file.read_text().strip() or "-1")
        except ValueError:
            run.command_rc = -1
    run.boot_to_command_s = _stage2_command_start(run.serial_log)
    return run


def _stage2_command_start(serial: Path) -> float | None:
    """Guest uptime at which stage 2 started the command (from the serial log), if seen."""
    for line in _tail(serial, 400).splitlines():
        if "pcipass-stage2:" in line and "running command.sh" in line:
            try:
                return float(line.split("[", 1)[1].split("s]", 1)[0])
            except (IndexError, ValueError):
                return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 1 or argv[0] not in topo.TOPOLOGIES:
        print(f"usage: python -m tests.realkernel.vm {{{'|'.join(topo.TOPOLOGIES)}}} [SHELL-COMMAND]", file=sys.stderr)
        return 2
    env = topo.guest_env(argv[0])
    script = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    script += f"cd {shlex.quote(str(Path.cwd()))}\n" + (" ".join(argv[1:]) or "lspci -nnk") + "\n"
    extra = tuple(a for a in os.environ.get("PCIPASS_REALKERNEL_EXTRA_CMDLINE", "").split() if a)
    run = run_guest(argv[0], script, run_name=f"manual-{argv[0]}", extra_cmdline=extra)
    sys.stdout.write((run.io_dir / "command.log").read_text() if (run.io_dir / "command.log").exists() else "")
    print(f"--- {run.diagnostics(15)}", file=sys.stderr)
    print(f"--- wall {run.wall_s:.1f} s, command started at guest uptime {run.boot_to_command_s} s", file=sys.stderr)
    return 0 if run.command_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
