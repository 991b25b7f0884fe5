"""Cold start (issue #2): a command loads only what it uses, yet every command stays reachable.

main() registers only the command module the invocation names (cli.app._modules_for); help, completion and
errors see the whole CLI. These tests guard both halves: what a run imports, and that nothing went missing.
And what the process does before that (cli/startup.py): the collector off, the early scan.
"""

import ast
import json
import os
import subprocess
import sys

import pytest

import pcipass
from pcipass.cli import app as cli_app
from pcipass.cli import main as cli_main
from tests.support.bench_tree import server  # noqa: F401 - fixture
from tests.support.cli import run as cli_run

# Imported by a command that needs them only: never by `--version` or a piped `list`.
HEAVY = (
    "rich",
    "yaml",
    "pyudev",
    "libvirt",
    "lxml",
    "jsonschema",
    "pcipass.engine",
    "pcipass.preflight",
    "pcipass.emit",
    "pcipass.snapshot",
    "pcipass.hostuse",
    "pcipass.group",
)
COMMAND_MODULES = tuple(f"pcipass.cli.{m}" for m in dict.fromkeys(cli_app.COMMANDS.values()))


def _imports(*args: str) -> tuple[str, list[str]]:
    """Run ``pcipass ARGS`` in a fresh interpreter with stdout piped; its stdout and the modules of HEAVY and
    COMMAND_MODULES it imported."""
    watch = HEAVY + COMMAND_MODULES
    code = (
        "import sys\n"
        f"sys.argv = ['pcipass', *{list(args)!r}]\n"
        "from pcipass.cli import main\n"
        "try:\n    main()\n"
        "except SystemExit as e:\n    code = e.code\n"
        f"loaded = sorted(m for m in {watch!r} if m in sys.modules)\n"
        "sys.stderr.write(f'\\nLOADED {loaded!r} EXIT {code!r}\\n')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    tail = run.stderr.rsplit("LOADED ", 1)[1]
    loaded, _, status = tail.partition(" EXIT ")
    assert status.strip() in ("0", "None"), run.stderr
    return run.stdout, ast.literal_eval(loaded)


def test_version_goes_through_the_cli_and_loads_no_command(fake):
    out, loaded = _imports("--version")
    assert out == f"pcipass {pcipass.__version__}\n"
    assert loaded == []
    # The same answer with other global options, whatever their order.
    out, loaded = _imports("--format", "json", "--root", str(fake.root), "--version")
    assert out == f"pcipass {pcipass.__version__}\n" and loaded == []


def test_piped_list_loads_only_the_inventory_commands(fake):
    fake.add_device("0000:00:19.0", vendor="8086", device="10d3", class_="020000", driver="e1000e", group=3)
    out, loaded = _imports("--root", str(fake.root), "list")
    assert "0000:00:19.0" in out
    assert loaded == ["pcipass.cli.inventory_cmds"]
    # The IOMMU group model is imported by what shows groups (pcipass/group.py says why it is apart).
    out, loaded = _imports("--root", str(fake.root), "groups")
    assert "0000:00:19.0" in out and "pcipass.group" in loaded


@pytest.mark.parametrize(
    "args, modules",
    [
        (["list"], ("inventory_cmds",)),
        (["--root", "X", "show", "00:01.0"], ("inventory_cmds",)),
        (["--root=X", "-f", "json", "--debug", "enable", "a"], ("bind_cmds",)),
        (["-fjson", "--format=yaml", "check-iommu"], ("check_cmds",)),
        (["--format", "json", "attach"], ("libvirt_cmds",)),
        (["emit", "libvirt"], ("emit_cmds",)),
        (["snapshot", "--help"], ("snapshot_cmds",)),
        (["--version"], ()),
        (["--debug", "--version"], ()),
        # Everything: help, no command, a missing option value, an unknown command or option.
        ([], None),
        (["--help"], None),
        (["-h", "list"], None),
        (["--debug"], None),
        (["--root"], None),
        (["lis"], None),
        (["--bogus", "list"], None),
        (["--", "list"], None),
    ],
)
def test_modules_for(args, modules):
    expected = tuple(dict.fromkeys(cli_app.COMMANDS.values())) if modules is None else modules
    assert cli_app._modules_for(args) == expected


def test_completion_registers_everything(monkeypatch):
    monkeypatch.setenv("_PCIPASS_COMPLETE", "bash_complete")
    assert cli_app._modules_for(["list"]) == tuple(dict.fromkeys(cli_app.COMMANDS.values()))


def test_every_command_is_reachable_and_listed_in_order():
    """Each command, run alone in a fresh process (only its module registered), answers --help; the main
    --help lists every command, in COMMANDS order, exactly as the fully registered app has them."""
    help_text = subprocess.run(
        [sys.executable, "-m", "pcipass", "--help"], capture_output=True, text=True, check=True
    ).stdout
    commands = help_text[help_text.index("Commands") :]
    positions = []
    for name in cli_app.COMMANDS:
        run = subprocess.run([sys.executable, "-m", "pcipass", name, "--help"], capture_output=True, text=True)
        assert run.returncode == 0 and f"pcipass {name}" in run.stdout, (name, run.stderr)
        positions.append(commands.index(f"\u2502 {name} "))
    assert positions == sorted(positions)
    import typer.main

    assert list(typer.main.get_command(cli_app.app).commands) == list(cli_app.COMMANDS)


def test_registration_order_does_not_depend_on_what_ran_first(monkeypatch):
    """In one process (the tests' in-process runner), commands registered one by one in any order end up
    in the --help order."""
    monkeypatch.setattr(cli_app, "_registered", set())
    monkeypatch.setattr(cli_app._app, "registered_commands", [])
    monkeypatch.setattr(cli_app._app, "registered_groups", [])
    for module in ("libvirt_cmds", "bind_cmds", "inventory_cmds"):
        cli_app._register((module,))
    assert [c.name for c in cli_app._app.registered_commands] == [
        "list",
        "show",
        "groups",
        "enable",
        "disable",
        "status",
        "attach",
        "detach",
    ]


def test_typer_builds_only_the_invoked_command(monkeypatch, fake):
    """enable, disable and status share a module; running one builds one click command, and the app keeps
    every registered command for the next in-process run."""
    import typer.main

    from pcipass.cli import main

    built: list[str] = []
    real = typer.main.get_command_from_info

    def spy(command_info, **kw):
        built.append(command_info.name)
        return real(command_info, **kw)

    monkeypatch.setattr(typer.main, "get_command_from_info", spy)
    fake.add_device("0000:00:02.0", vendor="8086", device="10d3", class_="020000", driver="e1000e", group=1)
    with pytest.raises(SystemExit) as exit_:
        main(["--root", str(fake.root), "status", "00:02.0"])
    assert exit_.value.code == 0 and built == ["status"]
    names = {c.name for c in cli_app._app.registered_commands}
    assert {"enable", "disable", "status"} <= names
    built.clear()
    with pytest.raises(SystemExit) as exit_:
        main(["emit", "--help"])  # a group: its own commands, nobody else's
    assert exit_.value.code == 0 and sorted(built) == ["harvester", "kubevirt", "libvirt"]


def test_the_process_runs_without_the_cyclic_collector(monkeypatch):
    """main() as the process's entry (no argv) turns the cyclic collector off before typer is imported and
    has gc.freeze run at exit, after the other exit handlers (cli/startup.py); called with arguments, as
    the tests do in-process, it leaves the collector alone and registers nothing."""
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: sys.stderr.write(f'AT-EXIT {gc.isenabled()} {gc.get_freeze_count() > 0}\\n'))\n"
        "class Watch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'typer':\n"
        "            sys.stderr.write(f'TYPER-IMPORT {gc.isenabled()}\\n')\n"
        "sys.meta_path.insert(0, Watch())\n"
        "sys.argv = ['pcipass', '--version']\n"
        "from pcipass.cli import main\n"
        "main()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == f"pcipass {pcipass.__version__}\n", run.stderr
    # Off before typer's import, still off at exit, and everything frozen then.
    assert "TYPER-IMPORT False" in run.stderr and "AT-EXIT False True" in run.stderr
    # The one off switch (startup.OFF_ENV): the same run keeps its collector and freezes nothing.
    plain = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PCIPASS_PLAIN_START": "1"}
    )
    assert plain.returncode == 0 and plain.stdout == run.stdout, plain.stderr
    assert "TYPER-IMPORT True" in plain.stderr and "AT-EXIT True False" in plain.stderr

    import atexit
    import gc

    registered = []
    monkeypatch.setattr(atexit, "register", lambda *a, **k: registered.append(a))
    assert gc.isenabled()
    with pytest.raises(SystemExit):
        cli_main(["--version"])
    assert registered == [] and gc.isenabled()


