"""nanofleet agent: the device daemon (sources -> pipeline -> runtime -> publisher)."""

from pathlib import Path

__version__ = "0.1.0"


def default_bundle_path() -> Path:
    """The default model bundle shipped inside the package (a fresh install can run it)."""
    return Path(__file__).resolve().parent / "data" / "default.nfb"
