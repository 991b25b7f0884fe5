#!/usr/bin/env python3
"""Generate the man page and the shell completions from the pcipass CLI itself.

    scripts/gen_docs.py           write man/pcipass.1, completions/pcipass.bash, completions/_pcipass (zsh)
                                  and completions/pcipass.fish
    scripts/gen_docs.py --check   regenerate in memory; exit 1 with one "stale: <file>, run scripts/gen_docs.py"
                                  line per file that differs from what is committed

The source of truth is the command tree typer builds (``typer.main.get_command``), read only through the
command and parameter objects' public attributes (``commands``, ``params``, ``help``, ``opts``,
``secondary_opts``, ``nargs``, ``is_flag``, ``metavar``, ``multiple``, ``envvar``...). Choices come from
click's ``param.type.choices`` on older typer and from ``param.type_descriptor.choices`` on typer >= 0.26,
which vendors click privately and no longer gives parameters a click ``type``. Exit statuses come from
``pcipass.errors.ExitCode`` and its ``#:`` member comments; environment variables and file locations from
``pcipass.host``. Output is deterministic: no dates, nothing from the environment, only the package version.

The completions are static (no Python runs at TAB time). Only PCI addresses (arguments whose metavar is
``ADDR``) are completed dynamically, by listing ``<root>/sys/bus/pci/devices`` read-only, where ``<root>`` is
the command line's ``--root``, else ``$PCIPASS_ROOT``, else ``/``.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import typer.main  # noqa: E402

from pcipass import __version__  # noqa: E402
from pcipass.cli.app import app  # noqa: E402
from pcipass.errors import ExitCode  # noqa: E402
from pcipass.host import PCI_IDS_ENV, ROOT_ENV, Host  # noqa: E402
from pcipass.select import CLASS_ALIASES  # noqa: E402

PROG = "pcipass"

#: Generated files, relative to the repository root.
MAN = "man/pcipass.1"
BASH = "completions/pcipass.bash"
ZSH = "completions/_pcipass"
FISH = "completions/pcipass.fish"

# Options whose value is a path although their type is a plain string: how they are labelled and completed.
# Everything else is a path only when typer says so (a ``Path`` annotation) or its metavar names a file.
_PATH_OPTIONS = {"--root": "DIR|ARCHIVE"}
_PATH_METAVAR = re.compile(r"FILE|DIR|PATH")
#: Free-form options with well-known values worth offering at TAB (any other value is still accepted).
_SUGGESTIONS = {"--class": tuple(CLASS_ALIASES)}

#: Arguments with this metavar are PCI addresses; the completions list the host's devices for them.
ADDRESS_METAVAR = "ADDR"


# --- the command tree, read from typer ----------------------------------------------------------------------
@dataclass(frozen=True)
class Opt:
    names: tuple[str, ...]  #: short names first, then long names
    negations: tuple[str, ...]  #: ``--no-x`` of a ``--x/--no-x`` flag
    takes_value: bool
    value: str  #: label of the value (``table|json|yaml``, ``DIR``, ``N``...); "" for flags
    choices: tuple[str, ...]
    complete: str  #: "choices", "file", "dir", "none" (free text) or "flag"
    multiple: bool
    eager: bool  #: ends the command (--help, --version)
    help: str
    default: str | None
    envvar: str | None
    required: bool


@dataclass(frozen=True)
class Arg:
    metavar: str
    variadic: bool
    required: bool
    complete: str  #: "address", "file", "dir", "choices" or "none"
    choices: tuple[str, ...]
    help: str


@dataclass(frozen=True)
class Cmd:
    path: tuple[str, ...]  #: () for pcipass itself, ("list",), ("emit", "libvirt")...
    help: str
    options: tuple[Opt, ...]
    args: tuple[Arg, ...]
    subcommands: tuple[Cmd, ...]

    @property
    def name(self) -> str:
        return " ".join((PROG, *self.path))

    @property
    def key(self) -> str:
        """The path as the completion scripts spell it: "" for the top level, "emit libvirt" below."""
        return " ".join(self.path)

    @property
    def summary(self) -> str:
        return summary(self.help)

    def walk(self) -> Iterator[Cmd]:
        yield self
        for sub in self.subcommands:
            yield from sub.walk()


def paragraphs(text: str | None) -> list[str]:
    """Help text as paragraphs with whitespace normalised (docstrings wrap lines at arbitrary places)."""
    if not text:
        return []
    text = inspect.cleandoc(text)
    # click's "\b" marks a paragraph that must not be rewrapped; the man page and completions rewrap anyway.
    text = text.replace("\b\n", "")
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def summary(text: str | None) -> str:
    """First sentence of the first paragraph, without its final full stop."""
    paras = paragraphs(text)
    if not paras:
        return ""
    # A sentence ends at ". " before a capital letter, but not at an ellipsis ("accel, ... or a hex code").
    first = re.split(r"(?<=[^.][.!?])\s+(?=[A-Z])", paras[0], maxsplit=1)[0]
    return first.rstrip(".")


def _choices(param) -> tuple[str, ...]:
    choices = getattr(getattr(param, "type", None), "choices", None)
    if choices is None:
        choices = getattr(getattr(param, "type_descriptor", None), "choices", None)
    return tuple(str(c.value) if isinstance(c, Enum) else str(c) for c in choices or ())


def _path_kind(param) -> str | None:
    """ "file", "dir" or "path" when the parameter's type is a path (or an open file), else None."""
    desc = getattr(param, "type_descriptor", None)
    if desc is not None:
        if desc.is_file:
            return "file"
        return desc.path_type if desc.is_path else None
    ptype = getattr(param, "type", None)
    if type(ptype).__name__ == "File":
        return "file"
    # click.Path in typer < 0.26 and > 0.28, typer.models.TyperPath in between: match the shape, not the name.
    if not (hasattr(ptype, "file_okay") and hasattr(ptype, "dir_okay")):
        return None
    if ptype.file_okay and not ptype.dir_okay:
        return "file"
    return "dir" if ptype.dir_okay and not ptype.file_okay else "path"