# --- the early scan (cli/startup.py), on the benchmark's generated server ----------------------------------


def test_the_cli_begins_the_scan_its_arguments_ask_for(server, monkeypatch, tmp_path):
    """startup.begin_scan glances at the arguments: ``list``/``groups`` with the root from --root, its env
    variable or /; nothing for other commands, help, --version, an empty root or one that is not a
    directory. What it begins, ``list`` takes over (``take_reading``) through the real entry point."""
    import pcipass.inventory as inventory
    from pcipass.cli import startup

    root, _m = server
    began = []

    class Begun:
        def __init__(self, host, ids, **kwargs):
            began.append(str(host.root))

        def cancel(self):
            pass

    monkeypatch.setattr(inventory, "Reading", Begun)
    monkeypatch.delenv("PCIPASS_ROOT", raising=False)
    archive = tmp_path / "snap.tar.gz"
    archive.write_bytes(b"")
    cases = [
        (["--root", str(root), "list"], str(root)),
        ([f"--root={root}", "--format", "json", "groups", "--tree"], str(root)),
        (["-f", "json", "--root", "/nowhere", "--root", str(root), "list"], str(root)),  # click keeps the last
        (["list"], "/"),
        (["--root", str(root), "show", "0000:00:00.0"], None),
        (["--root", str(root), "list", "--help"], None),
        (["--version", "--root", str(root), "list"], None),
        (["--root", "", "list"], None),
        (["--root", str(archive), "list"], None),
        (["--root", str(tmp_path / "missing"), "list"], None),
        (["--root"], None),
        ([], None),
    ]
    for args, want in cases:
        began.clear()
        startup.begin_scan(args)
        assert began == ([want] if want else []), args
    monkeypatch.setenv("PCIPASS_ROOT", str(root))
    began.clear()
    startup.begin_scan(["list"])
    assert began == [str(root)]
    assert isinstance(startup.take_reading(), Begun) and startup.take_reading() is None
    # The off switch: nothing is begun (and this test process keeps its own SIGTERM handler).
    import signal

    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setenv(startup.OFF_ENV, "1")
    began.clear()
    startup.start(["list"])
    assert began == [] and startup.take_reading() is None
    monkeypatch.delenv(startup.OFF_ENV)

    # Only a head start: whatever goes wrong beginning it, the command runs as without it.
    def broken(host, ids, **kwargs):
        raise PermissionError(13, "Permission denied", str(host.root))

    monkeypatch.setattr(inventory, "Reading", broken)
    startup.begin_scan(["list"])
    assert startup.take_reading() is None


