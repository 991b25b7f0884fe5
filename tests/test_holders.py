"""Processes holding a device through its host driver (pcipass/holders.py), on fake roots for every kind: found,
named (pid, command, systemd unit), refused by enable unless --force, listed by check-iommu -d and show; and
``status`` passive by default, ``--probe`` asking the kernel."""

from __future__ import annotations

import json
import os

import pytest

from pcipass.errors import ExitCode
from pcipass.holders import HolderKind, Watch, scan, unit_of
from pcipass.host import Host
from pcipass.hostuse import HostUse, UseKind
from pcipass.inventory import Inventory
from tests.support import bind_hosts as bh
from tests.support.bind_hosts import _never_the_real_sys, env  # noqa: F401 - fixtures
from tests.support.cli import run

GPU = bh.AUDIO  # re-dressed below as a display controller with DRM nodes (its own group, no other use)


def _process(
    env,
    pid: int,
    comm: str,
    *,
    fds: dict[int, str] | None = None,
    maps: str = "",
    unit: str | None = None,
) -> None:
    """A process as /proc shows it: fd links with the targets as the process sees them (absolute, dangling in
    the fake root), its maps, comm and cgroup (in the system ``unit``, else in a login session)."""
    cgroup = f"0::/system.slice/{unit}\n" if unit else "0::/user.slice/user-1000.slice/session-2.scope\n"
    base = env.root / "proc" / str(pid)
    (base / "fd").mkdir(parents=True, exist_ok=True)
    for fd, target in (fds or {}).items():
        os.symlink(target, base / "fd" / str(fd))
    (base / "maps").write_text(maps)
    (base / "comm").write_text(comm + "\n")
    (base / "cgroup").write_text(cgroup)


def _gpu(env) -> None:
    env.fake.add_drm(GPU, "card0")
    env.fake.add_drm(GPU, "renderD128")
    env.fake.add_drm(GPU, "card0-HDMI-A-1")  # a connector: no node


def _ordinary_processes(env) -> None:
    _process(env, 1, "systemd", fds={0: "/dev/null", 3: "socket:[1234]", 4: "/dev/dri/card7"})
    (env.root / "proc/2/fd").mkdir(parents=True)  # a kernel thread: no fds
    (env.root / "proc/2/comm").write_text("kthreadd\n")


def test_unit_of_a_process():
    assert unit_of("0::/system.slice/nvidia-persistenced.service\n") == ("nvidia-persistenced.service", False)
    assert unit_of("0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service\n") == ("foo.service", True)
    assert unit_of("0::/user.slice/user-1000.slice/session-2.scope\n") == (None, False)
    v1 = "12:cpuset:/\n1:name=systemd:/system.slice/gdm.service\n"
    assert unit_of(v1) == ("gdm.service", False)
    assert unit_of("") == (None, False)


def test_drm_card_and_render_node_holders(env):
    _gpu(env)
    _ordinary_processes(env)
    _process(env, 800, "Xorg", fds={0: "/dev/null", 11: "/dev/dri/card0"}, unit="display-manager.service")
    _process(env, 901, "python3", fds={5: "/dev/dri/renderD128"})
    use = HostUse.scan(env.host, Inventory.scan(env.host))
    reasons = [(r.kind, r.object, r.detail) for r in use.reasons(GPU)]
    assert reasons == [
        (UseKind.DRM_OPEN, "/dev/dri/card0", "open by Xorg (pid 800), unit display-manager.service"),
        (UseKind.DRM_OPEN, "/dev/dri/renderD128", "open by python3 (pid 901)"),
    ]
    assert use.holders(bh.E1000E) == []


