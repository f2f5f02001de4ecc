"""A walk over a tar's headers before :mod:`tarfile` parses any of them.

A bundle is written by ``contract.bundle.pack_bundle`` as plain ustar regular files,
so anything else in its headers is refused here, from the raw 512-byte blocks:

- **pax and GNU extension headers** (``x``, ``g``, ``S``, ``L``, ``K``): tarfile parses a
  pax header with regular expressions that backtrack quadratically (CVE-2024-6232,
  fixed in CPython 3.11.10; this machine's 3.11.7 and Debian 12's 3.11 are not). A
  64 MiB bundle holding one crafted pax header kept a process that opened it busy for
  hours — the fleet server reads what an operator publishes before anything else
  checks it, and a header of 100 KB already took 2.6 s here. ``tarfile.open`` parses
  the first header itself, so the check has to come before it.
- links, devices, FIFOs, directories, contiguous files: not a bundle's (the same
  members ``contract.bundle`` refuses once parsed).
- more members than a bundle holds.

A header whose checksum is wrong ends the walk where tarfile ends the archive (or, as the
first, refuses it); the rest is left to tarfile, which reads the same headers next.
"""

from __future__ import annotations

BLOCK = 512
_REGULAR = (b"0", b"\0")
# pax (per member, global), GNU sparse, GNU long name, GNU long link name.
_EXTENDED = (b"x", b"g", b"S", b"L", b"K")


class TarHeaderError(ValueError):
    """A header that a bundle cannot have; the message names the member."""


def check_plain_members(data: bytes, max_members: int) -> None:
    """Raise :class:`TarHeaderError` unless every header in ``data`` before the end of
    the archive (a zero block, or the data's end) is a regular file's, and there are at
    most ``max_members``. Reads headers only: O(members), whatever the data holds."""
    offset = members = 0
    while offset + BLOCK <= len(data):
        header = data[offset:offset + BLOCK]
        if header == bytes(BLOCK) or not _checksum_ok(header):
            return  # where tarfile ends the archive too (or, first, refuses it)
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", errors="replace")
        kind = header[156:157]
        if kind in _EXTENDED:
            raise TarHeaderError(f"member {name!r} is a sparse or extended-header member")
        if kind not in _REGULAR:
            raise TarHeaderError(f"member {name!r} is not a regular file")
        members += 1
        if members > max_members:
            raise TarHeaderError(f"more than {max_members} members")
        offset += BLOCK + _blocks(_size(header, name)) * BLOCK


def _size(header: bytes, name: str) -> int:
    field = header[124:136]
    if field[0] & 0x80:  # GNU base-256: for sizes of 8 GiB and more, never a bundle's
        raise TarHeaderError(f"member {name!r} has a base-256 size field")
    digits = field.replace(b"\0", b" ").strip()
    try:
        return int(digits or b"0", 8)
    except ValueError:
        raise TarHeaderError(f"member {name!r} has an unreadable size field") from None


def _checksum_ok(header: bytes) -> bool:
    """tarfile's test: the stored sum equals the header's bytes summed with the sum
    field as spaces, read unsigned or (old tars) signed."""
    try:
        stored = int(header[148:156].replace(b"\0", b" ").strip() or b"x", 8)
    except ValueError:
        return False
    blanked = header[:148] + b" " * 8 + header[156:]
    unsigned = sum(blanked)
    signed = sum(b - 256 if b > 127 else b for b in blanked)
    return stored in (unsigned, signed)


def _blocks(size: int) -> int:
    return -(-size // BLOCK)
