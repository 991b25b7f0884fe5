"""The generated man page and shell completions: up to date, complete, and well-formed.

The CLI is walked here independently of scripts/gen_docs.py (straight from typer's command objects), so a
command or option the generator drops fails these tests. Shells and man tools that are installed are run;
where one is missing, its file gets a structural check instead (never a silent skip).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated

import pytest
import typer
import typer.main

from pcipass.cli.app import app
from pcipass.errors import ExitCode

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gen_docs.py"


def _load_gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_docs"] = mod
    spec.loader.exec_module(mod)
    return mod


gen_docs = _load_gen_docs()


# --- an independent walk of the CLI -------------------------------------------------------------------------
def _walk(command, path=()):
    """(path, option names, argument metavars, sub-command names) for every visible command."""
    opts, args = [], []
    for p in command.params:
        if getattr(p, "hidden", False):
            continue
        if p.param_type_name == "argument":
            args.append((p.metavar or p.name.upper()).rstrip("."))
        else:
            opts.append((list(p.opts) + list(p.secondary_opts), gen_docs._choices(p)))
    subs = {n: c for n, c in getattr(command, "commands", {}).items() if not c.hidden}
    yield path, opts, args, list(subs)
    for name, sub in subs.items():
        yield from _walk(sub, (*path, name))


CLI = list(_walk(typer.main.get_command(app)))


def test_the_walk_sees_the_inventory_commands():
    paths = {p for p, *_ in CLI}
    assert {(), ("list",), ("show",), ("groups",)} <= paths


# --- up to date ----------------------------------------------------------------------------------------------
def test_generated_files_are_up_to_date():
    stale = gen_docs.stale(gen_docs.generate())
    assert not stale, f"stale: {', '.join(stale)}; run scripts/gen_docs.py and commit the result"


def test_check_mode_in_a_clean_process_passes():
    """What `scripts/setup.sh test` runs before pytest."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCIPASS_")}
    run = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, env=env, cwd="/")
    assert (run.returncode, run.stderr) == (0, "")


