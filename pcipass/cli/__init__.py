"""The command-line interface (typer). Everything here is presentation: the library never prints.

The modules that define commands (``app`` and ``*_cmds``) do without ``from __future__ import annotations``:
typer reads every parameter's annotation on each run, and postponed annotations are strings it would compile
and evaluate each time (~2 ms of a cold ``pcipass list``; tests/test_conventions.py).
"""

from __future__ import annotations


#: The scan main() began before importing the CLI (``_begin_scan``), until a command takes it (``take_early_scan``).
_early_scan = None

#: The commands whose scan is ``Inventory.scan(host, detail=False)``, the one an EarlyScan is.
_EARLY_COMMANDS = ("list", "groups")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``pcipass``, ``python -m pcipass``): see ``app.main``. As the process's
    entry (no ``argv``) it first makes SIGTERM an exception (``_on_sigterm``), gives up the cyclic garbage
    collector (``_collector_off``) and, for a command that lists the host, begins reading it (``_begin_scan``);
    in-process callers of main(), such as the tests, keep their handlers and collector and begin nothing."""
    if argv is None:
        import signal
        import sys

        signal.signal(signal.SIGTERM, _on_sigterm)
        _collector_off()
        _begin_scan(sys.argv[1:])
    from .app import main as run

    run(argv)


def _on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM ends the run as SIGINT does, through an exception: its default action would end the process
    at once, skipping ``finally`` blocks and exit handlers, and leave an unpacked ``--root`` archive in
    $TMPDIR (and a binding group without its rollback). Exit status 128 + 15, as the shell reports it."""
    raise SystemExit(128 + signum)


def _begin_scan(args: list[str]) -> None:
    """When ``args`` ask for ``list`` or ``groups``, begin their host's scan now, while this process imports
    typer and the command modules (``inventory.EarlyScan`` says why). The arguments are only glanced at
    (cli/argv.py): typer parses them for real later, and the command's scan joins this one only if it is the
    scan begun, so a wrong guess costs a cancelled child."""
    import os

    from .argv import first_word, root_option

    word, before = first_word(args)
    if word not in _EARLY_COMMANDS or "--version" in before or "--help" in args or "-h" in args:
        return
    from ..errors import UsageError
    from ..host import chosen_root

    try:
        root = chosen_root(root_option(before))
    except UsageError:
        return  # an empty --root: the command reports it
    if not os.path.isdir(root):
        return  # a snapshot archive (unpacked by the command) or an error the command reports
    from ..inventory import EarlyScan

    global _early_scan
    try:
        _early_scan = EarlyScan.start(root)
    except Exception:  # noqa: BLE001 - only a head start: the command's own scan reads the host and reports
        return
    if _early_scan is not None:
        import atexit

        atexit.register(_early_scan.child.cancel)  # not taken (another command after all, an error): ended


def take_early_scan():
    """The scan main() began (an ``inventory.EarlyScan``), once; None when none was, or it was taken."""
    global _early_scan
    early, _early_scan = _early_scan, None
    return early


def _collector_off() -> None:
    """No cyclic garbage collection in the ``pcipass`` process, which runs one command and exits.

    Why: CPython starts a collection every 700 container allocations and, now and then, a full one over every
    object alive, although nearly nothing a run allocates is garbage in a cycle: typer's, click's and typing's
    tens of thousands of objects at import live until exit, and so does the inventory (tuples, dicts, frozen
    dataclasses: no cycles). Those collections (24 of them in a cold ``pcipass --version``, timed with
    gc.callbacks) took ~4.6 ms, ~6 % of it, as much in ``list`` on a small host, and ~10 ms of
    ``list --format json`` on 4,096 functions (bench/gen_tree.py). Memory is still freed by
    reference counting; a cycle left behind lives until exit.

    At exit CPython collects once more even with the collector off (``_PyGC_CollectNoFail`` in
    finalize_modules(), Python/pylifecycle.c): ``gc.freeze()``, registered first so that it runs after every
    other exit handler (an unpacked --root archive is still removed), moves everything to the permanent
    generation, which that collection skips (it was ~20 % of a cold ``list``). Done before ``app`` (and typer)
    is imported, so their imports are not collected either.
    """
    import atexit
    import gc

    gc.disable()
    atexit.register(gc.freeze)
