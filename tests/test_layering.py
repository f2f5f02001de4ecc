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