def _type_label(param, long: str) -> str:
    """``N`` for integers, ``X`` for floats, else the option's long name in capitals (``--class`` → CLASS)."""
    bare = getattr(param, "bare_type", None)
    name = bare() if callable(bare) else getattr(getattr(param, "type", None), "name", "")
    name = name.removeprefix("list[").removesuffix("]").lower()
    if name in ("int", "integer"):
        return "N"
    if name == "float":
        return "X"
    return long.lstrip("-").replace("-", "_").upper()


def _default(param) -> str | None:
    show = getattr(param, "show_default", None)
    if isinstance(show, str):
        return show
    if show is False or param.is_flag or param.multiple:
        return None
    value = param.default
    if value is None or callable(value):
        return None
    return str(value.value) if isinstance(value, Enum) else str(value)


def _option(param) -> Opt:
    names = tuple(sorted(param.opts, key=lambda n: (n.startswith("--"), 0)))
    choices = _choices(param)
    takes_value = not param.is_flag and not getattr(param, "count", False)
    long = next((n for n in names if n.startswith("--")), names[-1])
    path = _path_kind(param)
    if not takes_value:
        value, complete = "", "flag"
    elif choices:
        value, complete = "|".join(choices), "choices"
    elif long in _PATH_OPTIONS:
        value, complete = _PATH_OPTIONS[long], "file"
    elif long in _SUGGESTIONS:
        value, complete, choices = _type_label(param, long), "choices", _SUGGESTIONS[long]
    elif param.metavar:
        value = param.metavar
        complete = "dir" if path == "dir" else "file" if path or _PATH_METAVAR.search(param.metavar) else "none"
    elif path:
        value, complete = path.upper(), "dir" if path == "dir" else "file"
    else:
        value, complete = _type_label(param, long), "none"
    envvar = param.envvar if isinstance(param.envvar, str) else None
    return Opt(
        names=names,
        negations=tuple(param.secondary_opts),
        takes_value=takes_value,
        value=value,
        choices=choices,
        complete=complete,
        multiple=bool(param.multiple),
        eager=bool(param.is_eager) and not takes_value,
        help=" ".join(paragraphs(param.help)),
        default=_default(param) if takes_value else None,
        envvar=envvar,
        required=bool(param.required),
    )


def _argument(param) -> Arg:
    metavar = param.metavar or (param.name or "arg").upper()
    choices = _choices(param)
    if choices:
        complete = "choices"
    elif metavar.rstrip(".") == ADDRESS_METAVAR:
        complete = "address"
    elif _path_kind(param) == "dir":
        complete = "dir"
    elif _path_kind(param) or _PATH_METAVAR.search(metavar):
        complete = "file"
    else:
        complete = "none"
    return Arg(
        metavar=metavar.rstrip("."),
        variadic=param.nargs == -1,
        required=bool(param.required),
        complete=complete,
        choices=choices,
        help=" ".join(paragraphs(getattr(param, "help", None))),
    )


def _help_option(names: list[str]) -> Opt:
    return Opt(
        names=tuple(sorted(names, key=lambda n: n.startswith("--"))),
        negations=(),
        takes_value=False,
        value="",
        choices=(),
        complete="flag",
        multiple=False,
        eager=True,
        help="Show the help and exit.",
        default=None,
        envvar=None,
        required=False,
    )


