"""The development venv's pins (scripts/constraints/): every dependency the bootstrap
installs is pinned, and the venv the suite runs in holds exactly the pinned versions."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "scripts" / "constraints"
EXTRAS = ("agent", "litert", "systemd", "server", "dev")  # what scripts/bootstrap.sh installs
REGENERATE = ("install the new versions into .venv and write `.venv/bin/python -m pip freeze "
              "--exclude-editable` below the header of scripts/constraints/dev.txt")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of a constraints file; anything but ``name==version`` fails."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line.strip())
        assert match, f"{path.name}:{number}: {line!r} is not name==version"
        assert normalized(match[1]) not in out, f"{path.name}:{number}: {match[1]} twice"
        out[normalized(match[1])] = match[2]
    return out


def required_names() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project.get("dependencies", []))
    for extra in EXTRAS:
        specs += project["optional-dependencies"][extra]
    names = set()
    for spec in specs:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)
        assert match, spec
        names.add(normalized(match[0]))
    return names


def test_every_dependency_the_bootstrap_installs_is_pinned() -> None:
    missing = sorted(required_names() - set(pins(CONSTRAINTS / "dev.txt")))
    assert not missing, f"not pinned in scripts/constraints/dev.txt: {missing}; {REGENERATE}"
    tflite = pins(CONSTRAINTS / "tflite.txt")
    assert {"numpy", "tflite-runtime", "pydantic"} <= set(tflite)
    assert tflite["numpy"].startswith("1."), "tflite-runtime 2.14 needs numpy<2"


def test_the_venv_holds_exactly_the_pinned_versions() -> None:
    installed = {normalized(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (version, installed.get(name))
             for name, version in pins(CONSTRAINTS / "dev.txt").items()
             if installed.get(name) != version}
    assert not wrong, (f"pinned vs installed: {wrong}; scripts/bootstrap.sh installs the pins, "
                       f"or the pins are stale: {REGENERATE}")
