"""The programs a model was trained on: the agent weighs the keywords in for lines whose
syslog tag names any other program (agent.keyword_evidence). A bundle names its own in its
manifest (``known_programs``: the default build writes :func:`trained_programs`, a
fine-tune adds :func:`programs_named` of the operator's lines); the agent keeps the shipped
model's list too (``agent/data/known_programs.json``), for bundles that name none:

    python -m nanomodel.known_programs

The list belongs to the training data (nanomodel.realtext.PROGRAMS); a test fails when the
two differ, so a source added to training is added here in the same change.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Iterable

from agent.keyword_evidence import KNOWN_PROGRAMS_PATH, program_of
from contract.bundle_features import MAX_KNOWN_PROGRAMS, PROGRAM_NAME_PATTERN
from nanomodel.realtext import PROGRAMS

_NAME = re.compile(PROGRAM_NAME_PATTERN)


def trained_programs(without: Collection[str] = ()) -> list[str]:
    """Each program the real lines' tags name, as the agent compares them: lower case, a
    ``postfix/smtpd`` tag as ``postfix``; ``without`` these sources' (a held-out group's)."""
    return sorted({p.split("/")[0].lower() for source, names in PROGRAMS.items()
                   if source not in without for p in names})


def programs_named(texts: Iterable[str], known: Collection[str] = (),
                   room: int = MAX_KNOWN_PROGRAMS) -> list[str]:
    """The programs lines name in their syslog tags, as the agent reads them
    (agent.keyword_evidence.program_of), that are not in ``known``: what a model trained on
    them has newly read. Only names a manifest can carry (lower-case ASCII, ``_.@-``; a tag
    in other letters stays weighed as unknown), and at most ``room`` of them, the most
    often named first (a manifest names at most 4,096 programs)."""
    counts = Counter(p for p in map(program_of, texts)
                     if p is not None and p not in known and _NAME.fullmatch(p))
    return sorted(p for p, _ in counts.most_common(max(room, 0)))


def document() -> str:
    return json.dumps({"note": "Programs the shipped model is trained on; written by "
                       "python -m nanomodel.known_programs (agent.keyword_evidence).",
                       "programs": trained_programs()}, indent=1) + "\n"


def main() -> int:
    KNOWN_PROGRAMS_PATH.write_text(document())
    print(f"wrote {KNOWN_PROGRAMS_PATH} ({len(trained_programs())} programs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