def _build(command, path: tuple[str, ...], help_names: list[str]) -> Cmd:
    options: list[Opt] = []
    args: list[Arg] = []
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        if getattr(param, "param_type_name", "option") == "argument":
            args.append(_argument(param))
        else:
            options.append(_option(param))
    if getattr(command, "add_help_option", True) and help_names:
        options.append(_help_option(help_names))
    subs = tuple(
        _build(sub, (*path, name), help_names)
        for name, sub in getattr(command, "commands", {}).items()
        if not getattr(sub, "hidden", False)
    )
    return Cmd(path=path, help=command.help or "", options=tuple(options), args=tuple(args), subcommands=subs)


def command_tree(typer_app: typer.Typer = app) -> Cmd:
    """The pcipass CLI (or another typer app, in tests) as plain data."""
    click_cmd = typer.main.get_command(typer_app)
    # Sub-commands inherit the top level's context settings, so they share its help option names.
    help_names = list((click_cmd.context_settings or {}).get("help_option_names", ["--help"]))
    return _build(click_cmd, (), help_names)


# --- facts from the library -------------------------------------------------------------------------------
def exit_codes() -> list[tuple[int, str, str]]:
    """(value, name, meaning) for each ExitCode member; the meaning is the member's ``#:`` comment."""
    src = inspect.getsource(ExitCode)
    comments = {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+)\s*=\s*\d+\s*#:(.*)$", src, re.M)}
    missing = [m.name for m in ExitCode if not comments.get(m.name)]
    if missing:
        raise SystemExit(f"gen_docs: ExitCode member(s) without a '#:' comment: {', '.join(missing)}")
    return [(int(m), m.name, comments[m.name]) for m in ExitCode]


def pci_ids_locations() -> list[str]:
    """Where the running system's pci.ids is looked up, without $PCIPASS_PCI_IDS (documented separately)."""
    saved = os.environ.pop(PCI_IDS_ENV, None)
    try:
        return [str(p) for p in Host("/").pci_ids_candidates()]
    finally:
        if saved is not None:
            os.environ[PCI_IDS_ENV] = saved


def state_dir() -> str:
    return str(Host("/").state_dir)


# --- examples, checked against the CLI --------------------------------------------------------------------
#: (command line, what it does). An example is printed when its command exists; its options must exist too.
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("pcipass list --class gpu", "GPUs (and data-centre accelerators) with their drivers and IOMMU groups."),
    ("pcipass list --tree", "Every device, grouped by IOMMU group, with each group's verdict."),
    ("pcipass show 0000:3b:00.0", "Everything about one device and the peers it shares its IOMMU group with."),
    ("pcipass --format json groups", "Every IOMMU group and its verdict, as the JSON envelope."),
    ("pcipass check-iommu", "What stands between this host and passthrough, with remedies."),
    ("pcipass enable --dry-run 0000:3b:00.0", "Show the plan for moving a device to vfio-pci; write nothing."),
    ("pcipass enable 0000:3b:00.0", "Move the device to vfio-pci (safely, verified, reversible)."),
    ("pcipass status", "Devices pcipass has bound, with the driver each one goes back to."),
    ("pcipass disable 0000:3b:00.0", "Give the device back to its host driver."),
    ("pcipass emit libvirt 0000:3b:00.0", "The libvirt <hostdev> XML for the device."),
    ("pcipass snapshot -o host.tar.gz", "A support bundle of what pcipass reads ..."),
    ("pcipass --root host.tar.gz list", "... which --root reads back, on any machine."),
)


def _find(tree: Cmd, words: list[str]) -> tuple[Cmd, list[str]] | None:
    """Resolve an example's words to (command, options and arguments used), or None when it does not exist."""
    node, used = tree, []
    value_opts = {n for o in tree.options if o.takes_value for n in o.names}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            used.append(word)
            if word in value_opts:
                i += 1
        elif node.subcommands:
            node = next((s for s in node.subcommands if s.path[-1] == word), None)
            if node is None:
                return None
            value_opts = {n for o in node.options if o.takes_value for n in o.names}
        else:
            used.append(word)
        i += 1
    return node, used


def examples(tree: Cmd) -> list[tuple[str, str]]:
    out = []
    global_names = {n for o in tree.options for n in (*o.names, *o.negations)}
    for line, text in EXAMPLES:
        words = line.split()[1:]
        found = _find(tree, words)
        if found is None:
            continue
        node, used = found
        names = global_names | {n for o in node.options for n in (*o.names, *o.negations)}
        for word in used:
            if word.startswith("-") and word not in names:
                raise SystemExit(
                    f"gen_docs: example {line!r}: {node.name} has no option {word}; "
                    "update EXAMPLES in scripts/gen_docs.py"
                )
        positional = [w for w in used if not w.startswith("-")]
        # Values of options are skipped by _find, so what remains are arguments.
        if positional and not node.args:
            raise SystemExit(
                f"gen_docs: example {line!r}: {node.name} takes no arguments; update EXAMPLES in scripts/gen_docs.py"
            )
        out.append((line, text))
    return out