def test_check_mode_names_each_stale_file(tmp_path, monkeypatch, capsys):
    files = gen_docs.generate()
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(gen_docs, "REPO", tmp_path)
    assert gen_docs.main(["--check"]) == 0
    assert capsys.readouterr().err == ""
    (tmp_path / gen_docs.ZSH).write_text(files[gen_docs.ZSH] + "# edited by hand\n")
    (tmp_path / gen_docs.MAN).unlink()
    assert gen_docs.main(["--check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "stale: man/pcipass.1, run scripts/gen_docs.py",
        "stale: completions/_pcipass, run scripts/gen_docs.py",
    ]
    # Writing mode repairs them.
    assert gen_docs.main([]) == 0
    assert gen_docs.main(["--check"]) == 0


def test_output_does_not_depend_on_the_environment(monkeypatch, tmp_path):
    first = gen_docs.generate()
    monkeypatch.setenv("PCIPASS_ROOT", str(tmp_path))
    monkeypatch.setenv("PCIPASS_PCI_IDS", str(tmp_path / "elsewhere.ids"))
    monkeypatch.setenv("COLUMNS", "40")
    assert gen_docs.generate() == first
    assert not re.search(r"20\d\d-\d\d-\d\d", "".join(first.values())), "a date in generated output"


# --- complete: every command and option in each file -------------------------------------------------------
def _man_sections(man: str) -> dict[tuple[str, ...], str]:
    """Command path -> its part of COMMANDS (up to the next .SS/.SH)."""
    out = {}
    for m in re.finditer(r"^\.SS (.*)\n((?:(?!\.S[SH] ).*\n)*)", man, re.M):
        words = re.findall(r"\\fB(.*?)\\fR", m.group(1))
        out[tuple(w.replace("\\-", "-") for w in words[1:])] = m.group(2)
    return out


def _roff_opt(name: str) -> str:
    return name.replace("-", "\\-")


def test_man_page_has_every_command_and_option():
    man = (REPO / gen_docs.MAN).read_text()
    sections = _man_sections(man)
    global_part = man.split(".SH GLOBAL OPTIONS\n", 1)[1].split(".SH COMMANDS\n", 1)[0]
    for path, opts, args, _subs in CLI:
        part = global_part if not path else sections.get(path)
        assert part is not None, f"no .SS for {' '.join(path)}"
        for names, choices in opts:
            for name in names:
                assert f"\\fB{_roff_opt(name)}\\fR" in part, f"{name} of {path} not in the man page"
            for choice in choices:
                assert _roff_opt(choice) in part
        for metavar in args:
            assert f"\\fI{_roff_opt(metavar)}\\fR" in part
        if path:
            synopsis = man.split(".SH SYNOPSIS\n", 1)[1].split(".SH", 1)[0]
            if not _subs:
                assert f"\\fB{_roff_opt(path[-1])}\\fR" in synopsis


def test_man_page_exit_status_environment_files():
    man = (REPO / gen_docs.MAN).read_text()
    exit_part = man.split(".SH EXIT STATUS\n", 1)[1].split(".SH", 1)[0]
    tags = re.findall(r"^\.TP\n\\fB(\d+)\\fR\n(.+)$", exit_part, re.M)
    assert [int(t) for t, _ in tags[: len(ExitCode)]] == [int(c) for c in ExitCode]
    meanings = dict(tags)
    assert "safety check" in meanings[str(int(ExitCode.REFUSED))]
    assert "permission denied" in meanings[str(int(ExitCode.PERMISSION))]
    env_part = man.split(".SH ENVIRONMENT\n", 1)[1].split(".SH", 1)[0]
    for var in ("PCIPASS_ROOT", "PCIPASS_PCI_IDS", "NO_COLOR"):
        assert f"\\fB{var}\\fR" in env_part
    files_part = man.split(".SH FILES\n", 1)[1].split(".SH", 1)[0]
    assert "/run/pcipass" in files_part and "/usr/share/misc/pci.ids" in files_part


def _bash_case_words(script: str, key: str) -> list[str]:
    m = re.search(rf'^        "{re.escape(key)}"\)\n(.*)$', script, re.M)
    assert m, f"no completion case for {key!r}"
    return [w for ws in re.findall(r'compgen -W "([^"$]*)"', m.group(1)) for w in ws.split()]


def test_bash_completion_has_every_command_and_option():
    script = (REPO / gen_docs.BASH).read_text()
    for path, opts, _args, subs in CLI:
        words = _bash_case_words(script, " ".join(path))
        for names, choices in opts:
            assert set(names) <= set(words), f"{names} missing for {path}"
            for name in names:
                if choices:
                    assert re.search(
                        rf'"{re.escape(" ".join(path))}\|{re.escape(name)}"[^\n]*compgen -W "'
                        rf'{re.escape(" ".join(choices))}"',
                        script,
                    ), (path, name)
        assert set(subs) <= set(words)


def _zsh_function(script: str, path: tuple[str, ...]) -> str:
    name = "_" + "_".join(re.sub(r"\W", "_", p) for p in ("pcipass", *path))
    m = re.search(rf"^{name}\(\) {{\n(.*?)^}}$", script, re.M | re.S)
    assert m, f"no zsh function {name}"
    return m.group(1)


def test_zsh_completion_has_every_command_and_option():
    script = (REPO / gen_docs.ZSH).read_text()
    for path, opts, args, subs in CLI:
        body = _zsh_function(script, path)
        for names, choices in opts:
            for name in names:
                assert re.search(rf"[)*]{re.escape(name)}=?\[", body), f"{name} missing for {path}"
            if choices:
                assert "(" + " ".join(choices) + ")" in body
        for sub in subs:
            assert re.search(rf"^        '{re.escape(sub)}:", body, re.M), sub
            assert f"{sub}) _pcipass" in body
        for metavar in args:
            assert f":{metavar}:" in body


def test_fish_completion_has_every_command_and_option():
    script = (REPO / gen_docs.FISH).read_text()
    for path, opts, _args, subs in CLI:
        cond = "-n '__pcipass_at \\'" + " ".join(path) + "\\''"
        lines = [ln for ln in script.splitlines() if cond in ln]
        assert lines, f"no fish completions for {path}"
        text = "\n".join(lines)
        for names, choices in opts:
            for name in names:
                flag = f"-l {name[2:]}" if name.startswith("--") else f"-s {name[1:]}"
                assert re.search(rf"{re.escape(flag)}( |$)", text), f"{name} missing for {path}"
            if choices:
                assert "-a '" + " ".join(choices) + "'" in text
        for sub in subs:
            assert f"-a '{sub}'" in text


# --- well-formed ---------------------------------------------------------------------------------------------
_MAN_SECTIONS = (
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "GLOBAL OPTIONS",
    "COMMANDS",
    "EXIT STATUS",
    "ENVIRONMENT",
    "FILES",
    "EXAMPLES",
    "SEE ALSO",
)


def _check_roff_structure(man: str) -> None:
    lines = man.splitlines()
    macros = [ln.split()[0][1:] for ln in lines if ln.startswith(".") and not ln.startswith('.\\"')]
    assert macros[0] == "TH"
    assert set(macros) <= {"TH", "SH", "SS", "TP", "PP", "br", "RS", "RE", "nf", "fi"}
    assert [ln[4:] for ln in lines if ln.startswith(".SH ")] == list(_MAN_SECTIONS)
    assert macros.count("RS") == macros.count("RE") and macros.count("nf") == macros.count("fi")
    # Text lines never start with a control character (a leading ' or . would be read as a request).
    assert not [ln for ln in lines if ln.startswith("'")]
    for ln in lines:
        if not ln.startswith("."):
            # Every font change is closed on its line (\fB...\fR / \fI...\fR).
            assert ln.count("\\fB") + ln.count("\\fI") == ln.count("\\fR"), ln
    assert f'"pcipass {gen_docs.__version__}"' in lines[1]


def test_man_page_is_well_formed_roff():
    _check_roff_structure((REPO / gen_docs.MAN).read_text())


def test_man_page_renders():
    """With groff installed: no warnings; with man: the rendered page has every section."""
    tools = [t for t in ("groff", "man") if shutil.which(t)]
    page = REPO / gen_docs.MAN
    if not tools:
        # Nothing to render with: the structure is what can be checked.
        _check_roff_structure(page.read_text())
    if "groff" in tools:
        run = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True)
        assert (run.returncode, run.stderr) == (0, "")
    if "man" in tools:
        run = subprocess.run(
            ["man", "-l", str(page)],
            capture_output=True,
            text=True,
            env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"},
        )
        assert run.returncode == 0, run.stderr
        for section in _MAN_SECTIONS:
            assert re.search(rf"^{section}$", run.stdout, re.M), section


