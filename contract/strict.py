"""The one base of every pydantic model nanofleet reads: configs, messages, documents.

Unknown fields are an error, not silently dropped: a typo in a config or a message
from a newer peer with a field this side does not know is reported, naming the field.

``defer_build``: pydantic builds a model's validator and serializer the first time the
model is used rather than when its class is defined. The contract defines every
message of both sides; the agent uses a few of them, so the rest are never built on a
device (about 1 MB of resident memory there). Validation is the same either way.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A pydantic model that forbids fields it does not declare."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class FrozenStrict(Strict):
    """A :class:`Strict` model whose instances cannot change (records, values)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