# --- man page -------------------------------------------------------------------------------------------------
def roff(text: str) -> str:
    """Escape text for a roff text line: backslashes, minus signs (copy-pasteable options), leading dots."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def _bold(text: str) -> str:
    return f"\\fB{roff(text)}\\fR"


def _ital(text: str) -> str:
    return f"\\fI{roff(text)}\\fR"


def _opt_tag(opt: Opt) -> str:
    names = ", ".join(_bold(n) for n in (*opt.names, *opt.negations))
    if opt.takes_value:
        names += " " + _ital(opt.value)
    return names


def _opt_body(opt: Opt) -> str:
    parts = [opt.help.rstrip(".") + "." if opt.help else ""]
    if opt.required:
        parts.append("Required.")
    if opt.multiple and "repeatable" not in opt.help.lower():
        parts.append("Repeatable.")
    if opt.default is not None:
        parts.append(f"Default: {opt.default}.")
    if opt.envvar:
        parts.append(f"Environment variable: {opt.envvar}.")
    return roff(" ".join(p for p in parts if p))


def _usage(cmd: Cmd) -> str:
    """Synopsis of one command: ``pcipass`` [GLOBAL OPTIONS] ``list`` [OPTIONS] ADDR..."""
    pieces = [_bold(PROG), f"[{_ital('GLOBAL OPTIONS')}]"]
    pieces += [_bold(p) for p in cmd.path]
    if cmd.subcommands:
        pieces.append(_ital("COMMAND"))
    if any(not o.eager for o in cmd.options):
        pieces.append(f"[{_ital('OPTIONS')}]")
    for arg in cmd.args:
        word = _ital(arg.metavar) + ("..." if arg.variadic else "")
        pieces.append(word if arg.required else f"[{word}]")
    return " ".join(pieces)


def man_page(tree: Cmd) -> str:
    lines = [
        '.\\" Generated by scripts/gen_docs.py from the pcipass CLI; do not edit.',
        f'.TH PCIPASS 1 "" "pcipass {__version__}" "User Commands"',
        ".SH NAME",
        f"pcipass \\- {roff(summary(tree.help))}",
        ".SH SYNOPSIS",
    ]
    leaves = [c for c in tree.walk() if c.path and not c.subcommands]
    for i, cmd in enumerate(leaves):
        if i:
            lines.append(".br")
        lines.append(_usage(cmd))
    lines += [".SH DESCRIPTION"]
    for para in paragraphs(tree.help):
        lines += [roff(para), ".PP"]
    lines += [
        roff(
            "pcipass lists PCI devices with their drivers and IOMMU groups, checks what stands between a host "
            "and PCI passthrough, moves devices to vfio-pci with the kernel's driver_override protocol, and "
            "prints the matching hypervisor configuration."
        ),
        ".PP",
        roff(
            "Data goes to standard output, messages to standard error. Tables are for people; --format json "
            "and --format yaml print one envelope for programs: "
            '{"pcipass": 1, "command": ..., "status": "ok"|"partial"|"error", "data": ..., "errors": [...]}. '
            "There is no colour when standard output is not a terminal or NO_COLOR is set."
        ),
        ".SH GLOBAL OPTIONS",
        roff("Given before the command."),
    ]
    for opt in tree.options:
        lines += [".TP", _opt_tag(opt), _opt_body(opt)]
    lines.append(".SH COMMANDS")
    for cmd in tree.walk():
        if not cmd.path:
            continue
        lines += [".SS " + _usage(cmd)]
        paras = paragraphs(cmd.help) or [""]
        lines.append(roff(paras[0]))
        for para in paras[1:]:
            lines += [".PP", roff(para)]
        for arg in cmd.args:
            lines += [".TP", _ital(arg.metavar) + ("..." if arg.variadic else ""), roff(arg.help or arg.metavar)]
        for opt in cmd.options:
            lines += [".TP", _opt_tag(opt), _opt_body(opt)]
        if cmd.subcommands:
            lines += [".PP", roff("Commands: " + ", ".join(s.path[-1] for s in cmd.subcommands) + ".")]
    lines.append(".SH EXIT STATUS")
    for value, _name, meaning in exit_codes():
        lines += [".TP", f"\\fB{value}\\fR", roff(meaning[:1].upper() + meaning[1:].rstrip(".") + ".")]
    lines += [".TP", "\\fB130\\fR", roff("Interrupted (SIGINT).")]
    lines += [
        ".SH ENVIRONMENT",
        ".TP",
        _bold(ROOT_ENV),
        roff("Default for --root: read the host under this directory or snapshot archive instead of /."),
        ".TP",
        _bold(PCI_IDS_ENV),
        roff("A pci.ids file to use for vendor, device and class names before the usual locations."),
        ".TP",
        _bold("NO_COLOR"),
        roff("When set (to anything), tables have no colour or other ANSI escapes."),
        ".SH FILES",
        ".TP",
        _bold(state_dir()),
        roff("Runtime state of pcipass (root only); cleared at reboot, as the bindings are."),
        ".TP",
        _bold("pci.ids"),
        roff(
            f"Vendor, device and class names; without one, names are absent, never guessed. Looked up under "
            f"--root first, then ${PCI_IDS_ENV}, then:"
        ),
        ".RS",
        ".nf",
        *(roff(loc) for loc in pci_ids_locations()),
        ".fi",
        ".RE",
    ]
    lines.append(".SH EXAMPLES")
    for line, text in examples(tree):
        lines += [".TP", _bold(line), roff(text)]
    lines += [
        ".SH SEE ALSO",
        r"\fBlspci\fR(8), \fBvirsh\fR(1), \fBmodprobe.d\fR(5), \fBkernel\-command\-line\fR(7)",
        ".PP",
        roff("The kernel's Documentation/driver-api/vfio.rst and the README of pcipass."),
    ]
    return "\n".join(lines) + "\n"


# --- bash -----------------------------------------------------------------------------------------------------
def _sh_words(words) -> str:
    return " ".join(words)


def _case_patterns(keys: list[str]) -> str:
    return "|".join(f'"{k}"' for k in keys)


def _bash_arg_action(arg: Arg) -> str:
    if arg.complete == "address":
        return '_pcipass_addresses "$root"'
    if arg.complete == "file":
        return 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))'
    if arg.complete == "dir":
        return 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur"))'
    if arg.complete == "choices":
        return f'COMPREPLY=($(compgen -W "{_sh_words(arg.choices)}" -- "$cur"))'
    return "COMPREPLY=()"


def bash_completion(tree: Cmd) -> str:
    cmds = list(tree.walk())
    value_keys = [f"{c.key}|{n}" for c in cmds for o in c.options if o.takes_value for n in o.names]
    root_keys = [f"|{n}" for o in tree.options if o.takes_value and "--root" in o.names for n in o.names]
    other_value_keys = [k for k in value_keys if k not in root_keys]
    sub_keys = [f"{c.key}|{s.path[-1]}" for c in cmds for s in c.subcommands]
    out = [
        "# bash completion for pcipass                                 -*- shell-script -*-",
        f"# Generated by scripts/gen_docs.py from the pcipass {__version__} CLI; do not edit.",
        "# Install: copy to /etc/bash_completion.d/pcipass (or ~/.local/share/bash-completion/completions/pcipass).",
        "",
        "# PCI addresses of the host under the root in $1 (read-only: lists a directory).",
        "_pcipass_addresses() {",
        '    local dir="${1%/}/sys/bus/pci/devices" p names=() line word',
        '    for p in "$dir"/*; do',
        '        [[ -e $p || -L $p ]] && names+=("${p##*/}")',
        "    done",
        "    # An address has colons, which split words (COMP_WORDBREAKS): match the whole word before the",
        "    # cursor, then drop its part up to the last colon, as readline replaces only the text after it.",
        "    line=${COMP_LINE:0:COMP_POINT}",
        "    word=${line##*[[:space:]]}",
        '    COMPREPLY=($(compgen -W "${names[*]}" -- "$word"))',
        "    if [[ $word == *:* && $COMP_WORDBREAKS == *:* ]]; then",
        '        COMPREPLY=("${COMPREPLY[@]#"${word%"${word##*:}"}"}")',
        "    fi",
        "}",
        "",
        "_pcipass() {",
        "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}",
        "    # --opt=value arrives as three words (= is in COMP_WORDBREAKS).",
        '    if [[ $cur == "=" ]]; then',
        "        cur=",
        '    elif [[ $prev == "=" ]] && ((COMP_CWORD > 1)); then',
        "        prev=${COMP_WORDS[COMP_CWORD-2]}",
        "    fi",
        "    # Walk the words before the cursor: the command path, how many arguments it has so far (npos), and",
        "    # --root for address completion. A colon splits words too (COMP_WORDBREAKS): the words after one",
        "    # belong to the word before it (0000 : 3b : 00.0 is one address).",
        "    local cmd= root=${PCIPASS_ROOT:-/} skip= glue= npos=0 w i",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        "        w=${COMP_WORDS[i]}",
        '        [[ $w == "=" ]] && continue',
        '        if [[ $w == ":" ]]; then',
        "            glue=1",
        "            continue",
        "        fi",
        "        if [[ -n $glue ]]; then",
        "            glue=",
        "            continue",
        "        fi",
        "        if [[ -n $skip ]]; then",
        "            [[ $skip == root ]] && root=$w",
        "            skip=",
        "            continue",
        "        fi",
        '        case "$cmd|$w" in',
    ]
    if root_keys:
        out.append(f"            {_case_patterns(root_keys)}) skip=root ;;")
    if other_value_keys:
        out.append(f"            {_case_patterns(other_value_keys)}) skip=value ;;")
    if sub_keys:
        out.append(f"            {_case_patterns(sub_keys)}) cmd=${{cmd:+$cmd }}$w; npos=0 ;;")
    out += [
        "            *) [[ $w == -* ]] || npos=$((npos + 1)) ;;",
        "        esac",
        "    done",
        "    # The word being completed continues an argument already counted (after a colon).",
        '    [[ $cur == ":" || ${COMP_WORDS[COMP_CWORD-1]} == ":" ]] && ((npos > 0)) && npos=$((npos - 1))',
        "    # The value of an option.",
        '    case "$cmd|$prev" in',
    ]
    by_choices: dict[str, list[str]] = {}
    file_keys: list[str] = []
    dir_keys: list[str] = []
    free_keys: list[str] = []
    for c in cmds:
        for o in c.options:
            keys = [f"{c.key}|{n}" for n in o.names]
            if o.complete == "choices":
                by_choices.setdefault(_sh_words(o.choices), []).extend(keys)
            elif o.complete == "file":
                file_keys += keys
            elif o.complete == "dir":
                dir_keys += keys
            elif o.takes_value:
                free_keys += keys
    for words, keys in by_choices.items():
        out.append(f'        {_case_patterns(keys)}) COMPREPLY=($(compgen -W "{words}" -- "$cur")); return ;;')
    if file_keys:
        out.append(f"        {_case_patterns(file_keys)})")
        out.append('            compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return ;;')
    if dir_keys:
        out.append(f"        {_case_patterns(dir_keys)})")
        out.append('            compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")); return ;;')
    if free_keys:
        out.append(f"        {_case_patterns(free_keys)}) COMPREPLY=(); return ;;")
    out += [
        "    esac",
        "    # Options, sub-commands or arguments of the command.",
        '    case "$cmd" in',
    ]
    for c in cmds:
        opts = _sh_words(n for o in c.options for n in (*o.names, *o.negations))
        out.append(f'        "{c.key}")')
        opt_line = f'COMPREPLY=($(compgen -W "{opts}" -- "$cur"))'
        if c.subcommands:
            subs = _sh_words(s.path[-1] for s in c.subcommands)
            out.append(
                f"            if [[ $cur == -* ]]; then {opt_line}; "
                f'else COMPREPLY=($(compgen -W "{subs}" -- "$cur")); fi ;;'
            )
        elif c.args:
            # The argument at position npos: "0)", "1)", ... and "*)" for a variadic last one.
            branches = [("*" if a.variadic else str(i), _bash_arg_action(a)) for i, a in enumerate(c.args)]
            if not c.args[-1].variadic:
                branches.append(("*", "COMPREPLY=()"))
            out.append(f"            if [[ $cur == -* ]]; then {opt_line}; else")
            out.append("                case $npos in")
            out += [f"                    {pattern}) {action} ;;" for pattern, action in branches]
            out.append("                esac")
            out.append("            fi ;;")
        else:
            out.append(f"            {opt_line} ;;")
    out += [
        "    esac",
        "}",
        "complete -F _pcipass pcipass",
    ]
    return "\n".join(out) + "\n"


# --- zsh -------------------------------------------------------------------------------------------------------
def _zq(text: str) -> str:
    """Single-quote for zsh."""
    return "'" + text.replace("'", "'\\''") + "'"


def _z_desc(text: str) -> str:
    """A description inside _arguments' [...]."""
    return re.sub(r"([\[\]\\])", r"\\\1", summary(text) if text else "")


