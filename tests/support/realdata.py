""":mod:`nanomodel.realtext` reading a data folder of a test's own, with the real
templates linked in (the loaders cache what they read, so the caches are cleared when the
folder is swapped in, when a test rewrites a row, and when it is swapped out)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nanomodel import realtext


def reread_lines() -> None:
    """Forget the captured and sample rows read so far (a test rewrote one)."""
    realtext._all_captured.cache_clear()


@contextmanager
def own_data_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``with own_data_folder(tmp_path, monkeypatch):`` realtext reads ``folder``, whose
    ``templates`` is the real one; write ``captured/`` or ``samples/`` rows into it."""
    (folder / "templates").symlink_to(realtext.DATA / "templates")
    monkeypatch.setattr(realtext, "DATA", folder)
    realtext._all_templates.cache_clear()
    reread_lines()
    try:
        yield folder
    finally:
        realtext._all_templates.cache_clear()
        reread_lines()
