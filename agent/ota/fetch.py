"""Getting a verified candidate bundle onto the disk: the download and verify steps.

Order of trust: TUF metadata (from the provisioned root) -> the signed full
target (model, slot, version, sha256, length) -> the signed minimum -> the
artifact (delta first, full as fallback) bounded by its signed length -> for a
delta, the rebuilt bundle's sha256 must equal the signed full target's -> only
then is the file installed, and only the smoke test parses it.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agent.metrics import Counters
from agent.ota.config import OtaConfig, transport_of
from agent.ota.errors import UpdateRefused
from agent.ota.policy import (
    InstalledBundle,
    SignedArtifact,
    choose_artifact,
    delta_problem,
    full_target_refusal,
    rebuilt_refusal,
    version_refusal,
)
from agent.ota.record import InstalledRef, UpdateTarget, VersionFloor
from agent.ota.state import DeltaUnusable, Downloaded, Failed, Verified
from agent.ota.store import OtaStore, file_sha256
from agent.ota.transport import ArtifactTransport, HttpTransport, TransportError
from contract.bundle import BundleError, runtime_variant
from contract.files import write_atomic
from contract.reasons import OtaReason

if TYPE_CHECKING:
    from agent.ota.tuf_client import TufClient

log = logging.getLogger("nanofleet.agent.ota")


@dataclass(frozen=True)
class LiveBundle:
    """The committed model as the update steps need it."""

    model: str
    version: int
    sha256: str
    slot: str   # the bundle manifest's slot: a new model must serve the same one
    path: Path
    runtime: Literal["onnx", "tflite"] | None = None  # format the live model runs in
    floor: VersionFloor | None = None  # the record's: the version fallen back from at boot


@dataclass(frozen=True)
class Fetched:
    full: SignedArtifact
    artifact: SignedArtifact
    kind: Literal["delta", "full"]
    path: Path
    base: Path | None = None  # a delta's base: the live bundle, or its runtime variant


def repository_urls(cfg: OtaConfig, target: UpdateTarget) -> tuple[str, str]:
    """(metadata URL, target base URL): the desired state's mirror where the configured
    transport can fetch it, else the configured one (an MQTT-only device ignores the
    http mirror a fleet server names for everyone)."""
    def pick(mirror: str | None, configured: str) -> str:
        return mirror if mirror and transport_of(mirror) == cfg.transport else configured

    return (pick(target.metadata_url, cfg.metadata_url),
            pick(target.target_base_url, cfg.target_base_url))


class _NoTransport(ArtifactTransport):
    """transport = "mqtt" before the daemon attached the agent's broker connection."""

    def fetch(self, url: str, start: int = 0, max_length: int | None = None) -> Iterator[bytes]:
        raise TransportError(f"{url}: transport = 'mqtt' but no MQTT transport is attached")