def _z_msg(text: str) -> str:
    return re.sub(r"([:\\])", r"\\\1", text)


def _z_action(kind: str, choices: tuple[str, ...]) -> str:
    if kind == "choices":
        return "(" + " ".join(re.sub(r"([\s()\\])", r"\\\1", c) for c in choices) + ")"
    if kind == "file":
        return "_files"
    if kind == "dir":
        return "_files -/"
    if kind == "address":
        return "_pcipass_addresses"
    return " "


def _z_specs(cmd: Cmd) -> list[str]:
    specs: list[str] = []
    for o in cmd.options:
        every = (*o.names, *o.negations)
        if o.eager:
            prefix = "(- *)"
        elif o.multiple:
            prefix = "*"
        else:
            prefix = "(" + " ".join(every) + ")"
        for name in every:
            spec = prefix + name
            if o.takes_value and name.startswith("--"):
                spec += "="
            if o.help:
                spec += f"[{_z_desc(o.help)}]"
            if o.takes_value:
                spec += f":{_z_msg(o.value)}:{_z_action(o.complete, o.choices)}"
            specs.append(_zq(spec))
    if cmd.subcommands:
        specs += [_zq(": :->command"), _zq("*:: :->args")]
    for i, a in enumerate(cmd.args, 1):
        action = _z_action(a.complete, a.choices)
        if a.variadic:
            specs.append(_zq(f"*:{_z_msg(a.metavar)}:{action}"))
        else:
            specs.append(
                _zq(f"{i}:{_z_msg(a.metavar)}:{action}" if a.required else f"{i}::{_z_msg(a.metavar)}:{action}")
            )
    return specs


