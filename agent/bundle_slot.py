"""Which bundle an agent starts with and which slot it serves: read from the bundle's
manifest alone, before any model is loaded (so a damaged model file in the configured
bundle does not stop an agent whose OTA update installed another)."""

from __future__ import annotations

import tarfile
from pathlib import Path

from agent import default_bundle_path
from agent.config import AgentConfig
from contract.bundle import MANIFEST_NAME, MAX_MANIFEST_BYTES, BundleError, BundleManifest
from contract.tar_headers import BLOCK, TarHeaderError, check_plain_members


def initial_bundle(cfg: AgentConfig) -> Path:
    """The bundle to start with: the configured one, else the one shipped with us."""
    if cfg.model.bundle is not None:
        return cfg.model.bundle
    return default_bundle_path()


def bundle_slot(path: Path) -> str:
    """The slot a bundle's manifest names, read without the model files.

    Only the manifest (the first tar member) is read, so a damaged model file in the
    configured bundle does not stop an agent whose OTA update installed another one."""
    try:
        with path.open("rb") as head:  # tarfile.open parses the first header: walk it first
            check_plain_members(head.read(BLOCK), 1, whole=False)
        with tarfile.open(path, mode="r:") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST_NAME or not first.isreg():
                raise BundleError(f"{path}: first member must be {MANIFEST_NAME}")
            if first.size > MAX_MANIFEST_BYTES:
                raise BundleError(f"{path}: {MANIFEST_NAME} is too large ({first.size} bytes)")
            fh = tar.extractfile(first)
            data = fh.read() if fh is not None else b""
    except (OSError, tarfile.TarError, EOFError, TarHeaderError) as exc:
        raise BundleError(f"{path}: cannot read the bundle manifest: {exc}") from None
    try:
        return BundleManifest.model_validate_json(data).slot
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise BundleError(f"{path}: invalid manifest: {exc}") from None


def slot_name(cfg: AgentConfig, bundle: Path) -> str:
    """One name for the slot everywhere (results/<slot>, status, OTA state): the
    configured override, else the slot the bundle's manifest names, which is the one
    deployments target. Updates keep it: a new bundle must serve the live bundle's slot."""
    return cfg.model.slot or bundle_slot(bundle)
