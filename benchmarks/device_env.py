"""The environment a device's systemd unit gives the agent, for benchmarks that start it.

The unit (packaging/systemd/nanofleet-agent.service) sets allocator and thread-pool
variables with ``Environment=``; a benchmark that measured the agent without them
would report a figure no device sees. This reads them from the unit file itself, so
the unit stays the one place they are written.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path

UNIT = Path(__file__).resolve().parents[1] / "packaging" / "systemd" / "nanofleet-agent.service"


class UnitEnvironmentError(ValueError):
    """An ``Environment=`` word that is not ``NAME=VALUE``."""


def unit_environment(unit: Path = UNIT) -> dict[str, str]:
    """The variables the unit's ``[Service]`` section sets, as systemd reads them:
    whitespace-separated ``NAME=VALUE`` words (quotes group a word), later
    assignments override earlier ones, and an empty ``Environment=`` clears the list."""
    env: dict[str, str] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        if section != "Service" or key.strip() != "Environment":
            continue
        if not value.strip():
            env.clear()
            continue
        for word in shlex.split(value):
            name, sep, val = word.partition("=")
            if not sep or not name:
                raise UnitEnvironmentError(
                    f"{unit}: Environment= word {word!r} is not NAME=VALUE")
            env[name] = val
    return env


def device_environment(base: Mapping[str, str] | None = None,
                       unit: Path = UNIT) -> dict[str, str]:
    """``base`` (default: this process's environment, which finds the code) with the
    unit's variables on top, as the agent on a device gets them."""
    env = dict(os.environ if base is None else base)
    env.update(unit_environment(unit))
    return env