def _z_func(cmd: Cmd) -> str:
    return "_" + "_".join(re.sub(r"\W", "_", p) for p in (PROG, *cmd.path))


def zsh_completion(tree: Cmd) -> str:
    out = [
        "#compdef pcipass",
        f"# zsh completion for pcipass. Generated by scripts/gen_docs.py from the pcipass {__version__} CLI; "
        "do not edit.",
        "# Install: copy to a directory of $fpath (e.g. /usr/local/share/zsh/site-functions/_pcipass), then run "
        "compinit again.",
        "",
        "# PCI addresses of the host under --root (else $PCIPASS_ROOT, else /); read-only: lists a directory.",
        "_pcipass_addresses() {",
        "  local -a addrs",
        "  addrs=( ${_pcipass_root%/}/sys/bus/pci/devices/*(N:t) )",
        "  _wanted addresses expl 'PCI address' compadd -a addrs",
        "}",
    ]
    for cmd in tree.walk():
        out += ["", f"{_z_func(cmd)}() {{"]
        if cmd.subcommands:
            out += [
                "  local curcontext=$curcontext state state_descr line ret=1",
                "  typeset -A opt_args",
                "  _arguments -C \\",
            ]
        else:
            out.append("  _arguments \\")
        specs = _z_specs(cmd)
        for i, spec in enumerate(specs):
            out.append(f"    {spec}" + (" \\" if i < len(specs) - 1 else (" && ret=0" if cmd.subcommands else "")))
        if not specs:
            out[-1] = out[-1].removesuffix(" \\")
        if cmd.subcommands:
            if not cmd.path:
                out.append("  local _pcipass_root=${opt_args[--root]:-${PCIPASS_ROOT:-/}}")
            out += [
                "  case $state in",
                "    command)",
                "      local -a commands",
                "      commands=(",
            ]
            for sub in cmd.subcommands:
                out.append("        " + _zq(f"{_z_msg(sub.path[-1])}:{sub.summary}"))
            out += [
                "      )",
                f"      _describe -t commands {_zq(cmd.name + ' command')} commands && ret=0",
                "      ;;",
                "    args)",
                "      curcontext=${curcontext%:*:*}:" + "-".join((PROG, *cmd.path)) + "-$words[1]:",
                "      case $words[1] in",
            ]
            for sub in cmd.subcommands:
                out.append(f"        {sub.path[-1]}) {_z_func(sub)} && ret=0 ;;")
            out += [
                "      esac",
                "      ;;",
                "  esac",
                "  return ret",
            ]
        out.append("}")
    out += ["", '_pcipass "$@"']
    return "\n".join(out) + "\n"