def test_pcipass_list_takes_over_the_early_scan(server, tmp_path, capsys):
    """Through the process's own entry point (main() without arguments): ``list`` and ``groups`` fork once,
    early, and print what an in-process run prints; another command cancels what was begun for it."""
    root, _m = server
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, sys, atexit\n"
        "import pcipass.inventory.scan as scan, pcipass.inventory.parallel as parallel\n"
        "scan.PARALLEL_MIN = 2\n"
        "parallel.threading.active_count = lambda: 1\n"
        "forks, real_fork = [], os.fork\n"
        "def fork():\n"
        "    pid = real_fork()\n"
        "    if pid:\n"
        "        forks.append(pid)\n"
        "    return pid\n"
        "os.fork = fork\n"
        "atexit.register(lambda: sys.stderr.write(f'FORKS {forks}\\n'))\n"
        "sys.argv = ['pcipass', *sys.argv[1:]]\n"
        "from pcipass.cli import main\n"
        "main()\n"
    )

    def forks(run) -> list[int]:
        return json.loads(run.stderr.rpartition("FORKS ")[2])

    for command in ("list", "groups"):
        args = ["--root", str(root), command, "--format", "json"]
        run = subprocess.run([sys.executable, str(probe), *args], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert len(forks(run)) == 1
        assert json.loads(run.stdout) == json.loads(cli_run(capsys, *args).out)
    # Begun, then a usage error: the child is ended at exit, not left running.
    run = subprocess.run(
        [sys.executable, str(probe), "--root", str(root), "list", "--no-such-option"], capture_output=True, text=True
    )
    assert run.returncode == 2 and len(forks(run)) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(forks(run)[0], 0)
