"""The ``pcipass`` command: global options, command registration, and the one place that turns
exceptions into exit codes."""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from .. import __version__
from ..errors import ExitCode, PcipassError
from ..host import ROOT_ENV
from ..result import Result
from . import context
from .render import Format, dump_json, dump_yaml, warn, write_stdout

app = typer.Typer(
    name="pcipass",
    help="Safe, scriptable PCI passthrough: inventory, IOMMU preflight, vfio-pci binding, hypervisor config.",
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        write_stdout(f"pcipass {__version__}")
        raise typer.Exit(0)


@app.callback()
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
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)
    ] = Format.table,
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


def _register() -> None:
    from . import bind_cmds, check_cmds, emit_cmds, inventory_cmds, snapshot_cmds

    # Order is the order of `pcipass --help`: inventory, preflight, binding, hypervisor configuration.
    for module in (inventory_cmds, snapshot_cmds, check_cmds, bind_cmds, emit_cmds):
        module.register(app)


_register()


def _error_envelope(err: PcipassError) -> None:
    st = context.CURRENT
    if st.fmt in (Format.json, Format.yaml):
        env = Result(command=st.command, errors=[err]).envelope()
        write_stdout(dump_json(env) if st.fmt is Format.json else dump_yaml(env))


def _is_click_usage_error(exc: BaseException) -> bool:
    """click's ClickException API (``format_message`` + ``exit_code``), matched by shape: typer ≥ 0.26
    vendors click as a private module, older typer uses click itself, and both raise the same API."""
    return callable(getattr(exc, "format_message", None)) and getattr(exc, "exit_code", None) == 2


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and exit with the documented codes."""
    try:
        rv = app(args=argv, prog_name="pcipass", standalone_mode=False)
    except PcipassError as err:
        if context.CURRENT.debug:
            traceback.print_exc()
        _error_envelope(err)
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
            warn(f"error: {exc.format_message()}{hint}")
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