def test_nvidia_nodes_and_persistenced(env):
    env.fake.add_driver("nvidia")
    env.fake.bind(GPU, "nvidia")
    env.fake.write(f"proc/driver/nvidia/gpus/{GPU}/information", "Model: \t NVIDIA A2\nDevice Minor: \t 3\n")
    persistenced = {3: "/dev/nvidiactl", 4: "/dev/nvidia3"}
    _process(env, 70, "nvidia-persistenced", fds=persistenced, unit="nvidia-persistenced.service")
    _process(env, 71, "cuda-job", fds={9: "/dev/nvidia-uvm"})
    _process(env, 72, "other-gpu-job", fds={9: "/dev/nvidia2"})  # another GPU's node
    holders = HostUse.scan(env.host, Inventory.scan(env.host)).holders(GPU)
    assert [(h.process.pid, h.node, h.kind) for h in holders] == [
        (70, "/dev/nvidia3", HolderKind.NVIDIA),
        (70, "/dev/nvidiactl", HolderKind.NVIDIA),
        (71, "/dev/nvidia-uvm", HolderKind.NVIDIA),
    ]
    # With a second GPU on the nvidia driver, the shared nodes are no longer this GPU's alone.
    env.fake.bind(bh.UNBOUND, "nvidia")
    holders = HostUse.scan(env.host, Inventory.scan(env.host)).holders(GPU)
    assert [(h.process.pid, h.node) for h in holders] == [(70, "/dev/nvidia3")]


def test_mapped_resource_files(env):
    path = f"/sys/devices/pci0000:00/{GPU}/resource0"
    _process(
        env,
        300,
        "fwupd-tool",
        maps=(
            "5581c0a00000-5581c0a22000 r--p 00000000 fd:01 1234 /usr/bin/fwupd-tool\n"
            f"7f0000000000-7f0001000000 rw-s 00000000 00:15 4242 {path}\n"
            f"7f0001000000-7f0002000000 rw-s 00000000 00:15 4243 /sys/devices/pci0000:00/{bh.E1000E}/resource0\n"
        ),
    )
    use = HostUse.scan(env.host, Inventory.scan(env.host))
    assert [(r.kind, r.object, r.detail) for r in use.reasons(GPU)] == [
        (UseKind.MAPPED, path, "mapped by fwupd-tool (pid 300)")
    ]
    assert [r.object for r in use.reasons(bh.E1000E) if r.kind is UseKind.MAPPED] == [
        f"/sys/devices/pci0000:00/{bh.E1000E}/resource0"
    ]


def test_scan_reads_no_fd_link_when_nothing_has_a_node(env, monkeypatch):
    """A NIC has no node: the fd links are not read at all (only maps, for resource mappings)."""
    _process(env, 5, "bash", fds={0: "/dev/null"})
    calls = []
    real = os.readlink
    monkeypatch.setattr(os, "readlink", lambda p, *a, **k: calls.append(p) or real(p, *a, **k))
    watch = Watch()
    watch.mapped.add(bh.E1000E)
    assert scan(env.host, watch) == []
    assert not [c for c in calls if "/proc/" in str(c)]
    assert scan(env.host, Watch()) == []  # nothing asked: nothing read


def test_hostile_proc_entries_do_not_block_or_leak(env):
    _gpu(env)
    base = env.root / "proc/44"
    (base / "fd").mkdir(parents=True)
    os.symlink("/dev/dri/card0", base / "fd/3")
    os.mkfifo(base / "maps")  # would block a plain open()
    (base / "comm").write_text("evil\x1b[2Jname\n")
    holders = HostUse.scan(env.host, Inventory.scan(env.host)).holders(GPU)
    assert [(h.process.pid, h.process.command) for h in holders] == [(44, "evil?[2Jname")]


# --- enable refuses, --force overrides, the remedy names the unit ------------------------------------------------
def test_enable_refuses_a_held_device_naming_pid_and_command(env):
    _gpu(env)
    _process(env, 800, "Xorg", fds={11: "/dev/dri/card0"}, unit="display-manager.service")
    _process(env, 901, "glxgears", fds={5: "/dev/dri/renderD128"})
    before = env.digest()
    r = env.enable(GPU)
    assert r.exit_code is ExitCode.REFUSED and env.digest() == before
    assert r.devices[0].reasons == (
        f"{GPU} is in use by the host: /dev/dri/card0: open by Xorg (pid 800), unit display-manager.service",
        f"{GPU} is in use by the host: /dev/dri/renderD128: open by glxgears (pid 901)",
    )
    (err,) = r.errors
    assert err.remedy == (
        "stop what holds it (systemctl stop display-manager.service; end glxgears (pid 901)) "
        "first, or pass --force if you are sure"
    )
    r = env.enable(GPU, force=True)
    assert r.exit_code is ExitCode.OK and env.driver(GPU) == "vfio-pci"
    assert any("--force: going ahead although" in m and "Xorg (pid 800)" in m for m in r.messages)


