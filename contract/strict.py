"""The one base of every pydantic model nanofleet reads: configs, messages, documents.

Unknown fields are an error, not silently dropped: a typo in a config or a message
from a newer peer with a field this side does not know is reported, naming the field.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A pydantic model that forbids fields it does not declare."""

    model_config = ConfigDict(extra="forbid")


class FrozenStrict(Strict):
    """A :class:`Strict` model whose instances cannot change (records, values)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
