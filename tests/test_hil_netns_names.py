"""Network namespaces of rigs and test workers side by side (hil.links.VethNamespace): a
name that is taken is never touched, another is picked. Needs root and iproute2."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from hil import links
from hil.links import VethNamespace, namespaces_unavailable

pytestmark = pytest.mark.skipif(namespaces_unavailable() is not None,
                                reason=str(namespaces_unavailable()))


def _exists(name: str) -> bool:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return any(line.split()[0] == name for line in out.stdout.splitlines() if line.strip())


@pytest.fixture
def other_rigs() -> Iterator[VethNamespace]:
    """A namespace another rig holds."""
    with VethNamespace("nf-test") as ns:
        yield ns


def test_a_taken_name_is_left_alone_and_another_is_picked(
        other_rigs: VethNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first name drawn is the other rig's (as a process id and three random digits
    once drew): the new namespace gets another, and the other rig's is still there."""
    taken = other_rigs.name.removeprefix("nf-test-")
    tags = iter([taken, "0badc0de"])
    monkeypatch.setattr(links.secrets, "token_hex", lambda _n: next(tags))
    with VethNamespace("nf-test") as mine:
        assert mine.name == "nf-test-0badc0de" and _exists(mine.name)
        assert _exists(other_rigs.name)
    assert not _exists("nf-test-0badc0de") and _exists(other_rigs.name)


def test_a_rig_that_finds_no_free_name_deletes_nothing(
        other_rigs: VethNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set-up failing on taken names raises, and its clean-up does not delete the
    namespace of that name (it was someone else's: the old clean-up deleted it)."""
    taken = other_rigs.name.removeprefix("nf-test-")
    monkeypatch.setattr(links.secrets, "token_hex", lambda _n: taken)
    ns = VethNamespace("nf-test")
    with pytest.raises(RuntimeError, match="three names were taken"):
        ns.open()
    ns.close()
    assert _exists(other_rigs.name)
