"""One fuzz target: seeds of real, valid inputs and a function that feeds it one input.

``run(data)`` must return normally when the product accepts ``data`` or refuses it the
documented way (the exception the product raises for bad input is caught inside
``run``); anything else it raises — ``MemoryError``, ``IndexError``, ``struct.error``,
a hang past the harness's deadline — is a crash, and every crash ever found becomes a
regression test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FuzzTarget:
    name: str  # e.g. "delta.apply", "agent.query"
    seeds: Callable[[], list[bytes]]  # real, valid inputs that mutations start from
    run: Callable[[bytes], None]  # feeds one input to the product's real parser
    max_len: int = 1 << 20  # mutated inputs are cut to this many bytes