def test_enable_cli_exit_5_and_released_device_binds(env, capsys, monkeypatch):
    import pcipass.engine.kernel as kernel

    monkeypatch.setattr(kernel, "SysfsKernel", lambda host: env.kernel)
    _gpu(env)
    _process(env, 321, "sleep", fds={3: "/dev/dri/card0"})
    r = run(capsys, "--root", str(env.root), "enable", GPU)
    assert r.code == 5 and "/dev/dri/card0: open by sleep (pid 321)" in r.err, r.err
    assert "end sleep (pid 321)" in r.err
    os.unlink(env.root / "proc/321/fd/3")  # the process let go
    r = run(capsys, "--root", str(env.root), "enable", GPU)
    assert r.code == 0 and env.driver(GPU) == "vfio-pci", r.err


def test_check_iommu_device_and_show_list_holders(env, capsys):
    _gpu(env)
    _process(env, 70, "nvtop", fds={4: "/dev/dri/renderD128"}, unit="nvtop.service")
    r = run(capsys, "--root", str(env.root), "-f", "json", "check-iommu", "-d", GPU)
    check = next(c for c in json.loads(r.out)["data"]["checks"] if c["id"] == "device.in_use")
    assert check["verdict"] == "fail"
    assert "/dev/dri/renderD128: open by nvtop (pid 70), unit nvtop.service" in check["detail"]
    assert "systemctl stop nvtop.service" in check["remedy"]
    r = run(capsys, "--root", str(env.root), "-f", "json", "show", GPU)
    assert json.loads(r.out)["data"]["holders"] == [
        {"pid": 70, "command": "nvtop", "unit": "nvtop.service", "kind": "drm", "node": "/dev/dri/renderD128"}
    ]
    r = run(capsys, "--root", str(env.root), "show", GPU)
    assert ["70", "nvtop", "nvtop.service", "drm", "/dev/dri/renderD128"] in [
        line.split() for line in r.out.splitlines()
    ]


# --- status: passive by default, --probe asks the kernel -----------------------------------------------------------
def test_status_is_passive_and_probe_asks_the_kernel(env, monkeypatch):
    from pcipass import engine

    env.enable(bh.E1000E)
    env.kernel.vfio_answer[1] = False  # the kernel's answer differs from sysfs's: shows who answered
    monkeypatch.setattr(
        env.kernel,
        "vfio_status",
        lambda g, real=env.kernel.vfio_status: (env.kernel.__dict__.setdefault("asked", []).append(g), real(g))[1],
    )
    st = engine.status(env.host, [bh.E1000E], kernel=env.kernel)
    assert (st.devices[0].vfio_viable, st.devices[0].viable_from) == (True, "sysfs")
    assert env.kernel.__dict__.get("asked") is None
    assert any("no /dev/vfio node was opened" in m for m in st.messages)
    st = engine.status(env.host, [bh.E1000E], kernel=env.kernel, probe=True)
    assert (st.devices[0].vfio_viable, st.devices[0].viable_from) == (False, "kernel")
    assert env.kernel.asked == [1]


def test_passive_status_names_the_blocking_peer(env):
    from pcipass import engine

    env.fake.bind(bh.MF1, "vfio-pci")
    env.kernel._bind(bh.MF1, "vfio-pci")
    (d,) = engine.status(env.host, [bh.MF1], kernel=env.kernel).devices
    assert (d.vfio_viable, d.viable_from, d.vfio_detail) == (
        False,
        "sysfs",
        f"on a host driver: {bh.MF0} on virtio-pci",
    )


@pytest.mark.parametrize("probe", [False, True])
def test_status_cli_column(env, capsys, monkeypatch, probe):
    import pcipass.engine.readstatus as status

    monkeypatch.setattr(status, "SysfsKernel", lambda host: env.kernel)
    env.enable(bh.E1000E)
    r = run(capsys, "--root", str(env.root), "status", *(["--probe"] if probe else []), bh.E1000E)
    assert r.code == 0
    assert f"viable ({'kernel' if probe else 'sysfs'})" in r.out
    assert ("no /dev/vfio node was opened" in r.err) is not probe