# --- fish ------------------------------------------------------------------------------------------------------
def _fq(text: str) -> str:
    """Single-quote for fish (which knows \\' and \\\\ inside single quotes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_name(name: str) -> str:
    if name.startswith("--"):
        return f"-l {name[2:]}"
    if len(name) == 2:
        return f"-s {name[1:]}"
    return f"-o {name[1:]}"


def fish_completion(tree: Cmd) -> str:
    cmds = list(tree.walk())
    value_keys = [f"{c.key}|{n}" for c in cmds for o in c.options if o.takes_value for n in o.names]
    sub_keys = [f"{c.key}|{s.path[-1]}" for c in cmds for s in c.subcommands]
    root_names = [n for o in tree.options if "--root" in o.names for n in o.names]
    out = [
        f"# fish completion for pcipass. Generated by scripts/gen_docs.py from the pcipass {__version__} CLI; "
        "do not edit.",
        "# Install: copy to ~/.config/fish/completions/pcipass.fish (or /usr/share/fish/vendor_completions.d/).",
        "",
        '# The sub-command path typed so far ("" at the top level, "emit libvirt" below), then how many',
        "# arguments it has so far.",
        "function __pcipass_state",
        "    set -l path",
        "    set -l skip 0",
        "    set -l npos 0",
        "    set -l words (commandline -opc)",
        "    set -e words[1]",
        "    for w in $words",
        "        if test $skip -eq 1",
        "            set skip 0",
        "            continue",
        "        end",
        '        switch "$path|$w"',
    ]
    if value_keys:
        out += ["            case " + " ".join(_fq(k) for k in value_keys), "                set skip 1"]
    if sub_keys:
        out += [
            "            case " + " ".join(_fq(k) for k in sub_keys),
            "                set -a path $w",
            "                set npos 0",
        ]
    out += [
        "            case '*'",
        "                string match -q -- '-*' $w; or set npos (math $npos + 1)",
        "        end",
        "    end",
        '    echo "$path"',
        "    echo $npos",
        "end",
        "",
        "# True at the sub-command path $argv[1]; with $argv[2], also at that argument position (N, or N+ for N",
        "# and after).",
        "function __pcipass_at",
        "    set -l state (__pcipass_state)",
        '    test "$state[1]" = "$argv[1]"; or return 1',
        '    switch "$argv[2]"',
        "        case ''",
        "            return 0",
        "        case '*+'",
        "            test $state[2] -ge (string trim -r -c + -- $argv[2])",
        "        case '*'",
        "            test $state[2] -eq $argv[2]",
        "    end",
        "end",
        "",
        "# PCI addresses of the host under --root (else $PCIPASS_ROOT, else /); read-only: lists a directory.",
        "function __pcipass_addresses",
        "    set -l root /",
        "    set -q PCIPASS_ROOT; and set root $PCIPASS_ROOT",
        "    set -l words (commandline -opc)",
        "    for i in (seq (count $words))",
        "        switch $words[$i]",
        "            case " + " ".join(_fq(n) for n in root_names if n.startswith("-")),
        "                set -q words[(math $i + 1)]; and set root $words[(math $i + 1)]",
        "            case " + " ".join(_fq(n + "=*") for n in root_names if n.startswith("--")),
        "                set root (string split -m 1 = -- $words[$i])[2]",
        "        end",
        "    end",
        "    for p in (string replace -r '/+$' '' -- $root)/sys/bus/pci/devices/*",
        "        string replace -r '.*/' '' -- $p",
        "    end",
        "end",
        "",
        "complete -c pcipass -f",
    ]
    for c in cmds:
        cond = f"-n {_fq('__pcipass_at ' + _fq(c.key))}"
        for sub in c.subcommands:
            out.append(f"complete -c pcipass {cond} -a {_fq(sub.path[-1])} -d {_fq(sub.summary)}")
        for o in c.options:
            for names in (o.names, o.negations):
                if not names:
                    continue
                line = f"complete -c pcipass {cond} " + " ".join(_fish_name(n) for n in names)
                if o.complete == "choices":
                    line += f" -x -a {_fq(' '.join(o.choices))}"
                elif o.complete == "file":
                    line += " -r -F"
                elif o.complete == "dir":
                    line += " -x -a '(__fish_complete_directories)'"
                elif o.takes_value:
                    line += " -x"
                if o.help:
                    line += f" -d {_fq(summary(o.help))}"
                out.append(line)
        for i, a in enumerate(c.args):
            at = f"-n {_fq(f'__pcipass_at {_fq(c.key)} {i}' + ('+' if a.variadic else ''))}"
            if a.complete == "address":
                out.append(f"complete -c pcipass {at} -a '(__pcipass_addresses)' -d 'PCI address'")
            elif a.complete == "file":
                out.append(f"complete -c pcipass {at} -F")
            elif a.complete == "dir":
                out.append(f"complete -c pcipass {at} -a '(__fish_complete_directories)'")
            elif a.complete == "choices":
                out.append(f"complete -c pcipass {at} -a {_fq(' '.join(a.choices))}")
    return "\n".join(out) + "\n"


# --- driver ------------------------------------------------------------------------------------------------------
def generate(typer_app: typer.Typer = app) -> dict[str, str]:
    """Every generated file's path (relative to the repository) and content."""
    tree = command_tree(typer_app)
    return {
        MAN: man_page(tree),
        BASH: bash_completion(tree),
        ZSH: zsh_completion(tree),
        FISH: fish_completion(tree),
    }


def stale(files: dict[str, str], repo: Path | None = None) -> list[str]:
    """The generated files whose content in ``repo`` (default: this repository) differs, or that are missing."""
    out = []
    for rel, text in files.items():
        try:
            current = ((repo or REPO) / rel).read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != text:
            out.append(rel)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale; write nothing")
    opts = parser.parse_args(argv)
    files = generate()
    if opts.check:
        bad = stale(files)
        for rel in bad:
            print(f"stale: {rel}, run scripts/gen_docs.py", file=sys.stderr)
        return 1 if bad else 0
    for rel, text in files.items():
        path = REPO / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
