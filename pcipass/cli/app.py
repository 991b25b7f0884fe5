"""The ``pcipass`` command: global options, command registration, and the one place that turns
exceptions into exit codes."""

import os
import sys
import traceback
from importlib import import_module
from typing import Annotated

import typer

from .. import __version__
from ..errors import ExitCode, PcipassError
from ..host import ROOT_ENV
from . import context
from .render import Format, dump_json, dump_yaml, warn, write_stdout
from .startup import first_word, format_values

# The bare app: global options only. Commands are registered on demand by main() (see _modules_for); the
# module attribute ``app`` (__getattr__ below) is this same object with every command registered.
_app = typer.Typer(
    name="pcipass",
    help="Safe, scriptable PCI passthrough: inventory, IOMMU preflight, vfio-pci binding, hypervisor config.",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        write_stdout(f"pcipass {__version__}")
        raise typer.Exit(0)


@_app.callback()
def _global(
    ctx: typer.Context,
    root: Annotated[
        str | None,
        typer.Option(
            "--root",
            envvar=ROOT_ENV,
            help="Read the host under this directory instead of / (a snapshot or a test tree).",
            show_default="/",
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)] = Format.table,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    st = context.CURRENT
    st.root = root
    st.fmt = fmt
    st.debug = debug
    st.command = ctx.invoked_subcommand or "pcipass"
    if root is not None:
        # Validate early: a --root that does not exist is a usage error (exit 2), whatever the command.
        st.host()


#: Every command and the module (in this package) that defines it, in the order of ``pcipass --help``:
#: inventory, preflight, binding, persistence, hypervisor configuration (typer lists the groups, ``mdev``, ``emit``
#: and ``boot``, after the commands).
COMMANDS = {
    "list": "inventory_cmds",
    "show": "inventory_cmds",
    "groups": "inventory_cmds",
    "snapshot": "snapshot_cmds",
    "check-iommu": "check_cmds",
    "enable": "bind_cmds",
    "disable": "bind_cmds",
    "status": "bind_cmds",
    "sriov": "sriov_cmds",
    "persist": "persist_cmds",
    "unpersist": "persist_cmds",
    "apply": "persist_cmds",
    "verify": "persist_cmds",
    "attach": "libvirt_cmds",
    "detach": "libvirt_cmds",
    "mdev": "mdev_cmds",
    "emit": "emit_cmds",
    "boot": "boot_cmds",
}
_ALL = tuple(dict.fromkeys(COMMANDS.values()))
_registered: set[str] = set()


def _modules_for(args: list[str]) -> tuple[str, ...]:
    """The command modules ``pcipass ARGS`` needs: the one defining the invoked command, none for a bare
    ``--version``, and all of them for help, no command, an unknown command or option, and shell completion,
    so what those print (command lists, "did you mean" hints) is what the whole CLI prints.

    Why: typer builds a click command for every registered command on each run; importing every command
    module and building all their commands is a tenth or more of a cold ``list``, which uses one of them
    (bench/run.py's cold start).
    """
    if os.environ.get("_PCIPASS_COMPLETE"):
        return _ALL
    word, before = first_word(args)
    if word is None:
        return () if "--version" in before else _ALL
    module = COMMANDS.get(word)
    return (module,) if module else _ALL


def _group_name(info: typer.models.TyperInfo) -> str | None:
    # add_typer(sub) without name=: the name is the sub-app's own (Typer(name="emit")).
    for name in (info.name, info.typer_instance.info.name if info.typer_instance else None):
        if isinstance(name, str):
            return name
    return None


def _run(args: list[str]) -> int | None:
    """Run the app for ``args``; when they invoke one registered command, typer builds only that one (a
    module registers several, and building each is paid on every run)."""
    word, _ = first_word(args)
    commands, groups = _app.registered_commands, _app.registered_groups
    if word in COMMANDS and not os.environ.get("_PCIPASS_COMPLETE"):
        _app.registered_commands = [c for c in commands if c.name == word]
        _app.registered_groups = [g for g in groups if _group_name(g) == word]  # ``emit`` is a group
    try:
        return _app(args=args, prog_name="pcipass", standalone_mode=False)
    finally:
        _app.registered_commands, _app.registered_groups = commands, groups


def _register(modules: tuple[str, ...] = _ALL) -> None:
    """Register the commands of ``modules`` (once each), keeping the ``--help`` order whatever order they
    arrive in: in-process callers (the tests) run one command after another on the same app."""
    new = [m for m in _ALL if m in modules and m not in _registered]
    for name in new:
        import_module(f"{__package__}.{name}").register(_app)
        _registered.add(name)
    if new:
        rank = {name: i for i, name in enumerate(COMMANDS)}
        _app.registered_commands.sort(key=lambda info: rank.get(info.name or "", len(rank)))


def __getattr__(name: str) -> typer.Typer:
    # ``app``: the whole CLI, every command registered, for what reads the command tree (scripts/gen_docs.py,
    # the tests). main() registers only what the invocation needs.
    if name == "app":
        _register()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _asked_format(args: list[str]) -> Format | None:
    """The last valid ``--format`` value among ``args`` (the command's own overrides the global one), read
    again for an error raised before the command applied it (the parser's, or a bad ``--root``)."""
    asked = [f for f in (v.lower() for v in format_values(args)) if f in Format._value2member_map_]
    return Format(asked[-1]) if asked else None


def _error_envelope(err: PcipassError, args: list[str]) -> None:
    st = context.CURRENT
    st.fmt = _asked_format(args) or st.fmt
    if st.fmt in (Format.json, Format.yaml):
        from ..result import Result

        env = Result(command=st.command, errors=[err]).envelope()
        write_stdout(dump_json(env) if st.fmt is Format.json else dump_yaml(env))


def _parser_error_envelope(args: list[str], message: str, ctx: object) -> None:
    """The error envelope of a usage error the parser found (unknown option or command, missing or bad value,
    extra arguments), when the arguments ask for JSON or YAML."""
    from ..errors import UsageError

    # The command the parser was reading ("emit libvirt"), or "pcipass" when it never reached one.
    path = str(getattr(ctx, "command_path", "") or "").split()
    context.CURRENT.command = " ".join(path[1:]) or "pcipass"
    _error_envelope(UsageError(message), args)


def _is_click_usage_error(exc: BaseException) -> bool:
    """click's ClickException API (``format_message`` + ``exit_code``), matched by shape: typer ≥ 0.26
    vendors click as a private module, older typer uses click itself, and both raise the same API."""
    return callable(getattr(exc, "format_message", None)) and getattr(exc, "exit_code", None) == 2


def main(argv: list[str] | None = None) -> None:
    """Run the app and exit with the documented codes (the console script enters through ``cli.main``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    _register(_modules_for(args))
    try:
        rv = _run(args)
    except PcipassError as err:
        if context.CURRENT.debug:
            traceback.print_exc()
        _error_envelope(err, args)
        warn(f"error: {err.message}" + (f" ({err.remedy})" if err.remedy else ""))
        sys.exit(int(err.exit_code))
    except KeyboardInterrupt:
        warn("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(int(ExitCode.FAILED))
    except Exception as exc:  # noqa: BLE001 - usage errors first, then the last line of defence
        if _is_click_usage_error(exc):
            # One line naming the bad value, exit 2 (click's multi-line banner is not used).
            hint = ""
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                hint = f" (see '{ctx.command_path} --help')"
            message = exc.format_message()  # type: ignore[attr-defined]  # click's API, matched by its shape
            _parser_error_envelope(args, message, ctx)
            warn(f"error: {message}{hint}")
            sys.exit(int(ExitCode.USAGE))
        if type(exc).__name__ == "Abort":
            warn("aborted")
            sys.exit(130)
        if context.CURRENT.debug:
            traceback.print_exc()
        else:
            warn(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        sys.exit(int(ExitCode.FAILED))
    sys.exit(int(rv or 0))
