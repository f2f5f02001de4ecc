"""The nano text model: features, corpus, training, export to ONNX and TFLite."""

from __future__ import annotations

from pathlib import Path

from agent import default_bundle_path as agent_default_bundle_path

__version__ = "1.0"


def default_bundle_path() -> Path:
    """The default model bundle shipped inside the package (a fresh install can run it)."""
    return agent_default_bundle_path()
