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
- links, devices, FIFOs, directories: not a bundle's (``contract.bundle`` refuses them
  once parsed too; a contiguous file, which tarfile reads as a regular one, passes the
  walk and is refused there).
- more members than a bundle holds.

A block that is not a valid header before the archive's end is refused; the rest is left
to tarfile, which reads the same headers next.
"""

from __future__ import annotations

import tarfile

BLOCK = tarfile.BLOCKSIZE
# pax (per member, global), GNU sparse, GNU long name, GNU long link name.
_EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_SPARSE,
             tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class TarHeaderError(ValueError):
    """A header that a bundle cannot have; the message names the member."""


class TarContainerError(TarHeaderError):
    """A block where a header should be that is none (a bad checksum, a cut block)."""


def check_plain_members(data: bytes, max_members: int, whole: bool = True) -> None:
    """Raise :class:`TarHeaderError` unless every header in ``data`` before the end of
    the archive (an all-zero block) is a regular file's, and there are at most
    ``max_members``. Reads headers only: O(members), whatever the data holds.
    ``whole``: ``data`` is the whole archive, so a member's data may not run past it
    (a base-256 size of 2**70 made tarfile raise OverflowError); False for a prefix
    (the first header of a bundle on disk).

    Each block is decoded by tarfile's own ``TarInfo.frombuf`` (one block, never a pax
    record), so the walk reads the fields tarfile will read, as it reads them: two
    parsers of the same bytes disagreed before (review, December 2026: a checksum field
    with a byte after its NUL, a base-256 checksum, a size field starting with NUL, an
    old-style directory — each ended the walk or stepped past a block that tarfile then
    parsed as a pax header). A block that is not a header before the end is refused:
    ``pack_bundle`` never writes one, and tarfile would stop reading there silently."""
    offset = members = 0
    while offset < len(data):
        block = data[offset:offset + BLOCK]
        if block == bytes(BLOCK):
            return  # the end of the archive, where tarfile stops too (EOFHeaderError)
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise TarContainerError(f"no tar header at byte {offset}: {exc}") from None
        name = info.name[:100]
        if info.type in _EXTENDED:
            raise TarHeaderError(f"member {name!r} is a sparse or extended-header member")
        if not info.isreg():
            raise TarHeaderError(f"member {name!r} is not a regular file")
        if info.size < 0:
            raise TarHeaderError(f"member {name!r} has a negative size")
        members += 1
        if members > max_members:
            raise TarHeaderError(f"more than {max_members} members")
        if whole and offset + BLOCK + info.size > len(data):
            raise TarContainerError(f"member {name!r} claims {info.size} bytes, more than "
                                    "the archive holds")
        # tarfile's own step past a regular member's data (TarInfo._proc_builtin).
        offset += BLOCK + -(-info.size // BLOCK) * BLOCK
