"""Which installed bundle a starting agent runs: the committed one if it still loads,
else the one before it, else the configured bundle.

Split from the engine so the choice is a function of the record, the store's
hash-checked paths and a load check, each passed in; :class:`~agent.ota.engine.OtaEngine`
calls it from ``recover()`` and saves the record it returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.memory import release_freed_memory
from agent.model import LoadedModel
from agent.ota.record import BOOT_ID_MAX, InstalledRef, OtaRecord, VersionFloor
from agent.ota.trial import release_model
from contract.bundle import load_bundle
from contract.reasons import OtaReason

log = logging.getLogger("nanofleet.agent.ota")

VerifiedPath = Callable[[InstalledRef], "Path | None"]
LoadCheck = Callable[[Path, InstalledRef], bool]


@dataclass(frozen=True)
class BootChoice:
    path: Path | None  # None: run the configured bundle
    record: OtaRecord | None  # the record to save, when the committed bundle was demoted


def choose_boot_bundle(record: OtaRecord, verified_path: VerifiedPath,
                       loads: LoadCheck) -> BootChoice:
    """The committed bundle when it is intact and loads; otherwise the previous one
    (or none), with the record that says so."""
    ref = record.committed
    if ref is None:
        return BootChoice(None, None)
    path = verified_path(ref)
    if path is not None and loads(path, ref):
        return BootChoice(path, None)
    fallback = record.previous
    path = verified_path(fallback) if fallback is not None else None
    if fallback is None or path is None or not loads(path, fallback):
        fallback, path = None, None
    log.error("committed bundle %s is missing, damaged or unusable; running %s",
              ref.file, fallback.file if fallback else "the configured bundle")
    # The version that fell over stays the floor of its model: the older one now live
    # must not make every signed version in between installable again.
    floor = record.floor
    if floor is None or floor.model != ref.model or floor.version < ref.version:
        floor = VersionFloor(model=ref.model, version=ref.version)
    return BootChoice(path, record.model_copy(update={
        "committed": fallback, "previous": None, "reason": OtaReason.LIVE_BUNDLE_DAMAGED,
        "detail": f"{ref.file} could not be loaded; fell back", "floor": floor}))


def bundle_loads(path: Path, ref: InstalledRef, runtime: str, threads: int,
                 attempts: int = 2, pause_s: float = 1.0) -> bool:
    """Whether the installed, hash-checked bundle loads and passes its smoke test.
    Tried twice: a failure at boot may be passing (memory still short while the
    device starts, an I/O error), and a failure here demotes the committed bundle
    for good (review, December 2026: one MemoryError did)."""
    for attempt in range(1, attempts + 1):
        try:
            model = LoadedModel.load(path, runtime, threads, expected_sha256=ref.sha256)
            model.smoke_test()
        except Exception as exc:
            log.error("installed bundle %s does not load (attempt %d of %d): %s", path,
                      attempt, attempts, exc)
            release_freed_memory()
            if attempt < attempts:
                time.sleep(pause_s)
            continue
        release_model(model)
        return True
    return False


def read_boot_id(path: Path) -> str | None:
    """The kernel's boot id (a new UUID at every boot: /proc/sys/kernel/random/boot_id),
    or None where it cannot be read: then a restart during a trial is taken for the
    agent's own death, as before there was a boot id."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(BOOT_ID_MAX + 1)
    except OSError as exc:
        log.warning("cannot read the boot id from %s (%s): a restart during a trial rolls "
                    "the candidate back whatever restarted", path, exc.strerror)
        return None
    text = raw.decode("ascii", errors="replace").strip()
    if not text or len(text) > BOOT_ID_MAX or not text.isprintable():
        log.warning("%s does not hold a boot id; a restart during a trial rolls the "
                    "candidate back", path)
        return None
    return text


def factory_examples(path: Path) -> list[tuple[str, str]]:
    """The configured (factory) bundle's example lines with the label each was built to
    give: the trial's arbiter when old and new model exchange labels. Empty when the
    bundle cannot be read (the check then trusts the old model, as before)."""
    try:
        manifest = load_bundle(path).manifest
    except Exception as exc:  # any unreadable bundle: no arbiter
        log.warning("cannot read the example lines of %s (%s)", path, exc)
        return []
    return [(g.text, manifest.labels[int(np.argmax(g.expected))]) for g in manifest.golden
            if len(g.expected) == len(manifest.labels)]
