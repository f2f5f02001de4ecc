"""A power cut at an OTA state: run the agent so that it dies right after persisting it.

::

    python -m hil.ota_crash STATE run --config agent.toml      (from the repository)
    PYTHON ota_crash.py STATE run --config agent.toml          (a device package's
                                                               interpreter; the rig
                                                               copies this file over)

The agent is started through this wrapper, which patches its record store
(:meth:`agent.ota.store.OtaStore.save`) in the agent's own process: once a record that
moves the update *into* ``STATE`` has been written (fsynced and renamed), the process
ends with ``os._exit(137)`` — no clean-up runs, as with kill -9 or a power cut, at a
moment no outside signal can hit reliably. The agent itself has no such hook: a
production unit cannot be made to crash by its environment. Only the standard library
and the agent are imported, so the file also runs on a device with only the package.
"""

from __future__ import annotations

import json
import os
import sys

CRASH_EXIT = 137  # what kill -9 would give; the rig checks for it
STATES = ("downloading", "verifying", "staged", "smoke_testing", "trial", "committed")


def arm(state: str) -> None:
    """Make this process exit right after it persists an OTA record entering ``state``."""
    from agent.ota.record import OtaRecord
    from agent.ota.store import OtaStore

    if state not in STATES:
        raise SystemExit(f"ota_crash: {state!r} is not one of {', '.join(STATES)}")
    save = OtaStore.save

    def save_then_crash(store: OtaStore, record: OtaRecord) -> None:
        try:
            before = json.loads(store.record_path.read_bytes()).get("state")
        except (OSError, ValueError):
            before = None
        save(store, record)
        if record.state == state and before != state:
            print(f"ota_crash: {state} persisted; crashing on purpose", file=sys.stderr,
                  flush=True)
            os._exit(CRASH_EXIT)

    OtaStore.save = save_then_crash  # type: ignore[method-assign,assignment]


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit("usage: ota_crash STATE <nanofleet-agent arguments>")
    arm(argv[0])
    from agent.cli import main as agent_main

    return agent_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