def test_bash_completion_parses():
    run = subprocess.run(["bash", "-n", str(REPO / gen_docs.BASH)], capture_output=True, text=True)
    assert (run.returncode, run.stderr) == (0, "")


def _block_balance(script: str, openers: tuple[str, ...]) -> int:
    depth = 0
    for line in script.splitlines():
        word = line.strip().split(" ", 1)[0]
        if word in openers:
            depth += 1
        elif word == "end":
            depth -= 1
            assert depth >= 0
    return depth


def test_zsh_completion_parses():
    path = REPO / gen_docs.ZSH
    script = path.read_text()
    assert script.startswith("#compdef pcipass\n")
    shlex.split(script, comments=True)  # quotes are balanced (zsh quoting is POSIX here)
    lines = script.splitlines()
    assert len([ln for ln in lines if ln.endswith("() {")]) == lines.count("}")
    # Functions are called from the dispatch (`list) _pcipass_list && ret=0`), from an action
    # (`:ADDR:_pcipass_addresses'`) and at the end (`_pcipass "$@"`).
    called = set(re.findall(r"(?:\) |:|^)(_pcipass\w*)(?: |'|$)", script, re.M))
    defined = set(re.findall(r"^(_pcipass\w*)\(\) \{$", script, re.M))
    assert called == defined
    if shutil.which("zsh"):
        run = subprocess.run(["zsh", "-n", str(path)], capture_output=True, text=True)
        assert (run.returncode, run.stderr) == (0, "")


