"""Project rules that reviewers would otherwise have to catch by eye."""

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "pcipass"
HOST_PREFIXES = ("/sys", "/proc", "/dev")


def _sources():
    return sorted(PKG.rglob("*.py"))


def test_only_host_knows_kernel_paths():
    """Only pcipass/host.py may spell /sys, /proc or /dev: --root must reach every read and write."""
    offenders = []
    for path in _sources():
        if path.name == "host.py" and path.parent == PKG:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                v = node.value
                if any(v == p or v.startswith(p + "/") for p in HOST_PREFIXES):
                    offenders.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: {v!r}")
    assert offenders == []


def test_host_is_the_only_path_authority():
    """Outside pcipass/host.py, no module builds a host path from literal components (``host.sys("block")``:
    name it with an accessor of Host instead) or reads ``host.root`` itself (``root_dir``, ``actual``,
    ``relative`` and ``shown`` say what is meant). A call with only variable parts (``host.sys_module(name)``)
    is fine: the accessor's name says what it is."""
    trees = {"sys", "proc", "etc", "dev", "boot", "run", "usr"}
    offenders = []
    for path in _sources():
        if path.name == "host.py" and path.parent == PKG:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(PKG.parent)}:{getattr(node, 'lineno', 0)}"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in trees
                and any(isinstance(a, (ast.Constant, ast.JoinedStr)) for a in node.args)
            ):
                offenders.append(f"{where}: .{node.func.attr}({ast.unparse(node.args[0])}, ...)")
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "root"
                and isinstance(node.value, (ast.Name, ast.Attribute))
            ):
                owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
                if owner == "host":
                    offenders.append(f"{where}: host.root")
    assert offenders == []


# The layers of docs/design.md, from the top: a module may import only from its own layer or the ones below,
# wherever the import stands (a function-level import is an arrow like any other). A dotted name (a module of a
# package) overrides its package's layer.
LAYERS = (
    ("cli",),
    ("engine", "preflight", "emit", "hypervisor", "mdev", "sriov_declared", "persistence", "bootbind"),
    (
        "inventory", "hostuse", "kmod", "iommu", "snapshot", "sriov", "fingerprint", "config", "holders",
        "pciids",
    ),
    ("host", "sysfs", "beneath", "archive"),
    ("model", "address", "group", "errors", "result", "cmdline", "vfioids", "drivers", "select"),
)  # fmt: skip
_LAYER = {name: len(LAYERS) - i for i, names in enumerate(LAYERS) for name in names}


def _layer(parts: list[str]) -> int | None:
    """The layer of the module ``pcipass.<parts>`` (None: the package itself, or what no layer names)."""
    for n in (2, 1):
        if len(parts) >= n and ".".join(parts[:n]) in _LAYER:
            return _LAYER[".".join(parts[:n])]
    return None


def test_imports_point_down_the_layers():
    """No module imports a module of a layer above its own (docs/design.md, *Layers*), not even inside a
    function; every module of the library has a layer."""
    offenders, unplaced = [], []
    for path in _sources():
        parts = list(path.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts in ([], ["__main__"]):
            continue
        mine = _layer(parts)
        if mine is None:
            unplaced.append("/".join(parts))
            continue
        package = parts if path.name == "__init__.py" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                    module = base + (node.module.split(".") if node.module else [])
                elif (node.module or "").split(".")[0] == "pcipass":
                    module = node.module.split(".")[1:]
                else:
                    continue
                targets = [module + [alias.name] for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == "pcipass"]
            else:
                continue
            for target in targets:
                theirs = _layer(target)
                if theirs is not None and theirs > mine:
                    offenders.append(f"pcipass/{'/'.join(parts)}:{node.lineno} imports {'.'.join(target)}")
    assert unplaced == [], "give these modules a layer (LAYERS, docs/design.md)"
    assert offenders == []


def test_library_never_prints_or_exits():
    offenders = []
    for path in _sources():
        if "cli" in path.relative_to(PKG).parts or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                if name == "print" or (
                    isinstance(f, ast.Attribute)
                    and name == "exit"
                    and isinstance(f.value, ast.Name)
                    and f.value.id == "sys"
                ):
                    offenders.append(f"{path.relative_to(PKG.parent)}:{node.lineno}")
    assert offenders == []


def test_cli_import_is_lazy():
    """`pcipass --help`/`--version` must not pay for rich, yaml, pyudev, libvirt or lxml."""
    code = (
        "import sys, pcipass.cli.app; "
        "print(sorted(m for m in ('rich', 'yaml', 'pyudev', 'libvirt', 'lxml', 'jsonschema') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_dataclasses_have_docstrings():
    """Every dataclass says what it is. Also a start-up cost: for a class without a docstring, @dataclass
    writes one from ``inspect.signature(cls)`` at import (CPython's dataclasses._process_class), which for the
    33-field PciDevice alone was ~2 ms of a cold ``pcipass list``."""
    offenders = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and ast.get_docstring(node) is None:
                names = [d.func if isinstance(d, ast.Call) else d for d in node.decorator_list]
                if any(getattr(n, "id", getattr(n, "attr", None)) == "dataclass" for n in names):
                    offenders.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: {node.name}")
    assert offenders == []


def test_command_modules_evaluate_annotations_once():
    """No postponed annotations where typer reads them (pcipass/cli/__init__.py says why)."""
    modules = [PKG / "cli" / "app.py", *sorted((PKG / "cli").glob("*_cmds.py"))]
    offenders = [
        str(p.relative_to(PKG.parent)) for p in modules if "from __future__ import annotations" in p.read_text()
    ]
    assert offenders == []
