"""The marks of the device tests (``scripts/device-tests``): slow, opt-in, root."""

from __future__ import annotations

import os

import pytest
from _pytest.mark.structures import MarkDecorator


def device_test_marks(needs: str, root_for: str) -> list[MarkDecorator]:
    """``pytestmark`` of a device test module: skipped unless ``NANOFLEET_DEVICE_TESTS=1``
    (``needs``: what else it takes, for the skip reason) and unless run as root
    (``root_for``: why)."""
    return [
        pytest.mark.slow,
        pytest.mark.skipif(os.environ.get("NANOFLEET_DEVICE_TESTS") != "1",
                           reason="device tests are opt-in: NANOFLEET_DEVICE_TESTS=1 "
                           f"(scripts/device-tests), root, debootstrap, {needs}"),
        pytest.mark.skipif(os.geteuid() != 0, reason=f"needs root ({root_for})"),
    ]
