"""A real headless Chromium for console tests: Debian's ``/usr/bin/chromium`` driven by
Playwright (nothing downloads a browser), each session with a fresh profile directory.

Screenshots go to ``$NANOFLEET_TEST_OUTPUT/console`` (default ``test-output/console`` at
the repository root) so a person can look at them after the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("NANOFLEET_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
ROOT = Path(__file__).resolve().parents[2]


def output_dir() -> Path:
    base = Path(os.environ.get("NANOFLEET_TEST_OUTPUT", ROOT / "test-output"))
    out = base / "console"
    out.mkdir(parents=True, exist_ok=True)
    return out


def require_browser() -> None:
    """Fail (not skip) without the browser: CI's bootstrap installs it as root."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install the chromium and chromium-driver "
                    "packages (scripts/bootstrap.sh does, as root)")


@contextmanager
def browser_page(profile: Path, width: int = 1360, height: int = 900) -> Iterator[object]:
    """A page in a fresh Chromium profile (closed with the context)."""
    from playwright.sync_api import sync_playwright

    require_browser()
    if profile.exists():
        shutil.rmtree(profile)
    profile.mkdir(parents=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=ARGS,
            viewport={"width": width, "height": height})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            context.close()