def test_host_without_proc_has_no_holders(tmp_path):
    from tests.support.fakehost import FakeHost

    f = FakeHost(tmp_path / "r")
    f.add_device(GPU, class_="030000", driver="bochs-drm", group=1)
    f.add_drm(GPU)
    import shutil

    shutil.rmtree(tmp_path / "r/proc")
    host = Host(f.root)
    assert HostUse.scan(host, Inventory.scan(host)).holders(GPU) == []


def test_a_large_proc_is_read_by_two_processes_with_the_same_result(env, monkeypatch):
    import pcipass.holders as holders_mod
    from pcipass.inventory import parallel

    _gpu(env)
    for pid in range(100, 140):
        _process(env, pid, f"p{pid}", fds={3: "/dev/null", 4: "/dev/dri/card0" if pid % 13 == 0 else "pipe:[1]"})
    serial = HostUse.scan(env.host, Inventory.scan(env.host)).holders(GPU)
    started = []
    real_start = parallel.ForkedReader.start
    monkeypatch.setattr(
        parallel.ForkedReader,
        "start",
        classmethod(lambda cls, read, jobs: started.append(len(jobs)) or real_start.__func__(cls, read, jobs)),
    )
    monkeypatch.setattr(holders_mod, "_FORK_FROM", 8)
    forked = HostUse.scan(env.host, Inventory.scan(env.host)).holders(GPU)
    assert started and forked == serial
    assert [h.process.pid for h in forked] == [104, 117, 130]


# --- DRM's debugfs clients list: an idle GPU spares the fd scan ----------------------------------------------------
#: drm_clients_info's header: before the tgid rename (pid: 6.1, as the real-kernel tier's guest prints it), and with
#: the columns appended since (name, id).
OLD_HEADER = f"{'command':>20} {'pid':>5} {'dev':>3} master a {'uid':>5} {'magic':>10}\n"
NEW_HEADER = f"{'command':>20} {'tgid':>5} {'dev':>3} master a {'uid':>5} {'magic':>10} {'name':>64} {'id':>20}\n"


def _client(comm: str, tgid: int, minor: int = 0) -> str:
    return f"{comm:>20} {tgid:5d} {minor:3d}   y    y {0:5d} {0:10d} {'<unset>':>64} {7:20d}\n"


