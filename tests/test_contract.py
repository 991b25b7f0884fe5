"""The machine contract for errors: with --format json|yaml every error, the parser's included, is the envelope
on stdout with status error, and the exit code is the documented one."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.support.cli import run
from tests.support.emit_hosts import GPU

PARSER_ERRORS = [
    (("list", "--bogus"), "list", "No such option: --bogus"),
    (("show",), "show", "Missing argument 'ADDR'"),
    (("list", "--group", "abc"), "list", "'abc' is not a valid int"),
    (("list", "-f", "xml"), "list", "'xml' is not one of"),
    (("bogus",), "pcipass", "No such command 'bogus'"),
    (("groups", "extra"), "groups", "unexpected extra argument"),
    (("emit",), "emit", "Missing command"),
    (("mdev",), "mdev", "Missing command"),
    (("emit", "harvester"), "emit harvester", "Missing argument 'ADDR...'"),
    (("emit", "libvirt", GPU, "--managed", "maybe"), "emit libvirt", "'maybe' is not one of"),
]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
@pytest.mark.parametrize(
    "args,command,message", PARSER_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_parser_errors_are_the_error_envelope(capsys, gpu, fmt, args, command, message):
    # -f given to the command too, except where it would be the error (``list -f xml`` is one; ``emit`` has none).
    placements = [("-f", fmt, *args)]
    if "xml" not in args and args not in (("emit",), ("mdev",)):
        placements.append((*args, "--format", fmt))
    for argv in placements:
        r = run(capsys, "--root", str(gpu), *argv)
        assert r.code == 2, (argv, r.err)
        env = json.loads(r.out) if fmt == "json" else yaml.safe_load(r.out)
        assert (env["pcipass"], env["command"], env["status"], env["data"]) == (1, command, "error", None), argv
        [err] = env["errors"]
        assert err["code"] == "usage" and message in err["message"], argv
        assert r.err.count("\n") == 1 and message in r.err  # one line for people, no help text


def test_the_last_valid_format_is_the_one_in_force(capsys, gpu):
    r = run(capsys, "--root", str(gpu), "-f", "json", "list", "-f", "table", "--bogus")
    assert r.code == 2 and r.out == ""
    r = run(capsys, "--root", str(gpu), "list", "--format=yaml", "--bogus")
    assert r.code == 2 and yaml.safe_load(r.out)["status"] == "error"


def test_without_a_format_a_parser_error_prints_nothing_on_stdout(capsys, gpu):
    for args in (("list", "--bogus"), ("emit",), ()):
        r = run(capsys, "--root", str(gpu), *args)
        assert r.code == 2 and r.out == ""
        assert r.err.startswith("pcipass: error: ") and len(r.err.strip()) > len("pcipass: error:")


def test_an_error_before_the_command_read_its_format_is_the_envelope(capsys, tmp_path):
    r = run(capsys, "--root", str(tmp_path / "missing"), "list", "-f", "json")
    env = json.loads(r.out)
    assert r.code == 2 and (env["command"], env["status"]) == ("list", "error")
