"""A bundle's tar headers are walked before tarfile parses one (contract/tar_headers.py).

tarfile's pax parsing backtracks quadratically on crafted headers (CVE-2024-6232, not
fixed in this machine's Python 3.11.7): a bundle carrying one must be refused without
tarfile ever reading it — by the agent, by the fleet server's publish checks
(``read_bundle``) and by its delta planner (``bundle_layout``).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from contract.bundle import MAX_MEMBERS, BundleError, load_bundle, read_bundle
from contract.tar_headers import BLOCK, TarHeaderError, check_plain_members
from fleet_server.bundle_layout import bundle_layout
from nanomodel import default_bundle_path

pytestmark = pytest.mark.unit

# The shape CPython's fix was about: a pax header of "1 hdrcharset=" repeated, no newline,
# over which tarfile's regular expression backtracks once per repeat. Measured here
# without the walk: 130 KB took 4 s, 520 KB 67 s, and a 64 MiB bundle would take days.
HOSTILE_PAX = b"1 hdrcharset=" * 40_000


@pytest.fixture(scope="module")
def shipped() -> bytes:
    return Path(default_bundle_path()).read_bytes()


def raw_member(name: str, kind: bytes, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = len(data), kind
    return info.tobuf(format=tarfile.USTAR_FORMAT) + data + bytes(-len(data) % BLOCK)


def with_pax_member(bundle: bytes, first: bool) -> bytes:
    """The shipped bundle's members with a hostile pax header before or after them."""
    members = []
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:") as tar:
        for m in tar.getmembers():
            fh = tar.extractfile(m)
            assert fh is not None
            members.append(raw_member(m.name, tarfile.REGTYPE, fh.read()))
    hostile = raw_member("PaxHeaders/notes.txt", tarfile.XHDTYPE, HOSTILE_PAX)
    hostile += raw_member("notes.txt", tarfile.REGTYPE, b"hi")
    ordered = [hostile, *members] if first else [*members, hostile]
    return b"".join(ordered) + bytes(2 * BLOCK)


@pytest.fixture
def no_pax_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: tarfile.TarInfo, tar: tarfile.TarFile) -> tarfile.TarInfo:
        raise AssertionError("tarfile parsed a pax header")

    monkeypatch.setattr(tarfile.TarInfo, "_proc_pax", refuse)


@pytest.mark.parametrize("first", [True, False], ids=["pax-first", "pax-after-the-model"])
def test_a_pax_header_is_refused_before_tarfile_reads_it(
        shipped: bytes, first: bool, no_pax_parsing: None) -> None:
    hostile = with_pax_member(shipped, first)
    assert len(hostile) > len(shipped) + 500_000
    with pytest.raises(BundleError, match="sparse or extended-header member"):
        read_bundle(hostile)
    assert bundle_layout(hostile) is None
    # The shipped bundle itself: plain ustar members only, read as before.
    assert read_bundle(shipped).manifest == load_bundle(default_bundle_path()).manifest
    assert bundle_layout(shipped) is not None


def header(name: bytes, kind: bytes, size_field: bytes) -> bytes:
    block = bytearray(BLOCK)
    block[:len(name)] = name
    block[124:124 + len(size_field)] = size_field
    block[156:157] = kind
    block[148:156] = b" " * 8
    block[148:155] = f"{sum(block):06o}\0".encode()
    return bytes(block)


@pytest.mark.parametrize("data, message", [
    pytest.param(header(b"././@LongLink", b"L", b"00000001000\0"), "extended-header",
                 id="gnu-long-name"),
    pytest.param(header(b"model.onnx", b"S", b"00000001000\0"), "extended-header",
                 id="gnu-sparse"),
    pytest.param(header(b"pax_global_header", b"g", b"00000000000\0"), "extended-header",
                 id="pax-global"),
    pytest.param(header(b"model.onnx", b"2", b"00000000000\0"), "not a regular file",
                 id="symlink"),
    pytest.param(header(b"model.onnx", b"0", b"\xff" * 12), "negative size",
                 id="base-256-negative-size"),
    pytest.param(header(b"model.onnx", b"0", b"0000000zz00\0"), "no tar header at byte 0",
                 id="garbage-size"),
    pytest.param(header(b"models/", b"\0", b"00000000000\0"), "not a regular file",
                 id="old-style-directory"),
    pytest.param(header(b"model.onnx", b"0", b"\x80" + (2 ** 70).to_bytes(11, "big")),
                 "more than the archive holds", id="base-256-size-past-the-end"),
    pytest.param(header(b"f", b"0", b"00000000000\0") * (MAX_MEMBERS + 1),
                 f"more than {MAX_MEMBERS}", id="too-many"),
])
def test_headers_a_bundle_cannot_have(data: bytes, message: str) -> None:
    with pytest.raises(TarHeaderError, match=message):
        check_plain_members(data, MAX_MEMBERS)


