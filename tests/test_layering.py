"""The rooms keep to their layers: no import runs against them.

- ``contract`` imports nothing of ours: both sides build on it.
- ``agent`` (what a device carries) imports only ``contract``: never the server, the
  training code or the rig.
- ``fleet_server`` imports only ``contract``: never the agent, the rig, or ``nanomodel``
  (training imports the agent's inference path, so going through it reaches the agent).
- ``nanomodel`` (training) may import ``agent`` and ``contract``, never the server or the rig.

Every ``import`` in every module counts, function-local ones included (an import
deferred into a function is still a dependency the device package must carry).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
OURS = {"agent", "contract", "fleet_server", "nanomodel", "hil"}
ALLOWED = {
    "contract": set(),
    "agent": {"contract"},
    "fleet_server": {"contract"},
    "nanomodel": {"agent", "contract"},
}


def imported_packages(path: Path) -> set[str]:
    """Our top-level packages that ``path`` imports, anywhere in the module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in OURS)
    return found


def violations(package: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_packages(path) - allowed
        if bad:
            out.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_its_layers(package: str) -> None:
    assert violations(package) == []


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself fails on a back door, lazy imports included."""
    bad = tmp_path / "m.py"
    bad.write_text("import json\n\ndef f():\n    from nanomodel.features import Featurizer\n"
                   "    import fleet_server.db\n")
    assert imported_packages(bad) == {"nanomodel", "fleet_server"}


def test_agent_runs_without_training_or_server_code() -> None:
    """Importing every agent module loads no module of the server, training or rig."""
    code = (
        "import pkgutil, sys, importlib, agent\n"
        "for m in pkgutil.walk_packages(agent.__path__, 'agent.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "{'fleet_server', 'nanomodel', 'hil'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=120)
    assert out.stdout.strip() == ""


# --- no import cycles inside the rooms ---------------------------------------------------

def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Our modules that ``path`` imports (anywhere but under ``if TYPE_CHECKING:``, which
    only the type checker runs): ``from a import b`` counts as ``a`` and ``a.b``."""
    tree = ast.parse(path.read_text(), str(path))
    type_only = {id(n) for node in ast.walk(tree)
                 if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return (found & known) - {module_name(path)}


def import_cycles(paths: list[Path]) -> list[list[str]]:
    """Groups of modules that import each other, directly or around a loop (Tarjan)."""
    known = {module_name(p) for p in paths}
    graph = {module_name(p): imported_modules(p, known) for p in paths}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles() -> None:
    """A cycle (e.g. repo.py <-> rotation.py) means two modules are one in disguise."""
    paths = [p for package in sorted(OURS) for p in sorted((ROOT / package).rglob("*.py"))]
    assert import_cycles(paths) == []


def test_the_cycle_check_sees_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import f\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from pkg import a\n")
    (tmp_path / "pkg" / "c.py").write_text("from typing import TYPE_CHECKING\n"
                                           "if TYPE_CHECKING:\n    from pkg import a\n")
    paths = sorted((tmp_path / "pkg").glob("*.py"))
    assert import_cycles(paths) == [["pkg.a", "pkg.b"]]
