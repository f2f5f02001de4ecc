"""Write the programs the shipped model is trained on for the agent
(``agent/data/known_programs.json``): the agent weighs the keywords in for lines whose
syslog tag names any other program (agent.keyword_evidence).

    python -m nanomodel.known_programs

The list belongs to the training data (nanomodel.realtext.PROGRAMS); a test fails when the
two differ, so a source added to training is added here in the same change.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from agent.keyword_evidence import KNOWN_PROGRAMS_PATH
from nanomodel.realtext import PROGRAMS


def trained_programs(without: Collection[str] = ()) -> list[str]:
    """Each program the real lines' tags name, as the agent compares them: lower case, a
    ``postfix/smtpd`` tag as ``postfix``; ``without`` these sources' (a held-out group's)."""
    return sorted({p.split("/")[0].lower() for source, names in PROGRAMS.items()
                   if source not in without for p in names})


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
