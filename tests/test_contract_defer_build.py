"""contract.strict builds models lazily (``defer_build``): validation must be exactly
what an eagerly built twin of each model says, errors included, for every model the
agent and the server read (configs, messages, documents)."""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

import contract
from contract.strict import FrozenStrict, Strict

# The agent's own Strict models (config, OTA config) on top of the whole contract.
for _info in pkgutil.iter_modules(contract.__path__):
    importlib.import_module(f"contract.{_info.name}")
importlib.import_module("agent.config")
importlib.import_module("agent.ota.config")


def strict_models() -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    todo: list[type[BaseModel]] = [Strict]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
            if sub is not FrozenStrict and sub.__module__.startswith(("contract.", "agent.")):
                seen[f"{sub.__module__}.{sub.__qualname__}"] = sub
    return [seen[k] for k in sorted(seen)]


MODELS = strict_models()


def eager_twin(model: type[BaseModel]) -> type[BaseModel]:
    """The same model built at class definition, as before ``defer_build``."""
    twin = type(model.__name__, (model,), {
        "__module__": model.__module__, "__qualname__": model.__qualname__,
        "model_config": ConfigDict(defer_build=False)})
    assert twin.__pydantic_complete__
    return twin


def payloads(model: type[BaseModel]) -> list[dict[str, Any]]:
    names = list(model.model_fields)
    wrong = {name: [[{"x": None}]] for name in names}  # a wrong type for every field
    strings = {name: "not-a-valid-value-\u00e9" for name in names}
    return [{}, {"zz_not_a_field": 1}, wrong, strings, {**strings, "zz_not_a_field": 1}]


def outcome(model: type[BaseModel], payload: dict[str, Any], as_json: bool) -> Any:
    try:
        if as_json:
            value = model.model_validate_json(json.dumps(payload))
        else:
            value = model.model_validate(payload)
    except ValidationError as exc:
        return ("error", json.loads(exc.json(include_url=False)), str(exc))
    return ("ok", value.model_dump(mode="json"))


def test_every_contract_model_defers_its_build() -> None:
    assert len(MODELS) > 30
    for model in MODELS:
        assert model.model_config.get("defer_build") is True, model
        assert model.model_config.get("extra") == "forbid", model


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m.__module__}.{m.__qualname__}")
def test_validation_is_unchanged_by_defer_build(model: type[BaseModel]) -> None:
    twin = eager_twin(model)
    forbid_seen = False
    for payload in payloads(model):
        for as_json in (False, True):
            lazy, eager = outcome(model, payload, as_json), outcome(twin, payload, as_json)
            assert lazy == eager, (payload, as_json)
            if lazy[0] == "error" and "zz_not_a_field" in payload:
                forbid_seen |= any(e["type"] == "extra_forbidden" for e in lazy[1])
    assert forbid_seen, "an unknown field must still be rejected"