class Fetcher:
    """The I/O of the ``fetch`` and ``verify`` actions; results are state-machine events."""

    def __init__(self, cfg: OtaConfig, store: OtaStore, counters: Counters | None = None,
                 transport: ArtifactTransport | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.counters = counters or Counters()
        self.fetched: Fetched | None = None
        self.transport = transport or self._configured_transport(cfg)

    @staticmethod
    def _configured_transport(cfg: OtaConfig) -> ArtifactTransport:
        if cfg.transport != "http":
            return _NoTransport()
        ssl_context = ssl.create_default_context(cafile=str(cfg.ca_file)) if cfg.ca_file else None
        return HttpTransport(timeout=cfg.http_timeout_s, ssl_context=ssl_context,
                             min_rate=cfg.min_download_rate)

    def use_transport(self, transport: ArtifactTransport) -> None:
        """Use ``transport`` (the daemon's MqttTransport for transport = "mqtt")."""
        self.transport = transport

    def forget(self) -> None:
        """Drop what the last fetch left for verify: the update was left."""
        self.fetched = None

    def close(self) -> None:
        self.transport.close()

    def client(self, target: UpdateTarget) -> TufClient:
        """A TUF client trusting the newest verified root (the provisioned one at first).

        python-tuf, securesystemslib and cryptography (~13 MB of RSS) are imported here,
        when an update starts, not when the daemon starts: most of a device's life
        has no update in progress."""
        from agent.ota.tuf_client import TufClient

        if not (self.store.tuf_dir / TufClient.ROOT_FILE).exists():
            try:
                root = self.cfg.root_file.read_bytes()
            except OSError as exc:
                raise UpdateRefused(OtaReason.NOT_INITIALIZED, f"cannot read the provisioned root "
                                    f"{self.cfg.root_file}: {exc.strerror}") from None
            TufClient.initialize(self.store.tuf_dir, root)
        metadata_url, target_base_url = repository_urls(self.cfg, target)
        return TufClient(self.store.tuf_dir, metadata_url, trusted_root=None,
                         target_base_url=target_base_url, transport=self.transport)

    @staticmethod
    def check_release(client: TufClient, full: SignedArtifact, target: UpdateTarget,
                      live: LiveBundle) -> None:
        """Raise :class:`UpdateRefused` unless the signed release may replace ``live``."""
        refusal = full_target_refusal(full, model=target.model, slot=live.slot,
                                      version=target.version)
        if refusal is not None:
            raise refusal
        record = client.slot_record(full.info.slot)
        if record is not None and record.model != target.model:
            raise UpdateRefused(OtaReason.WRONG_MODEL,
                                f"slot {record.slot!r} is signed to be served by "
                                f"{record.model!r}, not {target.model!r}")
        same_model = live.model == target.model
        floor = live.floor.version if live.floor and live.floor.model == target.model \
            else None
        refusal = version_refusal(target.version,
                                  live_version=live.version if same_model else None,
                                  minimum_version=record.minimum_version if record else 0,
                                  floor_version=floor)
        if refusal is not None:
            raise refusal

    def fetch(self, target: UpdateTarget, live: LiveBundle,
              delta_failed: bool) -> Downloaded | DeltaUnusable | Failed:
        self.fetched = None
        same_model = live.model == target.model
        try:
            client = self.client(target)
            client.refresh()
            found = client.find_model_targets(
                target.model, target.version,
                installed_version=live.version if same_model else None, runtime=live.runtime)
            self.check_release(client, found.full, target, live)
        except UpdateRefused as exc:
            return Failed(exc.reason, exc.detail)
        installed = InstalledBundle(live.model, live.version, live.sha256) if same_model else None
        base: Path | None = live.path
        if found.runtime is not None and found.delta is not None and installed is not None:
            base, installed = self._variant_base(live, found.runtime, installed)
        artifact = choose_artifact(found.full, found.delta, installed, delta_failed=delta_failed)
        note = "full bundle (the delta was refused)" if delta_failed else None
        if artifact is found.full and not delta_failed:
            why = found.delta_problem or (
                delta_problem(found.full, found.delta, installed)
                if found.delta is not None and installed is not None else None)
            note = f"full bundle ({why})" if why else "full bundle"
        if artifact.length > self.cfg.max_download_bytes:
            if artifact is found.full:
                return Failed(OtaReason.TOO_LONG,
                              f"{artifact.path}: signed length {artifact.length} "
                              f"is over max_download_bytes {self.cfg.max_download_bytes}")
            artifact, note = found.full, "full bundle (delta over max_download_bytes)"
        kind: Literal["delta", "full"] = "delta" if artifact is not found.full else "full"
        # What is on disk already for this transfer counts as done; resume files of other
        # versions go (an abandoned version's would otherwise hold space for ever), this
        # version's full bundle and delta stay (a cut delta falls back to the full one).
        part = client.partial_path(artifact.target, self.store.downloads)
        ours = [client.partial_path(a.target, self.store.downloads)
                for a in (found.full, found.delta) if a is not None]
        held = self.store.drop_partials_but(ours).get(part.name, 0)
        need = artifact.length - min(held, artifact.length) + \
            (found.full.length if kind == "delta" else 0)
        if self.store.free_bytes() < need + self.cfg.min_free_bytes:
            return Failed(OtaReason.NO_SPACE, f"{need} bytes needed for {artifact.path}, "
                          f"{self.store.free_bytes()} free (keeping {self.cfg.min_free_bytes})")
        try:
            path = client.download_target(artifact.target, self.store.downloads,
                                          attempts=self.cfg.download_attempts)
        except UpdateRefused as exc:
            if kind == "delta":
                return self._delta_unusable(exc.reason, exc.detail)
            return Failed(exc.reason, exc.detail)
        except Exception as exc:  # the full bundle does not depend on the delta's transfer
            if kind == "delta":
                log.exception("delta download of %s failed", artifact.path)
                return self._delta_unusable(OtaReason.UNAVAILABLE, f"{artifact.path}: "
                                            f"{type(exc).__name__}: {exc}")
            raise
        self.fetched = Fetched(found.full, artifact, kind, path, base)
        return Downloaded(kind, artifact.length, note)

    def _variant_base(self, live: LiveBundle, fmt: Literal["onnx", "tflite"],
                      installed: InstalledBundle) -> tuple[Path | None, InstalledBundle | None]:
        """The base a variant delta applies to: the live bundle reduced to ``fmt``, made
        here with the same deterministic packing the server used. Its sha256 stands for
        the installed bundle in the delta checks, so a delta whose signed base_sha256
        differs is never applied. (None, None) when it cannot be made: full instead."""
        try:
            data = live.path.read_bytes()
            variant = runtime_variant(data, fmt)
        except (OSError, BundleError) as exc:
            log.warning("no %s variant of the live bundle (%s): full bundle instead", fmt, exc)
            return None, None
        digest = hashlib.sha256(variant).hexdigest()
        if variant is data:  # the live bundle already is that variant
            return live.path, InstalledBundle(installed.model, installed.version, digest)
        path = self.store.downloads / f".base-{digest[:16]}.nfb"
        self.store.downloads.mkdir(parents=True, exist_ok=True)
        write_atomic(path, variant)
        return path, InstalledBundle(installed.model, installed.version, digest)

    def verify(self, target: UpdateTarget, live: LiveBundle) -> Verified | DeltaUnusable | Failed:
        """Rebuild (delta) or take (full) the bundle, check it is the signed one, install."""
        f = self.fetched
        if f is None:  # cannot happen: verify always follows a fetch in this process
            return Failed(OtaReason.INTERNAL_ERROR, "verify without a fetched artifact")
        from contract.delta import DeltaError, apply_delta  # zstandard: only when updating

        full = f.full
        source = f.path
        if f.kind == "delta":
            source = self.store.downloads / f".rebuilt-{full.sha256[:16]}.nfb"
            try:
                apply_delta(f.base or live.path, f.path, source, full.sha256, full.length)
            except Exception as exc:
                # DeltaError is the documented refusal; anything else (MemoryError, a
                # parser's own exception) is a bug the fuzzer should find, but it must
                # not cost the update: the signed full bundle does not need the delta.
                f.path.unlink(missing_ok=True)
                source.unlink(missing_ok=True)
                if not isinstance(exc, DeltaError | OSError):
                    log.error("delta applier raised %s on %s", type(exc).__name__,
                              f.artifact.path, exc_info=True)
                return self._delta_unusable(OtaReason.DELTA_INVALID, f"{f.artifact.path}: "
                                            f"{type(exc).__name__}: {exc}")
        # Whatever came over the wire or out of the applier: nothing parses it before
        # its sha256 and length equal the operator-signed full target's.
        digest, length = file_sha256(source)
        refusal = rebuilt_refusal(full, digest, length)
        if refusal is not None:
            source.unlink(missing_ok=True)
            if f.kind == "delta":
                return self._delta_unusable(refusal.reason, refusal.detail)
            return Failed(refusal.reason, refusal.detail)
        ref: InstalledRef = self.store.install(source, target.model, target.version, digest)
        self.fetched = None
        self.store.clear_downloads()  # the delta/full file is not needed any more
        return Verified(ref)

    def _delta_unusable(self, reason: OtaReason, detail: str) -> DeltaUnusable:
        """Every refused delta is counted (``ota_delta_refused``) and reported by the
        state machine's next event (``downloading`` with the reason): the full bundle
        comes next."""
        self.counters.inc("ota_delta_refused")
        log.warning("delta refused (%s): %s; fetching the full bundle", reason, detail)
        return DeltaUnusable(reason, detail)
