"""The new-rollout form: the CLI's short forms, parsed by the CLI's own parsers into the
API's request model, so the console accepts exactly what ``nanofleet rollout create``
and ``POST /api/v1/rollouts`` accept and refuses the rest with the same messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from fleet_server.rollouts.spec import (
    parse_duration,
    parse_percent,
    parse_selector,
    parse_threshold,
    parse_waves,
)
from fleet_server.rollouts.views import RolloutCreate

# Form field -> default shown in the empty form (the API's defaults).
DEFAULTS: dict[str, str] = {"model": "", "version": "", "target": "group", "group": "",
                            "tags": "", "devices": "", "canary": "1", "waves": "100",
                            "soak": "5m", "success": "95%", "max_failures": "5%"}
LABELS = {"model": "Model", "version": "Version", "group": "Group", "tags": "Tags",
          "devices": "Device ids", "canary": "Canary size", "waves": "Waves",
          "soak": "Soak", "success": "Success rate", "max_failures": "Failure threshold",
          "select": "Target", "strategy": "Strategy"}


@dataclass
class RolloutForm:
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)  # field -> message
    request: RolloutCreate | None = None

    @property
    def ok(self) -> bool:
        return self.request is not None and not self.errors


def _split(text: str) -> list[str]:
    return [p for p in text.replace(",", " ").split() if p]


# pydantic locations -> the form field that holds the value
_FIELD_OF = {"waves": "waves", "canary": "canary", "soak_s": "soak", "kind": "max_failures",
             "value": "max_failures", "max_failures": "max_failures",
             "success_percent": "success", "ids": "devices", "group": "group", "tags": "tags",
             "version": "version", "model": "model"}


def _pydantic_errors(exc: ValidationError, default: str) -> dict[str, str]:
    """Per form field, the first message pydantic gave about it (model-level checks, such
    as the waves' order, go to ``default``)."""
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = [p for p in err.get("loc", ()) if isinstance(p, str)]
        name = next((_FIELD_OF[p] for p in reversed(loc) if p in _FIELD_OF), default)
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "string_pattern_mismatch":
            msg = (f"{err.get('input')!r} is not a valid name: use 1-64 characters from "
                   "A-Z a-z 0-9 . _ - (starting with a letter or digit)")
        out.setdefault(name, msg)
    return out


def _short(message: str) -> str:
    """A parser's message without pydantic's multi-line report appended to it."""
    head, sep, rest = message.partition("1 validation error for ")
    if not sep:
        return message
    why = rest.split("Value error, ", 1)[-1].split(" [type=", 1)[0].strip()
    return head.rstrip(": ") + ": " + why


def parse_rollout_form(form: Mapping[str, Any]) -> RolloutForm:
    """The form's values -> a RolloutCreate, or the errors per field."""
    values = {k: str(form.get(k, DEFAULTS[k]) or "").strip() for k in DEFAULTS}
    result = RolloutForm(values)
    errors = result.errors
    if not values["model"]:
        errors["model"] = "choose the model to roll out"
    try:
        version = int(values["version"])
    except ValueError:
        errors["version"] = f"{values['version']!r} is not a version number (e.g. 2)"
        version = 0
    terms: list[str] = []
    target = values["target"]
    if target == "group":
        if not values["group"]:
            errors["group"] = "enter the group to roll out to"
        terms.append(f"group={values['group']}")
    elif target == "devices":
        ids = _split(values["devices"])
        if not ids:
            errors["devices"] = "enter one or more device ids (comma or space separated)"
        terms.append("ids=" + ",".join(ids))
    elif target == "all":
        terms.append("all")
    else:
        errors["target"] = "choose a group, device ids or all devices"
    terms += [f"tag={t}" for t in _split(values["tags"])]
    strategy: dict[str, Any] = {}
    parsers = {"waves": ("waves", parse_waves), "soak": ("soak_s", parse_duration),
               "success": ("success_percent", parse_percent),
               "max_failures": ("max_failures", parse_threshold)}
    for name, (key, parse) in parsers.items():
        try:
            strategy[key] = parse(values[name])
        except ValueError as exc:
            errors[name] = _short(str(exc))
    try:
        strategy["canary"] = int(values["canary"])
    except ValueError:
        errors["canary"] = f"{values['canary']!r} is not a number of devices (e.g. 1)"
    if errors:
        return result
    try:
        selector = parse_selector(terms)
    except ValueError as exc:  # includes pydantic's ValidationError
        field_name = "devices" if target == "devices" else "group" if target == "group" \
            else "tags"
        errors[field_name] = (str(exc) if not isinstance(exc, ValidationError)
                              else "; ".join(_pydantic_errors(exc, field_name).values()))
        return result
    try:
        result.request = RolloutCreate.model_validate(
            {"model": values["model"], "version": version, "select": selector,
             "strategy": strategy})
    except ValidationError as exc:
        errors.update(_pydantic_errors(exc, "waves"))
    return result