def _fish_unquote_ok(line: str) -> bool:
    """fish single quotes: \\' and \\\\ are the only escapes inside; check they balance."""
    stripped = line.replace("\\\\", "").replace("\\'", "")
    return stripped.count("'") % 2 == 0


def test_fish_completion_parses():
    path = REPO / gen_docs.FISH
    script = path.read_text()
    assert _block_balance(script, ("function", "for", "if", "switch", "while", "begin")) == 0
    assert all(_fish_unquote_ok(ln) for ln in script.splitlines() if not ln.lstrip().startswith("#"))
    assert all(ln.startswith("complete -c pcipass ") for ln in script.splitlines() if ln.startswith("complete"))
    if shutil.which("fish"):
        run = subprocess.run(["fish", "-n", str(path)], capture_output=True, text=True)
        assert (run.returncode, run.stderr) == (0, "")


# --- behaviour of the completions ----------------------------------------------------------------------------
def _fake_root(tmp_path: Path, *addresses: str) -> Path:
    devs = tmp_path / "host" / "sys" / "bus" / "pci" / "devices"
    devs.mkdir(parents=True)
    for a in addresses:
        (devs / a).mkdir()
    return tmp_path / "host"


_BASH_DRIVER = r"""
source "$1"; shift
line=$1
COMP_LINE=$line; COMP_POINT=${#line}
# Split like readline with the default COMP_WORDBREAKS: runs of = and : are words of their own.
mapfile -t COMP_WORDS < <(printf '%s' "$line" | grep -oE '[=:]+|[^[:space:]=:]+')
[[ $line =~ [[:space:]]$ ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_pcipass
printf '%s\n' "${COMPREPLY[@]}"
"""


def _bash_complete(script: Path, line: str, env: dict[str, str] | None = None) -> list[str]:
    run = subprocess.run(
        ["bash", "-c", _BASH_DRIVER, "bash", str(script), line],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **(env or {})},
    )
    assert run.returncode == 0, run.stderr
    return sorted(w for w in run.stdout.splitlines() if w)


def test_bash_completes_commands_options_choices_and_addresses(tmp_path):
    script = REPO / gen_docs.BASH
    top = [n for p, _o, _a, subs in CLI if p == () for n in subs]
    assert _bash_complete(script, "pcipass ") == sorted(top)
    assert _bash_complete(script, "pcipass --format ") == ["json", "table", "yaml"]
    assert _bash_complete(script, "pcipass --format=y") == ["yaml"]
    assert _bash_complete(script, "pcipass --root /x list --fo") == ["--format"]
    assert _bash_complete(script, "pcipass list --class gp") == ["gpu"]
    assert "--vfio" in _bash_complete(script, "pcipass list --")
    root = _fake_root(tmp_path, "0000:3b:00.0", "0000:3b:00.1", "0000:af:00.0")
    # The address list comes from --root on the line, else $PCIPASS_ROOT; after a colon, only the rest.
    assert _bash_complete(script, f"pcipass --root {root} show 0000:3") == ["3b:00.0", "3b:00.1"]
    assert _bash_complete(script, f"pcipass --root={root} show ") == ["0000:3b:00.0", "0000:3b:00.1", "0000:af:00.0"]
    assert _bash_complete(script, "pcipass show 0000:af", {"PCIPASS_ROOT": str(root)}) == ["af:00.0"]
    assert _bash_complete(script, f"pcipass --root {root} show 0000:3b:00.0 ") == []  # show takes one address
    (tmp_path / "snap.tar.gz").write_text("")
    assert _bash_complete(script, f"pcipass --root {tmp_path}/sn") == [f"{tmp_path}/snap.tar.gz"]