def test_the_walk_steps_over_data_and_stops_at_the_end_of_the_archive() -> None:
    # A member's data that looks like a symlink's header is data, not a header; after
    # the zero block nothing is looked at.
    member = header(b"a", b"0", b"00000001000\0") + header(b"evil", b"2", b"0\0")
    tail = bytes(BLOCK) + header(b"after-the-end", b"2", b"0\0")
    check_plain_members(member + tail, MAX_MEMBERS)
    with pytest.raises(TarHeaderError, match="not a regular file"):
        check_plain_members(header(b"a", b"0", b"00000000000\0") + header(b"evil", b"2", b"0\0"),
                            MAX_MEMBERS)
    # A block that is no header before the end is refused (tarfile would stop there
    # silently; pack_bundle never writes one).
    damaged = bytearray(header(b"evil", b"2", b"0\0"))
    damaged[0] ^= 1
    with pytest.raises(TarHeaderError, match="no tar header at byte 512: bad checksum"):
        check_plain_members(header(b"a", b"0", b"00000000000\0") + bytes(damaged),
                            MAX_MEMBERS)


# -- headers the walk and tarfile could read differently (review, December 2026) -----------

def ustar(name: bytes, kind: bytes, size_field: bytes,
          checksum: Callable[[int], bytes] | None = None) -> bytes:
    """A ustar header; ``checksum(sum)`` gives the 8 bytes of its checksum field."""
    block = bytearray(BLOCK)
    block[:len(name)] = name
    block[100:108], block[108:116], block[116:124] = b"0000644\0", b"0000000\0", b"0000000\0"
    block[124:136], block[136:148] = size_field, b"00000000000\0"
    block[156:157] = kind
    block[257:263], block[263:265] = b"ustar\0", b"00"
    block[148:156] = b" " * 8
    total = sum(block)
    block[148:156] = checksum(total) if checksum else f"{total:06o}\0 ".encode()
    return bytes(block)


def octal_size(n: int) -> bytes:
    return f"{n:011o}\0".encode()


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


PAX = ustar(b"PaxHeaders/notes.txt", b"x", octal_size(len(HOSTILE_PAX))) + padded(HOSTILE_PAX)
NOTES = ustar(b"notes.txt", b"0", octal_size(2)) + padded(b"hi")
END = bytes(2 * BLOCK)
MANIFEST = ustar(b"manifest.json", b"0", octal_size(2)) + padded(b"{}")


def junk_after_nul(header: bytes) -> bytes:
    out = bytearray(header)
    out[155:156] = b"7"  # tarfile cuts the field at its NUL: still a valid sum
    return bytes(out)


@pytest.mark.parametrize("data", [
    pytest.param(junk_after_nul(PAX) + NOTES + END, id="checksum-junk-after-nul"),
    pytest.param(ustar(b"PaxHeaders/notes.txt", b"x", octal_size(len(HOSTILE_PAX)),
                       lambda s: b"\x80" + s.to_bytes(7, "big"))
                 + padded(HOSTILE_PAX) + NOTES + END, id="checksum-base-256"),
    pytest.param(ustar(b"PaxHeaders/notes.txt", b"x", octal_size(len(HOSTILE_PAX)),
                       lambda s: b"\x1c" + f"{s:06o}".encode() + b"\0")
                 + padded(HOSTILE_PAX) + NOTES + END, id="checksum-behind-x1c"),
    pytest.param(ustar(b"manifest.json", b"0", b"\0" + f"{len(PAX):010o}".encode() + b"\0")
                 + PAX + NOTES + END, id="size-field-starting-with-nul"),
    pytest.param(MANIFEST + ustar(b"model/", b"\0", octal_size(len(PAX))) + PAX + NOTES + END,
                 id="old-style-directory-before-pax"),
])
def test_no_header_tarfile_reads_escapes_the_walk(data: bytes, no_pax_parsing: None) -> None:
    """Each of these passed the first walk (its own parser of the fields), and tarfile
    then parsed the pax header behind them; the walk now decodes every block with
    tarfile's own TarInfo.frombuf."""
    with pytest.raises(TarHeaderError):
        check_plain_members(data, MAX_MEMBERS)
    with pytest.raises(BundleError):
        read_bundle(data)
    assert bundle_layout(data) is None


def test_a_size_past_the_archive_is_not_a_bundle_for_the_delta_planner() -> None:
    """Second review, December 2026: a base-256 size of 2**70 passed the walk (tarfile
    reads such sizes) and tarfile then raised OverflowError out of bundle_layout."""
    data = MANIFEST + ustar(b"model.onnx", b"0", b"\x80" + (2 ** 70).to_bytes(11, "big")) + END
    assert bundle_layout(data) is None
    with pytest.raises(BundleError, match="more than the archive holds"):
        read_bundle(data)
