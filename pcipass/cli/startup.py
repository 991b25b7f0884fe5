"""What the ``pcipass`` process does at its start, before typer and the command modules are imported (``start``):
it makes SIGTERM an exception (``on_sigterm``), gives up the cyclic garbage collector, and when its arguments
ask for ``list`` or ``groups`` it begins reading the host's devices (an ``inventory.Reading``), which the
command takes over (``take_reading``).

The last two only make the process faster; nothing a run prints or does depends on them. Setting
``PCIPASS_PLAIN_START`` to a non-empty value switches them off (for comparing, profiling or ruling them out).
In-process callers of ``cli.main(argv)``, such as the tests, do not go through here.

The arguments are only glanced at here (``first_word``, ``root_option``), also to choose which command modules
to import (``app._modules_for``) and, once the parser refused them, the format of the error (``format_values``);
typer parses them for real afterwards, and a wrong guess costs at most a cancelled reading.
"""

from __future__ import annotations

import os

#: The off switch (module docstring).
OFF_ENV = "PCIPASS_PLAIN_START"

# Global options of app._global that take a value (``--root X``, ``-f X``; also ``--root=X``, ``-fX``) and
# flags.
VALUE_OPTIONS = ("--root", "--format", "-f")
FLAGS = ("--debug", "--version")

#: The commands whose scan is ``Inventory.scan(host, detail=False)``, the reading begun here.
_EARLY_COMMANDS = ("list", "groups")

#: The reading ``start`` began, until the command takes it (``take_reading``).
_reading = None


def start(args: list[str]) -> None:
    """The process-start work for ``pcipass ARGS`` (module docstring)."""
    import signal

    signal.signal(signal.SIGTERM, on_sigterm)
    if os.environ.get(OFF_ENV):
        return
    collector_off()
    begin_scan(args)


def on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM ends the run as SIGINT does, through an exception: its default action would end the process
    at once, skipping ``finally`` blocks and exit handlers, and leave an unpacked ``--root`` archive in
    $TMPDIR (and a binding group without its rollback). Exit status 128 + 15, as the shell reports it."""
    raise SystemExit(128 + signum)


def first_word(args: list[str]) -> tuple[str | None, list[str]]:
    """The first argument that is not a global option (the command's name, or whatever stands there), and
    the global options before it."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in VALUE_OPTIONS:
            i += 2
        elif arg in FLAGS or arg.startswith(("--root=", "--format=")) or (arg.startswith("-f") and len(arg) > 2):
            i += 1
        else:
            return arg, args[:i]
    return None, args


def root_option(before: list[str]) -> str | None:
    """The value of the last ``--root`` among the global options ``before`` (click keeps the last), or None."""
    root = None
    i = 0
    while i < len(before):
        arg = before[i]
        if arg in VALUE_OPTIONS:
            if arg == "--root" and i + 1 < len(before):
                root = before[i + 1]
            i += 2
            continue
        if arg.startswith("--root="):
            root = arg[len("--root=") :]
        i += 1
    return root


def format_values(args: list[str]) -> list[str]:
    """Every value given to ``--format``/``-f`` in ``args``, the global option's and the command's, in order
    (the last valid one is in force: the command's overrides the global one). Read when the parser refused
    the arguments, to print the error envelope in the format asked for."""
    out = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        if arg in ("--format", "-f"):
            if i + 1 < len(args):
                out.append(args[i + 1])
            i += 2
            continue
        if arg.startswith("--format="):
            out.append(arg[len("--format=") :])
        elif arg.startswith("-f") and len(arg) > 2 and not arg.startswith("--"):
            out.append(arg[2:])
        i += 1
    return out


def begin_scan(args: list[str]) -> None:
    """When ``args`` ask for ``list`` or ``groups``, begin reading their host now, while this process imports
    typer and the command modules.

    Why: those imports take one CPU for tens of milliseconds while the other idles; on a large host the
    reading's forked child (inventory/parallel.py) reads a good part of it meanwhile. The reading begins
    once the inventory is imported and the devices listed, which this process needs anyway: a child forked
    before that spent as long importing them itself, beside this process's own imports."""
    global _reading
    word, before = first_word(args)
    if word not in _EARLY_COMMANDS or "--version" in before or "--help" in args or "-h" in args:
        return
    from ..errors import UsageError
    from ..host import Host, chosen_root

    try:
        root = chosen_root(root_option(before))
    except UsageError:
        return  # an empty --root: the command reports it
    if not os.path.isdir(root):
        return  # a snapshot archive (unpacked by the command) or an error the command reports
    from ..inventory import Reading

    try:
        _reading = Reading(Host(root), None, detail=False, only=None)
    except Exception:  # noqa: BLE001 - only a head start: the command's own scan reads the host and reports
        return
    import atexit

    atexit.register(_reading.cancel)  # not taken (another command after all, an error): ended


def take_reading():
    """The reading ``start`` began (an ``inventory.Reading``), once; None when none was, or it was taken."""
    global _reading
    reading, _reading = _reading, None
    return reading


def collector_off() -> None:
    """No cyclic garbage collection in the ``pcipass`` process, which runs one command and exits.

    Why: CPython starts a collection every 700 container allocations and, now and then, a full one over every
    object alive, although nearly nothing a run allocates is garbage in a cycle: typer's, click's and typing's
    tens of thousands of objects at import live until exit, and so does the inventory (tuples, dicts, frozen
    dataclasses: no cycles). Those collections were a few per cent of a cold start and of a large ``list``
    (gc.callbacks timings; bench/). Memory is still freed by reference counting; a cycle left behind lives
    until exit.

    At exit CPython collects once more even with the collector off (``_PyGC_CollectNoFail`` in
    finalize_modules(), Python/pylifecycle.c): ``gc.freeze()``, registered first so that it runs after every
    other exit handler (an unpacked --root archive is still removed), moves everything to the permanent
    generation, which that collection skips. Done before typer is imported, so its imports are not collected
    either.
    """
    import atexit
    import gc

    gc.disable()
    atexit.register(gc.freeze)
