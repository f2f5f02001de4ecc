"""In which order to read the journal's boots: a pure decision, from each boot's first
entry and the saved cursor (the journald source's I/O shell gathers them).

Why not sd-journal's own order: it merges entries of two journal files by their
*sequence* (the ``s=`` and ``i=`` of a cursor) when the files share one, by the boot's
monotonic clock within one boot, and otherwise by wall-clock time. Both go wrong across a
power cut. journald 252 goes on with the dirty file's sequence from the number its tail
has *on disk*: the last seconds the agent read from the page cache are lost, and the next
boot's numbers start below the cursor's, so sd-journal put that boot's first lines before
the cursor and a resume skipped them. Where a new sequence starts (no usable earlier file),
an RTC-less device's clock behind the cursor's did the same by time (reviews, December
2026: the second probed a real journald 252).

So boots are placed by their *first entries*, never by the cursor's own number: a boot's
entries are one run of numbers in its sequence, and boots do not interleave, so two boots'
heads order them even when the tail of one was lost. The cursor says only which boot it is
in (its ``s=`` may be a user journal's or the pre-flush ``/run`` journal's: sequences of
their own beside the system one). With the cursor's boot X whose head is in sequence S:

- a boot whose head is later in the *cursor's own* sequence than the cursor is after,
  whatever else says (a sequence started within X, which a later boot went on with);
- a boot of S is after X if its head's number is higher;
- if this boot's head is in S too, S ran from X to now: no boot of another sequence is in
  between (a sequence does not resume once a newer one started: journald's new files take
  the previous file's sequence as their template);
- a boot whose head is in this boot's sequence (when that is not S) came after S ended;
- only a boot of a third sequence has nothing but its wall clock to place it (after if its
  head is stamped later than the cursor): the one guess left, wrong either way when clocks
  are (documented).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["BootHead", "CursorPlace", "boots_after", "boots_in_order", "cursor_boot",
           "parse_cursor", "same_entry", "sequence_of"]


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
    fields = _cursor_fields(cursor)
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
    boot = _cursor_fields(cursor).get("b", "")
    return boot if _is_id(boot) else None


def same_entry(cursor: str, other: str) -> bool:
    """Whether two cursors name one entry: its boot, monotonic and wall-clock times and
    content hash (``b m t x``) all equal. Not the sequence: the /run -> /var flush copies
    an entry into another sequence, and sd-journal's ``test_cursor`` (which compares the
    sequence first) called the copy another entry, so it was read twice (review)."""
    def key(c: str) -> tuple[str | None, ...]:
        fields = _cursor_fields(c)
        return tuple(fields.get(k) for k in "bmtx")

    mine = key(cursor)
    return None not in mine and mine == key(other)


def _cursor_fields(cursor: str) -> dict[str, str]:
    """A cursor's ``name=value`` fields (parts without ``=`` ignored)."""
    return dict(part.split("=", 1) for part in cursor.split(";") if "=" in part)


def _is_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def boots_after(cursor: CursorPlace, heads: Iterable[BootHead], this_boot: str) -> list[str]:
    """The boots other than the cursor's and this one that came after the cursor's boot, in
    the order to read them (this boot, read last, is not in the list). The cursor's boot is
    placed by its head (``heads``), its own time kept for the third-sequence guess."""
    heads = list(heads)
    this_sequence = sequence_of(heads, this_boot)
    own = cursor
    start = next((h for h in heads if h.boot == cursor.boot), None)
    if start is not None:
        cursor = CursorPlace(cursor.boot, start.sequence, start.number, cursor.realtime_us)
    later: list[BootHead] = []
    for head in heads:
        if head.boot in (cursor.boot, this_boot):
            continue
        if head.sequence == own.sequence and head.number > own.number:
            after = True   # later in the cursor's own sequence: certain whatever else says
        elif head.sequence == cursor.sequence:
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
