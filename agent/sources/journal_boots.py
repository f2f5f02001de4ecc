"""In which order to read the journal's boots: a pure decision, from each boot's first
entry and the saved cursor (the journald source's I/O shell gathers them).

Why not sd-journal's own order: it merges entries of two journal files by their
*sequence* (the ``s=`` and ``i=`` of a cursor) when the files share one, by the boot's
monotonic clock within one boot, and otherwise by wall-clock time. journald starts a new
sequence after an unclean shutdown (it sets the dirty file aside and opens a fresh one),
and a device without a real-time clock boots with its clock behind the last entries it
wrote. sd-journal then puts the new boot's first lines *before* a cursor saved in the
last boot, and a resume from that cursor skipped them: the lines of the boot that
followed a power cut (review, December 2026).

What is certain, and used first: a sequence never resumes once a newer one has started
(journald's new files take the previous file's sequence as their template; a fresh one
only starts when there is no usable previous file). So, with the cursor in sequence S:

- a boot of S is after the cursor if its first entry's number is higher;
- if this boot is of S too, S ran from the cursor to now: no boot of another sequence is
  in between;
- a boot of this boot's sequence (when it is not S) came after S ended: after;
- only a boot of a third sequence has nothing but its wall clock to place it (after if
  its first entry is stamped later than the cursor): the one guess left, documented.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["BootHead", "CursorPlace", "boots_after", "boots_in_order", "cursor_boot",
           "parse_cursor", "sequence_of"]


@dataclass(frozen=True, slots=True)
class CursorPlace:
    """Where a journal cursor (or a boot's first entry) is: its boot, its sequence id and
    number, its wall-clock time (µs)."""

    boot: str
    sequence: str
    number: int
    realtime_us: int


# A boot's first entry, as sd-journal returns it under a _BOOT_ID match.
BootHead = CursorPlace


def parse_cursor(cursor: str) -> CursorPlace | None:
    """The place of an sd-journal cursor (``s=..;i=..;b=..;m=..;t=..;x=..``, numbers in
    hex), or None when a field is missing or malformed (such a cursor is placed the old
    way, by sd-journal alone)."""
    fields = dict(part.split("=", 1) for part in cursor.split(";") if "=" in part)
    boot, sequence = cursor_boot(cursor), fields.get("s", "")
    if boot is None or not _is_id(sequence):
        return None
    try:
        return CursorPlace(boot, sequence, int(fields["i"], 16), int(fields["t"], 16))
    except (KeyError, ValueError):
        return None


def cursor_boot(cursor: str) -> str | None:
    """The boot of an sd-journal cursor (its ``b=``), None if it has none or a malformed
    one."""
    fields = dict(part.split("=", 1) for part in cursor.split(";") if "=" in part)
    boot = fields.get("b", "")
    return boot if _is_id(boot) else None


def _is_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def boots_after(cursor: CursorPlace, heads: Iterable[BootHead], this_boot: str) -> list[str]:
    """The boots other than the cursor's and this one that came after the cursor, in the
    order to read them (this boot, read last, is not in the list)."""
    heads = list(heads)
    this_sequence = sequence_of(heads, this_boot)
    later: list[BootHead] = []
    for head in heads:
        if head.boot in (cursor.boot, this_boot):
            continue
        if head.sequence == cursor.sequence:
            after = head.number > cursor.number
        elif this_sequence == cursor.sequence:
            after = False  # S ran on into this boot: nothing of another sequence between
        elif head.sequence == this_sequence:
            after = True   # this boot's sequence started after S ended
        else:
            after = head.realtime_us > cursor.realtime_us  # a third sequence: the clock
        if after:
            later.append(head)
    return _reading_order(later, first=cursor.sequence, last=this_sequence)


def sequence_of(heads: Iterable[BootHead], boot: str) -> str | None:
    """The sequence of ``boot``'s first entry, None if the journal holds none of it."""
    return next((h.sequence for h in heads if h.boot == boot), None)


def boots_in_order(heads: Sequence[BootHead], this_boot: str) -> list[str]:
    """Every boot but this one, oldest first, for a read of all the journal holds (this
    boot is read after them): the cursor then ends in this boot, and a restart does not
    go back into an earlier boot and read this one again (review, December 2026)."""
    return _reading_order([h for h in heads if h.boot != this_boot], first=None,
                          last=sequence_of(heads, this_boot))


def _reading_order(heads: Sequence[BootHead], first: str | None,
                   last: str | None) -> list[str]:
    """Boots grouped by sequence, each sequence's in number order; ``first``'s sequence
    first and ``last``'s last (known to be the oldest and the newest), the others by the
    time of their first entry."""
    by_sequence: dict[str, list[BootHead]] = {}
    for head in heads:
        by_sequence.setdefault(head.sequence, []).append(head)

    def rank(sequence: str) -> tuple[int, int]:
        place = 0 if sequence == first else 2 if sequence == last else 1
        return place, min(h.realtime_us for h in by_sequence[sequence])

    order: list[str] = []
    for sequence in sorted(by_sequence, key=rank):
        order += [h.boot for h in sorted(by_sequence[sequence], key=lambda h: h.number)]
    return order
