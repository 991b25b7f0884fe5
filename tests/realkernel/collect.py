"""Static (AST) collection of the guest tests in tests/guest/ -- nothing is imported on the host.

A guest test module is ``tests/guest/**/test_*.py`` with a module-level ``TOPOLOGY = "name"`` or
``TOPOLOGY = ("name", ...)``. Its tests are module-level ``test*`` functions and ``test*`` methods
of ``Test*`` classes (nested classes too) without ``__init__``: pytest's default rules. One host
item stands for one guest function; pytest ``parametrize`` cases of it are aggregated.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class GuestTest:
    module: str  # path relative to the repo, posix: tests/guest/test_x.py
    qualname: tuple[str, ...]  # ("test_x",) or ("TestC", "test_y")
    lineno: int

    @property
    def nodeid(self) -> str:
        """The guest pytest node id (without parametrize suffix)."""
        return "::".join((self.module, *self.qualname))


@dataclasses.dataclass
class GuestModule:
    module: str
    path: Path
    topologies: tuple[str, ...] = ()
    error: str | None = None
    tests: list[GuestTest] = dataclasses.field(default_factory=list)


def _topology_value(tree: ast.Module) -> tuple[tuple[str, ...] | None, str | None]:
    for node in tree.body:
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id == "TOPOLOGY":
            try:
                v = ast.literal_eval(value)
            except ValueError:
                return None, f"line {node.lineno}: TOPOLOGY must be a literal string or tuple of strings"
            if isinstance(v, str):
                return (v,), None
            if isinstance(v, (tuple, list)) and v and all(isinstance(x, str) for x in v):
                return tuple(v), None
            return None, f"line {node.lineno}: TOPOLOGY must be a string or a non-empty tuple of strings"
    return None, 'no module-level TOPOLOGY = "<topology>" declaration'


def _class_tests(module: str, cls: ast.ClassDef, prefix: tuple[str, ...]) -> list[GuestTest]:
    names = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if "__init__" in names:
        return []
    out: list[GuestTest] = []
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            out.append(GuestTest(module, (*prefix, cls.name, node.name), node.lineno))
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            out.extend(_class_tests(module, node, (*prefix, cls.name)))
    return out


def collect_module(path: Path, repo: Path) -> GuestModule:
    module = path.relative_to(repo).as_posix()
    gm = GuestModule(module, path)
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, OSError, ValueError) as e:
        gm.error = f"cannot parse {module}: {e}"
        return gm
    topologies, err = _topology_value(tree)
    if err:
        gm.error = f"{module}: {err}"
    gm.topologies = topologies or ()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            gm.tests.append(GuestTest(module, (node.name,), node.lineno))
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            gm.tests.extend(_class_tests(module, node, ()))
    return gm


def collect_guest_modules(guest_dir: Path, repo: Path) -> list[GuestModule]:
    files = sorted(p for p in guest_dir.rglob("test_*.py") if "__pycache__" not in p.parts)
    return [collect_module(p, repo) for p in files]
