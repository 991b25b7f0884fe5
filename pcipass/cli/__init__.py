"""The command-line interface (typer). Everything here is presentation: the library never prints.

The modules that define commands (``app`` and ``*_cmds``) do without ``from __future__ import annotations``:
typer reads every parameter's annotation on each run, and postponed annotations are strings it would compile
and evaluate each time (~2 ms of a cold ``pcipass list``; tests/test_conventions.py).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``pcipass``, ``python -m pcipass``): see ``app.main``. As the process's
    entry (no ``argv``) it first gives up the cyclic garbage collector (``_collector_off``); in-process callers
    of main(), such as the tests, keep theirs."""
    if argv is None:
        _collector_off()
    from .app import main as run

    run(argv)


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
