"""A stand-in for the agent's pipeline where a test drives the query service alone: what
the classify query asks of it, with no evidence weighed in (the words alone)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from agent.keyword_evidence import KeywordEvidenceConfig


def words_alone_pipeline() -> SimpleNamespace:
    """Levels off, the keywords' config present but nothing weighed: a classify answer is
    the model's own scores."""
    def weigh_journal(manifest: Any, probs: Any, anomaly: Any, *_: Any, **__: Any) -> Any:
        return probs, anomaly

    keywords = KeywordEvidenceConfig(unknown_programs=False)
    return SimpleNamespace(level_evidence=SimpleNamespace(enabled=False),
                           keyword_evidence=keywords, keywords_for=lambda manifest: keywords,
                           weigh_journal=weigh_journal)