def _clients(env, minor: str, text: str) -> None:
    """``/sys/kernel/debug/dri/<minor>/clients`` in the fake root."""
    path = env.root / "sys/kernel/debug/dri" / minor / "clients"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _fd_links_read(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = os.readlink
    monkeypatch.setattr(os, "readlink", lambda p, *a, **k: calls.append(str(p)) or real(p, *a, **k))
    return calls


def _gpu_watch(env) -> Watch:
    watch = Watch()
    watch.drm_minor(env.host, "card0", GPU)
    watch.drm_minor(env.host, "renderD128", GPU)
    return watch


@pytest.mark.parametrize("header", [OLD_HEADER, NEW_HEADER])
def test_drm_clients_list_parsed_across_kernels(env, header):
    from pcipass.holders import drm_clients

    _clients(env, "0", header)
    assert drm_clients(env.host, "card0") is False
    _clients(env, "0", header + _client("Xorg", 800))
    assert drm_clients(env.host, "card0") is True
    _clients(env, "0", header + _client("<unknown>", 4242))  # the opener is gone; its file is still held
    assert drm_clients(env.host, "card0") is True
    _clients(env, "128", header)
    assert drm_clients(env.host, "renderD128") is False
    assert drm_clients(env.host, "card1") is None  # no list for that minor
    assert drm_clients(env.host, "card0-HDMI-A-1") is None  # a connector, not a minor


def test_an_idle_gpu_by_drm_clients_reads_no_fd_link(env, monkeypatch):
    """Every minor's clients list is only the header: nobody holds the GPU, so its nodes are looked for in no fd
    link (the NIC's maps are still read), and with ``drm_clients=False`` the full scan agrees."""
    _gpu(env)
    _ordinary_processes(env)
    _clients(env, "0", NEW_HEADER)
    _clients(env, "128", NEW_HEADER)
    calls = _fd_links_read(monkeypatch)
    assert HostUse.scan(env.host, Inventory.scan(env.host)).holders(GPU) == []
    assert not [c for c in calls if "/proc/" in c or c.isdigit()], calls
    calls.clear()
    assert scan(env.host, _gpu_watch(env)) == []
    assert not calls
    assert scan(env.host, _gpu_watch(env), drm_clients=False) == []
    assert calls  # the full scan read the fd links, and found nobody either


def test_a_listed_client_means_the_full_scan_naming_every_holder(env, monkeypatch):
    """DRM lists the opener (Xorg), not the process it passed the file to nor a forked child: the fd links are
    read and every holder is named."""
    _gpu(env)
    _clients(env, "0", NEW_HEADER + _client("Xorg", 800))
    _clients(env, "128", NEW_HEADER + _client("Xorg", 800))
    _process(env, 800, "Xorg", fds={11: "/dev/dri/card0"}, unit="display-manager.service")
    _process(env, 801, "Xorg-child", fds={11: "/dev/dri/card0"})  # inherited over fork: not listed
    _process(env, 900, "logind-client", fds={4: "/dev/dri/renderD128"})  # received with SCM_RIGHTS
    calls = _fd_links_read(monkeypatch)
    holders = HostUse.scan(env.host, Inventory.scan(env.host)).holders(GPU)
    assert [(h.process.pid, h.node) for h in holders] == [
        (800, "/dev/dri/card0"),
        (801, "/dev/dri/card0"),
        (900, "/dev/dri/renderD128"),
    ]
    assert calls
    assert scan(env.host, _gpu_watch(env)) == scan(env.host, _gpu_watch(env), drm_clients=False)


def _held_gpu(env) -> None:
    _gpu(env)
    _process(env, 321, "sleep", fds={3: "/dev/dri/card0"})


def _assert_full_scan(env) -> None:
    holders = HostUse.scan(env.host, Inventory.scan(env.host)).holders(GPU)
    assert [(h.process.pid, h.node) for h in holders] == [(321, "/dev/dri/card0")]


def test_no_debugfs_means_the_full_scan(env):
    _held_gpu(env)
    _assert_full_scan(env)


def test_one_minor_without_a_list_means_the_full_scan(env):
    """card0's list is empty but renderD128 has none: nothing proves the render node unheld."""
    _held_gpu(env)
    _clients(env, "0", NEW_HEADER)
    holders = scan(env.host, _gpu_watch(env))
    assert [(h.process.pid, h.node) for h in holders] == [(321, "/dev/dri/card0")]


@pytest.mark.parametrize(
    "content",
    [
        "",  # empty: not the kernel's (it always writes the header)
        "name dev unique\n",  # another file's format
        NEW_HEADER.rstrip("\n"),  # cut short
        "\n" + NEW_HEADER,  # the header not first
    ],
)
def test_a_clients_list_of_another_format_means_the_full_scan(env, content):
    _held_gpu(env)
    _clients(env, "0", content)
    _clients(env, "128", NEW_HEADER)
    _assert_full_scan(env)


def test_an_unreadable_clients_list_means_the_full_scan(env, monkeypatch):
    """Not root (debugfs is 0700), or something else where the file should be (a directory)."""
    import errno

    _held_gpu(env)
    _clients(env, "128", NEW_HEADER)
    (env.root / "sys/kernel/debug/dri/0/clients").mkdir(parents=True)
    _assert_full_scan(env)
    real_open = os.open

    def denied(path, *a, **k):
        if "kernel/debug" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *a, **k)

    os.rmdir(env.root / "sys/kernel/debug/dri/0/clients")
    _clients(env, "0", NEW_HEADER)
    monkeypatch.setattr(os, "open", denied)
    _assert_full_scan(env)


def test_a_hostile_clients_list_neither_blocks_nor_fills_memory(env, monkeypatch):
    """A FIFO where the list should be opens at once and reads as empty; a huge file is read up to the cap only."""
    import pcipass.holders as holders_mod

    _held_gpu(env)
    _clients(env, "128", NEW_HEADER)
    fifo = env.root / "sys/kernel/debug/dri/0/clients"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    _assert_full_scan(env)
    os.unlink(fifo)
    with open(fifo, "wb") as f:  # a header, then a GiB (sparse) of nothing
        f.write(NEW_HEADER.encode())
        f.truncate(1 << 30)
    reads: list[int] = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    assert holders_mod.drm_clients(env.host, "card0") is None
    assert sum(reads) <= holders_mod._MAX_CLIENTS
    _assert_full_scan(env)