def test_fish_completes_when_fish_is_installed(tmp_path):
    """fish's own `complete -C` (CI has no fish: the structural test above covers the file there)."""
    script = (REPO / gen_docs.FISH).read_text()
    if not shutil.which("fish"):
        # What the calls below would exercise, checked in the text.
        assert "complete -c pcipass -f\n" in script
        assert "-l format -x -a 'table json yaml'" in script
        assert "-n '__pcipass_at \\'show\\' 0' -a '(__pcipass_addresses)'" in script
        return
    root = _fake_root(tmp_path, "0000:3b:00.0", "0000:af:00.0")

    def complete(line: str) -> list[str]:
        run = subprocess.run(
            [
                "fish",
                "--no-config",
                "-c",
                f"source {shlex.quote(str(REPO / gen_docs.FISH))}; complete -C {shlex.quote(line)}",
            ],
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        )
        assert run.returncode == 0, run.stderr
        return sorted(ln.split("\t")[0] for ln in run.stdout.splitlines())

    top = [n for p, _o, _a, subs in CLI if p == () for n in subs]
    assert complete("pcipass ") == sorted(top)
    assert complete("pcipass --format ") == ["json", "table", "yaml"]
    assert complete("pcipass --root /x list --tr") == ["--tree"]
    assert complete(f"pcipass --root {root} show ") == ["0000:3b:00.0", "0000:af:00.0"]
    assert complete(f"pcipass --root {root} show 0000:3b:00.0 ") == []  # show takes one address


# --- the generator on CLIs the project does not have yet -----------------------------------------------------
class Managed(str, Enum):
    yes = "yes"
    no = "no"
    auto = "auto"


def _future_app() -> typer.Typer:
    """Nested groups, variadic address arguments, path options, --x/--no-x flags: shapes coming soon."""
    top = typer.Typer(context_settings={"help_option_names": ["-h", "--help"]}, add_completion=False)
    emit = typer.Typer(help="Print hypervisor configuration.")

    @top.callback()
    def _cb(root: Annotated[str | None, typer.Option("--root")] = None) -> None:
        """Test app."""

    @emit.command("libvirt")
    def _libvirt(
        addresses: Annotated[list[str], typer.Argument(metavar="ADDR...", help="Devices.")],
        managed: Annotated[Managed, typer.Option("--managed", help="Managed mode.")] = Managed.auto,
        rom: Annotated[bool, typer.Option("--rom-bar/--no-rom-bar", help="ROM BAR.")] = True,
        out: Annotated[Path | None, typer.Option("--out-dir", dir_okay=True, file_okay=False, help="Dir.")] = None,
    ) -> None:
        """The libvirt XML."""

    @top.command("status")
    def _status(timeout: Annotated[float, typer.Option("--timeout", help="Seconds.")] = 10.0) -> None:
        """Bound devices."""

    @top.command("attach")
    def _attach(
        domain: Annotated[str, typer.Argument(metavar="DOMAIN", help="A VM.")],
        addresses: Annotated[list[str], typer.Argument(metavar="ADDR...", help="Devices.")],
        connect: Annotated[str | None, typer.Option("--connect", "-c", help="URI.")] = None,
    ) -> None:
        """Attach devices to a VM."""

    top.add_typer(emit, name="emit")
    return top


