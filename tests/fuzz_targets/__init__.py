"""Fuzz targets for everything that parses untrusted bytes.

Each module here (``ota``, ``messages``, …) defines ``TARGETS: list[FuzzTarget]``.
:func:`all_targets` collects them; ``tests/test_fuzz.py`` runs a quick pass of each in
the suite and ``benchmarks/fuzz.py`` runs >= 100,000 cases per target.
"""

from __future__ import annotations

import importlib
import pkgutil

from tests.fuzz_targets.base import FuzzTarget


def all_targets() -> list[FuzzTarget]:
    """Every target of every module in this package, by name."""
    found: list[FuzzTarget] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "TARGETS", []))
    return sorted(found, key=lambda t: t.name)
