"""What ``pcipass ARGS`` asks for, read before typer is imported: the command's name and the global options
before it. Used to decide what to load and start (``app._modules_for``, ``cli._begin_scan``); typer parses
the arguments for real afterwards, and nothing here decides what a run does."""

from __future__ import annotations

# Global options of app._global that take a value (``--root X``, ``-f X``; also ``--root=X``, ``-fX``) and
# flags.
VALUE_OPTIONS = ("--root", "--format", "-f")
FLAGS = ("--debug", "--version")


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
            root = arg[len("--root="):]
        i += 1
    return root