def test_generator_handles_nested_groups_and_new_option_shapes(tmp_path):
    files = gen_docs.generate(_future_app())
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    man = files[gen_docs.MAN]
    assert "\\fBemit\\fR \\fBlibvirt\\fR [\\fIOPTIONS\\fR] \\fIADDR\\fR..." in man
    assert "\\fB\\-\\-rom\\-bar\\fR, \\fB\\-\\-no\\-rom\\-bar\\fR" in man
    assert "\\fB\\-\\-managed\\fR \\fIyes|no|auto\\fR" in man and "Default: auto." in man
    assert "\\fB\\-\\-timeout\\fR \\fIX\\fR" in man
    bash = tmp_path / gen_docs.BASH
    assert subprocess.run(["bash", "-n", str(bash)]).returncode == 0
    assert _bash_complete(bash, "pcipass emit ") == ["libvirt"]
    assert _bash_complete(bash, "pcipass emit libvirt --managed a") == ["auto"]
    assert _bash_complete(bash, "pcipass emit libvirt --no") == ["--no-rom-bar"]
    root = _fake_root(tmp_path, "0000:3b:00.0", "0000:af:00.0")
    # Variadic: a second address after the first one.
    assert _bash_complete(bash, f"pcipass --root {root} emit libvirt --managed yes 0000:3b:00.0 0000:a") == ["af:00.0"]
    (tmp_path / "adir").mkdir()
    assert _bash_complete(bash, f"pcipass emit libvirt --out-dir {tmp_path}/ad") == [f"{tmp_path}/adir"]
    # Positions: a VM name first (nothing to offer), then addresses; colons and option values do not count.
    assert _bash_complete(bash, f"pcipass --root {root} attach ") == []
    assert _bash_complete(bash, f"pcipass --root {root} attach vm1 ") == ["0000:3b:00.0", "0000:af:00.0"]
    assert _bash_complete(bash, f"pcipass --root {root} attach -c qemu:///system vm1 0000:3b:00.0 0000:a") == [
        "af:00.0"
    ]
    assert _bash_complete(bash, f"pcipass --root {root} attach -c qemu:///system ") == []
    zsh_text = files[gen_docs.ZSH]
    assert "_pcipass_emit_libvirt() {" in zsh_text and "'*:ADDR:_pcipass_addresses'" in zsh_text
    assert ":DIR:_files -/'" in zsh_text
    for shell, rel in (("zsh", gen_docs.ZSH), ("fish", gen_docs.FISH)):
        if shutil.which(shell):
            assert subprocess.run([shell, "-n", str(tmp_path / rel)]).returncode == 0
    assert "-n '__pcipass_at \\'emit libvirt\\' 0+' -a '(__pcipass_addresses)'" in files[gen_docs.FISH]
    assert "-n '__pcipass_at \\'attach\\' 1+' -a '(__pcipass_addresses)'" in files[gen_docs.FISH]


def test_choices_are_read_from_older_click_types_too():
    old_style = SimpleNamespace(type=SimpleNamespace(choices=["table", "json"]))
    assert gen_docs._choices(old_style) == ("table", "json")
    assert gen_docs._choices(SimpleNamespace(type=None)) == ()


def test_examples_are_checked_against_the_cli(monkeypatch):
    tree = gen_docs.command_tree()
    shown = [line for line, _ in gen_docs.examples(tree)]
    assert "pcipass list --class gpu" in shown
    assert all(line.split()[1] != "frobnicate" for line in shown)
    monkeypatch.setattr(gen_docs, "EXAMPLES", (("pcipass list --bogus", "x"),))
    with pytest.raises(SystemExit, match="has no option --bogus"):
        gen_docs.examples(tree)
    monkeypatch.setattr(gen_docs, "EXAMPLES", (("pcipass groups 0000:3b:00.0", "x"),))
    with pytest.raises(SystemExit, match="takes no arguments"):
        gen_docs.examples(tree)
    # An example for a command that does not exist (yet) is left out.
    monkeypatch.setattr(gen_docs, "EXAMPLES", (("pcipass frobnicate", "x"),))
    assert gen_docs.examples(tree) == []


def test_exit_codes_need_a_comment(monkeypatch):
    assert [c for c, _n, _m in gen_docs.exit_codes()] == [int(c) for c in ExitCode]
    monkeypatch.setattr(gen_docs.inspect, "getsource", lambda obj: "class ExitCode(IntEnum):\n    OK = 0\n")
    with pytest.raises(SystemExit, match="without a '#:' comment: OK"):
        gen_docs.exit_codes()


def test_help_paragraphs_are_single_lines():
    """typer's rich help keeps a help paragraph's line breaks (the first paragraph's in the command list of
    ``pcipass --help``, the others' in the command's own help), so a docstring wrapped in the source prints
    broken lines: each paragraph of a command's help is one line in the source."""
    import inspect

    broken = []

    def walk(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            paragraphs = inspect.cleandoc(sub.help or "").split("\n\n")
            broken.extend(f"{' '.join(path + [name])}: {p[:60]!r}" for p in paragraphs if "\n" in p)
            walk(sub, path + [name])

    walk(typer.main.get_command(app), ["pcipass"])
    assert broken == []
