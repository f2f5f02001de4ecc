"""The templates files hold every expansion as the harvest writes it.

An expansion added without re-running the harvest (its Debian source is not at hand on
every machine) is appended to ``templates/<source>.jsonl`` by hand; this keeps the file
and :data:`nanomodel.harvest.overrides.EXPANSIONS` from drifting apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanomodel.harvest.overrides import EXPANSIONS

TEMPLATES = Path(__file__).resolve().parents[1] / "nanomodel" / "data" / "real" / "templates"


@pytest.mark.parametrize("source", sorted(EXPANSIONS))
def test_every_expansion_is_in_its_templates_file(source: str) -> None:
    rows = {
        row["template"]: row
        for row in map(json.loads, (TEMPLATES / f"{source}.jsonl").read_text().splitlines())
    }
    for exp in EXPANSIONS[source]:
        row = rows.get(exp.template)
        assert row is not None, f"{source}: expansion {exp.template!r} not in the templates file"
        assert (row["label"], row["level"]) == (exp.label, exp.level), exp.template
        assert row["origin"].startswith(f"{exp.file}:"), (exp.template, row["origin"])
        assert row["reason"] == f"expansion: {exp.reason}", exp.template


def test_older_openssh_reverse_dns_sentences_are_routine() -> None:
    """Older sshd's "POSSIBLE BREAK-IN ATTEMPT!" ends a misconfigured-DNS notice, as
    9.2's shorter sentence does: both reviewed normal."""
    rows = [json.loads(x) for x in (TEMPLATES / "openssh.jsonl").read_text().splitlines()]
    found = {r["template"]: r["label"] for r in rows if "map" in r["template"]
             and ("BREAK-IN" in r["template"] or "map back" in r["template"])}
    assert len(found) == 3 and set(found.values()) == {"normal"}, found
